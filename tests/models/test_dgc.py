"""DGC: schedule, top-k gate, shuffle, saliency loss, DGC-G threshold, MACs,
detectors, deploy, resume, dense checkpoints."""
import pytest
import torch
import torch.nn.functional as F
from helpers import build_tiny_detector, det_sample
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


@pytest.mark.parametrize('channels', [6, 64, 2048])
def test_topk_index_rule_is_the_stable_sorts_first_k(channels):
    torch.manual_seed(0)
    # Few distinct values: ties everywhere, at 0 (closed ReLUs) and above.
    s = torch.randint(0, 4, (3, 4, channels)).float() / 3
    gate = TopKSaliencyGate('index')
    for k in sorted({1, channels // 3, channels // 2, channels - 1}):
        lowest = s.argsort(dim=-1, stable=True)[..., :k]
        expected = torch.zeros_like(s, dtype=torch.bool).scatter(
            -1, lowest, True)
        assert torch.equal(gate.drop_mask(s, k), expected), k


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
    conv = torch.tensor([float(m.conv_cost) for m in layers])
    pruned = 1 - (read * conv).sum() / conv.sum()
    assert 0.5 < pruned < 0.6, pruned  # DGC-G: 55% of the conv MACs
    assert read.std() > 0.02, read  # uneven across layers
    with torch.no_grad():  # eval gates with the buffer too
        model.eval()(x)
    assert sum(m.read_fraction.mean() for m in layers) / len(layers) < 0.9


def _reference_counter_resnet18(keep=0.45, heads=4, size=224):
    """The DGC reference counter (docs/dgc.md) over ResNet-18, by hand:
    conv k²·C·O·H'W'/groups (x keep for DGC heads), ReLU = input numel,
    max-pool = output numel x 9, adaptive pool = input numel, Linear =
    weights + bias, BN free; per head FC1, ReLU, FC2 (+bias), ReLU and one op
    per saliency; the ImageNet head included."""

    def dgc(c, o, k, h, h_out):
        hidden = c // (8 if c < 80 else 16)
        return (2 * c * h * h + heads * (2 * c * hidden + hidden + 3 * c) +
                keep * c * o * k * k * h_out * h_out)

    stem, pooled = size // 2, size // 4
    total = 3 * 64 * 49 * stem**2 + 64 * stem**2 + 9 * 64 * pooled**2
    c, h = 64, pooled
    for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for block in range(2):
            s = stride if block == 0 else 1
            h_out = h // s
            total += (dgc(c, planes, 3, h, h_out) +
                      dgc(planes, planes, 3, h_out, h_out) +
                      2 * planes * h_out**2)
            if s != 1 or c != planes:
                total += dgc(c, planes, 1, h, h_out)
            c, h = planes, h_out
    return total + 512 * 49 + 512 * 1000 + 1000


def test_resnet18_macs_match_reference_check_number():
    model = DGCResNet(depth=18, out_indices=(3, )).eval()
    _set_progress(model, 1.0)
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    costs = collect_costs(model)
    head = 512 * 49 + 512 * 1000 + 1000  # global pool + FC, DGC convention
    expected = costs.expected + head
    assert expected == pytest.approx(_reference_counter_resnet18(), rel=1e-9)
    assert abs(expected - 0.89e9) / 0.89e9 < 0.005  # "about 0.89 GMACs"
    # Measured: k = round(0.55·C) per head, every sample (ties: exactly k).
    measured = costs.dynamic.item() + head
    assert measured == pytest.approx(expected, rel=0.01)
    assert measured > expected  # 0.55·C rounds down more often here
    dense = costs.dense + head
    assert dense == pytest.approx(1820.25e6, rel=1e-4)


def test_macs_scale_with_real_input_size():
    model = _small().eval()
    _set_progress(model, 1.0)
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 96))
        small = collect_costs(model).expected
        model(torch.randn(1, 3, 128, 192))
        large = collect_costs(model).expected
    assert 3.5 < large / small < 4.1  # generators do not grow with the size


