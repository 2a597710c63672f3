"""The Triton kernels of the group convs, executed on CPU by the Triton
interpreter, against :mod:`mmlgc.ops.reference`.

``TRITON_INTERPRET=1`` only takes effect if set before triton is imported
(``@triton.jit`` picks the interpreter when a kernel is defined, and
triton's own library kernels are defined at import). The pytest process has
imported triton already (torch does), so the cases run in one worker
subprocess (this file run as a script) with the variable set; the tests
below read its results, one test per case family. A failing case prints
its parameters.

The interpreter costs ~20 ms per program instance: shapes are tiny and the
families seeded and few (about 60 cases x 2 dtypes, ~1 min on 2 cores).
Interpreter gaps, handled on purpose:

* bf16 arithmetic is wrong in the interpreter (numpy has no bfloat16), so
  bf16 is compile-checked only (test_compile_gpu_kernels.py);
* ``tl.dot``'s tile minimum (16) is not enforced here: every tile of the
  table obeys it, and the sm_80/sm_90 compile enforces it;
* an unmasked load past a tensor's end returns garbage, not an error: the
  ``out_of_bounds`` cases read inputs that are slices of NaN-filled
  buffers, so any load outside the slice shows up as NaN.
"""
import json
import os
import os.path as osp
import random
import subprocess
import sys
import traceback

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
WORKER_TIMEOUT = 600  # seconds; the run takes about a minute
DTYPES = ('float32', 'float16')
# Relative to the largest output magnitude (at least 1), against the
# reference in float64 on the same (rounded) inputs. float16: operands are
# products of fp16 values accumulated in fp32, the scaled weight and the
# output rounded to fp16 (2**-11 relative each).
TOLERANCE = {'float32': 1e-5, 'float16': 2e-3}


# ----------------------------------------------------------------------------
# Cases (built in the worker; plain parameters, so they print).
# ----------------------------------------------------------------------------

def _dynamic(n=2, c=6, o=8, groups=4, k=3, h=6, w=5, stride=(1, 1),
             padding=(1, 1), dilation=(1, 1), density=0.5, real=True,
             empty_group=False, mask_fill=None, out_mask=False, bias=True,
             layout='contiguous', tile=None, nan_guard=False):
    return dict(op='dynamic', n=n, c=c, o=o, groups=groups, k=k, h=h, w=w,
                stride=stride, padding=padding, dilation=dilation,
                density=density, real=real, empty_group=empty_group,
                mask_fill=mask_fill, out_mask=out_mask, bias=bias,
                layout=layout, tile=tile, nan_guard=nan_guard)


def _ragged(n=2, c=7, in_sizes=(3, 0, 5, 2), out_sizes=(2, 3, 4, 1), k=3,
            h=6, w=5, stride=(1, 1), padding=(1, 1), dilation=(1, 1),
            bias=True, layout='contiguous', tile=None, nan_guard=False):
    return dict(op='ragged', n=n, c=c, in_sizes=in_sizes,
                out_sizes=out_sizes, k=k, h=h, w=w, stride=stride,
                padding=padding, dilation=dilation, bias=bias, layout=layout,
                tile=tile, nan_guard=nan_guard)


