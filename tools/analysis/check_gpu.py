"""Check mmlgc's GPU kernels on your GPU: exactness against the reference,
then latency against cuDNN.

    python tools/analysis/check_gpu.py                # both; check_gpu.json
    python tools/analysis/check_gpu.py --skip-timing  # exactness (~1 min)
    python tools/analysis/check_gpu.py --out FILE.json --rounds 50

1. **Exactness**: seeded cases of ``dynamic_group_conv`` and
   ``ragged_group_conv`` (group counts, kernel sizes, stride, padding,
   dilation, empty and all-one masks, real-valued masks, out_mask, unequal
   and overlapping ragged groups, channels_last and strided inputs, shapes
   that reach every entry of the tile table) in float32 (TF32 off),
   float16 and bfloat16, each through the Triton entry point and through
   ``mmlgc.ops`` (the registered CUDA kernel), against the reference in
   float64 on the same device; float32 cases also check the gradients.
2. **Latency** on ResNet-50's conv shapes (batch 1 and 8, 224x224 and
   800x1216): the dense cuDNN conv (``F.conv2d``), the Triton op with
   ``--groups`` groups each reading a ``--density`` fraction of the input
   channels, and the masked form the MSGC/DGC references run (input
   replicated per group, one grouped cuDNN conv). Medians of CUDA-event
   timings, host planning included.

Prints a table, writes everything to ``--out`` (JSON), and exits non-zero
if an exactness case fails. Without CUDA it refuses (the CI checks without
a GPU are tests/ops/test_triton_kernels.py and
tools/analysis/compile_gpu_kernels.py).
"""
import argparse
import json
import os.path as osp
import platform
import random
import statistics
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(
    __file__)))))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3,
             torch.bfloat16: 2e-2}


# ----------------------------------------------------------------------------
# Exactness.
# ----------------------------------------------------------------------------

def _layout(x, kind):
    if kind == 'channels_last':
        return x.contiguous(memory_format=torch.channels_last)
    if kind == 'strided':
        wide = x.new_zeros(*x.shape[:3], 2 * x.shape[3])
        wide[..., ::2] = x
        return wide[..., ::2]
    return x


