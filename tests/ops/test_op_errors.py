"""Fuzz of the argument checks of the compiled ops (``torch.ops.mmlgc.*``).

Seeded random argument sets, each a well-formed call with one thing broken
(shape, rank, dtype, device, group sizes, index range, non-binary out_mask,
geometry values up to int64 overflow, grad_out of the backward ops), go
straight to the C++ ops, as a user calling ``torch.ops.mmlgc`` would: no
Python façade checks in between. Each must raise a RuntimeError/ValueError
whose message names the op and the argument at fault. Well-formed random
calls must still match :mod:`mmlgc.ops.reference`, forward and backward.

The calls run in a worker subprocess (this file run as a script), so a
segfault or an abort is a test failure naming the case that was running,
not a crashed test session. The worker loads only the compiled library and
the reference module (no ``import mmlgc``: faster, and no Python-side
checks), and caps its address space so that a missing size check shows up
as an allocation error instead of exhausting the machine.
"""
import glob
import importlib.util
import json
import os.path as osp
import random
import re
import resource
import subprocess
import sys
import traceback

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MALFORMED_CASES = 600
WELL_FORMED_CASES = 120
SEED = 0
WORKER_TIMEOUT = 120  # seconds; the whole run takes ~10 s on 2 cores
ADDRESS_SPACE_LIMIT = 16 << 30  # bytes


# ----------------------------------------------------------------------------
# Case generation (runs in the worker).
# ----------------------------------------------------------------------------

