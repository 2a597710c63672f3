"""Every execution-plan candidate computes the op's definition (reference):
float64 to ~1e-12, float32 close; the disk cache and the forcing switch."""
import json

import pytest
import torch

from mmlgc.layers.static_groups import ConnectionMaskedConv2d, RaggedGroupConv2d
from mmlgc.ops import plans, reference


pytestmark = pytest.mark.usefixtures('own_plan_cache')


TOL = {torch.float64: dict(atol=1e-12, rtol=1e-12),
       torch.float32: dict(atol=1e-4, rtol=1e-4)}


def random_masks(n, g, c, density, generator, attention=False):
    mask = (torch.rand(n, g, c, generator=generator) < density).double()
    if attention:
        mask = mask * torch.rand(n, g, c, generator=generator)
    return mask


DYNAMIC_CASES = [
    # n, c, o, g, k, stride, density, out_mask, attention
    (1, 12, 8, 4, 3, 1, 0.5, False, False),
    (3, 12, 8, 2, 3, 2, 0.3, False, True),
    (2, 16, 12, 1, 1, 1, 0.5, True, False),
    (1, 16, 12, 1, 1, 1, 0.0, True, False),  # nothing read: bias only
    (2, 8, 8, 4, 3, 1, 1.0, True, False),
    (3, 16, 8, 2, 1, 2, 0.4, True, True),  # strided pointwise, 2 groups
]