def exactness_cases(count, seed=0):
    """``count`` seeded case descriptions (plain dicts), the fixed corner
    cases first."""
    fixed = [
        dict(op='dynamic', n=2, c=8, o=4 * g, groups=g, k=3, h=9, w=7,
             stride=(1, 1), padding=(1, 1), dilation=(1, 1), density=0.5,
             real=True, out_mask=False, fill=None, layout='contiguous')
        for g in (1, 2, 3, 4, 8)
    ] + [
        dict(op='dynamic', n=3, c=12, o=12, groups=4, k=5, h=11, w=9,
             stride=(2, 2), padding=(2, 1), dilation=(2, 1), density=0.5,
             real=True, out_mask=True, fill=None, layout='channels_last'),
        dict(op='dynamic', n=2, c=10, o=8, groups=2, k=3, h=8, w=8,
             stride=(1, 1), padding=(1, 1), dilation=(1, 1), density=1.0,
             real=False, out_mask=False, fill=0.0, layout='strided'),
        dict(op='dynamic', n=2, c=10, o=8, groups=2, k=1, h=8, w=8,
             stride=(1, 1), padding=(0, 0), dilation=(1, 1), density=1.0,
             real=False, out_mask=False, fill=1.0, layout='contiguous'),
        # Shapes that reach every tile of the table (rows per task, map).
        dict(op='dynamic', n=2, c=64, o=256, groups=2, k=3, h=4, w=4,
             stride=(1, 1), padding=(1, 1), dilation=(1, 1), density=0.5,
             real=True, out_mask=True, fill=None, layout='contiguous'),
        dict(op='dynamic', n=2, c=64, o=64, groups=4, k=3, h=20, w=24,
             stride=(1, 1), padding=(1, 1), dilation=(1, 1), density=0.5,
             real=True, out_mask=False, fill=None, layout='channels_last'),
        dict(op='dynamic', n=2, c=96, o=96, groups=3, k=3, h=20, w=24,
             stride=(1, 1), padding=(1, 1), dilation=(1, 1), density=0.5,
             real=True, out_mask=False, fill=None, layout='contiguous'),
        dict(op='dynamic', n=2, c=128, o=128, groups=2, k=3, h=7, w=7,
             stride=(1, 1), padding=(1, 1), dilation=(1, 1), density=0.5,
             real=True, out_mask=False, fill=None, layout='contiguous'),
        dict(op='dynamic', n=2, c=128, o=128, groups=2, k=3, h=20, w=24,
             stride=(2, 1), padding=(1, 1), dilation=(1, 1), density=0.5,
             real=True, out_mask=False, fill=None, layout='contiguous'),
        dict(op='dynamic', n=1, c=256, o=512, groups=2, k=1, h=25, w=38,
             stride=(1, 1), padding=(0, 0), dilation=(1, 1), density=0.3,
             real=False, out_mask=True, fill=None, layout='contiguous'),
        dict(op='ragged', n=2, c=7, in_sizes=(3, 0, 5, 2),
             out_sizes=(2, 3, 4, 1), k=3, h=9, w=7, stride=(1, 1),
             padding=(1, 1), dilation=(1, 1), layout='contiguous'),
        dict(op='ragged', n=3, c=64, in_sizes=(40, 40, 0, 17),
             out_sizes=(100, 20, 4, 0), k=3, h=14, w=14, stride=(2, 2),
             padding=(1, 1), dilation=(1, 1), layout='channels_last'),
    ]
    rng = random.Random(seed)
    cases = fixed[:count]
    while len(cases) < count:
        k = rng.choice([1, 3, 5])
        stride = (rng.choice([1, 2]), rng.choice([1, 2]))
        dilation = (rng.choice([1, 2]), rng.choice([1, 2]))
        padding = (rng.randint(0, k // 2 + 1), rng.randint(0, k // 2 + 1))
        span = [d * (k - 1) + 1 for d in dilation]
        h = rng.randint(max(1, span[0] - 2 * padding[0]), 24)
        w = rng.randint(max(1, span[1] - 2 * padding[1]), 24)
        c = rng.randint(1, 80)
        base = dict(n=rng.randint(1, 4), c=c, k=k, h=h, w=w, stride=stride,
                    padding=padding, dilation=dilation,
                    layout=rng.choice(['contiguous', 'channels_last',
                                       'strided']))
        if rng.random() < 0.6:
            groups = rng.choice([1, 2, 3, 4, 8])
            cases.append(dict(
                base, op='dynamic', groups=groups,
                o=groups * rng.randint(1, 40),
                density=rng.choice([0.0, 0.1, 0.5, 0.9, 1.0]),
                real=rng.random() < 0.5, out_mask=rng.random() < 0.4,
                fill=None))
        else:
            groups = rng.randint(1, 6)
            cases.append(dict(
                base, op='ragged',
                in_sizes=tuple(rng.randint(0, c) for _ in range(groups)),
                out_sizes=tuple(rng.randint(0, 70) for _ in range(groups))))
    return cases


def build_args(case, dtype, device, seed):
    gen = torch.Generator().manual_seed(seed)
    n, c, k = case['n'], case['c'], case['k']

    def randn(*shape):
        return torch.randn(*shape, generator=gen).to(dtype).to(device)

    x = _layout(randn(n, c, case['h'], case['w']), case['layout'])
    conv = (case['stride'], case['padding'], case['dilation'])
    if case['op'] == 'dynamic':
        groups, o = case['groups'], case['o']
        mask = (torch.rand(n, groups, c, generator=gen) <
                case['density']).float()
        if case['real']:
            mask = mask * torch.randn(n, groups, c, generator=gen)
        if case['fill'] is not None:
            mask.fill_(case['fill'])
        out_mask = (torch.rand(n, o, generator=gen) < 0.6).to(device) if \
            case['out_mask'] else None
        return (x, randn(o, c, k, k), randn(o), mask.to(dtype).to(device),
                out_mask, *conv)
    in_sizes, out_sizes = list(case['in_sizes']), list(case['out_sizes'])
    if not sum(out_sizes):
        out_sizes[0] = 1
    in_index = torch.cat([torch.randperm(c, generator=gen)[:s]
                          for s in in_sizes]).to(device)
    entries = sum(i * o for i, o in zip(in_sizes, out_sizes)) * k * k
    return (x, randn(entries), randn(sum(out_sizes)), in_index, in_sizes,
            out_sizes, (k, k), *conv)


def relative_error(got, want):
    if got.shape != want.shape:
        return float('inf')
    if not want.numel():
        return 0.0
    scale = max(want.abs().max().item(), 1.0)
    diff = (got.double() - want.double()).abs()
    return torch.nan_to_num(diff, nan=float('inf')).max().item() / scale


def _double(args):
    return [a.double() if torch.is_tensor(a) and a.is_floating_point() else a
            for a in args]


def check_case(case, dtype, device, seed):
    """Errors of one case: Triton entry point, registered op, gradients."""
    from mmlgc import ops
    from mmlgc.ops import reference, triton_kernels
    dynamic = case['op'] == 'dynamic'
    args = build_args(case, dtype, device, seed)
    kernel = (triton_kernels.dynamic_group_conv if dynamic else
              triton_kernels.ragged_group_conv)
    op = ops.dynamic_group_conv if dynamic else ops.ragged_group_conv
    ref = (reference.dynamic_group_conv if dynamic else
           reference.ragged_group_conv)
    want = ref(*_double(args))
    errors = dict(triton=relative_error(kernel(*args), want),
                  op=relative_error(op(*args), want))
    if dtype == torch.float32:
        leaves = [a.detach().clone().requires_grad_() for a in args[:3]]
        out = op(*leaves, *args[3:])
        grad = torch.randn_like(out)
        got = torch.autograd.grad(out, leaves, grad)
        ref_leaves = [a.detach().double().requires_grad_() for a in args[:3]]
        ref_out = ref(*ref_leaves, *_double(args[3:]))
        wanted = torch.autograd.grad(ref_out, ref_leaves, grad.double(),
                                     allow_unused=True)
        errors['grad'] = max(
            relative_error(g, torch.zeros_like(g) if w is None else w)
            for g, w in zip(got, wanted))
    return errors


def run_exactness(device, count, dtypes, log=print):
    from mmlgc.ops.triton_kernels import choose_tile
    records, failures = [], 0
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        for i, case in enumerate(exactness_cases(count)):
            for dtype in dtypes:
                try:
                    errors = check_case(case, dtype, device, seed=i)
                    problem = None
                except Exception as e:
                    errors, problem = {}, f'{type(e).__name__}: {e}'
                ok = problem is None and all(
                    e <= TOLERANCE[dtype] for e in errors.values())
                failures += not ok
                if case['op'] == 'dynamic':
                    rows = case['o'] // case['groups']
                else:
                    rows = max(case['out_sizes'])
                record = dict(case=case, dtype=str(dtype).split('.')[-1],
                              errors=errors, ok=ok, problem=problem,
                              tile=choose_tile(rows, _plane(case),
                                               dtype).name)
                records.append(record)
                if not ok:
                    log(f'FAILED case {i} {record["dtype"]}: '
                        f'{problem or errors} {case}')
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    log(f'exactness: {len(records) - failures} of {len(records)} passed')
    return records, failures


def _plane(case):
    out = [(s + 2 * p - d * (case['k'] - 1) - 1) // st + 1
           for s, p, d, st in zip((case['h'], case['w']), case['padding'],
                                  case['dilation'], case['stride'])]
    return out[0] * out[1]


# ----------------------------------------------------------------------------
# Latency.
# ----------------------------------------------------------------------------

def resnet50_shapes(height, width):
    """``(name, in, out, k, stride, (h, w))`` of ResNet-50's distinct
    bottleneck convs (the 3x3 and the 1x1 reduce of each stage's
    repeated blocks, and the first 3x3 of stages 2-4 with stride 2)."""
    shapes, size = [], (height // 4, width // 4)
    for stage, width_ in enumerate((64, 128, 256, 512), 1):
        if stage > 1:
            shapes.append((f'layer{stage}.0.conv2', width_, width_, 3, 2,
                           size))
            size = ((size[0] + 1) // 2, (size[1] + 1) // 2)
        shapes.append((f'layer{stage}.conv2', width_, width_, 3, 1, size))
        shapes.append((f'layer{stage}.conv1', 4 * width_, width_, 1, 1,
                       size))
    return shapes


def time_ms(fn, rounds, sync=None):
    """Median milliseconds of ``fn`` (CUDA events on a GPU)."""
    for _ in range(3):
        fn()
    samples = []
    if sync is None:  # a CUDA device
        for _ in range(rounds):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end))
    else:
        import time
        for _ in range(rounds):
            begin = time.perf_counter()
            fn()
            sync()
            samples.append(1e3 * (time.perf_counter() - begin))
    return statistics.median(samples)


def run_timing(device, batches, sizes, densities, groups, dtype, rounds,
               shapes_fn=resnet50_shapes, log=print):
    from mmlgc.ops import dynamic_group_conv, reference
    sync = None if device.type == 'cuda' else (lambda: None)
    gen = torch.Generator().manual_seed(0)
    records = []
    log(f"{'input':<10} {'batch':>5} {'layer':<16} {'C->O':>9} {'k':>2} "
        f"{'s':>2} {'d':>5} {'dense ms':>9} {'triton ms':>9} "
        f"{'masked ms':>9} {'x dense':>8} {'x masked':>8}")
    for height, width in sizes:
        for batch in batches:
            for name, cin, cout, k, stride, size in shapes_fn(height, width):
                x = torch.randn(batch, cin, *size, generator=gen).to(
                    device, dtype)
                weight = torch.randn(cout, cin, k, k, generator=gen).to(
                    device, dtype)
                padding = k // 2
                dense = time_ms(lambda: F.conv2d(x, weight, None, stride,
                                                 padding), rounds, sync)
                for density in densities:
                    keep = max(1, round(density * cin))
                    mask = torch.zeros(batch, groups, cin)
                    for n in range(batch):
                        for g in range(groups):
                            mask[n, g, torch.randperm(cin, generator=gen)
                                 [:keep]] = 1
                    mask = mask.to(device, dtype)
                    with torch.no_grad():
                        triton = time_ms(lambda: dynamic_group_conv(
                            x, weight, None, mask, None, stride, padding),
                            rounds, sync)
                        masked = time_ms(lambda: reference.dynamic_group_conv(
                            x, weight, None, mask, None, stride, padding),
                            rounds, sync)
                    record = dict(input=f'{height}x{width}', batch=batch,
                                  layer=name, in_channels=cin,
                                  out_channels=cout, kernel=k, stride=stride,
                                  map=list(size), density=density,
                                  groups=groups, dense_ms=dense,
                                  triton_ms=triton, masked_ms=masked,
                                  speedup_vs_dense=dense / triton,
                                  speedup_vs_masked=masked / triton)
                    records.append(record)
                    log(f"{record['input']:<10} {batch:>5} {name:<16} "
                        f"{f'{cin}->{cout}':>9} {k:>2} {stride:>2} "
                        f'{density:>5.2f} {dense:>9.3f} {triton:>9.3f} '
                        f'{masked:>9.3f} {dense / triton:>8.2f} '
                        f'{masked / triton:>8.2f}')
    return records


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='check_gpu.json')
    parser.add_argument('--cases', type=int, default=60,
                        help='exactness cases (each in 3 dtypes)')
    parser.add_argument('--skip-exactness', action='store_true')
    parser.add_argument('--skip-timing', action='store_true')
    parser.add_argument('--batch', type=int, nargs='+', default=[1, 8])
    parser.add_argument('--sizes', nargs='+', default=['224x224', '800x1216'])
    parser.add_argument('--densities', type=float, nargs='+',
                        default=[0.5, 0.25])
    parser.add_argument('--groups', type=int, default=4)
    parser.add_argument('--dtype', default='float32',
                        choices=['float32', 'float16', 'bfloat16'],
                        help='of the timing (float32 uses TF32 where '
                        "torch's cuDNN switch allows it, as F.conv2d does)")
    parser.add_argument('--rounds', type=int, default=20)
    args = parser.parse_args(argv)

    if not torch.cuda.is_available():
        print('check_gpu.py: no CUDA device is visible (torch '
              f'{torch.__version__}, CUDA build {torch.version.cuda}); this '
              'tool checks mmlgc\'s Triton kernels on a GPU. Without one, '
              'the checks are tests/ops/test_triton_kernels.py (Triton '
              'interpreter) and tools/analysis/compile_gpu_kernels.py '
              '(sm_80/sm_90 compile).', file=sys.stderr)
        return 2
    import triton

    import mmlgc.ops  # noqa: F401  (registers the CUDA kernels)
    device = torch.device('cuda', torch.cuda.current_device())
    report = dict(device=torch.cuda.get_device_name(device),
                  capability=list(torch.cuda.get_device_capability(device)),
                  torch=torch.__version__, cuda=torch.version.cuda,
                  triton=triton.__version__, python=platform.python_version())
    print(f"{report['device']} (sm_{''.join(map(str, report['capability']))}"
          f"), torch {report['torch']}, CUDA {report['cuda']}, triton "
          f"{report['triton']}")
    failures = 0
    if not args.skip_exactness:
        report['exactness'], failures = run_exactness(
            device, args.cases,
            [torch.float32, torch.float16, torch.bfloat16])
        from mmlgc.ops import cuda_kernels
        report['self_check_trusted'] = {
            checked.name: checked._trusted.get(device)
            for checked in (cuda_kernels.checked_dynamic_group_conv,
                            cuda_kernels.checked_ragged_group_conv)
        }
    if not args.skip_timing:
        sizes = [tuple(int(v) for v in s.split('x')) for s in args.sizes]
        report['timing'] = run_timing(device, args.batch, sizes,
                                      args.densities, args.groups,
                                      getattr(torch, args.dtype),
                                      args.rounds)
        report['timing_dtype'] = args.dtype
        report['tf32'] = torch.backends.cudnn.allow_tf32
    with open(args.out, 'w') as f:
        json.dump(report, f, indent=1)
    print(f'wrote {args.out}')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
