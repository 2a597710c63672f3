"""FLGC: assignments and mask, straight-through gradients (assignments
learn), any G and degenerate groups, MACs and parameters from the actual
connectivity, backbones, dense checkpoints, deploy, detectors."""
import pytest
import torch
import torch.nn.functional as F
from helpers import build_tiny_detector, det_sample
from mmcv.cnn import fuse_conv_bn
from mmdet.models.backbones import MobileNetV2, ResNet
from torch import nn

from mmlgc.complexity import collect_costs, conv_macs
from mmlgc.deploy import deploy_model
from mmlgc.engine.hooks.flgc_hook import (FLGCAssignmentHook,
                                          flgc_assignments, moved_fraction)
from mmlgc.layers import FLGCConv2d, RaggedGroupConv2d
from mmlgc.models import FLGCMobileNetV2, FLGCResNet


def _resnet(depth=18, **kwargs):
    kwargs.setdefault('norm_eval', False)
    # Gradients reach every FLGC conv on the first step: no zeroed last norm
    # (mmdet's zero_init_residual) ends the residual branches.
    kwargs.setdefault('zero_init_residual', False)
    kwargs.setdefault('out_indices', (0, 1, 2, 3))
    return FLGCResNet(depth=depth, base_channels=16, **kwargs)


def _mobilenet(**kwargs):
    return FLGCMobileNetV2(widen_factor=0.5, out_indices=(2, 4, 7),
                           **kwargs)


def _calibrate_norms(model):
    """Non-trivial BN statistics and affine parameters to fold."""
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model


def _reference_mask(conv):
    """``T·Sᵀ`` from the one-hot argmax assignments, written as in the
    paper."""
    t = F.one_hot(conv.out_group_logits.argmax(1), conv.num_groups).float()
    s = F.one_hot(conv.in_group_logits.argmax(1), conv.num_groups).float()
    return t @ s.t()


def test_mask_is_T_S_transpose_each_filter_in_one_group():
    torch.manual_seed(0)
    conv = FLGCConv2d(12, 10, 3, padding=1, num_groups=3)
    mask = conv.connection_mask()
    assert torch.equal(mask, _reference_mask(conv))
    assert set(mask.unique().tolist()) <= {0.0, 1.0}  # exactly 0/1
    channels, filters = conv.assignments()
    for o in range(10):
        # filter o reads exactly the channels of its (one) group
        assert torch.equal(mask[o].nonzero().flatten(),
                           (channels == filters[o]).nonzero().flatten())
    in_sizes, out_sizes = conv.group_sizes()
    assert in_sizes.sum() == 12 and out_sizes.sum() == 10
    assert mask.sum() == (in_sizes * out_sizes).sum()
    x = torch.randn(2, 12, 6, 6)
    torch.testing.assert_close(
        conv(x), F.conv2d(x, conv.weight * mask[:, :, None, None],
                          conv.bias, padding=1))


def test_straight_through_gradients_reach_every_soft_assignment():
    """Both logit matrices get gradients, in every entry (not only the
    argmax's), equal to those of ``T_st·S_stᵀ`` with
    ``X_st = onehot − soft.detach() + soft``."""
    torch.manual_seed(0)
    conv = FLGCConv2d(8, 6, 3, padding=1, num_groups=3).double()
    x = torch.randn(2, 8, 5, 5, dtype=torch.float64)
    target = torch.randn(2, 6, 5, 5, dtype=torch.float64)
    F.mse_loss(conv(x), target).backward()
    grads = [conv.in_group_logits.grad, conv.out_group_logits.grad]

    def st(logits):
        soft = logits.softmax(1)
        hard = F.one_hot(logits.argmax(1), conv.num_groups).to(soft)
        return hard - soft.detach() + soft

    logits = [conv.in_group_logits.detach().clone().requires_grad_(),
              conv.out_group_logits.detach().clone().requires_grad_()]
    mask = st(logits[1]) @ st(logits[0]).t()
    out = F.conv2d(x, conv.weight.detach() * mask[:, :, None, None],
                   conv.bias.detach(), padding=1)
    F.mse_loss(out, target).backward()
    for grad, reference in zip(grads, logits):
        assert (grad != 0).all()  # every entry, not only the argmax
        torch.testing.assert_close(grad, reference.grad)


