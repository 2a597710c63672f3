"""Model averaging (mmengine's ``EMAHook`` with
``ema_type='mmlgc.ExponentialMovingAverage'``) of every method's backbone:
weights (and, with ``update_buffers=True``, BN statistics) are averaged;
masks, indices, assignments and schedule state are copied from the trained
model (``mmlgc.engine.averaged_models``, ``mmlgc.utils.model_averaging``).
mmengine's own averaged models stay as they are."""
import pytest
import torch
from mmengine import model as mmengine_model

from mmlgc.engine import (ExponentialMovingAverage, MomentumAnnealingEMA,
                          StochasticWeightAverage)

from mmlgc.layers import BinaryConcreteGate, DGCConv, FLGCConv2d
from mmlgc.layers.self_grouping import group_model, self_grouped_layers
from mmlgc.models import DGCResNet, FLGCResNet, MSGCResNet, SGCNNResNet
from mmlgc.utils.model_averaging import (copy_discrete_state,
                                         discrete_state_names)

MOMENTUM = 0.5
BACKBONES = {
    'msgc': MSGCResNet,
    'dgc': DGCResNet,
    'dgc_g': DGCResNet,
    'sgcnn': SGCNNResNet,
    'flgc': FLGCResNet,
}


def _backbone(method):
    kwargs = dict(depth=18, base_channels=16, norm_eval=False)
    if method == 'dgc_g':
        kwargs['mode'] = 'global'
    model = BACKBONES[method](**kwargs)
    model.init_weights()
    return model


def _train_step(model, optimizer):
    model.train()
    optimizer.zero_grad()
    loss = sum(out.square().mean() for out in model(torch.randn(2, 3, 32, 32)))
    loss.backward()
    optimizer.step()


@torch.no_grad()
def _advance_schedule(method, model, step):
    """What the method's hook changes during training."""
    if method in ('dgc', 'dgc_g'):
        for layer in model.modules():
            if isinstance(layer, DGCConv):
                layer.set_progress(step / 2)  # k from 0 to its final value
                if method == 'dgc_g':  # -inf (keep all) to a threshold
                    layer.threshold.fill_(0.1 * step)
    elif method == 'sgcnn':
        group_model(model, conv_ratio=0.3 * step)


def _averaged_tensors(model, update_buffers):
    tensors = (model.state_dict() if update_buffers else dict(
        model.named_parameters()))
    discrete = discrete_state_names(model)
    return {
        name: tensor.detach().clone()
        for name, tensor in tensors.items()
        if tensor.is_floating_point() and name not in discrete
    }


def _exact_state(model):
    """Every tensor that must be the trained model's: declared discrete
    state and all non-floating tensors."""
    discrete = discrete_state_names(model)
    return {
        name: tensor
        for name, tensor in model.state_dict(keep_vars=True).items()
        if name in discrete or not tensor.is_floating_point()
    }