@pytest.mark.parametrize('detector', [
    'retinanet_r50_fpn.py', 'faster-rcnn_r50_fpn.py'
])
def test_detector_loss_dict_gets_saliency_loss(detector, tmp_path):
    model = build_tiny_detector(
        detector,
        dict(type='mmlgc.DGCResNet', depth=18, base_channels=16,
             out_indices=(0, 1, 2, 3), frozen_stages=1, norm_eval=True,
             dgc_norm_eval=False), [16, 32, 64, 128], tmp_path)
    model.train()
    hook = DGCScheduleHook()
    runner = _Runner(model, 500, 1000)
    hook.before_train(runner)
    hook.before_train_iter(runner, 0)
    assert model.backbone.layer3[0].conv1.k == round(32 * 0.55 * 1.5 *
                                                     (0.5 - 1 / 12))
    sample = det_sample()
    losses = model(torch.randn(2, 3, 64, 64), [sample, sample], mode='loss')
    assert {'loss_saliency', 'macs_ratio'} <= set(losses)
    assert 0 < losses['loss_saliency'] < 1e-2
    assert 0 < losses['macs_ratio'] < 1
    total, log_vars = model.parse_losses(losses)
    assert 'loss_saliency' in log_vars
    total.backward()
    gen = model.backbone.layer3[0].conv2.saliency_generator
    assert gen.fc2_bias.grad is not None and gen.fc2_bias.grad.abs().sum() > 0
    frozen = model.backbone.layer1[0].conv1.saliency_generator.fc2_bias
    assert frozen.grad is None  # frozen_stages=1
    assert model.backbone.layer2[0].conv1.pre_norm.training
    assert not model.backbone.layer2[0].norm1.training
    assert not model.backbone.layer1[0].conv1.pre_norm.training
    model.eval()
    with torch.no_grad():
        preds = model(torch.randn(1, 3, 64, 64), [sample], mode='predict')
    assert len(preds) == 1
    hook.after_train(runner)


def _calibrate_norms(model, x):
    """Non-trivial BN affine parameters, and running statistics equal to
    each BN's actual eval-mode input on the batch ``x``: a DGC conv is
    quadratic in its input scale and a random one chaotic (near-tied
    saliencies flip with the slightest change), so a fresh model's eval
    forward overflows unless its norms normalise (see ``dgc_norm_eval``)."""
    torch.manual_seed(1)

    def set_stats(module, args):
        module.running_mean.copy_(args[0].mean((0, 2, 3)))
        module.running_var.copy_(args[0].var((0, 2, 3), unbiased=False))

    handles = []
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
            handles.append(m.register_forward_pre_hook(set_stats))
    with torch.no_grad():
        model.eval()(x)
    for handle in handles:
        handle.remove()
    return model


@pytest.mark.parametrize('depth,mode', [(18, 'head'), (50, 'head'),
                                        (18, 'global')])
def test_deploy_matches_masked_eval(depth, mode):
    """Whole backbone, deployed (post-conv BN folded, heads through the
    sparse op, shuffle as a permutation) vs the reference's masked eval
    forward, in float64 so that the comparison sees the deploy transform
    and not the conditioning of a random DGC network: features are scaled
    by saliencies computed from themselves, so a relative rounding error
    grows ~1.5x per DGC layer there (float32 per-layer exactness: next
    test)."""
    torch.manual_seed(0)
    model = _small(depth, mode=mode).double()
    _set_progress(model, 1.0)
    for layer in dgc_layers(model):
        layer.threshold.fill_(1.0)
    x = torch.randn(2, 3, 48, 40, dtype=torch.float64)
    _calibrate_norms(model, x)
    with torch.no_grad():
        masked = model.sparse_eval(False)(x)
        read = [m.read_fraction.mean() for m in dgc_layers(model)]
        assert deploy_model(model) == ['']
        deployed = model(x)
    assert all(0.25 < r < 0.75 for r in read), read  # real pruning
    for a, b in zip(masked, deployed):
        err = ((b - a).abs().max() / a.abs().max()).item()
        assert err <= 1e-6, err
    assert model.layer1[0].conv1.bias is not None  # norm1 folded
    assert isinstance(model.layer1[0].norm1, torch.nn.Identity)
    with pytest.raises(RuntimeError):
        model.train()