def _geometry(rng):
    k = rng.choice([1, 1, 3, 5])
    stride = [rng.choice([1, 2, 3]), rng.choice([1, 2])]
    dilation = [rng.choice([1, 2]), rng.choice([1, 2])]
    padding = [rng.randint(0, k // 2 + 1), rng.randint(0, k // 2 + 1)]
    span = [d * (k - 1) + 1 for d in dilation]
    low = [max(1, s - 2 * p) for s, p in zip(span, padding)]
    h, w = rng.randint(low[0], low[0] + 6), rng.randint(low[1], low[1] + 6)
    return k, stride, padding, dilation, h, w


def _layout(torch, x, rng):
    """The same values contiguous, channels_last, strided or expanded."""
    kind = rng.choice(['contiguous', 'channels_last', 'strided', 'expanded'])
    if kind == 'channels_last':
        return x.contiguous(memory_format=torch.channels_last)
    if kind == 'strided':
        wide = torch.zeros(*x.shape[:3], 2 * x.shape[3], dtype=x.dtype)
        wide[..., ::2] = x
        return wide[..., ::2]
    if kind == 'expanded' and x.shape[0] > 1:
        return x[:1].expand_as(x)
    return x


def dynamic_args(torch, rng, gen):
    """Keyword arguments of a well-formed dynamic_group_conv call."""
    dtype = rng.choice([torch.float32, torch.float64])
    k, stride, padding, dilation, h, w = _geometry(rng)
    n, c = rng.randint(1, 3), rng.randint(1, 9)
    groups = rng.choice([1, 2, 3, 4])
    o = groups * rng.randint(1, 3)
    x = _layout(torch, torch.randn(n, c, h, w, generator=gen, dtype=dtype),
                rng)
    mask = (torch.rand(n, groups, c, generator=gen) < rng.random()).to(dtype)
    if rng.random() < 0.4:  # binary x attention
        mask = mask * torch.randn(n, groups, c, generator=gen, dtype=dtype)
    out_mask = None
    if rng.random() < 0.5:
        out_mask = torch.rand(n, o, generator=gen) < 0.6
        if rng.random() < 0.5:
            out_mask = out_mask.to(rng.choice([torch.float32, torch.int64]))
    bias = (torch.randn(o, generator=gen, dtype=dtype)
            if rng.random() < 0.5 else None)
    return dict(input=x,
                weight=torch.randn(o, c, k, k, generator=gen, dtype=dtype),
                bias=bias, mask=mask, out_mask=out_mask, stride=stride,
                padding=padding, dilation=dilation)


def ragged_args(torch, rng, gen):
    """Keyword arguments of a well-formed ragged_group_conv call."""
    dtype = rng.choice([torch.float32, torch.float64])
    k, stride, padding, dilation, h, w = _geometry(rng)
    n, c = rng.randint(1, 3), rng.randint(1, 9)
    groups = rng.randint(1, 4)
    in_sizes = [rng.randint(0, c) for _ in range(groups)]
    out_sizes = [rng.randint(0, 3) for _ in range(groups)]
    out_sizes[0] = max(out_sizes[0], 1)
    in_index = torch.cat([
        torch.randperm(c, generator=gen)[:s] for s in in_sizes])
    entries = sum(i * o for i, o in zip(in_sizes, out_sizes)) * k * k
    bias = (torch.randn(sum(out_sizes), generator=gen, dtype=dtype)
            if rng.random() < 0.5 else None)
    x = torch.randn(n, c, h, w, generator=gen, dtype=dtype)
    return dict(input=_layout(torch, x, rng),
                weight=torch.randn(entries, generator=gen, dtype=dtype),
                bias=bias, in_index=in_index, in_sizes=in_sizes,
                out_sizes=out_sizes, kernel_size=[k, k], stride=stride,
                padding=padding, dilation=dilation)


def _huge(rng):
    return rng.choice([2**31, 2**40, 2**62, 2**63 - 1])


def _resized(torch, t, dim, delta):
    """``t`` with size ``dim`` changed by ``delta`` (at least 0)."""
    shape = list(t.shape)
    shape[dim] = max(0, shape[dim] + delta)
    return torch.zeros(shape, dtype=t.dtype)


def _geometry_mutations(torch, rng, a):
    """Broken stride/padding/dilation, shared by both conv ops."""
    name = rng.choice(['stride', 'padding', 'dilation'])
    low = 0 if name == 'padding' else 1
    bad = rng.choice([
        [1, 1, 1], [1],
        [low - rng.randint(1, 3), 1],
        [1, _huge(rng)] if name != 'padding' else [_huge(rng), 0],
    ])
    a[name] = bad
    return name


def _other_device(torch, rng, a, names):
    """With a GPU, now and then one of the tensors ``names`` of ``a`` moves
    to it while the input stays on the CPU: the regex of the error, or None.
    (Without a GPU no random number is drawn: the CPU cases stay the same.)"""
    if not torch.cuda.is_available() or rng.random() >= 0.15:
        return None
    name = rng.choice([k for k in names if a.get(k) is not None])
    a[name] = a[name].cuda()
    return f'{name} is on cuda'


def _bias_mutations(torch, rng, a, out_channels, wrong_dtype):
    """A broken bias for a conv of ``out_channels`` outputs, shared by both
    conv ops (each with a dtype it refuses)."""
    b = torch.zeros(out_channels, dtype=a['input'].dtype)
    a['bias'], expect = rng.choice([
        (_resized(torch, b, 0, rng.choice([-1, 1])), 'bias has'),
        (b[None], 'bias must be 1-D'),
        (b.to(wrong_dtype), 'bias has dtype'),
    ])
    return expect


def _conv_input_mutations(torch, rng, a):
    x = a['input']
    kind = rng.choice(['rank', 'dtype', 'too small'])
    if kind == 'rank':
        a['input'] = rng.choice([x[..., 0], x[..., None]])
        return r'input'
    if kind == 'dtype':
        a['input'] = x.to(rng.choice([torch.int64, torch.int32, torch.bool]))
        return r'input'
    a['input'] = x[:, :, :1, :1]
    a['padding'] = [0, 0]
    a['dilation'] = [2, 2]
    if 'kernel_size' in a:
        a['kernel_size'] = [3, 3]
        entries = sum(i * o for i, o in zip(a['in_sizes'], a['out_sizes']))
        a['weight'] = torch.zeros(entries * 9, dtype=a['weight'].dtype)
    else:
        a['weight'] = torch.zeros(*a['weight'].shape[:2], 3, 3,
                                  dtype=a['weight'].dtype)
    return r'smaller than the dilated kernel'


def _output_shape(torch, a, out_channels, kernel):
    """Output shape of the well-formed call ``a``: what a backward's
    grad_out must be."""
    x = a['input']
    size = [(s + 2 * p - d * (kernel - 1) - 1) // st + 1 for s, p, d, st in
            zip(x.shape[2:], a['padding'], a['dilation'], a['stride'])]
    return torch.zeros(x.shape[0], out_channels, *size, dtype=x.dtype)


def broken_dynamic(torch, rng, gen, backward=False):
    """A dynamic_group_conv call with one broken argument, a regex the error
    message must match and, for the backward (no bias), a grad_out that fits
    the well-formed call."""
    a = dynamic_args(torch, rng, gen)
    n, c = a['input'].shape[:2]
    o, groups = a['weight'].shape[0], a['mask'].shape[1]
    grad_out = _output_shape(torch, a, o, a['weight'].shape[2])
    moved = _other_device(torch, rng, a, ['weight', 'mask', 'out_mask'] +
                          ([] if backward else ['bias']))
    if moved:
        return a, moved, grad_out
    kind = rng.choice(['input', 'weight', 'mask', 'out_mask', 'geometry'] +
                      ([] if backward else ['bias']))
    if kind == 'input':
        expect = _conv_input_mutations(torch, rng, a)
    elif kind == 'geometry':
        expect = _geometry_mutations(torch, rng, a)
    elif kind == 'weight':
        w = a['weight']
        a['weight'], expect = rng.choice([
            (w.to(torch.float16), 'weight has dtype'),
            (_resized(torch, w, 1, rng.choice([-1, 1])), 'weight must be'),
            (w.flatten(2), 'weight must be'),
            (_resized(torch, w, 2, -w.shape[2]), 'empty kernel'),
            (_resized(torch, w, 0, 1), 'cannot be split') if groups > 1
            else (w.to(torch.complex64), 'weight has dtype'),
        ])
    elif kind == 'bias':
        expect = _bias_mutations(torch, rng, a, o, torch.float16)
    elif kind == 'mask':
        m = a['mask']
        a['mask'], expect = rng.choice([
            (_resized(torch, m, 0, 1), 'mask must be'),
            (_resized(torch, m, 2, rng.choice([-1, 1])), 'mask must be'),
            (m[:, 0], 'mask must be'),
            (m[:, :0], 'cannot be split into 0'),
            (m.to(torch.complex64), 'mask must be real'),
        ] + ([(torch.zeros(n, o + 1, c), 'cannot be split')]
             if o % (o + 1) else []))
    else:
        om = torch.ones(n, o)
        if rng.random() < 0.5:
            a['out_mask'], expect = rng.choice([
                (om[:, :-1], 'out_mask must be'),
                (om[None], 'out_mask must be'),
                (om.to(torch.complex64), 'out_mask must be real'),
            ])
        else:  # selects, does not scale: anything but 0/1 is an error
            om[rng.randrange(n), rng.randrange(o)] = rng.choice(
                [0.5, 2.0, -1.0, float('nan'), float('inf')])
            a['out_mask'], expect = om, 'out_mask must be binary'
    return a, expect, grad_out


def broken_ragged(torch, rng, gen, backward=False):
    """As :func:`broken_dynamic`, for ragged_group_conv."""
    a = ragged_args(torch, rng, gen)
    c = a['input'].shape[1]
    grad_out = _output_shape(torch, a, sum(a['out_sizes']),
                             a['kernel_size'][0])
    moved = _other_device(torch, rng, a, ['weight', 'in_index'] +
                          ([] if backward else ['bias']))
    if moved:
        return a, moved, grad_out
    kind = rng.choice(['input', 'weight', 'in_index', 'sizes', 'kernel_size',
                       'geometry'] + ([] if backward else ['bias']))
    if kind == 'input':
        expect = _conv_input_mutations(torch, rng, a)
    elif kind == 'geometry':
        expect = _geometry_mutations(torch, rng, a)
    elif kind == 'weight':
        w = a['weight']
        a['weight'], expect = rng.choice([
            (_resized(torch, w, 0, 1), 'packed weight'),
            (w[None], 'packed weight'),
            (w.to(torch.float16), 'weight has dtype'),
        ])
    elif kind == 'bias':
        expect = _bias_mutations(
            torch, rng, a, sum(a['out_sizes']),
            torch.float64 if a['input'].dtype == torch.float32 else
            torch.float32)
    elif kind == 'in_index':
        idx = a['in_index']
        if idx.numel() and rng.random() < 0.5:
            idx = idx.clone()
            idx[rng.randrange(idx.numel())] = rng.choice(
                [-1, c, c + 7, -2**62, 2**62])
            a['in_index'], expect = idx, 'out of range'
        else:
            a['in_index'], expect = rng.choice([
                (idx.int(), 'in_index must be a 1-D int64'),
                (idx[None], 'in_index must be a 1-D int64'),
                (idx.float(), 'in_index must be a 1-D int64'),
                (torch.cat([idx, idx[:1] if idx.numel() else
                            torch.zeros(1, dtype=torch.int64)]),
                 'in_sizes sum'),
            ])
    elif kind == 'sizes':
        g = rng.randrange(len(a['in_sizes']))
        which = rng.choice(['in_sizes', 'out_sizes'])
        sizes = list(a[which])
        mutation = rng.choice(['length', 'empty', 'negative', 'huge'])
        if mutation == 'length':
            a[which], expect = sizes + [1], 'one entry per group'
        elif mutation == 'empty':
            a['in_sizes'] = a['out_sizes'] = []
            expect = 'one entry per group'
        elif mutation == 'negative':
            sizes[g] = -rng.randint(1, 3)
            a[which], expect = sizes, 'negative group size'
        else:
            sizes[g] = _huge(rng)
            a[which], expect = sizes, 'too large'
    else:
        a['kernel_size'], expect = rng.choice([
            ([3], 'kernel_size needs two values'),
            ([3, 3, 3], 'kernel_size needs two values'),
            ([0, 3], 'kernel'),
            ([-3, -3], 'kernel'),
            ([_huge(rng), 1], 'kernel'),
            ([2**32, 2**32], 'kernel'),
        ])
    return a, expect, grad_out


# ----------------------------------------------------------------------------
# Calls (worker).
# ----------------------------------------------------------------------------

def _grad_out_mutation(torch, rng, grad_out):
    """A broken grad_out for a backward op, and the regex of its error."""
    return rng.choice([
        (_resized(torch, grad_out, rng.randrange(4), 1),
         'grad_out must be'),
        (grad_out[0], 'grad_out must be'),
        (grad_out.to(torch.float16), 'grad_out has dtype'),
    ])


def build_broken(torch, ops, rng, gen, which):
    """A malformed call of op ``which``: (regex its error must match, the
    call as a thunk)."""
    dynamic = which.startswith('dynamic')
    forward = ops.dynamic_group_conv if dynamic else ops.ragged_group_conv
    broken = broken_dynamic if dynamic else broken_ragged
    if not which.endswith('backward'):
        a, expect, _ = broken(torch, rng, gen)
        return expect, lambda: forward(**a)
    if rng.random() < 0.35:  # valid arguments, broken grad_out
        a = (dynamic_args if dynamic else ragged_args)(torch, rng, gen)
        grad_out, expect = _grad_out_mutation(torch, rng, forward(**a))
    else:
        a, expect, grad_out = broken(torch, rng, gen, backward=True)
    a.pop('bias')  # the backward schemas: forward's arguments but bias
    backward = (ops.dynamic_group_conv_backward if dynamic else
                ops.ragged_group_conv_backward)
    return expect, lambda: backward(grad_out, *a.values(), [True] * 3)


def check_well_formed(torch, ops, reference, rng, gen, which):
    """One well-formed call of forward and backward against the reference;
    returns an error description or None."""
    dynamic = which == 'dynamic_group_conv'
    a = (dynamic_args if dynamic else ragged_args)(torch, rng, gen)
    op = ops.dynamic_group_conv if dynamic else ops.ragged_group_conv
    out = op(**a)
    leaves = {k: a[k].detach().requires_grad_()
              for k in ('input', 'weight', 'bias') if a[k] is not None}
    ref_args = dict(a, **leaves)
    ref = (reference.dynamic_group_conv if dynamic else
           reference.ragged_group_conv)(**ref_args)
    grad = torch.randn(ref.shape, generator=gen, dtype=ref.dtype)
    ref_grads = (torch.autograd.grad(ref, list(leaves.values()), grad,
                                     allow_unused=True)
                 if ref.requires_grad else [None] * len(leaves))
    bwd_args = {k: v for k, v in a.items() if k != 'bias'}
    backward = (ops.dynamic_group_conv_backward if dynamic else
                ops.ragged_group_conv_backward)
    got = backward(grad, *bwd_args.values(),
                   [True, True, a['bias'] is not None])
    pairs = [(out, ref)] + list(zip(got, ref_grads))
    tol = 1e-4 if out.dtype == torch.float32 else 1e-9
    for i, (got, want) in enumerate(pairs):
        if want is None:
            want = torch.zeros_like(got)
        if got.shape != want.shape:
            return (f'output {i}: shape {tuple(got.shape)} != '
                    f'{tuple(want.shape)}')
        if got.numel():
            scale = max(want.abs().max().item(), 1.0)
            err = (got - want).abs().max().item() / scale
            if not err <= tol:
                return f'output {i}: relative error {err:.3g} > {tol}'
    return None


OPS = ['dynamic_group_conv', 'dynamic_group_conv_backward',
       'ragged_group_conv', 'ragged_group_conv_backward']
FORWARD_OPS = ['dynamic_group_conv', 'ragged_group_conv']


def worker(library, seed, malformed, well_formed):
    """Prints one JSON line as each case starts and one with its outcome:
    ``raised`` (type and first message line), ``returned`` (no error) or,
    for well-formed cases, ``match`` / ``mismatch``."""
    resource.setrlimit(resource.RLIMIT_AS,
                       (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))
    import torch
    torch.set_num_threads(1)
    torch.ops.load_library(library)
    spec = importlib.util.spec_from_file_location(
        'mmlgc_reference', osp.join(REPO, 'mmlgc', 'ops', 'reference.py'))
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    ops = torch.ops.mmlgc

    def emit(**record):
        print(json.dumps(record), flush=True)

    for i in range(malformed):
        which = OPS[i % len(OPS)]
        rng, gen = random.Random(seed * 100003 + i), torch.Generator()
        gen.manual_seed(seed * 100003 + i)
        case = f'malformed/{which}/{i}'
        emit(start=case)
        try:
            expect, call = build_broken(torch, ops, rng, gen, which)
        except Exception:  # a bug of this test, not of the op
            emit(case=case, outcome='generator failed',
                 detail=traceback.format_exc().splitlines()[-1])
            continue
        try:
            call()
        except Exception as e:
            emit(case=case, outcome='raised', type=type(e).__name__,
                 expect=expect, message=(str(e).splitlines() or [''])[0])
            continue
        emit(case=case, outcome='returned', expect=expect)
    for i in range(well_formed):
        which = FORWARD_OPS[i % len(FORWARD_OPS)]
        rng, gen = random.Random(seed * 7919 + i), torch.Generator()
        gen.manual_seed(seed * 7919 + i)
        case = f'well-formed/{which}/{i}'
        emit(start=case)
        try:
            problem = check_well_formed(torch, ops, reference, rng, gen,
                                        which)
        except Exception:
            problem = 'raised ' + traceback.format_exc().splitlines()[-1]
        emit(case=case, outcome='mismatch' if problem else 'match',
             detail=problem)


# ----------------------------------------------------------------------------
# The test (parent).
# ----------------------------------------------------------------------------

def installed_library():
    found = glob.glob(osp.join(REPO, 'mmlgc', '_ext*.so'))
    if not found:
        pytest.skip('mmlgc._ext is not built')
    return found[0]


def run_worker(library, seed=SEED, malformed=MALFORMED_CASES,
               well_formed=WELL_FORMED_CASES):
    proc = subprocess.run(
        [sys.executable, __file__, library, str(seed), str(malformed),
         str(well_formed)],
        capture_output=True, text=True, timeout=WORKER_TIMEOUT, cwd=REPO)
    return proc


def judge(proc, malformed=MALFORMED_CASES, well_formed=WELL_FORMED_CASES):
    """Failures, one line each, from the worker's output."""
    failures, last_started, done = [], None, 0
    for line in proc.stdout.splitlines():
        record = json.loads(line)
        if 'start' in record:
            last_started = record['start']
            continue
        done += 1
        case, outcome = record['case'], record['outcome']
        if outcome == 'raised':
            op = case.split('/')[1].replace('_backward', '')
            message = record['message']
            if record['type'] not in ('RuntimeError', 'ValueError'):
                failures.append(f"{case}: {record['type']} (want "
                                f'RuntimeError or ValueError): {message}')
            elif op not in message or not re.search(record['expect'],
                                                    message):
                failures.append(f'{case}: message {message!r} does not name '
                                f"the op and match {record['expect']!r}")
        elif outcome == 'returned':
            failures.append(f'{case}: returned without an error (want one '
                            f"matching {record['expect']!r})")
        elif outcome != 'match':
            failures.append(f"{case}: {outcome}: {record['detail']}")
    if proc.returncode != 0:
        signal = -proc.returncode if proc.returncode < 0 else None
        failures.append(
            f'worker died (exit code {proc.returncode}, signal {signal}) '
            f'during {last_started}; stderr: {proc.stderr[-1500:]}')
    elif done != malformed + well_formed:
        failures.append(f'worker finished {done} of '
                        f'{malformed + well_formed} cases')
    return failures


def test_malformed_arguments_raise_clear_errors_and_well_formed_match():
    proc = run_worker(installed_library())
    failures = judge(proc)
    assert not failures, (f'{len(failures)} failures, first 30:\n' +
                          '\n'.join(failures[:30]))


if __name__ == '__main__':
    worker(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
