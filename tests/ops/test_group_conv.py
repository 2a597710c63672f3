"""mmlgc::dynamic_group_conv and mmlgc::ragged_group_conv: the compiled
kernels against the PyTorch references, gradients, registration, errors.

The random sweeps draw their cases from seeded generators: 520 dynamic and
240 ragged cases over kernel sizes, strides, padding, dilation, group counts
(powers of two and not), densities from 0 to 1 with empty groups and
all-zero masks, output masks, batch sizes, memory layouts and dtypes. A
failing case prints its parameters.
"""
import random
import warnings

import pytest
import torch

from mmlgc.ops import (dynamic_group_conv, pack_weights, ragged_group_conv,
                       reference, unpack_weights)

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
# Relative to the largest output magnitude of the case.
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}
CHUNKS, CASES_PER_CHUNK = 13, 40


def _assert_matches(out, ref, dtype, case):
    assert out.shape == ref.shape, case
    scale = max(ref.abs().max().item(), 1.0)
    err = (out - ref).abs().max().item() / scale if ref.numel() else 0.0
    assert err <= TOLERANCE[dtype], f'relative error {err:.3g} in {case}'


def _layout(x, rng):
    """Contiguous, channels_last or a non-contiguous view of the same
    values."""
    kind = rng.choice(['contiguous', 'channels_last', 'strided'])
    if kind == 'channels_last':
        return x.contiguous(memory_format=torch.channels_last), kind
    if kind == 'strided':
        wide = torch.zeros(*x.shape[:3], 2 * x.shape[3], dtype=x.dtype,
                           device=x.device)
        wide[..., ::2] = x
        return wide[..., ::2], kind
    return x, kind


