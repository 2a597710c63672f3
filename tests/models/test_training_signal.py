"""A grouped backbone's default training signal (MSGC's budget, DGC's
schedule) inside a detector, driven by the Runner's progress as mmengine's
RuntimeInfoHook writes it into the MessageHub."""
import copy

import pytest
import torch
from helpers import build_tiny_detector, det_sample
from mmengine.logging import MessageHub

from mmlgc.complexity import clear_costs
from mmlgc.engine import DGCScheduleHook, MACBudgetHook
from mmlgc.layers.dgc import dgc_layers
from mmlgc.models.training_signal import runner_progress

TINY = dict(depth=18, base_channels=16, init_cfg=None)
IN_CHANNELS = [16, 32, 64, 128]


@pytest.fixture
def progress():
    """Set the progress a Runner's training loop would publish; the
    message hub's runtime info is restored afterwards."""
    hub = MessageHub.get_current_instance()
    saved = dict(hub.runtime_info)

    def set_progress(iteration, max_iters=100, stage='train'):
        hub.update_info('loop_stage', stage)
        hub.update_info('iter', iteration)
        hub.update_info('max_iters', max_iters)

    yield set_progress
    hub._runtime_info.clear()
    hub._runtime_info.update(saved)


def _detector(tmp_path, backbone):
    torch.manual_seed(0)
    return build_tiny_detector('retinanet_r50_fpn.py', backbone,
                               IN_CHANNELS, tmp_path).train()


def _losses(model):
    return model(torch.randn(2, 3, 64, 64), [det_sample(), det_sample()],
                 mode='loss')


def test_progress_only_inside_a_training_loop(progress):
    progress(25, 100)
    assert runner_progress() == 0.25
    progress(25, 100, stage='val')
    assert runner_progress() is None


def test_msgc_backbone_alone_adds_the_annealed_budget(tmp_path, progress):
    model = _detector(tmp_path, dict(type='mmlgc.MSGCResNet', **TINY))
    progress(25)  # τ: 1 -> 0.5 over the first half: 0.75 at a quarter
    model.train()  # as the Runner's loop does before its first iteration
    losses = _losses(model)  # the first forward finds the detector
    assert losses['macs_target'].item() == pytest.approx(0.75)
    assert {'loss_budget', 'macs_ratio'} <= set(losses)
    assert 0 < losses['macs_ratio'].item() <= 1
    progress(60)
    losses = _losses(model)  # later forwards: through the detector's hooks
    assert losses['macs_target'].item() == pytest.approx(0.5)
    # The budget's gradient reaches the mask generators.
    losses['loss_budget'] = losses['loss_budget'] + 0 * losses['macs_ratio']
    if losses['loss_budget'].item() > 0:
        losses['loss_budget'].backward()
        grads = [p.grad for n, p in model.named_parameters()
                 if 'mask_generator' in n and p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads)


def test_budget_settings_and_opt_out(tmp_path, progress):
    model = _detector(tmp_path, dict(type='mmlgc.MSGCResNet',
                                     budget=dict(target=0.3, anneal_end=0.),
                                     **TINY))
    progress(1)
    model.train()
    assert _losses(model)['macs_target'].item() == pytest.approx(0.3)
    model = _detector(tmp_path, dict(type='mmlgc.MSGCResNet', budget=None,
                                     **TINY)).train()
    losses = _losses(model)
    assert not {'loss_budget', 'macs_ratio', 'macs_target'} & set(losses)


def test_nothing_outside_a_training_loop(tmp_path, progress):
    model = _detector(tmp_path, dict(type='mmlgc.MSGCResNet', **TINY))
    progress(10, stage='val')
    model.train()
    assert 'loss_budget' not in _losses(model)
    # No global hook was left behind: torch's hook-free fast path.
    from torch.nn.modules import module as torch_module
    assert not torch_module._global_forward_pre_hooks


