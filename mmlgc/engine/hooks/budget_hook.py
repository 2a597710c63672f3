"""MSGC's annealed MAC budget as an mmengine hook."""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ...models.losses import AnnealedMACBudget, attach_aux_losses
from ...models.training_signal import yield_training_signals
from ...registry import HOOKS


@HOOKS.register_module()
class MACBudgetHook(Hook):
    """Adds ``loss_budget = λ·max(0, r − τ(t))`` to the model's losses and
    anneals ``τ`` with training progress.

    ``τ`` falls linearly from 1 to ``target`` while the progress ``t``
    (iterations done / total iterations, so epoch- and iteration-based loops
    alike) goes from ``anneal_begin`` to ``anneal_end``, and stays at
    ``target`` afterwards (MSGC: ``anneal_end=0.5``). ``τ`` is a function of
    ``runner.iter``, which a resumed run restores, so the schedule continues
    where it stopped.

    Works for any mmdet detector or mmpretrain classifier whose backbone (or
    neck) reports costs; logs ``loss_budget``, ``macs_ratio`` and
    ``macs_target`` with the other losses. An MSGC backbone applies the same
    budget without this hook (its ``budget`` argument,
    :mod:`mmlgc.models.training_signal`); with the hook in the config, the
    hook's values replace the backbone's (logged).

    Args:
        target: final budget ``τ_end`` as a fraction of dense MACs.
        loss_weight: ``λ`` (30 in MSGC).
        anneal_begin, anneal_end: progress fractions bounding the anneal.
    """

    priority = 'NORMAL'

    def __init__(self,
                 target: float,
                 loss_weight: float = 30.0,
                 anneal_begin: float = 0.0,
                 anneal_end: float = 0.5):
        self.budget = AnnealedMACBudget(target, loss_weight, anneal_begin,
                                        anneal_end, owner='MACBudgetHook')
        self._handles: Optional[list] = None

    def target_at(self, progress: float) -> float:
        """``τ`` at a training progress in [0, 1]."""
        return self.budget.target_at(progress)

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        yield_training_signals(model, type(self).__name__)
        self._handles = attach_aux_losses(model, self.budget)

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self.budget.set_progress(runner.iter / runner.max_iters)

    def after_train(self, runner) -> None:
        for handle in self._handles or []:
            handle.remove()
        self._handles = None