def case_families():
    """``{family: [case, ...]}``; seeded, the same every run."""
    rng = random.Random(17)
    families = {
        'groups': [_dynamic(groups=g, o=2 * g) for g in (1, 2, 3, 4, 8)],
        'kernel_size': [
            _dynamic(k=1, padding=(0, 0)),
            _dynamic(k=3, padding=(0, 1)),
            _dynamic(k=5, padding=(2, 1), h=7, w=6),
        ],
        'stride_dilation_padding': [
            _dynamic(stride=(2, 2), h=7, w=8),
            _dynamic(dilation=(2, 2), padding=(2, 1), h=7, w=6),
            _dynamic(stride=(2, 1), dilation=(1, 2), padding=(0, 2)),
            _dynamic(k=5, stride=(2, 2), dilation=(2, 1), padding=(3, 2),
                     h=8, w=7),
        ],
        'batch': [_dynamic(n=n) for n in (1, 2, 3)],
        'masks': [
            _dynamic(empty_group=True),
            _dynamic(mask_fill=0.0),  # all-zero: bias only
            _dynamic(mask_fill=1.0, groups=2),  # all-one: a dense conv
            _dynamic(real=True, density=0.9),
            _dynamic(real=False, density=0.3, bias=False),
        ],
        'out_mask': [
            _dynamic(out_mask=True),
            _dynamic(out_mask=True, empty_group=True, bias=False,
                     stride=(2, 2)),
        ],
        'layout': [
            _dynamic(layout='channels_last'),
            _dynamic(layout='strided', k=1, padding=(0, 0)),
            _ragged(layout='channels_last'),
            _ragged(layout='strided'),
        ],
        'ragged': [
            _ragged(),  # unequal sets, one group reading no channel
            _ragged(in_sizes=(5, 5, 4), out_sizes=(3, 0, 2), k=1,
                    padding=(0, 0)),  # overlapping; a group writing nothing
            _ragged(in_sizes=(7, ), out_sizes=(5, ), k=5, padding=(2, 2),
                    h=7, w=6, n=1),
            _ragged(stride=(2, 2), dilation=(2, 1), padding=(2, 0), h=8,
                    w=6, n=3, bias=False),
        ],
        # The smallest tile on shapes of several row, pixel and reduction
        # blocks (tasks of 20 rows, 20-40 entries, 6x7 = 42 pixels).
        'multi_tile': [
            _dynamic(c=40, o=40, groups=2, h=6, w=7, density=0.6,
                     out_mask=True, tile=0),
            _dynamic(c=24, o=20, groups=1, k=1, padding=(0, 0), h=6, w=7,
                     layout='channels_last', tile=0),
            _ragged(c=30, in_sizes=(20, 0, 17), out_sizes=(20, 3, 17), h=6,
                    w=7, tile=0),
        ],
        'out_of_bounds': [
            _dynamic(nan_guard=True, out_mask=True),
            _dynamic(nan_guard=True, k=1, padding=(0, 0),
                     layout='channels_last'),
            _dynamic(nan_guard=True, c=20, o=20, groups=1, h=5, w=7,
                     tile=0),
            _ragged(nan_guard=True),
            _ragged(nan_guard=True, c=24, in_sizes=(18, 24),
                    out_sizes=(17, 5), h=5, w=7, tile=0),
        ],
    }
    families['random'] = [_random_case(rng) for _ in range(12)]
    return families


