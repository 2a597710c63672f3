"""tools/analysis/compile_gpu_kernels.py compiles every kernel x dtype x tile
configuration the dispatcher can choose for sm_80 and sm_90 (no GPU needed):
no failure, no register spill (~30 s). bf16 is covered here only: the
interpreter's bf16 arithmetic is wrong (numpy has no bfloat16)."""
import json
import os
import subprocess
import sys

import torch


def test_every_kernel_compiles_for_sm80_and_sm90_without_spills(
        tmp_path, repo_root):
    from mmlgc.ops.triton_kernels import tile_configs
    out = tmp_path / 'kernels.json'
    env = {k: v for k, v in os.environ.items() if k != 'TRITON_INTERPRET'}
    proc = subprocess.run([
        sys.executable, 'tools/analysis/compile_gpu_kernels.py', '--arch',
        '80', '90', '--out', str(out)
    ], cwd=repo_root, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    records = json.loads(out.read_text())
    expected = {(arch, dtype, config.name)
                for arch in (80, 90)
                for dtype, torch_dtype in (('fp32', torch.float32),
                                           ('fp32-tf32', torch.float32),
                                           ('fp16', torch.float16),
                                           ('bf16', torch.bfloat16))
                for config in tile_configs(torch_dtype)}
    assert {(r['arch'], r['dtype'], r['config']) for r in records} == expected
    for r in records:
        assert set(r) == {'kernel', 'arch', 'dtype', 'config', 'regs',
                          'spills', 'shared'}
        assert r['spills'] == 0 and 0 < r['regs'] <= 255, r
        assert 0 < r['shared'] <= 99 * 1024, r  # opt-in limit on sm_80