def _conv_case(rng, gen, device, pointwise=False):
    """A random conv geometry and input; ``pointwise``: 1x1, no padding
    (strided: the CPU kernel's GEMM path)."""
    dtype = rng.choice([torch.float32, torch.float64])
    k = 1 if pointwise else rng.choice([1, 3, 5])
    stride = (rng.choice([1, 2]), rng.choice([1, 2]))
    dilation = (rng.choice([1, 1, 2]), rng.choice([1, 2]))
    padding = (0, 0) if pointwise else (rng.randint(0, k // 2 + 1),
                                        rng.randint(0, k // 2 + 1))
    span = [d * (k - 1) + 1 for d in dilation]
    h = rng.randint(max(1, span[0] - 2 * padding[0]), 9)
    w = rng.randint(max(1, span[1] - 2 * padding[1]), 9)
    n = rng.choice([1, 1, 2, 3])
    case = dict(dtype=dtype, k=k, stride=stride, padding=padding,
                dilation=dilation, n=n, h=h, w=w)
    x = torch.randn(n, rng.randint(1, 12), h, w, generator=gen,
                    dtype=dtype).to(device)
    return x, case


def _dynamic_case(seed, device, pointwise=False):
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    x, case = _conv_case(rng, gen, device, pointwise)
    n, c = x.shape[:2]
    groups = rng.choice([1, 2, 3, 4, 5, 8])
    # Pointwise: up to 12 rows a group (the GEMM path's row blocks).
    out_channels = groups * rng.randint(1, 12 if pointwise else 4)
    density = rng.choice([0.0, 0.1, 0.25, 0.5, 0.9, 1.0])
    mask = (torch.rand(n, groups, c, generator=gen) < density).to(x.dtype)
    if rng.random() < 0.2:
        mask[:, rng.randrange(groups)] = 0  # an empty group
    real_valued = rng.random() < 0.4
    if real_valued:  # binary x attention
        mask = mask * torch.randn(n, groups, c, generator=gen, dtype=x.dtype)
    out_mask = None
    if rng.random() < 0.4:
        out_mask = torch.rand(n, out_channels, generator=gen) < 0.6
        out_mask = out_mask.to(device)
    weight = torch.randn(out_channels, c, case['k'], case['k'], generator=gen,
                         dtype=x.dtype).to(device)
    bias = (torch.randn(out_channels, generator=gen, dtype=x.dtype).to(device)
            if rng.random() < 0.5 else None)
    x, layout = _layout(x, rng)
    case.update(c=c, o=out_channels, groups=groups, density=density,
                real_valued=real_valued, out_mask=out_mask is not None,
                bias=bias is not None, layout=layout,
                interleaved=rng.random() < 0.3)
    args = (x, weight, bias, mask.to(device), out_mask, case['stride'],
            case['padding'], case['dilation'])
    return args, case


def _run_dynamic(op, args, case):
    return op(*args, interleaved=case['interleaved'])


def _ragged_case(seed, device, pointwise=False):
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    x, case = _conv_case(rng, gen, device, pointwise)
    c = x.shape[1]
    groups = rng.randint(1, 6)
    # Unequal, possibly empty and overlapping input sets.
    in_sizes = [rng.randint(0, c) for _ in range(groups)]
    out_sizes = [rng.randint(0, 12 if pointwise else 4)
                 for _ in range(groups)]
    if sum(out_sizes) == 0:
        out_sizes[0] = 1
    in_index = torch.cat([
        torch.randperm(c, generator=gen)[:s] for s in in_sizes
    ]).to(device)
    k = case['k']
    blocks = [
        torch.randn(o, s, k, k, generator=gen, dtype=x.dtype)
        for s, o in zip(in_sizes, out_sizes)
    ]
    weight = pack_weights(blocks).to(device)
    bias = (torch.randn(sum(out_sizes), generator=gen,
                        dtype=x.dtype).to(device)
            if rng.random() < 0.5 else None)
    x, layout = _layout(x, rng)
    case.update(c=c, in_sizes=in_sizes, out_sizes=out_sizes,
                bias=bias is not None, layout=layout)
    args = (x, weight, bias, in_index, in_sizes, out_sizes, k, case['stride'],
            case['padding'], case['dilation'])
    return args, case


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('chunk', range(CHUNKS))
def test_dynamic_matches_reference(device, chunk):
    for seed in range(chunk * CASES_PER_CHUNK, (chunk + 1) * CASES_PER_CHUNK):
        args, case = _dynamic_case(seed, device)
        _assert_matches(
            _run_dynamic(dynamic_group_conv, args, case),
            _run_dynamic(reference.dynamic_group_conv, args, case),
            case['dtype'], dict(seed=seed, **case))


@pytest.mark.parametrize('device', DEVICES)
def test_pointwise_matches_reference(device):
    """1x1 without padding (strided: a separate GEMM path on CPU), every
    case of both ops (scales, out_mask-ed and empty groups, layouts)."""
    for seed in range(120):
        args, case = _dynamic_case(seed, device, pointwise=True)
        _assert_matches(
            _run_dynamic(dynamic_group_conv, args, case),
            _run_dynamic(reference.dynamic_group_conv, args, case),
            case['dtype'], dict(seed=seed, **case))
        args, case = _ragged_case(seed, device, pointwise=True)
        _assert_matches(
            ragged_group_conv(*args), reference.ragged_group_conv(*args),
            case['dtype'], dict(seed=seed, **case))


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('chunk', range(CHUNKS // 2))
def test_ragged_matches_reference(device, chunk):
    for seed in range(chunk * CASES_PER_CHUNK, (chunk + 1) * CASES_PER_CHUNK):
        args, case = _ragged_case(seed, device)
        _assert_matches(
            ragged_group_conv(*args), reference.ragged_group_conv(*args),
            case['dtype'], dict(seed=seed, **case))


def test_sweeps_cover_the_required_cases():
    """The sweeps above reach every corner the op promises to handle."""
    cases = [_dynamic_case(s, 'cpu')[1] for s in range(CHUNKS * CASES_PER_CHUNK)]
    assert len(cases) >= 500
    for key, values in dict(
            k=[1, 3, 5], groups=[1, 2, 3, 4, 5, 8], n=[1, 2, 3],
            density=[0.0, 1.0], layout=['contiguous', 'channels_last',
                                        'strided'],
            dtype=[torch.float32, torch.float64], real_valued=[True, False],
            out_mask=[True, False], interleaved=[True, False]).items():
        assert set(values) <= {c[key] for c in cases}, key
    assert {(2, 2), (1, 1)} <= {c['stride'] for c in cases}
    assert any(c['dilation'] != (1, 1) for c in cases)
    assert any(c['padding'] != (0, 0) for c in cases)


def _small_dynamic(dtype=torch.float64, out_mask=True, requires_grad=True):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 5, 5, generator=gen, dtype=dtype)
    weight = torch.randn(6, 6, 3, 3, generator=gen, dtype=dtype)
    bias = torch.randn(6, generator=gen, dtype=dtype)
    mask = (torch.rand(2, 3, 6, generator=gen) < 0.6).to(dtype)
    mask = mask * torch.rand(2, 3, 6, generator=gen, dtype=dtype)
    mask[0, 1] = 0
    omask = (torch.rand(2, 6, generator=gen) < 0.7) if out_mask else None
    tensors = [t.requires_grad_(requires_grad) for t in (x, weight, bias)]
    return (*tensors, mask, omask, (2, 1), (1, 1), (1, 1))


def _small_ragged(dtype=torch.float64, requires_grad=True):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 6, 5, generator=gen, dtype=dtype)
    in_sizes, out_sizes = [3, 0, 4, 2], [2, 1, 3, 2]
    in_index = torch.tensor([0, 2, 4, 1, 2, 3, 4, 0, 1])
    weight = torch.randn(2 * 3 * 9 + 3 * 4 * 9 + 2 * 2 * 9, generator=gen,
                         dtype=dtype)
    bias = torch.randn(8, generator=gen, dtype=dtype)
    tensors = [t.requires_grad_(requires_grad) for t in (x, weight, bias)]
    return (tensors[0], tensors[1], tensors[2], in_index, in_sizes, out_sizes,
            (3, 3), (1, 2), (1, 0), (1, 1))


@pytest.mark.parametrize('interleaved', [False, True])
@pytest.mark.parametrize('out_mask', [True, False])
def test_dynamic_gradcheck(out_mask, interleaved):
    args = _small_dynamic(out_mask=out_mask)
    x, weight, bias, *rest = args
    assert torch.autograd.gradcheck(
        lambda a, b, c: dynamic_group_conv(a, b, c, *rest,
                                           interleaved=interleaved),
        (x, weight, bias))


def test_interleaved_groups_are_the_shuffled_contiguous_ones():
    """Group g holds output channels j * G + g: the contiguous groups'
    output channel-shuffled, with weight rows and out_mask in that order
    (the reference defines it; the kernels are swept against it)."""
    x, weight, bias, mask, omask, *conv = _small_dynamic(requires_grad=False)
    per_group, groups = weight.shape[0] // mask.shape[1], mask.shape[1]
    shuffle = reference.shuffle_channels
    got = reference.dynamic_group_conv(x, weight, bias, mask, omask, *conv,
                                       interleaved=True)
    contiguous = reference.dynamic_group_conv(
        x, shuffle(weight[None], per_group)[0],
        shuffle(bias[None], per_group)[0], mask,
        shuffle(omask.float(), per_group), *conv)
    torch.testing.assert_close(got, shuffle(contiguous, groups))
    # Channel j * G + g of the output is row j of group g.
    rows = torch.arange(weight.shape[0]).view(groups, per_group)
    torch.testing.assert_close(
        shuffle(rows.flatten()[None], groups)[0],
        rows.t().flatten())


def test_ragged_gradcheck():
    x, weight, bias, *rest = _small_ragged()
    assert torch.autograd.gradcheck(
        lambda a, b, c: ragged_group_conv(a, b, c, *rest), (x, weight, bias))


@pytest.mark.parametrize('small, op, ref', [
    (_small_dynamic, dynamic_group_conv, reference.dynamic_group_conv),
    (_small_ragged, ragged_group_conv, reference.ragged_group_conv),
])
def test_gradients_match_reference(small, op, ref):
    args = small()
    kwargs = [{}] + ([dict(interleaved=True)] if op is dynamic_group_conv
                     else [])
    for kw in kwargs:
        grad = torch.randn_like(ref(*args, **kw))
        got = torch.autograd.grad(op(*args, **kw), args[:3], grad)
        want = torch.autograd.grad(ref(*args, **kw), args[:3], grad)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=0, atol=1e-12, msg=str(kw))


def test_opcheck():
    """Schemas, fake (meta) kernels, autograd registration, torch.compile."""
    x, weight, bias, mask, omask, *conv = _small_dynamic(torch.float32)
    for interleaved in (False, True):
        torch.library.opcheck(torch.ops.mmlgc.dynamic_group_conv.default,
                              (x, weight, bias, mask, omask, *map(list, conv),
                               interleaved))
    x, weight, bias, index, ins, outs, *conv = _small_ragged(torch.float32)
    torch.library.opcheck(torch.ops.mmlgc.ragged_group_conv.default,
                          (x, weight, bias, index, ins, outs,
                           *map(list, conv)))


def test_backward_ops_opcheck():
    """Schemas and fake kernels of the backward ops (they have no derivative
    of their own: see test_double_backward_is_a_clear_error)."""
    checks = ('test_schema', 'test_faketensor', 'test_aot_dispatch_static')
    x, weight, _, mask, omask, *conv = _small_dynamic(torch.float32,
                                                      requires_grad=False)
    grad = torch.randn(2, 6, 3, 5)
    torch.library.opcheck(
        torch.ops.mmlgc.dynamic_group_conv_backward.default,
        (grad, x, weight, mask, omask, *map(list, conv), [True, True, False],
         True),
        test_utils=checks)
    x, weight, _, index, ins, outs, *conv = _small_ragged(torch.float32,
                                                          requires_grad=False)
    grad = torch.randn(2, 8, 6, 2)
    torch.library.opcheck(
        torch.ops.mmlgc.ragged_group_conv_backward.default,
        (grad, x, weight, index, ins, outs, *map(list, conv),
         [True, False, True]),
        test_utils=checks)


def test_compiles_without_graph_breaks():
    args = _small_dynamic(torch.float32, requires_grad=False)
    compiled = torch.compile(dynamic_group_conv, backend='eager',
                             fullgraph=True)
    torch.testing.assert_close(compiled(*args), dynamic_group_conv(*args))


def test_mask_requiring_grad_takes_the_differentiable_reference():
    """Gate training needs gradients for the mask, which the sparse kernels
    do not give: the façade runs the dense reference instead."""
    x, weight, bias, mask, omask, *conv = _small_dynamic()
    mask = mask.clone().requires_grad_()
    out = dynamic_group_conv(x, weight, bias, mask, omask, *conv)
    assert out.grad_fn is not None and 'Mmlgc' not in type(out.grad_fn).__name__
    (g, ) = torch.autograd.grad(out.sum(), mask)
    (want, ) = torch.autograd.grad(
        reference.dynamic_group_conv(x, weight, bias, mask, omask,
                                     *conv).sum(), mask)
    torch.testing.assert_close(g, want)


def test_masked_outputs_are_exact_zeros_without_bias():
    x, weight, bias, mask, omask, *conv = _small_dynamic(requires_grad=False)
    out = dynamic_group_conv(x, weight, bias, mask, omask, *conv)
    assert torch.all(out[~omask] == 0)
    assert torch.all(out[omask].abs().sum((-1, -2)) > 0)


def test_all_zero_mask_gives_bias():
    x, weight, bias, mask, _, *conv = _small_dynamic(requires_grad=False)
    out = dynamic_group_conv(x, weight, bias, torch.zeros_like(mask), None,
                             *conv)
    torch.testing.assert_close(out, bias[:, None, None].expand_as(out[0])
                               .expand_as(out), rtol=0, atol=0)


def test_pack_and_unpack_weights_round_trip():
    blocks = [torch.randn(o, c, 3, 3) for c, o in [(2, 3), (0, 2), (4, 1)]]
    flat = pack_weights(blocks)
    assert flat.numel() == 3 * 2 * 9 + 0 + 1 * 4 * 9
    back = unpack_weights(flat, [2, 0, 4], [3, 2, 1], 3)
    assert all(torch.equal(a, b) for a, b in zip(blocks, back))


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_cpu_dtypes_without_a_kernel_use_the_reference(dtype):
    args = _small_dynamic(requires_grad=False)
    args = [a.to(dtype) if torch.is_tensor(a) and a.is_floating_point() else a
            for a in args]
    assert torch.equal(dynamic_group_conv(*args),
                       reference.dynamic_group_conv(*args))


@pytest.mark.parametrize('change, message', [
    (dict(mask=torch.ones(2, 3, 5)), r'mask must be \[N, G, C\]'),
    (dict(mask=torch.ones(2, 4, 6)), 'cannot be split into 4'),
    (dict(weight=torch.randn(6, 6, 3, 3, dtype=torch.float32)), 'dtype'),
    (dict(out_mask=torch.ones(2, 5)), r'out_mask must be \[N, O\]'),
    (dict(bias=torch.randn(5, dtype=torch.float64)), 'bias has 5 entries'),
    (dict(stride=(0, 1)), 'stride must be positive'),
    (dict(x=torch.randn(2, 6, 5, dtype=torch.float64)), r'\[N, C, H, W\]'),
    (dict(x=torch.randn(2, 6, 1, 1, dtype=torch.float64), padding=(0, 0)),
     'smaller than the dilated kernel'),
])
def test_dynamic_bad_arguments_are_clear_errors(change, message):
    x, weight, bias, mask, omask, stride, padding, dilation = _small_dynamic(
        requires_grad=False)
    args = dict(x=x, weight=weight, bias=bias, mask=mask, out_mask=omask,
                stride=stride, padding=padding, dilation=dilation)
    args.update(change)
    with pytest.raises(RuntimeError, match=message):
        dynamic_group_conv(args['x'], args['weight'], args['bias'],
                           args['mask'], args['out_mask'], args['stride'],
                           args['padding'], args['dilation'])


@pytest.mark.parametrize('change, message', [
    (dict(in_index=torch.tensor([0, 2, 4, 1, 2, 3, 5, 0, 1])),
     'out of range'),
    (dict(in_index=torch.tensor([0, 2, 4, 1, 2, 3, 4, 0])), 'in_sizes sum'),
    (dict(weight=torch.randn(10, dtype=torch.float64)), 'packed weight'),
    (dict(out_sizes=[2, 1, 3]), 'one entry per group'),
])
def test_ragged_bad_arguments_are_clear_errors(change, message):
    keys = ('x', 'weight', 'bias', 'in_index', 'in_sizes', 'out_sizes',
            'kernel_size', 'stride', 'padding', 'dilation')
    args = dict(zip(keys, _small_ragged(requires_grad=False)))
    args.update(change)
    with pytest.raises(RuntimeError, match=message):
        ragged_group_conv(*(args[k] for k in keys))


def test_fallback_to_reference_warns_once(monkeypatch):
    from mmlgc.ops import _ext_loader
    monkeypatch.setattr(_ext_loader, '_EXT_ERROR', ImportError('not built'))
    monkeypatch.setattr(_ext_loader, '_warned', False)
    dyn, rag = _small_dynamic(), _small_ragged()
    with pytest.warns(RuntimeWarning, match='not built'):
        out = dynamic_group_conv(*dyn)
    assert torch.equal(out, reference.dynamic_group_conv(*dyn))
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no second warning
        out = ragged_group_conv(*rag)
        out.sum().backward()
    assert torch.equal(out, reference.ragged_group_conv(*rag))
    assert rag[0].grad is not None


def test_double_backward_is_a_clear_error():
    x, weight, bias, *rest = _small_dynamic()
    out = dynamic_group_conv(x, weight, bias, *rest)
    (gx, ) = torch.autograd.grad(out.sum(), x, create_graph=True)
    with pytest.raises(NotImplementedError, match='double backward'):
        gx.sum().backward()
