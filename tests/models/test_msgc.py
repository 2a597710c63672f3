"""MSGC: gates, backbone, MAC accounting, budget loss, checkpoints, deploy."""
import pytest
import torch
from helpers import build_tiny_detector, det_sample
from mmdet.models.backbones import ResNet

from mmlgc.complexity import collect_costs, conv_macs
from mmlgc.engine import MACBudgetHook
from mmlgc.layers import BinaryConcreteGate
from mmlgc.models import MSGCMobileNetV2, MSGCResNet
from mmlgc.models.losses import MACBudget, attach_aux_losses

#: Every MSGC backbone, small: name -> (class, kwargs).
SMALL_BACKBONES = {
    'resnet18': (MSGCResNet, dict(depth=18, base_channels=16)),
    'resnet50': (MSGCResNet, dict(depth=50, base_channels=16)),
    'mobilenet_v2': (MSGCMobileNetV2, dict(widen_factor=0.5)),
}


def _backbone(depth=18, **kwargs):
    kwargs.setdefault('norm_eval', False)
    model = MSGCResNet(depth=depth, **kwargs)
    model.init_weights()
    return model


def _small(name, **kwargs):
    cls, defaults = SMALL_BACKBONES[name]
    model = cls(**{**defaults, 'norm_eval': False, **kwargs})
    model.init_weights()
    return model