def test_deploy_is_exact_per_layer_in_float32():
    """Every deployed DGC conv (its BN folded) on the input its masked
    counterpart saw vs that conv followed by its BN: max relative error
    <= 1e-4 in float32."""
    torch.manual_seed(0)
    model = _small(18)
    _set_progress(model, 1.0)
    x = torch.randn(2, 3, 48, 40)
    _calibrate_norms(model, x)
    modules = dict(model.named_modules())
    inputs, outputs, handles = {}, {}, []
    for name, module in modules.items():
        if isinstance(module, DGCConv):
            bn = (name[:-1] + '1' if name.endswith('downsample.0') else
                  name.replace('conv', 'bn'))
            # Clones: the block's in-place ReLU rewrites the BN output.
            handles.append(module.register_forward_pre_hook(
                lambda m, args, n=name: inputs.__setitem__(
                    n, args[0].clone())))
            handles.append(modules[bn].register_forward_hook(
                lambda m, args, out, n=name: outputs.__setitem__(
                    n, out.clone())))
    with torch.no_grad():
        model.sparse_eval(False)(x)
    for handle in handles:
        handle.remove()
    model.switch_to_deploy()
    assert len(inputs) == len(outputs) == 19
    worst = 0.0
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, DGCConv):
                out = module(inputs[name])
                ref = outputs[name]
                worst = max(worst, ((out - ref).abs().max() /
                                    ref.abs().max()).item())
    assert worst <= 1e-4, worst


@pytest.mark.parametrize('pre_norm', ['eval_bn', 'train_stats_bn'])
def test_strided_pointwise_conv_activates_only_the_pixels_it_reads(
        pre_norm, monkeypatch):
    """A 1x1 stride-2 DGC conv (a downsample) running sparsely activates
    every other row and column only (the pool still averages them all) and
    convolves them unstrided: the same output as the masked form, which
    activates all of them."""
    torch.manual_seed(0)
    conv = DGCConv(8, 12, 1, stride=2, heads=4, keep=0.5).double().eval()
    conv.set_progress(1.0)
    with torch.no_grad():
        conv.pre_norm.weight.uniform_(0.5, 1.5)
        conv.pre_norm.bias.uniform_(-0.5, 0.5)
        conv.pre_norm.running_mean.uniform_(-0.5, 0.5)
        conv.pre_norm.running_var.uniform_(0.5, 2.0)
    if pre_norm == 'train_stats_bn':  # no running statistics: ATen's BN
        conv.pre_norm.track_running_stats = False
        conv.pre_norm.running_mean = conv.pre_norm.running_var = None
    x = torch.randn(2, 8, 9, 10, dtype=torch.float64)
    activated = []
    original = conv._pre_activate
    monkeypatch.setattr(conv, '_pre_activate', lambda *a: activated.append(
        original(*a)[0].shape) or original(*a))
    with torch.no_grad():
        conv.sparse_eval = False
        masked = conv(x)
        conv.sparse_eval = True
        sparse = conv(x)
    assert activated == [(2, 8, 9, 10), (2, 8, 5, 5)]
    torch.testing.assert_close(sparse, masked)
    # With gradients the masked form runs, on the whole activation.
    conv(x)
    assert activated[-1] == (2, 8, 9, 10)


def test_deploy_state_dict_round_trips_through_config_flag():
    model = _small()
    _set_progress(model, 1.0)
    x = torch.randn(2, 3, 32, 32)
    _calibrate_norms(model, x)
    model.switch_to_deploy()
    fresh = DGCResNet(depth=18, base_channels=16, deploy=True)
    fresh.load_state_dict(model.state_dict(), strict=True)
    assert fresh.layer4[1].conv2.k == model.layer4[1].conv2.k > 0
    with torch.no_grad():
        for a, b in zip(model(x), fresh.eval()(x)):
            torch.testing.assert_close(a, b)