def test_dgc_backbone_alone_prunes_on_schedule(tmp_path, progress):
    model = _detector(tmp_path, dict(type='mmlgc.DGCResNet', **TINY))
    layers = dgc_layers(model)
    progress(5)  # before the ramp (1/12): no pruning
    model.train()
    losses = _losses(model)
    assert 'loss_saliency' in losses and 'macs_ratio' in losses
    assert all(layer.k == 0 for layer in layers)
    progress(80)  # past the ramp (3/4): the final k
    first = _losses(model)['macs_ratio'].item()
    assert all(layer.k == layer.k_at(1.0) > 0 for layer in layers)
    assert first < losses['macs_ratio'].item()


@pytest.mark.parametrize('backbone,hook,key', [
    ('MSGCResNet', MACBudgetHook(target=0.4, anneal_end=0.), 'loss_budget'),
    ('DGCResNet', DGCScheduleHook(ramp_begin=0., ramp_end=0.),
     'loss_saliency'),
])
def test_hook_in_the_config_takes_over(tmp_path, progress, backbone, hook,
                                       key):
    model = _detector(tmp_path, dict(type=f'mmlgc.{backbone}', **TINY))

    class Runner:  # what the hooks read from mmengine's Runner
        iter, max_iters = 1, 100
        train_dataloader = [None] * 10

    Runner.model = model
    progress(1)
    hook.before_train(Runner())
    model.train()
    hook.before_train_iter(Runner(), 0)
    losses = _losses(model)  # one term, the hook's (no key clash)
    assert key in losses
    if key == 'loss_budget':
        assert losses['macs_target'].item() == pytest.approx(0.4)
    else:  # the hook's ramp (none): the final k from the first iteration
        assert all(layer.k == layer.k_at(1.0) for layer in dgc_layers(model))
    hook.after_train(Runner())


def test_dgc_g_requires_its_hook(tmp_path, progress):
    model = _detector(tmp_path, dict(type='mmlgc.DGCResNet', mode='global',
                                     **TINY))
    progress(1)
    model.train()
    with pytest.raises(RuntimeError, match='DGCScheduleHook'):
        _losses(model)


def test_copies_start_unattached(tmp_path, progress):
    model = _detector(tmp_path, dict(type='mmlgc.MSGCResNet', **TINY))
    before = copy.deepcopy(model)  # EMA copies the model before training
    progress(1)
    model.train()
    _losses(model)
    clear_costs(model)  # this forward's records hold autograd graphs
    after = copy.deepcopy(model.backbone).training_signal
    assert after is not model.backbone.training_signal
    assert not after._attached and not after._handles
    # The early copy trains with its own terms, the original's unchanged.
    before.train()
    assert 'loss_budget' in _losses(before)
    assert 'loss_budget' in _losses(model)


def test_without_train_call_the_terms_join_from_the_next_forward(
        tmp_path, progress):
    model = _detector(tmp_path, dict(type='mmlgc.MSGCResNet', **TINY))
    progress(1)  # model.train() ran before the loop began
    assert 'loss_budget' not in _losses(model)
    assert 'loss_budget' in _losses(model)


def test_backbone_outside_a_model_warns_and_stops(progress):
    from mmlgc.models import MSGCResNet
    from torch.nn.modules import module as torch_module
    backbone = MSGCResNet(**TINY)
    progress(1)
    backbone.train()
    backbone(torch.randn(1, 3, 32, 32))
    assert not backbone.training_signal.active
    assert not torch_module._global_forward_pre_hooks


@pytest.mark.parametrize('cfg,message', [
    (dict(target=1.5), r'MSGCResNet: budget.target=1.5 must be in \(0, 1\]'),
    (dict(anneal_begin=0.6, anneal_end=0.5), 'budget.anneal_begin=0.6'),
    (dict(lambda_=3), r"budget has unknown keys \['lambda_'\]"),
    (0.5, 'budget=0.5 must be a dict'),
])
def test_bad_budget_is_a_clear_error(cfg, message):
    from mmlgc.models import MSGCResNet
    with pytest.raises((ValueError, TypeError), match=message):
        MSGCResNet(**TINY, budget=cfg)


def test_opt_out_is_logged(monkeypatch):
    from mmlgc.models import DGCResNet, training_signal
    logged = []
    monkeypatch.setattr(training_signal, 'print_log',
                        lambda msg, *args: logged.append(msg))
    DGCResNet(**TINY, schedule=None)
    assert any('schedule=None: trains without' in m for m in logged)