def test_gate_train_open_probability_is_sigmoid_of_logit():
    torch.manual_seed(0)
    gate = BinaryConcreteGate().train()
    logits = torch.tensor([-2.0, -0.5, 0.0, 1.0, 2.0])
    samples = gate(logits.expand(20000, 5))
    assert set(samples.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(samples.mean(0), torch.sigmoid(logits),
                               atol=0.015, rtol=0)


def test_gate_eval_is_deterministic_threshold():
    gate = BinaryConcreteGate().eval()
    logits = torch.tensor([-1e-3, 0.0, 3.0])
    assert gate(logits).tolist() == [0.0, 1.0, 1.0]


def test_gate_straight_through_gradient_is_soft_gradient():
    torch.manual_seed(0)
    logits = torch.zeros(1000, requires_grad=True)
    BinaryConcreteGate(tau=2 / 3).train()(logits).sum().backward()
    assert (logits.grad > 0).all()


@pytest.mark.parametrize('depth,check_macs',
                         [(18, 1817.21e6), (50, 4099.70e6)])
def test_dense_macs_match_msgc_check_numbers(depth, check_macs):
    model = _backbone(depth, out_indices=(3, )).eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    last = 512 * (4 if depth == 50 else 1)
    classifier = last * (7 * 7 + 1000)  # MSGC counts the ImageNet head
    total = collect_costs(model).dense + classifier
    assert abs(total - check_macs) / check_macs < 1e-3


def test_mobilenet_v2_dense_macs_match_msgc_check_number():
    model = MSGCMobileNetV2(out_indices=(7, )).eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    classifier = 1280 * 1000 + 1280 * 7 * 7  # FC + global pool
    total = collect_costs(model).dense + classifier
    assert abs(total - 306.94e6) / 306.94e6 < 1e-3


def test_block_cost_by_hand_with_closed_gates():
    """Every mask closed: a BasicBlock costs only its generators, GAP and
    downsample; the bonus removes nothing further (conv1 already costs 0)."""
    model = _backbone(18).eval()
    for name, p in model.named_parameters():
        if 'mask_generator' in name and name.endswith('layers.3.bias'):
            p.data.fill_(-100.0)
        if 'mask_generator' in name and name.endswith('layers.3.weight'):
            p.data.zero_()
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    block = model.layer2[0]  # 64 -> 128, stride 2: input 8x8, output 4x4
    gens = sum(m.macs for n, m in block.named_children() if 'generator' in n)
    expected = 64 * 8 * 8 + gens + conv_macs(64, 128, 1, (4, 4), norm=False)
    torch.testing.assert_close(block.last_cost.dynamic,
                               torch.full((2, ), float(expected)))
    assert block.last_cost.dense == (conv_macs(64, 128, 3, (4, 4)) +
                                     conv_macs(128, 128, 3, (4, 4)) +
                                     conv_macs(64, 128, 1, (4, 4), norm=False))


def test_budget_gradient_reaches_generators():
    torch.manual_seed(0)
    model = _backbone(18).train()
    model(torch.randn(2, 3, 32, 32))
    budget = MACBudget(target=0.1, loss_weight=30.0)(model)
    assert budget['loss_budget'] > 0
    budget['loss_budget'].backward()
    grad = model.layer3[1].mask_generator2.layers[-1].bias.grad
    assert grad is not None and grad.abs().sum() > 0


@pytest.mark.parametrize('name', sorted(SMALL_BACKBONES))
@pytest.mark.parametrize('attention', [False, True])
def test_task_gradient_reaches_generators(name, attention):
    torch.manual_seed(0)
    # A zeroed last norm (mmdet's zero_init_residual) would stop the first
    # step's gradient at the end of each residual branch.
    resnet = dict(zero_init_residual=False) if 'resnet' in name else {}
    model = _small(name, attention=attention, **resnet).train()
    sum(o.square().mean() for o in model(torch.randn(2, 3, 32, 32))).backward()
    for name, p in model.named_parameters():
        if 'generator' in name and name.endswith('layers.3.bias'):
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_budget_hook_anneals_and_resumes():
    hook = MACBudgetHook(target=0.4, anneal_end=0.5)
    assert hook.target_at(0.0) == 1.0
    assert hook.target_at(0.25) == pytest.approx(0.7)
    assert hook.target_at(0.5) == hook.target_at(0.9) == pytest.approx(0.4)

    class Runner:  # what the hook reads from mmengine's Runner
        iter, max_iters = 300, 1000

    hook.before_train_iter(Runner(), 0)  # a run resumed at iteration 300
    assert hook.budget.target == pytest.approx(1 - 0.3 / 0.5 * 0.6)
    with pytest.raises(ValueError):
        MACBudgetHook(target=1.5)


def test_budget_value_is_linear_hinge():
    from mmlgc.models.losses import mac_budget_loss
    r = torch.tensor(0.7)
    assert mac_budget_loss(r, 0.5, 30.0).item() == pytest.approx(6.0)
    assert mac_budget_loss(r, 0.8, 30.0).item() == 0.0


@pytest.mark.parametrize('name', sorted(SMALL_BACKBONES))
def test_dense_checkpoint_loads_with_only_generators_missing(
        name, monkeypatch):
    from mmdet.models.backbones import MobileNetV2

    from mmlgc.models import dense_checkpoints
    logged = []
    monkeypatch.setattr(dense_checkpoints, 'print_log',
                        lambda msg, **kwargs: logged.append(msg))
    cls, kwargs = SMALL_BACKBONES[name]
    dense = (ResNet if cls is MSGCResNet else MobileNetV2)(**kwargs)
    model = _small(name)
    generator = next(m for n, m in model.named_modules()
                     if n.endswith('mask_generator1'))
    before = generator.layers[-1].bias.clone()
    result = model.load_state_dict(dense.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for key, value in dense.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)
    torch.testing.assert_close(generator.layers[-1].bias, before)
    assert len(logged) == 1 and 'no weights for' in logged[0], logged


def test_checkpoint_of_wrong_depth_names_the_disagreeing_shapes():
    dense = ResNet(depth=34)
    with pytest.raises(RuntimeError,
                       match=r'Unexpected key.*layer1\.2\.conv1\.weight'):
        MSGCResNet(depth=18).load_state_dict(dense.state_dict())


def test_pretrained_init_cfg_from_mmengine_checkpoint(tmp_path):
    from mmengine.runner import save_checkpoint
    dense = ResNet(depth=18)
    ckpt = str(tmp_path / 'dense.pth')
    save_checkpoint(
        {'state_dict': {f'backbone.{k}': v
                        for k, v in dense.state_dict().items()}}, ckpt)
    model = MSGCResNet(
        depth=18,
        init_cfg=dict(type='Pretrained', checkpoint=ckpt,
                      prefix='backbone.'))
    model.init_weights()
    torch.testing.assert_close(model.layer4[1].conv2.weight,
                               dense.layer4[1].conv2.weight)
    assert model.layer1[0].mask_generator1.layers[-1].bias.eq(2.0).all()


def test_generator_bn_frozen_by_norm_eval_at_batch_one():
    model = _backbone(18, norm_eval=True).train()
    bn = model.layer2[0].mask_generator2.layers[1]
    stats = bn.running_mean.clone()
    model(torch.randn(1, 3, 32, 32))  # train-mode BN would fail on 1 vector
    assert not bn.training
    torch.testing.assert_close(bn.running_mean, stats)


@pytest.mark.parametrize('name', sorted(SMALL_BACKBONES))
@pytest.mark.parametrize('attention', [False, True])
def test_sparse_eval_and_deploy_match_masked_eval(name, attention):
    torch.manual_seed(0)
    model = _small(name, attention=attention, gate_bias=0.0).eval()
    # Train BN statistics and attention away from their init so folding
    # and attention are exercised.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    for name, p in model.named_parameters():
        if 'attention_generator' in name:
            p.data.normal_(0, 0.1)
    x = torch.randn(2, 3, 48, 40)
    with torch.no_grad():
        masked = model.sparse_eval(False)(x)
        model.switch_to_deploy()
        deployed = model(x)
    for a, b in zip(masked, deployed):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * a.abs().max())
    with pytest.raises(RuntimeError):
        model.train()