def test_resume_keeps_k_threshold_and_schedule():
    torch.manual_seed(0)
    model = _small()
    hook = DGCScheduleHook()
    hook.before_train_iter(_Runner(model, 300, 1000), 0)
    layer = model.layer3[1].conv2  # 64 channels
    assert layer.k == round(64 * 0.55 * 1.5 * (0.3 - 1 / 12)) > 0
    layer.threshold.fill_(0.7)
    x = torch.randn(2, 3, 32, 32)
    _calibrate_norms(model, x)
    state = model.state_dict()
    assert 'layer3.1.conv2.pruned_channels' in state
    resumed = _small()
    assert resumed.layer3[1].conv2.k == 0
    resumed.load_state_dict(state)
    assert resumed.layer3[1].conv2.k == layer.k
    assert resumed.layer3[1].conv2.threshold.item() == pytest.approx(0.7)
    with torch.no_grad():  # eval uses the buffers
        for a, b in zip(model.eval()(x), resumed.eval()(x)):
            torch.testing.assert_close(a, b)
    # The hook derives k from runner.iter alone: a fresh hook on the
    # resumed run continues the schedule where it stopped.
    DGCScheduleHook().before_train(_Runner(resumed, 300, 1000))
    assert resumed.layer3[1].conv2.k == layer.k


@pytest.mark.parametrize('depth', [18, 50])
def test_dense_checkpoint_loads_with_only_dgc_keys_missing(
        depth, monkeypatch):
    from mmlgc.models import dense_checkpoints
    from mmlgc.models.backbones import dgc_resnet
    logged = []
    monkeypatch.setattr(dense_checkpoints, 'print_log',
                        lambda msg, **kwargs: logged.append(msg))
    dense = ResNet(depth=depth, base_channels=16)
    model = _small(depth)
    bias = model.layer2[0].conv1.saliency_generator.fc2_bias.clone()
    result = model.load_state_dict(dense.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for key, value in dense.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)
    torch.testing.assert_close(
        model.layer2[0].conv1.saliency_generator.fc2_bias, bias)
    assert len(logged) == 1 and 'no DGC state' in logged[0], logged
    new = set(model.state_dict()) - set(dense.state_dict())
    assert new and all(
        any(m in k for m in dgc_resnet.DGC_KEYS) for k in new), new


