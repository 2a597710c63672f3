"""Grouped necks (MSGCFPN, DGCFPN, FLGCFPN): detectors, MACs in the budget,
deploy, dense FPN checkpoints."""
import pytest
import torch
from helpers import build_tiny_detector, det_sample
from mmdet.models.necks import FPN

from mmlgc.complexity import collect_costs, conv_macs
from mmlgc.layers import (DGCConv, FLGCConv2d, RaggedGroupConv2d,
                          SelfGatedMSGCConv2d)
from mmlgc.layers.dgc import dgc_layers
from mmlgc.models import DGCFPN, FLGCFPN, MSGCFPN
from mmlgc.models.losses import MACBudget, SaliencyL1, attach_aux_losses

IN_CHANNELS = [16, 32, 64, 128]
#: RetinaNet's neck layout: P3-P7, P6 from C5 (``on_input``).
RETINA_NECK = dict(start_level=1, add_extra_convs='on_input', num_outs=5)
NECKS = {'msgc': MSGCFPN, 'dgc': DGCFPN, 'flgc': FLGCFPN}


def _inputs(batch=2, size=64):
    return [
        torch.randn(batch, c, size // 2**(i + 2), size // 2**(i + 2))
        for i, c in enumerate(IN_CHANNELS)
    ]


def _neck(method, **kwargs):
    args = {**RETINA_NECK, **kwargs}
    neck = NECKS[method](IN_CHANNELS, 32, **args)
    neck.init_weights()
    return neck


def _dense_fpn(**kwargs):
    fpn = FPN(IN_CHANNELS, 32, **{**RETINA_NECK, **kwargs})
    fpn.init_weights()
    return fpn


def _prune(model, progress=1.0):
    for layer in dgc_layers(model):
        layer.set_progress(progress)


@pytest.mark.parametrize('method', sorted(NECKS))
@pytest.mark.parametrize('laterals', [False, True])
def test_convs_replaced_and_outputs_shaped_as_fpn(method, laterals):
    neck = _neck(method, grouped_laterals=laterals)
    grouped = (SelfGatedMSGCConv2d, DGCConv, FLGCConv2d)
    assert all(isinstance(m.conv, grouped) for m in neck.fpn_convs)
    assert all(
        isinstance(m.conv, grouped) == laterals for m in neck.lateral_convs)
    inputs = _inputs()
    with torch.no_grad():
        expected = _dense_fpn().eval()(inputs)
        outs = neck.eval()(inputs)
    assert [o.shape for o in outs] == [o.shape for o in expected]


def test_msgc_init_keeps_gate_bias_and_xavier_conv_weights():
    torch.manual_seed(0)
    neck = _neck('msgc', gate_bias=1.5)
    for module in neck.fpn_convs:
        bias = module.conv.mask_generator.layers[-1].bias
        assert torch.all(bias == 1.5)  # not Xavier's zero
        assert torch.all(module.conv.bias == 0)
        # Xavier uniform bound sqrt(6 / (fan_in + fan_out)), not Kaiming's.
        w = module.conv.weight
        fan_in, fan_out = w[0].numel(), w.shape[0] * w[0, 0].numel()
        bound = (6 / (fan_in + fan_out))**0.5
        assert w.abs().max() <= bound
        assert w.abs().max() > 0.9 * bound


@pytest.mark.parametrize('method', sorted(NECKS))
def test_dense_fpn_checkpoint_loads_with_only_grouped_state_missing(method):
    dense = _dense_fpn()
    neck = NECKS[method](IN_CHANNELS, 32, **RETINA_NECK)
    result = neck.load_state_dict(dense.state_dict(), strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    for key, value in dense.state_dict().items():
        torch.testing.assert_close(neck.state_dict()[key], value)


def test_msgc_with_open_gates_from_dense_checkpoint_is_the_dense_fpn():
    dense = _dense_fpn().eval()
    neck = MSGCFPN(IN_CHANNELS, 32, gate_bias=100.0, **RETINA_NECK)
    neck.load_state_dict(dense.state_dict())
    inputs = _inputs()
    with torch.no_grad():
        for a, b in zip(neck.eval().sparse_eval(False)(inputs),
                        dense(inputs)):
            torch.testing.assert_close(a, b)


def test_msgc_costs_by_hand_closed_and_open_gates():
    inputs = _inputs(batch=1)
    sizes = [x.shape[2:] for x in inputs[1:]] + [(1, 1), (1, 1)]
    fpn_dense = sum(
        conv_macs(128 if i == 3 else 32, 32, 3, size, norm=False)
        for i, size in enumerate(sizes))
    laterals = sum(
        conv_macs(c, 32, 1, x.shape[2:], norm=False)
        for c, x in zip(IN_CHANNELS[1:], inputs[1:]))
    for bias, open_fraction in ((-100.0, 0.0), (100.0, 1.0)):
        neck = _neck('msgc', gate_bias=bias).eval()
        with torch.no_grad():
            neck(inputs)
        costs = collect_costs(neck)
        generators = sum(m.conv.mask_generator.macs for m in neck.fpn_convs)
        # GAP of each conv's input, C·H·W: P3-P5 read their lateral sums,
        # P6 reads C5 (on_input), P7 reads P6.
        conv_inputs = [x.shape[2:] for x in inputs[1:]] + [
            inputs[3].shape[2:], (1, 1)]
        gaps = sum(m.conv.in_channels * s[0] * s[1]
                   for m, s in zip(neck.fpn_convs, conv_inputs))
        assert costs.dense == fpn_dense + laterals
        torch.testing.assert_close(
            costs.dynamic,
            torch.tensor([laterals + open_fraction * fpn_dense + generators +
                          gaps], dtype=costs.dynamic.dtype))


@pytest.mark.parametrize('detector', [
    'retinanet_r50_fpn.py', 'faster-rcnn_r50_fpn.py'
])
@pytest.mark.parametrize('backbone', ['dense', 'grouped'])
def test_msgc_neck_in_detector_joins_the_budget(detector, backbone,
                                                tmp_path):
    backbone_cfg = dict(type='ResNet', depth=18, base_channels=16,
                        norm_eval=True)
    if backbone == 'grouped':
        backbone_cfg['type'] = 'mmlgc.MSGCResNet'
    model = build_tiny_detector(
        detector, backbone_cfg, [16, 32, 64, 128], tmp_path,
        neck=dict(type='mmlgc.MSGCFPN'))
    model.train()
    attach_aux_losses(model, MACBudget(target=0.2))
    sample = det_sample()
    losses = model(torch.randn(2, 3, 64, 64), [sample, sample], mode='loss')
    costs = collect_costs(model)
    neck_layers = [n for n in costs.per_layer if n.startswith('neck.')]
    assert 'neck' in costs.per_layer and len(neck_layers) == len(
        model.neck.fpn_convs)
    neck_dense = collect_costs(model.neck).dense
    if backbone == 'grouped':
        assert costs.dense == pytest.approx(
            collect_costs(model.backbone).dense + neck_dense)
    else:
        assert costs.dense == neck_dense
    torch.testing.assert_close(losses['macs_ratio'], costs.ratio.detach())
    # Per-stage ratios for the logs, the neck's among them.
    neck_costs = collect_costs(model.neck)
    torch.testing.assert_close(
        losses['macs_ratio_neck'],
        neck_costs.dynamic.detach().mean() / neck_costs.dense)
    stages = {k for k in losses if k.startswith('macs_ratio_')}
    assert stages == {'macs_ratio_neck'} | (
        {f'macs_ratio_layer{i}' for i in range(1, 5)}
        if backbone == 'grouped' else set())
    total, _ = model.parse_losses(losses)
    total.backward()
    gen = model.neck.fpn_convs[0].conv.mask_generator.layers[-1].bias
    assert gen.grad is not None and gen.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        preds = model(torch.randn(1, 3, 64, 64), [sample], mode='predict')
    assert len(preds) == 1


@pytest.mark.parametrize('detector', [
    'retinanet_r50_fpn.py', 'faster-rcnn_r50_fpn.py'
])
def test_dgc_neck_in_detector_gets_saliency_loss_and_schedule(
        detector, tmp_path):
    model = build_tiny_detector(
        detector,
        dict(type='mmlgc.DGCResNet', depth=18, base_channels=16,
             norm_eval=True, dgc_norm_eval=False), [16, 32, 64, 128],
        tmp_path, neck=dict(type='mmlgc.DGCFPN'))
    _prune(model)  # what DGCScheduleHook does to every DGC layer
    assert all(m.conv.k > 0 for m in model.neck.fpn_convs)
    model.train()
    attach_aux_losses(model, SaliencyL1())
    sample = det_sample()
    losses = model(torch.randn(2, 3, 64, 64), [sample, sample], mode='loss')
    neck_terms = sum(m.conv.saliency_l1 for m in model.neck.fpn_convs)
    backbone_terms = sum(m.saliency_l1 for m in dgc_layers(model.backbone))
    torch.testing.assert_close(losses['loss_saliency'],
                               1e-5 * (neck_terms + backbone_terms))
    assert losses['macs_ratio'] < 0.8  # neck and backbone pruned
    total, _ = model.parse_losses(losses)
    total.backward()
    fc2 = model.neck.fpn_convs[0].conv.saliency_generator.fc2_weight
    assert fc2.grad is not None and fc2.grad.abs().sum() > 0


@pytest.mark.parametrize('method', sorted(NECKS))
@pytest.mark.parametrize('laterals', [False, True])
def test_deploy_matches_masked_eval(method, laterals):
    torch.manual_seed(0)
    kwargs = dict(grouped_laterals=laterals, norm_cfg=dict(type='BN'))
    if method == 'msgc':
        kwargs.update(gate_bias=0.0, attention=True)
    neck = _neck(method, **kwargs)
    _prune(neck, 0.6)
    for m in neck.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # something to fold
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    for name, p in neck.named_parameters():
        if 'attention_generator' in name or 'mask_generator' in name:
            p.data.normal_(0, 0.1)
    inputs = _inputs()
    neck.eval()
    with torch.no_grad():
        masked = neck.sparse_eval(False)(inputs)
        neck.switch_to_deploy()
        deployed = neck(inputs)
    for a, b in zip(masked, deployed):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * a.abs().max())
    assert not any(
        isinstance(m, torch.nn.BatchNorm2d) for m in neck.modules())
    if method == 'flgc':  # static groups: ragged group convs on the ops
        assert all(
            isinstance(m.conv, RaggedGroupConv2d) for m in neck.fpn_convs)
    with pytest.raises(RuntimeError):
        neck.train()
    # deploy=True builds the structure the deployed state dict has.
    fresh = NECKS[method](IN_CHANNELS, 32, deploy=True,
                          **{**RETINA_NECK, **kwargs})
    fresh.load_state_dict(neck.state_dict(), strict=True)
    with torch.no_grad():
        for a, b in zip(fresh(inputs), deployed):
            torch.testing.assert_close(a, b)


def test_flgc_neck_in_detector_reports_connectivity_macs(tmp_path):
    model = build_tiny_detector(
        'retinanet_r50_fpn.py',
        dict(type='ResNet', depth=18, base_channels=16, norm_eval=True),
        [16, 32, 64, 128], tmp_path,
        neck=dict(type='mmlgc.FLGCFPN', num_groups=4,
                  logit_init='contiguous'))
    model.train()
    sample = det_sample()
    losses = model(torch.randn(2, 3, 64, 64), [sample, sample], mode='loss')
    # Contiguous start: a standard 4-group conv, a quarter of the MACs.
    for module in model.neck.fpn_convs:
        record = module.conv.last_cost
        torch.testing.assert_close(
            record.dynamic, torch.full_like(record.dynamic,
                                            record.dense / 4))
    total, _ = model.parse_losses(losses)
    total.backward()
    logits = model.neck.fpn_convs[0].conv.in_group_logits
    assert logits.grad is not None and logits.grad.abs().sum() > 0