@pytest.mark.parametrize('batch', [1, 3])
def test_mobilenet_v2_sparse_eval_computes_only_read_hidden_channels(
        batch, monkeypatch):
    from mmlgc.models.backbones import msgc_mobilenet_v2
    torch.manual_seed(0)
    # Mostly closed gates: many hidden channels no head reads.
    model = _small('mobilenet_v2', gate_bias=-2.0).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    computed = []
    original = msgc_mobilenet_v2.read_hidden_only

    def spy(x, expand, depthwise, mask):
        out = original(x, expand, depthwise, mask)
        computed.append((int(mask.ne(0).any(1).any(0).sum()), mask.shape[2],
                         int(out.abs().sum((0, 2, 3)).ne(0).sum())))
        return out

    monkeypatch.setattr(msgc_mobilenet_v2, 'read_hidden_only', spy)
    x = torch.randn(batch, 3, 48, 40)
    with torch.no_grad():
        masked = model.sparse_eval(False)(x)
        assert not computed
        sparse = model.sparse_eval(True)(x)  # BN not folded
        blocks = len(computed)
        model.switch_to_deploy()
        deployed = model(x)
    # Every block with an expansion; the first has none (its hidden
    # channels are its input) and computes them all.
    assert blocks == len(computed) - blocks == sum(
        isinstance(m, msgc_mobilenet_v2.MSGCInvertedResidual)
        and m.with_expand_conv for m in model.modules()) > 0
    # Some blocks skip channels, and only the read ones are non-zero.
    assert any(read < hidden for read, hidden, _ in computed)
    assert all(nonzero <= read for read, _, nonzero in computed)
    for a, b, c in zip(masked, sparse, deployed):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * a.abs().max())
        torch.testing.assert_close(c, a, rtol=1e-4, atol=1e-4 * a.abs().max())


def test_deploy_state_dict_round_trips_through_config_flag():
    model = _backbone(18).eval()
    model.switch_to_deploy()
    fresh = MSGCResNet(depth=18, deploy=True)
    fresh.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(model(x), fresh.eval()(x)):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize('detector', [
    'retinanet_r50_fpn.py', 'faster-rcnn_r50_fpn.py'
])
@pytest.mark.parametrize('name', sorted(SMALL_BACKBONES))
def test_detector_loss_dict_gets_budget(detector, name, tmp_path):
    cls, kwargs = SMALL_BACKBONES[name]
    if cls is MSGCResNet:
        out_indices = (0, 1, 2, 3)
        in_channels = [16 * cls.arch_settings[kwargs['depth']][0].expansion *
                       2**i for i in range(4)]
    else:  # widen 0.5: layer2, layer3, layer5, conv2
        out_indices, in_channels = (1, 2, 4, 7), [16, 16, 48, 1280]
    model = build_tiny_detector(
        detector,
        dict(type=f'mmlgc.{cls.__name__}', **kwargs, out_indices=out_indices,
             frozen_stages=1, norm_eval=True), in_channels, tmp_path)
    model.train()
    budget = MACBudget(target=0.2)
    attach_aux_losses(model, budget)
    sample = det_sample()
    losses = model(torch.randn(2, 3, 64, 64), [sample, sample], mode='loss')
    assert {'loss_budget', 'macs_ratio', 'macs_target'} <= set(losses)
    assert 0 < losses['macs_ratio'] < 1.2
    total, _ = model.parse_losses(losses)
    total.backward()
    # layer3 is trainable in every backbone (frozen_stages=1).
    gen = next(p for n, p in model.backbone.layer3.named_parameters()
               if 'mask_generator' in n and n.endswith('layers.3.bias'))
    assert gen.grad is not None and gen.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        preds = model(torch.randn(1, 3, 64, 64), [sample], mode='predict')
    assert len(preds) == 1


def test_mobilenet_v2_loads_torchvision_weights():
    import torchvision
    dense = torchvision.models.mobilenet_v2().eval()
    for m in dense.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
    model = MSGCMobileNetV2(out_indices=(7, ), gate_bias=100.0)
    result = model.load_state_dict(dense.state_dict(), strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():  # every gate open: the dense network's features
        torch.testing.assert_close(model(x)[0], dense.features(x))
