"""A grouped backbone's own training signal, active without a hook.

A user who swaps only the backbone of an mmdet or mmpretrain config
(``backbone=dict(type='mmlgc.MSGCResNet', ...)``) must get the method, not
the dense network with idle gates: MSGC's annealed MAC budget, DGC's pruning
schedule and saliency loss. So such a backbone owns a
:class:`DefaultTrainingSignal` (its ``budget`` / ``schedule`` argument, the
paper's values by default) which, whenever the backbone trains inside an
mmengine ``Runner`` (any ``tools/train.py``: mmdet's, mmpretrain's, mmlgc's;
one process or many):

* reads the progress ``iter / max_iters`` from the Runner's ``MessageHub``
  (written before every iteration by mmengine's ``RuntimeInfoHook`` from
  ``runner.iter``, which ``--resume`` restores) and applies the schedule;
* adds the method's loss terms to the loss dict of the model holding the
  backbone, with :func:`~mmlgc.models.losses.attach_aux_losses` — the hooks'
  mechanism, so detectors, classifiers and checkpoint keys are untouched.

A backbone cannot reach that model or the Runner, so the model is found when
the training loop puts the model in train mode (``model.train()`` reaches
the backbone's ``train``): a one-shot global forward pre-hook waits for the
next call of an mmengine ``BaseModel`` that contains the backbone (the
first iteration's), attaches there — before that call's forward, so its
loss dict has the terms — and removes itself. No global hook stays
registered: torch's hook-free fast path, so evaluation and timing, stay as
they were.

A hook of the same kind in the config (``mmlgc.MACBudgetHook``,
``mmlgc.DGCScheduleHook``: mmlgc's own configs) takes over in its
``before_train`` (:func:`yield_training_signals`). Both choices — the
default, a hook, or ``budget=None`` / ``schedule=None`` — are logged.
"""
import logging
import weakref
from typing import Optional

from mmengine.logging import MessageHub, print_log
from mmengine.model import BaseModel
from torch import nn
from torch.nn.modules.module import register_module_forward_pre_hook

from ..complexity import clear_costs
from .losses import attach_aux_losses


def runner_progress() -> Optional[float]:
    """``iter / max_iters`` of the Runner training loop running now in this
    process; None outside one (a backbone used on its own, evaluation)."""
    hub = MessageHub.get_current_instance()
    if hub.get_info('loop_stage') != 'train':
        return None
    max_iters = hub.get_info('max_iters')
    if not max_iters:
        return None
    return min(hub.get_info('iter', 0) / max_iters, 1.0)