@pytest.mark.parametrize('depth', [18, 50])
def test_start_as_dense_computes_the_dense_network_until_pruning(depth):
    torch.manual_seed(0)
    dense = ResNet(depth=depth, base_channels=16, norm_eval=False)
    dense.train()  # mmdet's train() returns None
    started = _small(depth, start_as_dense=True).train()
    reference_init = _small(depth).train()
    for model in (started, reference_init):
        model.load_state_dict(dense.state_dict(), strict=False)
    # float64: batch-statistics BNs over 1x1 maps amplify rounding.
    for model in (dense, started, reference_init):
        model.double()
    x = torch.rand(4, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        expected = dense(x)
        for out, ref in zip(started(x), expected):
            torch.testing.assert_close(out, ref)
        # DGC's own init rescales every conv's input at random.
        assert not torch.allclose(reference_init(x)[-1], expected[-1],
                                  rtol=1e-2, atol=1e-2)
    # Set once, from the first training batch: a later batch, eval mode
    # or a DGC checkpoint (statistics loaded) leaves the norms alone.
    norm = started.layer2[0].conv1.pre_norm
    weight, mean = norm.weight.clone(), norm.running_mean.clone()
    torch.testing.assert_close(
        mean, F.relu(dense.layer1(dense.maxpool(dense.relu(dense.norm1(
            dense.conv1(x)))))).mean((0, 2, 3)))
    with torch.no_grad():
        started(x * 2)
    torch.testing.assert_close(norm.weight, weight)
    loaded = _small(depth, start_as_dense=True).double()
    loaded.load_state_dict(started.state_dict())
    with torch.no_grad():
        loaded.train()(x * 2)
    torch.testing.assert_close(loaded.layer2[0].conv1.pre_norm.weight,
                               weight)
    # The saliencies start at 1, and learn.
    generator = started.layer2[0].conv1.saliency_generator
    assert generator.fc2_weight.abs().sum() == 0
    _set_progress(started, 1.0)
    started(x)[-1].sum().backward()
    assert generator.fc2_weight.grad.abs().sum() > 0


def test_start_as_dense_needs_a_norm_with_statistics():
    with pytest.raises(ValueError, match='start_as_dense=True.*GroupNorm'):
        DGCConv(16, 16, 3, start_as_dense=True,
                norm_cfg=dict(type='GN', num_groups=4))


def test_with_cp_keeps_saliency_gradient():
    torch.manual_seed(0)
    model = _small(with_cp=True).train()
    _set_progress(model, 1.0)
    attach_aux_losses(model, SaliencyL1(1.0))
    model(torch.randn(2, 3, 32, 32, requires_grad=True))
    terms = SaliencyL1(1.0)(model)
    terms['loss_saliency'].backward()
    grad = model.layer2[0].conv2.saliency_generator.fc2_bias.grad
    assert grad is not None and grad.abs().sum() > 0


def test_invalid_arguments():
    with pytest.raises(ValueError):
        DGCConv(16, 18, 3, heads=4)  # heads must divide the outputs
    with pytest.raises(ValueError):
        DGCConv(16, 16, 3, keep=0.0)
    with pytest.raises(KeyError):
        DGCResNet(depth=20)
    with pytest.raises(NotImplementedError):
        DGCResNet(depth=50, dcn=dict(type='DCNv2', deform_groups=1),
                  stage_with_dcn=(False, True, True, True))


@pytest.mark.slow  # two short runs through mmengine's Runner
def test_runner_train_and_resume_continue_the_schedule(tiny_shapes,
                                                       repo_root, tmp_path):
    """Through mmengine's Runner (the shapes pretraining config, DGC-G):
    k follows runner.iter, the threshold is estimated once per epoch, and a
    run resumed from the first epoch's checkpoint starts from its buffers
    and continues the same schedule."""
    import os.path as osp

    from mmengine.config import Config
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    class Record(Hook):
        priority = 'LOW'  # after DGCScheduleHook

        def __init__(self):
            self.k, self.threshold = [], None

        def before_train(self, runner):
            conv = runner.model.backbone.layer1[0].conv1
            self.threshold = conv.threshold.item()

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            self.k.append(runner.model.backbone.layer1[0].conv1.k)

    def run(work_dir, resume_from=None):
        cfg = Config.fromfile(
            osp.join(repo_root, 'configs/pretrain/dgc_resnet18_shapes.py'))
        for split in ('train', 'val', 'test'):
            cfg[f'{split}_dataloader'].dataset.data_root = \
                f'{tiny_shapes}/cls/'
        cfg.train_dataloader.batch_size = 8  # 16 images: 2 iterations
        cfg.train_dataloader.dataset.indices = 16
        cfg.model.backbone.update(base_channels=16, init_cfg=None,
                                  mode='global')
        cfg.model.head.in_channels = 128
        cfg.train_cfg = dict(by_epoch=True, max_epochs=2, val_interval=10)
        cfg.custom_hooks = [dict(type='mmlgc.DGCScheduleHook',
                                 collect_iters=1)]
        cfg.default_hooks.checkpoint = dict(type='CheckpointHook',
                                            interval=1)
        cfg.default_hooks.logger = dict(type='LoggerHook', interval=100)
        cfg.work_dir = str(work_dir)
        if resume_from:
            cfg.resume, cfg.load_from = True, resume_from
        runner = Runner.from_cfg(cfg)
        record = Record()
        runner.register_hook(record)
        runner.train()
        return runner, record

    torch.manual_seed(0)
    runner, record = run(tmp_path / 'full')
    # k of a 16-channel conv at progress i/4, the reference's formula.
    expected = [0 if i / 4 <= 1 / 12 else
                round(16 * 0.55 * min(1.0, 1.5 * (i / 4 - 1 / 12)))
                for i in range(4)]
    assert record.k == expected
    conv = runner.model.backbone.layer1[0].conv1
    assert conv.k == 9 and 0 < conv.threshold.item() < float('inf')

    ckpt = torch.load(osp.join(tmp_path / 'full', 'epoch_1.pth'),
                      weights_only=False)
    state = ckpt['state_dict']
    assert state['backbone.layer1.0.conv1.pruned_channels'] == expected[1]
    saved = state['backbone.layer1.0.conv1.threshold'].item()
    assert 0 < saved < float('inf')  # estimated at the end of epoch 1

    _, resumed = run(tmp_path / 'resumed',
                     osp.join(tmp_path / 'full', 'epoch_1.pth'))
    assert resumed.threshold == pytest.approx(saved)
    assert resumed.k == expected[2:]