@pytest.mark.parametrize('update_buffers', [False, True])
@pytest.mark.parametrize('method', list(BACKBONES))
def test_ema_copies_discrete_state_and_averages_weights(
        method, update_buffers):
    torch.manual_seed(0)
    model = _backbone(method)
    ema = ExponentialMovingAverage(
        model, momentum=MOMENTUM, update_buffers=update_buffers)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    expected = None
    for step in range(3):
        if step:
            _train_step(model, optimizer)
            _advance_schedule(method, model, step)
        ema.update_parameters(model)
        source = _averaged_tensors(model, update_buffers)
        expected = source if expected is None else {
            name: expected[name].lerp(source[name], MOMENTUM)
            for name in source
        }

    # The schedule did change discrete state after the first (copying) step.
    declared = discrete_state_names(model)
    if method != 'msgc':
        assert declared
    averaged = ema.module.state_dict()
    exact = _exact_state(model)
    for name in sorted(exact, key=lambda name: name not in declared):
        assert torch.equal(averaged[name], exact[name]), (
            name, averaged[name].unique()[:4], exact[name].unique()[:4])
    for name, value in expected.items():
        assert torch.equal(averaged[name], value), name
    # ... and the averaging is real: weights lag behind the trained model.
    assert any(not torch.equal(averaged[name], source[name])
               for name in expected)

    ema_model = ema.module.eval()
    model.eval()
    if method == 'sgcnn':
        for (name, trained), (_, kept) in zip(
                self_grouped_layers(model), self_grouped_layers(ema_model)):
            assert set(kept.mask.unique().tolist()) <= {0.0, 1.0}, name
            assert torch.equal(kept.mask, trained.mask), name
            assert float(kept.grouped_ratio) == pytest.approx(0.6)
    if method == 'flgc':
        for trained, kept in zip(model.modules(), ema_model.modules()):
            if isinstance(trained, FLGCConv2d):
                assert torch.equal(kept.connection_mask(),
                                   trained.connection_mask())
    if method in ('dgc', 'dgc_g'):
        ks = [m.pruned_channels.item() for m in ema_model.modules()
              if isinstance(m, DGCConv)]
        assert min(ks) > 0
    if method == 'dgc_g':
        assert all(m.threshold.item() == pytest.approx(0.2)
                   for m in ema_model.modules() if isinstance(m, DGCConv))
    if method == 'msgc':
        # Per-image masks of the averaged generators stay binary in eval.
        gates = []
        handles = [
            m.register_forward_hook(lambda m, i, out: gates.append(out))
            for m in ema_model.modules() if isinstance(m, BinaryConcreteGate)
        ]
        with torch.no_grad():
            ema_model(torch.randn(2, 3, 32, 32))
        for handle in handles:
            handle.remove()
        assert gates and all(
            set(g.unique().tolist()) <= {0.0, 1.0} for g in gates)


def test_copy_discrete_state_covers_non_floating_buffers():
    """Indices and counters (here BN's ``num_batches_tracked``) follow the
    trained model even when no layer declares them."""
    source = torch.nn.Sequential(torch.nn.BatchNorm1d(3))
    averaged = torch.nn.Sequential(torch.nn.BatchNorm1d(3))
    source[0].num_batches_tracked.fill_(7)
    source[0].running_mean.fill_(1.0)
    copy_discrete_state(averaged, source)
    assert averaged[0].num_batches_tracked.item() == 7
    assert torch.equal(averaged[0].running_mean, torch.zeros(3))


@pytest.mark.parametrize('averaged_cls', [
    ExponentialMovingAverage, MomentumAnnealingEMA, StochasticWeightAverage
])
def test_every_averaged_model_copies_discrete_state(averaged_cls):
    model = _backbone('dgc')
    averaged = averaged_cls(model)
    averaged.update_parameters(model)
    _advance_schedule('dgc', model, 2)
    averaged.update_parameters(model)
    assert isinstance(averaged, getattr(mmengine_model, averaged_cls.__name__))
    assert all(torch.equal(averaged.module.state_dict()[name], tensor)
               for name, tensor in _exact_state(model).items())


def test_ema_hook_builds_mmlgcs_type_and_mmengines_stays_its_own():
    """A config selects it: ``EMAHook(ema_type='mmlgc.…')``. mmengine's
    type (a user's config) keeps mmengine's behaviour: with
    ``update_buffers=True`` the discrete state stays at its first value."""
    from mmengine.hooks import EMAHook

    class Runner:
        model = _backbone('dgc')

    hook = EMAHook(ema_type='mmlgc.ExponentialMovingAverage', momentum=0.5)
    hook.before_run(Runner)
    assert type(hook.ema_model) is ExponentialMovingAverage

    plain = mmengine_model.ExponentialMovingAverage(
        Runner.model, update_buffers=True)
    plain.update_parameters(Runner.model)
    _advance_schedule('dgc', Runner.model, 2)
    plain.update_parameters(Runner.model)
    assert not all(torch.equal(plain.module.state_dict()[name], tensor)
                   for name, tensor in _exact_state(Runner.model).items())