class DefaultTrainingSignal:
    """The default training signal of one backbone.

    Args:
        owner: the backbone's class name, for the logs.
        argument: the backbone argument that configures it
            (``'budget'``, ``'schedule'``), for the logs.
        hook: the name of the hook that takes over when it is in the config.
        loss: the method's loss terms, a callable ``model -> dict`` with
            ``set_progress(progress, model)`` and ``describe()``
            (:class:`~mmlgc.models.losses.AnnealedMACBudget`,
            :class:`~mmlgc.models.losses.DGCPruning`).
        hook_required: why training needs ``hook`` (what the signal
            cannot do without it), or None. Then a Runner training the
            backbone without the hook fails at the first iteration, saying
            so.
    """

    def __init__(self, owner: str, argument: str, hook: str, loss,
                 hook_required: Optional[str] = None):
        self.owner, self.argument, self.hook = owner, argument, hook
        self.loss = loss
        self.hook_required = hook_required
        self.active = True
        self._reset_attachment()

    def _reset_attachment(self) -> None:
        self._handles = []  # the hooks on the model that holds the backbone
        self._pending = None  # the one-shot global hook, while it waits
        self._attached = False

    def install(self, backbone: nn.Module) -> None:
        backbone.register_forward_pre_hook(self._before_forward)

    def on_train(self, backbone: nn.Module, mode: bool) -> None:
        """The backbone's ``train(mode)``: a Runner's training loop starting
        an epoch (or its run) arms the search for the model."""
        if (mode and self.active and not self._attached
                and self._pending is None and runner_progress() is not None):
            self._pending = register_module_forward_pre_hook(
                self._find_model(backbone))

    def _before_forward(self, backbone: nn.Module, args) -> None:
        if not (self.active and backbone.training):
            return
        progress = runner_progress()
        if progress is None:
            return
        if self.hook_required:
            raise RuntimeError(
                f'{self.owner}: {self.hook_required}: add '
                f"custom_hooks=[dict(type='mmlgc.{self.hook}')] to the "
                f'config (or set {self.argument}=None to train without the '
                'method)')
        self.loss.set_progress(progress, backbone)
        if self._attached:
            return
        if self._pending is None:
            # Trained without a train() call inside the loop: the search
            # starts now and the terms join from the next iteration.
            self.on_train(backbone, True)
            return
        # The search was armed, yet no mmengine model holding the backbone
        # was called around this forward: nothing to add the terms to.
        self._pending.remove()
        self._pending = None
        self.active = False
        print_log(
            f'{self.owner}: trained by a Runner but not inside an mmengine '
            f'BaseModel; its default {self.loss.describe()} is not applied',
            'current', logging.WARNING)

    def _find_model(self, backbone: nn.Module):
        backbone_ref = weakref.ref(backbone)

        def hook(module, args):
            if isinstance(module, BaseModel) and any(
                    m is backbone_ref() for m in module.modules()):
                self._pending.remove()
                self._pending = None
                # attach_aux_losses' own pre-hook joins from the next call.
                clear_costs(module)
                self._attach(module)

        return hook

    def _attach(self, model: nn.Module) -> None:
        self._attached = True
        self._handles = attach_aux_losses(model, self.loss)
        print_log(
            f'{self.owner} trains with its default {self.loss.describe()}, '
            f'added to the losses of {type(model).__name__}. Change it with '
            f'the backbone\'s `{self.argument}=dict(...)`, or train without '
            f'it with `{self.argument}=None`.', 'current')

    def yield_to(self, hook: str) -> None:
        """Switch off: ``hook`` in the config gives this signal instead."""
        for handle in self._handles:
            handle.remove()
        if self._pending is not None:
            self._pending.remove()
        self._reset_attachment()
        if self.active:
            print_log(
                f'{self.owner}: {hook} in the config replaces the '
                f'backbone\'s default {self.loss.describe()}', 'current')
        self.active = False

    def __getstate__(self):
        # A copy (EMA's averaged model, a pickled model) starts unattached:
        # the hooks belong to the original's model.
        state = self.__dict__.copy()
        state.update(_handles=[], _pending=None, _attached=False)
        return state


def build_training_signal(backbone: nn.Module,
                          argument: str,
                          hook: str,
                          cfg: Optional[dict],
                          loss_type,
                          defaults: dict,
                          hook_required: Optional[str] = None):
    """The backbone's :class:`DefaultTrainingSignal` from its ``argument``
    (a dict overriding ``defaults``' keys, or None to train without; this is
    logged), installed on ``backbone``; None for ``cfg=None``."""
    owner = type(backbone).__name__
    if cfg is None:
        print_log(
            f'{owner}: {argument}=None: trains without the method\'s '
            f'default {argument} (or with {hook} if the config has it)',
            'current', logging.WARNING)
        return None
    if not isinstance(cfg, dict):
        raise TypeError(f'{owner}: {argument}={cfg!r} must be a dict '
                        f'(keys {sorted(defaults)}) or None')
    unknown = sorted(set(cfg) - set(defaults))
    if unknown:
        raise ValueError(f'{owner}: {argument} has unknown keys {unknown}; '
                         f'valid keys are {sorted(defaults)}')
    loss = loss_type(**{**defaults, **cfg}, owner=owner, argument=argument)
    signal = DefaultTrainingSignal(owner, argument, hook, loss,
                                   hook_required)
    signal.install(backbone)
    return signal


def yield_training_signals(model: nn.Module, hook: str) -> None:
    """Switch off every default signal in ``model`` that ``hook`` replaces
    (called by that hook before training)."""
    for module in model.modules():
        signal = getattr(module, 'training_signal', None)
        if isinstance(signal, DefaultTrainingSignal) and signal.hook == hook:
            signal.yield_to(hook)


class TrainingSignalMixin:
    """For backbones with a :class:`DefaultTrainingSignal` in
    ``training_signal``: forwards ``train(mode)`` to it."""

    training_signal: Optional[DefaultTrainingSignal] = None

    def train(self, mode: bool = True):
        super().train(mode)
        if self.training_signal is not None:
            self.training_signal.on_train(self, mode)
        return self