class _ArgmaxOnlyGradient(FLGCConv2d):
    """The variant docs/flgc.md warns about: the gradient of every soft
    assignment but the argmax's is zeroed."""

    def connection_mask(self):
        channels, filters = self.assignments()

        def st(logits, index):
            soft = logits.softmax(1)
            hard = F.one_hot(index, self.num_groups).to(soft)
            return hard + (soft - soft.detach()) * hard

        return st(self.out_group_logits, filters) @ st(
            self.in_group_logits, channels).t()


def _learn_groups(cls, steps=40):
    """Teacher/student: both have the same dense weights; the teacher's
    groups are the contiguous ones with channels 0, 5 and filter 4 moved.
    The student starts contiguous; only its logits train (SGD)."""
    torch.manual_seed(0)
    student = cls(16, 16, 1, bias=False, num_groups=4,
                  logit_init='contiguous')
    start = [a.clone() for a in student.assignments()]
    channels, filters = (a.clone() for a in start)
    channels[0], channels[5], filters[4] = 1, 3, 2
    mask = (filters[:, None] == channels[None, :]).float()
    x = torch.randn(64, 16, 4, 4)
    y = F.conv2d(x, student.weight.detach() * mask[:, :, None, None])
    optimizer = torch.optim.SGD(
        [student.in_group_logits, student.out_group_logits], lr=10.0)
    for _ in range(steps):
        loss = F.mse_loss(student(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        loss = F.mse_loss(student(x), y).item()
    return student, start, (channels, filters), loss


def test_assignments_learn_the_better_groups():
    """The "done when" item: assignments change under an optimizer, and
    towards the grouping that fits the task: the student recovers the
    teacher's groups exactly. The argmax-only gradient does not."""
    student, start, teacher, loss = _learn_groups(FLGCConv2d)
    now = student.assignments()
    assert any((a != b).any() for a, b in zip(now, start))  # they moved
    assert all(torch.equal(a, b) for a, b in zip(now, teacher))
    assert loss < 1e-10
    _, _, teacher, frozen_loss = _learn_groups(_ArgmaxOnlyGradient)
    assert frozen_loss > 1e-3


@pytest.mark.parametrize('in_channels,out_channels,num_groups', [
    (7, 5, 3), (6, 3, 5), (8, 8, 1), (5, 9, 9)])
def test_any_num_groups_and_empty_groups(in_channels, out_channels,
                                         num_groups):
    """Unequal groups, G not dividing anything, G above the channels;
    groups with filters but no inputs (those filters output their bias) or
    inputs but no filters; masked forward, deploy and MACs agree."""
    torch.manual_seed(0)
    conv = FLGCConv2d(in_channels, out_channels, 3, padding=1,
                      num_groups=num_groups).double()
    with torch.no_grad():  # filter 0 alone in a group with no channel
        if num_groups > 1:
            conv.in_group_logits[:, 0] = -10
            conv.out_group_logits[0, 0] = 10
    x = torch.randn(2, in_channels, 5, 6, dtype=torch.float64)
    out = conv(x)
    mask = conv.connection_mask()
    assert torch.equal(mask, _reference_mask(conv).double())
    if num_groups > 1:
        assert mask[0].sum() == 0
        torch.testing.assert_close(out[:, 0],
                                   conv.bias[0].expand_as(out[:, 0]))
    in_sizes, out_sizes = conv.group_sizes()
    connections = int((in_sizes * out_sizes).sum())
    spatial = 5 * 6
    assert conv.last_cost.dense == conv_macs(in_channels, out_channels, 3,
                                             (5, 6))
    assert conv.last_cost.dynamic[0] == (9 * connections * spatial +
                                         out_channels * spatial)
    deployed = RaggedGroupConv2d.from_conv(conv)
    assert deployed.connections == connections
    assert deployed.weight.numel() == 9 * connections
    torch.testing.assert_close(deployed(x), out, rtol=1e-10, atol=1e-10)


def test_contiguous_init_is_the_standard_group_conv():
    conv = FLGCConv2d(16, 8, 1, num_groups=4, logit_init='contiguous')
    channels, filters = conv.assignments()
    assert channels.tolist() == [c // 4 for c in range(16)]
    assert filters.tolist() == [o // 2 for o in range(8)]
    expected = torch.block_diag(*[torch.ones(2, 4)] * 4)
    assert torch.equal(conv.connection_mask(), expected)


def test_invalid_arguments():
    with pytest.raises(ValueError):
        FLGCConv2d(4, 4, 1, num_groups=0)
    with pytest.raises(ValueError):
        FLGCConv2d(4, 4, 1, logit_init='kmeans')
    with pytest.raises(ValueError):
        FLGCConv2d.from_conv(nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(KeyError):
        FLGCResNet(depth=20)
    with pytest.raises(ValueError):  # a BasicBlock has no 3x3 to thin
        FLGCResNet(depth=18, depthwise=True)
    with pytest.raises(NotImplementedError):
        FLGCResNet(depth=50, dcn=dict(type='DCNv2', deform_groups=1),
                   stage_with_dcn=(False, True, True, True))
    with pytest.raises(ValueError):
        FLGCMobileNetV2(flgc_convs=('depthwise', ))


@pytest.mark.parametrize('build', [
    lambda: _resnet(18), lambda: _resnet(50),
    lambda: _resnet(50, depthwise=True), _mobilenet
], ids=['r18', 'r50', 'r50_depthwise', 'mobilenet_v2'])
def test_backbone_forward_backward_reaches_logits(build):
    torch.manual_seed(0)
    model = build()
    model.init_weights()
    model.train()
    outs = model(torch.randn(2, 3, 32, 32))
    sum(o.mean() for o in outs).backward()
    layers = [m for m in model.modules() if isinstance(m, FLGCConv2d)]
    assert layers
    for layer in layers:
        assert layer.in_group_logits.grad.abs().sum() > 0
        assert layer.out_group_logits.grad.abs().sum() > 0
    costs = collect_costs(model)
    assert 0 < costs.ratio < 0.75  # G = 8 on the grouped convs


def test_init_weights_reaches_the_flgc_weights():
    """mmengine's Kaiming init (mm* ResNets' default) matches modules by
    class and direct base names: FLGC convs must get it too."""
    torch.manual_seed(0)
    model = _resnet(18)
    conv = model.layer3[0].conv1
    before = conv.weight.detach().clone()
    model.init_weights()
    assert not torch.equal(before, conv.weight)
    fan_out = conv.out_channels * 9  # Kaiming normal, fan_out, ReLU gain
    assert conv.weight.std().item() == pytest.approx((2 / fan_out)**0.5,
                                                     rel=0.1)


def _resnet_macs_by_hand(depth, num_groups, size=224, depthwise=False):
    """MSGC convention (stem conv + BN op + 4 per max-pool output; conv
    ``k²·C·O·H'W'`` + ``O·H'W'`` for its BN; downsample MACs only), FLGC
    convs at ``1/G`` of their connections (contiguous groups, G dividing
    every width), no classifier head."""
    stem, pooled = size // 2, size // 4
    total = 3 * 64 * 49 * stem**2 + 64 * stem**2 + 4 * 64 * pooled**2
    inplanes, h = 64, pooled
    blocks = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3)}[depth]
    for stage, num in enumerate(blocks):
        planes = 64 * 2**stage
        for b in range(num):
            stride = 2 if stage > 0 and b == 0 else 1
            h_out = h // stride
            hw, hw_out = h * h, h_out * h_out
            if depth == 18:
                out = planes
                total += 9 * inplanes * planes * hw_out // num_groups
                total += 9 * planes * planes * hw_out // num_groups
                total += 2 * planes * hw_out
            else:
                out = 4 * planes
                total += inplanes * planes * hw // num_groups + planes * hw
                total += (9 * planes * (1 if depthwise else planes) *
                          hw_out + planes * hw_out)
                total += planes * out * hw_out // num_groups + out * hw_out
            if stride != 1 or inplanes != out:
                total += inplanes * out * hw_out
            inplanes, h = out, h_out
    return total


def test_resnet50_macs_and_params_match_a_hand_count():
    """FLGC ResNet-50, G = 8, contiguous (exactly 1/8 of each 1x1's
    connections) at 224²: the reported MACs equal the hand count; the
    deployed backbone holds exactly the connections' weights."""
    model = FLGCResNet(depth=50, num_groups=8, logit_init='contiguous',
                       out_indices=(3, )).eval()
    dense = ResNet(depth=50, out_indices=(3, ))
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
        costs = collect_costs(model)
    assert costs.dynamic.item() == _resnet_macs_by_hand(50, 8)
    head = 2048 * (49 + 1000)  # MSGC convention, for the check number
    assert costs.dense + head == pytest.approx(4099.70e6, rel=1e-5)
    flgc_weights = sum(m.weight.numel() for m in model.modules()
                       if isinstance(m, FLGCConv2d))
    model.switch_to_deploy()
    params = sum(p.numel() for p in model.parameters())
    dense.eval()  # mm* backbones' train()/eval() return None
    dense = fuse_conv_bn(dense)  # BN folded: a bias per conv
    dense_params = sum(p.numel() for p in dense.parameters())
    assert params == dense_params - flgc_weights + flgc_weights // 8
    # ResNet-50 without its FC, 23508032, minus one of the two parameters
    # of each of its 26560 BN channels (the other is now a conv bias).
    assert dense_params == 23508032 - 26560


def test_resnet18_random_groups_macs_from_connectivity():
    """Random (unequal) groups, G = 3: each FLGC conv reports
    ``k²·Σ_g |inputs_g|·|filters_g|·H'W'`` plus its BN op."""
    torch.manual_seed(0)
    model = _resnet(18, num_groups=3).eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 48))
        costs = collect_costs(model)
    sizes = set()
    for name, conv in model.named_modules():
        if isinstance(conv, FLGCConv2d):
            record = costs.per_layer[name]
            spatial = record.dense / (conv.out_channels *
                                      (9 * conv.in_channels + 1))
            sizes.add(spatial)
            in_sizes, out_sizes = conv.group_sizes()
            expected = (9 * int((in_sizes * out_sizes).sum()) +
                        conv.out_channels) * spatial
            assert record.dynamic.item() == expected
            assert in_sizes.unique().numel() > 1  # unequal groups
    assert sizes == {16 * 12, 8 * 6, 4 * 3, 2 * 2}  # real feature sizes


@pytest.mark.parametrize('build,folds', [
    (lambda **kw: _resnet(18, **kw), True),
    (lambda **kw: _resnet(50, **kw), True),
    (lambda **kw: _resnet(50, depthwise=True, **kw), True),
    (lambda **kw: _mobilenet(**kw), True),
    (lambda **kw: _mobilenet(flgc_convs=('project', ), **kw), False),
], ids=['r18', 'r50', 'r50_depthwise', 'mobilenet_v2', 'mbv2_project'])
def test_deploy_exact_folded_and_round_trips(build, folds):
    """Deployed (BN folded, ragged group convs, orders folded into single
    consumers) vs the masked eval forward: <= 1e-4 relative; a
    ``deploy=True`` build loads the deployed state dict."""
    torch.manual_seed(0)
    model = _calibrate_norms(build())
    model.eval()
    x = torch.randn(2, 3, 48, 40)
    with torch.no_grad():
        masked = model(x)
        masked_macs = collect_costs(model).dynamic
        assert deploy_model(model) == ['']
        deployed = model(x)
    for a, b in zip(masked, deployed):
        err = ((b - a).abs().max() / a.abs().max()).item()
        assert err <= 1e-4, err
    torch.testing.assert_close(collect_costs(model).dynamic, masked_macs)
    ragged = [m for m in model.modules() if isinstance(m, RaggedGroupConv2d)]
    assert ragged and not any(
        isinstance(m, FLGCConv2d) for m in model.modules())
    folded = [m for m in ragged if m.output_index.numel() == 0]
    # A block's first FLGC conv folds into its reader; the last one, which
    # meets the residual sum (or two readers), keeps its index_select.
    assert (len(folded) > 0) == folds and len(folded) < len(ragged)
    with pytest.raises(RuntimeError):
        model.train()
    torch.manual_seed(1)  # other random groups: the state dict decides
    rebuilt = build(deploy=True)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        for a, b in zip(rebuilt.eval()(x), deployed):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_resnet_folds_conv1_into_conv2():
    torch.manual_seed(0)
    model = _calibrate_norms(_resnet(50)).eval()
    model.switch_to_deploy()
    block = model.layer2[1]
    assert block.conv1.output_index.numel() == 0  # read by conv2 only
    assert block.conv3.output_index.numel() == 32 * 4  # meets the residual
    assert isinstance(block.conv2, nn.Conv2d)


@pytest.mark.parametrize('dense_cls,build', [
    (lambda: ResNet(depth=18, base_channels=16), lambda: _resnet(18)),
    (lambda: ResNet(depth=50, base_channels=16), lambda: _resnet(50)),
    (lambda: MobileNetV2(widen_factor=0.5), _mobilenet),
], ids=['r18', 'r50', 'mobilenet_v2'])
def test_dense_checkpoint_loads_with_only_logits_missing(
        dense_cls, build, monkeypatch):
    from mmlgc.models import dense_checkpoints
    logged = []
    monkeypatch.setattr(dense_checkpoints, 'print_log',
                        lambda msg, **kwargs: logged.append(msg))
    dense = dense_cls()
    model = build()
    logits = model.state_dict()
    result = model.load_state_dict(dense.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    state = model.state_dict()
    for key, value in dense.state_dict().items():
        torch.testing.assert_close(state[key], value)
    new = set(state) - set(dense.state_dict())
    assert new and all('group_logits' in k for k in new), new
    for key in new:  # kept their initialisation
        torch.testing.assert_close(state[key], logits[key])
    assert len(logged) == 1 and 'no group assignment logits' in logged[0]


@pytest.mark.parametrize('detector', [
    'retinanet_r50_fpn.py', 'faster-rcnn_r50_fpn.py'
])
def test_detector_forward_backward_and_predict(detector, tmp_path):
    model = build_tiny_detector(
        detector,
        dict(type='mmlgc.FLGCResNet', depth=18, base_channels=16,
             num_groups=4, out_indices=(0, 1, 2, 3), frozen_stages=1,
             norm_eval=True, zero_init_residual=False), [16, 32, 64, 128],
        tmp_path)
    model.train()
    sample = det_sample()
    losses = model(torch.randn(2, 3, 64, 64), [sample, sample],
                   mode='loss')
    total, _ = model.parse_losses(losses)
    total.backward()
    conv = model.backbone.layer3[0].conv2
    assert conv.in_group_logits.grad.abs().sum() > 0
    assert model.backbone.layer1[0].conv1.in_group_logits.grad is None
    model.eval()
    with torch.no_grad():
        preds = model(torch.randn(1, 3, 64, 64), [sample], mode='predict')
    assert len(preds) == 1
    assert deploy_model(model) == ['backbone']
    with torch.no_grad():
        deployed = model(torch.randn(1, 3, 64, 64), [sample],
                         mode='predict')
    assert len(deployed) == 1


def test_assignment_hook_reports_moves():
    """A few SGD steps of a small FLGC ResNet on a toy classification
    batch: the hook sees assignments move and logs the fraction."""

    class MessageHub:

        def __init__(self):
            self.scalars = {}

        def update_scalar(self, key, value):
            self.scalars[key] = value

    class Runner:

        def __init__(self, model):
            self.model, self.message_hub = model, MessageHub()

    torch.manual_seed(0)
    backbone = _resnet(18, num_groups=4, out_indices=(3, ))
    backbone.init_weights()
    head = nn.Linear(128, 4)
    model = nn.Sequential(backbone)
    runner = Runner(model)
    hook = FLGCAssignmentHook()
    hook.before_train(runner)
    start = flgc_assignments(model)
    optimizer = torch.optim.SGD(
        list(backbone.parameters()) + list(head.parameters()), lr=0.5)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(4, (8, ))
    for _ in range(5):
        features = backbone(x)[-1].mean((2, 3))
        loss = F.cross_entropy(head(features), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        hook.after_train_iter(runner, 0)
    moved = runner.message_hub.scalars['train/flgc_moved']
    assert moved == moved_fraction(start, flgc_assignments(model)) > 0
    hook.after_train(runner)
