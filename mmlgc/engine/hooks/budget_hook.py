"""MSGC's annealed MAC budget as an mmengine hook."""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ...models.losses import MACBudget, attach_aux_losses
from ...registry import HOOKS
from ...utils.checks import check_fraction, check_non_negative


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
    ``macs_target`` with the other losses.

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
        check_fraction('MACBudgetHook', 'target', target)
        check_non_negative('MACBudgetHook', 'loss_weight', loss_weight)
        if not 0 <= anneal_begin <= anneal_end <= 1:
            raise ValueError(
                f'MACBudgetHook: anneal_begin={anneal_begin!r}, anneal_end='
                f'{anneal_end!r} must satisfy 0 <= anneal_begin <= '
                'anneal_end <= 1')
        self.target = target
        self.anneal_begin, self.anneal_end = anneal_begin, anneal_end
        self.budget = MACBudget(1.0, loss_weight)
        self._handles: Optional[list] = None

    def target_at(self, progress: float) -> float:
        """``τ`` at a training progress in [0, 1]."""
        if progress <= self.anneal_begin:
            return 1.0
        if progress >= self.anneal_end:
            return self.target
        frac = (progress - self.anneal_begin) / (
            self.anneal_end - self.anneal_begin)
        return 1.0 + frac * (self.target - 1.0)

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        self._handles = attach_aux_losses(model, self.budget)

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self.budget.target = self.target_at(runner.iter / runner.max_iters)

    def after_train(self, runner) -> None:
        for handle in self._handles or []:
            handle.remove()
        self._handles = None
