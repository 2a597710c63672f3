"""Compile mmlgc's Triton kernels for NVIDIA GPUs ahead of time, no GPU
needed: every kernel x dtype x tile configuration the dispatcher can choose,
for each requested architecture, with the registers, spills and shared
memory of each.

    python tools/analysis/compile_gpu_kernels.py --arch 80 90 --out k.json

Writes a JSON list of ``{kernel, arch, dtype, config, regs, spills, shared}``
(``spills``: bytes of spill stores + loads; ``shared``: bytes) and prints a
table. Exits non-zero when a configuration fails to compile or spills.
``--configs N`` compiles only the first N tile configurations (quick
checks; CI compiles the full table).

Registers and spills come from ``ptxas -v`` (the ptxas triton ships) run on
the PTX triton generated, with triton's own ptxas options: a compiled
kernel reports ``n_regs`` / ``n_spills`` only once loaded onto a GPU.
"""
import argparse
import json
import os
import os.path as osp
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(
    __file__)))))

# The kernels must be compiled, not interpreted.
if os.environ.get('TRITON_INTERPRET', '0') == '1':
    sys.exit('compile_gpu_kernels.py: unset TRITON_INTERPRET (the '
             'interpreter cannot compile)')

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.backends.nvidia.compiler import (  # noqa: E402
    get_ptxas, sm_arch_from_capability)
from triton.compiler import ASTSource  # noqa: E402

import torch  # noqa: E402
from mmlgc.ops.triton_kernels import (group_conv_forward_kernel,  # noqa: E402
                                      tile_configs)

# dtype name -> (torch dtype, pointer element type, DOT_PRECISION). float32
# compiles twice: exact (the default of torch's matmuls) and TF32 (what
# torch's cuDNN switch allows for convolutions, on by default).
DTYPES = {
    'fp32': (torch.float32, 'fp32', 'ieee'),
    'fp32-tf32': (torch.float32, 'fp32', 'tf32'),
    'fp16': (torch.float16, 'fp16', 'ieee'),
    'bf16': (torch.bfloat16, 'bf16', 'ieee'),
}


def group_conv_signature(element):
    """Triton signature of :func:`group_conv_forward_kernel`: tensors as
    the launcher passes them, sizes and strides as 32-bit ints (what the
    launcher specialises them to below 2**31)."""
    pointers = {
        'x_ptr': element, 'w_ptr': element, 'bias_ptr': element,
        'out_ptr': element, 'work_ptr': 'i64', 'in_channel_ptr': 'i64',
        'col_offset_ptr': 'i64', 'in_scale_ptr': 'fp32',
        'out_channel_ptr': 'i64', 'row_offset_ptr': 'i64'
    }
    signature = {}
    for name in group_conv_forward_kernel.arg_names:
        if name in pointers:
            signature[name] = '*' + pointers[name]
        elif name.isupper():
            signature[name] = 'constexpr'
        else:
            signature[name] = 'i32'
    return signature


def ptxas_resources(ptx, arch):
    """``(registers, spill bytes)`` of ``ptx`` from ``ptxas -v``."""
    with tempfile.TemporaryDirectory() as tmp:
        src = osp.join(tmp, 'kernel.ptx')
        with open(src, 'w') as f:
            f.write(ptx)
        proc = subprocess.run([
            get_ptxas(arch).path, '-lineinfo', '-v',
            '--regAllocOptLevel=2',
            f'--gpu-name={sm_arch_from_capability(arch)}',
            src, '-o', osp.join(tmp, 'kernel.cubin')
        ], capture_output=True, text=True, check=True)
    log = proc.stdout + proc.stderr
    regs = re.search(r'Used (\d+) registers', log)
    spills = re.search(r'(\d+) bytes spill stores, (\d+) bytes spill loads',
                       log)
    if regs is None or spills is None:
        raise RuntimeError(f'unexpected ptxas output:\n{log}')
    return int(regs.group(1)), int(spills.group(1)) + int(spills.group(2))


def compile_one(dtype, config, arch):
    _, element, precision = DTYPES[dtype]
    constexprs = dict(HAS_BIAS=True, DOT_PRECISION=precision,
                      BLOCK_R=config.block_r, BLOCK_P=config.block_p,
                      BLOCK_K=config.block_k)
    source = ASTSource(fn=group_conv_forward_kernel,
                       signature=group_conv_signature(element),
                       constexprs=constexprs)
    compiled = triton.compile(
        source, target=GPUTarget('cuda', arch, 32),
        options=dict(num_warps=config.num_warps,
                     num_stages=config.num_stages))
    regs, spills = ptxas_resources(compiled.asm['ptx'], arch)
    return dict(kernel='group_conv_forward', arch=arch, dtype=dtype,
                config=config.name, regs=regs, spills=spills,
                shared=compiled.metadata.shared)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--arch', type=int, nargs='+', default=[80, 90],
                        help='compute capabilities (80: A100, 90: H100)')
    parser.add_argument('--out', help='write the records here (JSON)')
    parser.add_argument('--configs', type=int, default=None,
                        help='compile only the first N tile configurations '
                        'of each dtype')
    parser.add_argument('--dtypes', nargs='+', default=list(DTYPES),
                        choices=list(DTYPES))
    args = parser.parse_args(argv)

    records, failures = [], []
    start = time.time()
    for arch in args.arch:
        for dtype in args.dtypes:
            for config in tile_configs(DTYPES[dtype][0])[:args.configs]:
                try:
                    record = compile_one(dtype, config, arch)
                except Exception as e:  # report every failure, then exit 1
                    failures.append(f'sm_{arch} {dtype} {config.name}: '
                                    f'{type(e).__name__}: {e}')
                    continue
                records.append(record)
                if record['spills']:
                    failures.append(f'sm_{arch} {dtype} {config.name}: '
                                    f"{record['spills']} bytes of spills")
    print(f"{'kernel':<20} {'arch':>5} {'dtype':<10} {'config':<22} "
          f"{'regs':>5} {'spills':>7} {'shared':>7}")
    for r in records:
        print(f"{r['kernel']:<20} {'sm_' + str(r['arch']):>5} "
              f"{r['dtype']:<10} {r['config']:<22} {r['regs']:>5} "
              f"{r['spills']:>7} {r['shared']:>7}")
    print(f'{len(records)} kernels compiled in {time.time() - start:.1f} s')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(records, f, indent=1)
    for failure in failures:
        print('FAILED:', failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