@pytest.mark.parametrize('interleaved', [False, True])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('case', DYNAMIC_CASES)
def test_dynamic_candidates_match_reference(case, dtype, interleaved):
    n, c, o, g, k, stride, density, with_out_mask, attention = case
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, 9, 7, generator=gen, dtype=torch.float64)
    weight = torch.randn(o, c, k, k, generator=gen, dtype=torch.float64)
    bias = torch.randn(o, generator=gen, dtype=torch.float64)
    mask = random_masks(n, g, c, density, gen, attention)
    out_mask = ((torch.rand(n, o, generator=gen) < 0.6).double()
                if with_out_mask else None)
    args = [t.to(dtype) if t is not None else None
            for t in (x, weight, bias, mask, out_mask)]
    conv = (stride, k // 2, 1)
    expected = reference.dynamic_group_conv(x, weight, bias, mask, out_mask,
                                            *conv, interleaved=interleaved)
    names = ['kernel', 'gathered'] + (['batch_union'] if n > 1 else []) + (
        ['dense'] if g == 1 else []) + (['gemm'] if k == 1 else [])
    for name in names:
        plans.force_plan(name)
        with torch.no_grad():
            out = plans.dynamic_group_conv(*args, *conv,
                                           interleaved=interleaved)
        torch.testing.assert_close(out.double(), expected, **TOL[dtype],
                                   msg=name)
        if out_mask is not None:  # unread outputs are exact zeros
            assert (out[out_mask.to(dtype) == 0] == 0).all(), name


class _Masked(ConnectionMaskedConv2d):

    def __init__(self, mask, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer('mask', mask)

    def connection_mask(self):
        return self.mask


def ragged_layer(in_channels, out_channels, k, clusters, seed,
                 dtype=torch.float64):
    """A deployed layer with ``clusters`` random groups of unequal sizes
    and overlapping input sets."""
    gen = torch.Generator().manual_seed(seed)
    group_of = torch.randint(clusters, (out_channels, ), generator=gen)
    sets = torch.rand(clusters, in_channels, generator=gen) < 0.4
    mask = sets[group_of].double()
    conv = _Masked(mask, in_channels, out_channels, k, padding=k // 2,
                   bias=True).to(dtype)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
        conv.bias.copy_(torch.randn(out_channels, generator=gen))
    return conv, RaggedGroupConv2d.from_conv(conv)


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('k, clusters', [(3, 5), (1, 9), (3, 1)])
def test_ragged_candidates_match_masked_conv(k, clusters, dtype):
    masked, deployed = ragged_layer(24, 16, k, clusters, seed=k + clusters,
                                    dtype=dtype)
    x = torch.randn(2, 24, 8, 6, dtype=dtype)
    with torch.no_grad():
        expected = masked(x.double() if dtype == torch.float64 else x)
        names = list(plans._ragged_candidates(deployed))
        assert 'dense' in names and 'kernel' in names
        for name in names:
            plans.force_plan(name)
            torch.testing.assert_close(deployed(x), expected, **TOL[dtype],
                                       msg=name)


def test_ragged_candidates_follow_a_folded_order():
    """With the output order folded into a consumer the layer emits group
    order; every candidate does too."""
    _, deployed = ragged_layer(20, 12, 3, 4, seed=3)
    x = torch.randn(1, 20, 5, 5, dtype=torch.float64)
    deployed.output_index = deployed.output_index.new_empty(0)
    deployed._refresh()
    with torch.no_grad():
        plans.force_plan('kernel')
        expected = deployed(x)
        for name in plans._ragged_candidates(deployed):
            plans.force_plan(name)
            torch.testing.assert_close(deployed(x), expected, atol=1e-12,
                                       rtol=1e-12, msg=name)


def test_measured_plan_is_cached_on_disk_and_reused(own_plan_cache,
                                                    monkeypatch):
    _, deployed = ragged_layer(16, 8, 3, 3, seed=1, dtype=torch.float32)
    x = torch.randn(1, 16, 6, 6)
    with torch.no_grad():
        deployed(x)
    stored = json.loads(own_plan_cache.read_text())[plans.cache_section()]
    (signature, entry), = stored.items()
    assert signature.startswith('ragged|16|8|3x3')
    assert entry['choice'] in entry['ms']
    # A fresh process (a new cache object) reads the choice instead of
    # measuring again.
    monkeypatch.setattr(plans, 'cache', plans.PlanCache())
    monkeypatch.setattr(plans, 'time_interleaved', None)  # would fail
    with torch.no_grad():
        deployed(x)


def test_forcing_an_invalid_candidate_falls_back_to_the_kernel():
    plans.force_plan('dense')  # not valid for 4 groups
    calls = []
    chosen = plans.choose('sig', {'kernel': lambda: calls.append(1),
                                  'gathered': lambda: None})
    assert chosen == 'kernel'


@pytest.mark.parametrize('shape, kernel, stride, padding', [
    ((2, 3, 11, 9), 3, 2, 1), ((1, 4, 8, 8), 2, 2, 0), ((1, 2, 7, 10), 3, 1, 1)])
def test_max_pool_candidates_equal_aten(shape, kernel, stride, padding):
    x = torch.randn(shape)
    x[0, 0, 0, 0] = float('nan')  # propagates the same way
    pool = plans.PlannedMaxPool2d(kernel, stride, padding)
    expected = torch.nn.functional.max_pool2d(x, kernel, stride, padding)
    for name in ('native', 'channels_last', 'separable', 'measure'):
        plans.force_plan(name)
        torch.testing.assert_close(pool(x), expected, rtol=0, atol=0,
                                   equal_nan=True, msg=name)
    model = torch.nn.Sequential(torch.nn.MaxPool2d(kernel, stride, padding))
    assert plans.plan_max_pools(model) == 1
    assert isinstance(model[0], plans.PlannedMaxPool2d)


def test_a_plan_measured_among_other_candidates_is_measured_again(
        own_plan_cache):
    plans.choose('sig', {'kernel': lambda: None})
    measured = []
    chosen = plans.choose('sig', {'kernel': lambda: None,
                                  'dense': lambda: measured.append(1)})
    assert measured and chosen in ('kernel', 'dense')
    stored = json.loads(own_plan_cache.read_text())[plans.cache_section()]
    assert set(stored['sig|dense,kernel']['ms']) == {'kernel', 'dense'}


def test_a_close_call_keeps_the_default(monkeypatch):
    """Another candidate must measure SWITCH_MARGIN faster than the op."""
    from mmlgc.ops.timing import Timing
    monkeypatch.setattr(plans, 'time_interleaved', lambda c, r: {
        'kernel': Timing([1.0]), 'dense': Timing([0.95]),
        'gathered': Timing([1.2])})
    assert plans.choose('close', dict.fromkeys(
        ('kernel', 'dense', 'gathered'))) == 'kernel'
    monkeypatch.setattr(plans, 'time_interleaved', lambda c, r: {
        'kernel': Timing([1.0]), 'dense': Timing([0.8])})
    assert plans.choose('clear', dict.fromkeys(('kernel', 'dense'))) == 'dense'


def test_traced_calls_run_the_op_without_planning(own_plan_cache, monkeypatch):
    """Under a trace (mmengine's analyzer, get_flops.py) the inputs' sizes
    and densities are traced values: nothing is measured or cached, the op
    itself runs (and gives its result)."""
    measured = []
    monkeypatch.setattr(plans, 'time_interleaved',
                        lambda *a, **k: measured.append(a))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 8, 6, 6, generator=gen)
    weight = torch.randn(4, 8, 3, 3, generator=gen)
    mask = random_masks(1, 2, 8, 0.5, gen).float()
    pool = plans.PlannedMaxPool2d(3, 2, 1)

    def forward(x):
        out = plans.dynamic_group_conv(x, weight, None, mask, None, 1, 1)
        return pool(out)

    traced = torch.jit.trace(forward, (x, ), check_trace=False)
    expected = torch.nn.functional.max_pool2d(
        reference.dynamic_group_conv(x, weight, None, mask, None, 1, 1),
        3, 2, 1)
    torch.testing.assert_close(traced(x), expected, atol=1e-4, rtol=1e-4)
    assert measured == [] and not own_plan_cache.exists()