def _random_case(rng):
    k = rng.choice([1, 3, 5])
    stride = (rng.choice([1, 2]), rng.choice([1, 2]))
    dilation = (rng.choice([1, 2]), rng.choice([1, 2]))
    padding = (rng.randint(0, k // 2 + 1), rng.randint(0, k // 2 + 1))
    span = [d * (k - 1) + 1 for d in dilation]
    h = rng.randint(max(1, span[0] - 2 * padding[0]), 9)
    w = rng.randint(max(1, span[1] - 2 * padding[1]), 9)
    geometry = dict(n=rng.randint(1, 3), k=k, h=h, w=w, stride=stride,
                    padding=padding, dilation=dilation,
                    layout=rng.choice(['contiguous', 'channels_last',
                                       'strided']),
                    bias=rng.random() < 0.5)
    c = rng.randint(1, 10)
    if rng.random() < 0.6:
        groups = rng.choice([1, 2, 3, 4, 8])
        return _dynamic(c=c, groups=groups, o=groups * rng.randint(1, 3),
                        density=rng.choice([0.0, 0.25, 0.5, 1.0]),
                        real=rng.random() < 0.5,
                        empty_group=rng.random() < 0.2,
                        out_mask=rng.random() < 0.4, **geometry)
    groups = rng.randint(1, 4)
    return _ragged(c=c, in_sizes=tuple(rng.randint(0, c)
                                       for _ in range(groups)),
                   out_sizes=tuple(rng.randint(1, 4) for _ in range(groups)),
                   **geometry)


# ----------------------------------------------------------------------------
# The worker: builds each case's tensors, runs kernel and reference.
# ----------------------------------------------------------------------------

def _place(torch, x, case, gen):
    """``x``'s values in the case's layout; with ``nan_guard``, as a slice
    of a NaN-filled buffer one larger in every dimension (and offset by
    one), so that any load outside ``x`` reads NaN."""
    if case['nan_guard']:
        buf = torch.full([s + 2 for s in x.shape], float('nan'),
                         dtype=x.dtype)
        if case['layout'] == 'channels_last' and x.dim() == 4:
            buf = buf.contiguous(memory_format=torch.channels_last)
        view = buf[tuple(slice(1, 1 + s) for s in x.shape)]
        view.copy_(x)
        return view
    if case['layout'] == 'channels_last' and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    if case['layout'] == 'strided' and x.dim() == 4:
        wide = torch.zeros(*x.shape[:3], 2 * x.shape[3], dtype=x.dtype)
        wide[..., ::2] = x
        return wide[..., ::2]
    return x


def _guarded_flat(torch, x, case):
    """A 1-D tensor (weight, bias) inside a NaN buffer when guarded."""
    if not case['nan_guard']:
        return x
    buf = torch.full((x.numel() + 7, ), float('nan'), dtype=x.dtype)
    buf[3:3 + x.numel()] = x.reshape(-1)
    return buf[3:3 + x.numel()].view(x.shape)


def build_args(torch, case, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    n, c, k = case['n'], case['c'], case['k']
    x = torch.randn(n, c, case['h'], case['w'], generator=gen).to(dtype)
    x = _place(torch, x, case, gen)
    conv = (case['stride'], case['padding'], case['dilation'])
    if case['op'] == 'dynamic':
        groups, o = case['groups'], case['o']
        mask = (torch.rand(n, groups, c, generator=gen) <
                case['density']).float()
        if case['real']:
            mask = mask * torch.randn(n, groups, c, generator=gen)
        if case['mask_fill'] is not None:
            mask.fill_(case['mask_fill'])
        if case['empty_group']:
            mask[:, groups - 1] = 0
        out_mask = (torch.rand(n, o, generator=gen) < 0.6
                    if case['out_mask'] else None)
        weight = torch.randn(o, c, k, k, generator=gen).to(dtype)
        weight = _guarded_flat(torch, weight, case)
        bias = torch.randn(o, generator=gen).to(dtype)
        bias = _guarded_flat(torch, bias, case) if case['bias'] else None
        return (x, weight, bias, mask.to(dtype), out_mask, *conv)
    in_sizes, out_sizes = list(case['in_sizes']), list(case['out_sizes'])
    in_index = torch.cat([torch.randperm(c, generator=gen)[:s]
                          for s in in_sizes])
    weight = torch.randn(sum(i * o for i, o in zip(in_sizes, out_sizes)) *
                         k * k, generator=gen).to(dtype)
    weight = _guarded_flat(torch, weight, case)
    bias = torch.randn(sum(out_sizes), generator=gen).to(dtype)
    bias = _guarded_flat(torch, bias, case) if case['bias'] else None
    return (x, weight, bias, in_index, in_sizes, out_sizes, (k, k), *conv)


def _as_double(torch, args):
    # The reference sees the kernel's (rounded) inputs, in float64; the
    # NaN buffers around guarded slices stay out of it (clone).
    return [a.clone().double() if torch.is_tensor(a) and a.is_floating_point()
            else a for a in args]


def run_case(torch, triton_kernels, reference, tile_configs, case, dtype,
             seed):
    """Relative error of the kernel against the reference."""
    dtype = getattr(torch, dtype)
    args = build_args(torch, case, dtype, seed)
    tile = None
    if case['tile'] is not None:
        tile = tile_configs(dtype)[case['tile']]
    if case['op'] == 'dynamic':
        got = triton_kernels.dynamic_group_conv(*args, _tile=tile)
        want = reference.dynamic_group_conv(*_as_double(torch, args))
    else:
        got = triton_kernels.ragged_group_conv(*args, _tile=tile)
        want = reference.ragged_group_conv(*_as_double(torch, args))
    if got.shape != want.shape:
        raise AssertionError(f'shape {tuple(got.shape)} != '
                             f'{tuple(want.shape)}')
    if not got.is_contiguous():
        raise AssertionError('output is not contiguous')
    if not want.numel():
        return 0.0
    scale = max(want.abs().max().item(), 1.0)
    # NaN (a load outside a guarded slice) compares as an infinite error.
    return torch.nan_to_num((got.double() - want).abs(),
                            nan=float('inf')).max().item() / scale


def self_check_with_real_kernels(torch, cuda_kernels):
    """The first-call self-check's own cases pass with the real kernels
    (interpreted): no false alarm on a GPU. Returns the warnings raised."""
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        for checked in (cuda_kernels.checked_dynamic_group_conv,
                        cuda_kernels.checked_ragged_group_conv):
            checked._check(torch.device('cpu'))
    return [str(w.message) for w in caught]


def registered_cuda_kernels(torch, reference):
    """The ops' registered CUDA kernels, reached by dispatching to the CUDA
    key with CPU tensors: the self-checked Triton kernels, called by the
    dispatcher with the schema's argument types. Errors vs the reference."""
    cuda = torch._C.DispatchKeySet(torch._C.DispatchKey.CUDA)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 6, 7, 5, generator=gen)
    mask = (torch.rand(2, 4, 6, generator=gen) < 0.5) * torch.randn(
        2, 4, 6, generator=gen)
    dynamic = (x, torch.randn(8, 6, 3, 3, generator=gen),
               torch.randn(8, generator=gen), mask,
               torch.rand(2, 8, generator=gen) < 0.5, [2, 1], [1, 1], [1, 2])
    ragged = (x, torch.randn(2 * 3 * 9 + 3 * 4 * 9, generator=gen), None,
              torch.tensor([0, 2, 4, 1, 2, 3, 4]), [3, 0, 4], [2, 1, 3],
              [3, 3], [1, 2], [1, 0], [1, 1])
    errors = {}
    for name, args in (('dynamic_group_conv', dynamic),
                       ('ragged_group_conv', ragged)):
        op = getattr(torch.ops.mmlgc, name).default
        got = op.redispatch(cuda, *args)
        want = getattr(reference, name)(*_as_double(torch, args))
        errors[name] = (got.double() - want).abs().max().item()
    return errors


def check_gpu_dry_run(torch):
    """tools/analysis/check_gpu.py's exactness and timing code on CPU (two
    small cases, one tiny layer): it must run where users have a GPU."""
    sys.path.insert(0, osp.join(REPO, 'tools', 'analysis'))
    import check_gpu
    lines = []
    records, failures = check_gpu.run_exactness(
        torch.device('cpu'), 2, [torch.float32, torch.float16],
        log=lines.append)
    timing = check_gpu.run_timing(
        torch.device('cpu'), [1], [(6, 5)], [0.5], 2, torch.float32, 2,
        shapes_fn=lambda h, w: [('tiny.conv2', 8, 8, 3, 1, (h, w))],
        log=lines.append)
    return dict(failures=failures, cases=len(records), log=lines,
                timing_keys=sorted(timing[0]))


def worker(out_path):
    assert os.environ.get('TRITON_INTERPRET') == '1'
    import torch
    torch.set_num_threads(1)
    from mmlgc.ops import cuda_kernels, reference, triton_kernels
    from mmlgc.ops.triton_kernels import tile_configs
    results = {}
    for f, (family, cases) in enumerate(case_families().items()):
        for i, case in enumerate(cases):
            for dtype in DTYPES:
                key = f'{family}/{i}/{dtype}'
                try:
                    err = run_case(torch, triton_kernels, reference,
                                   tile_configs, case, dtype,
                                   seed=1000 * f + i)
                    results[key] = dict(error=err, case=case)
                except Exception:
                    results[key] = dict(error=None, case=case,
                                        raised=traceback.format_exc())
    results['self_check_warnings'] = self_check_with_real_kernels(
        torch, cuda_kernels)
    results['check_gpu_dry_run'] = check_gpu_dry_run(torch)
    results['registered_cuda_kernels'] = registered_cuda_kernels(
        torch, reference)
    with open(out_path, 'w') as f:
        json.dump(results, f)


# ----------------------------------------------------------------------------
# The tests (parent).
# ----------------------------------------------------------------------------

@pytest.fixture(scope='module')
def interpreted(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('triton') / 'results.json')
    env = dict(os.environ, TRITON_INTERPRET='1', OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, __file__, out], cwd=REPO,
                          env=env, capture_output=True, text=True,
                          timeout=WORKER_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out) as f:
        return json.load(f)


@pytest.mark.parametrize('family', list(case_families()))
def test_interpreted_kernel_matches_reference(interpreted, family):
    failures = []
    for key, result in interpreted.items():
        if not key.startswith(family + '/') or key.count('/') != 2:
            continue
        dtype = key.rsplit('/', 1)[1]
        if result['error'] is None:
            failures.append(f"{key} raised: {result['raised'][-800:]}\n"
                            f"  case {result['case']}")
        elif not result['error'] <= TOLERANCE[dtype]:
            failures.append(f"{key}: relative error {result['error']:.3g} "
                            f"> {TOLERANCE[dtype]:g}\n  case "
                            f"{result['case']}")
    assert not failures, '\n'.join(failures)


def test_cases_cover_the_required_families():
    cases = [c for cases in case_families().values() for c in cases]
    dynamic = [c for c in cases if c['op'] == 'dynamic']
    ragged = [c for c in cases if c['op'] == 'ragged']
    assert {1, 2, 3, 4, 8} <= {c['groups'] for c in dynamic}
    assert {1, 3, 5} <= {c['k'] for c in cases}
    assert {1, 2, 3} <= {c['n'] for c in cases}
    assert any(2 in c['stride'] for c in cases)
    assert any(2 in c['dilation'] for c in cases)
    assert any(c['padding'] != (0, 0) for c in cases)
    assert {'contiguous', 'channels_last', 'strided'} <= {
        c['layout'] for c in dynamic} & {c['layout'] for c in ragged}
    assert any(c['empty_group'] for c in dynamic)
    assert {0.0, 1.0} <= {c['mask_fill'] for c in dynamic}
    assert any(c['real'] for c in dynamic)
    assert any(c['out_mask'] for c in dynamic)
    assert any(0 in c['in_sizes'] for c in ragged)  # reads no channel
    assert any(sum(c['in_sizes']) > c['c'] for c in ragged)  # overlapping
    assert any(len(set(c['in_sizes'])) > 1 for c in ragged)  # unequal
    assert any(c['nan_guard'] and c['op'] == op for c in cases
               for op in ('dynamic', 'ragged'))


def test_self_check_cases_pass_with_the_real_kernels(interpreted):
    assert interpreted['self_check_warnings'] == []


def test_registered_cuda_kernels_are_the_triton_ones(interpreted):
    errors = interpreted['registered_cuda_kernels']
    assert set(errors) == {'dynamic_group_conv', 'ragged_group_conv'}
    assert all(e < 1e-5 for e in errors.values()), errors


def test_check_gpu_tool_runs_on_cpu(interpreted):
    dry = interpreted['check_gpu_dry_run']
    assert dry['cases'] == 4 and dry['failures'] == 0, dry['log']
    assert {'dense_ms', 'triton_ms', 'masked_ms', 'speedup_vs_dense'} <= set(
        dry['timing_keys'])


@pytest.mark.skipif(os.environ.get('TRITON_INTERPRET') == '1',
                    reason='the interpreter takes CPU tensors')
def test_cpu_tensors_without_the_interpreter_are_a_clear_error():
    import torch

    from mmlgc.ops import triton_kernels
    with pytest.raises(RuntimeError, match='TRITON_INTERPRET=1'):
        triton_kernels.dynamic_group_conv(torch.randn(1, 2, 3, 3),
                                          torch.randn(2, 2, 1, 1), None,
                                          torch.ones(1, 1, 2))


if __name__ == '__main__':
    worker(sys.argv[1])
