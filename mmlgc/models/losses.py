"""Budget (MAC hinge, MSGC) and saliency L1 (DGC) losses, added to any
model's loss dict by one mechanism.

:func:`attach_aux_losses` hooks a model's ``forward``: in ``mode='loss'`` the
loss dict the detector (or classifier) returned gets the auxiliary terms. It
works for every mmdet detector and mmpretrain classifier alike, inside
(MM)DistributedDataParallel too (the hook sits on the wrapped module, so the
terms join the same backward), and keeps the checkpoint keys standard
(``backbone.…``), which a wrapper model would not.
"""
from typing import Callable, Dict, List

import torch
from mmengine.dist import all_reduce
from torch import Tensor, nn

from ..complexity import (CostReporter, CostSummary, clear_costs,
                          collect_costs, stage_ratios)
from ..layers.dgc import RAMP_BEGIN, RAMP_END, dgc_layers
from ..utils.checks import check_fraction, check_non_negative


def stage_logs(costs: CostSummary) -> Dict[str, Tensor]:
    """``macs_ratio_<stage>``: each stage's MACs over its dense MACs (the
    density of its computation; ``layer1``..., ``neck``), for the logs. The
    stem is dense, so left out."""
    return {
        f'macs_ratio_{stage}': ratio
        for stage, ratio in stage_ratios(costs).items() if stage != 'stem'
    }


def rank_mean(values: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Each value's mean over all ranks, with the gradient of the local
    value: ``v + (mean_ranks(v) − v).detach()``.

    Why: a MAC ratio ``r`` (batch MACs / dense MACs) is a property of the
    whole batch, and a hinge ``λ·max(0, r − τ)`` on each rank's local ``r``
    would switch on and off per rank and log rank 0's share only. With the
    global value the hinge is active on every rank or none, and its gradient
    on rank ``i`` is ``λ·[r_global > τ]·∂r_i``; DDP averages gradients over
    the ``W`` ranks, which gives ``λ·[r_global > τ]·∂(Σ r_i / W)``, the
    single-process gradient on the global batch (equal per-rank batches of
    the same input size: then ``r_global`` is that batch's ratio).

    One ``all_reduce`` (of the detached values, stacked) for the whole dict;
    undistributed it is the identity (mmengine's ``all_reduce`` is a no-op).
    Every rank must call it at the same point (as every loss forward does).
    """
    if not values:
        return values
    keys = list(values)
    local = torch.stack([values[k].detach().float().reshape(())
                         for k in keys])
    all_reduce(local, op='mean')  # in place
    return {
        k: values[k] + (mean.to(values[k].dtype) - values[k]).detach()
        for k, mean in zip(keys, local)
    }


def mac_budget_loss(ratio: Tensor, target: float,
                    loss_weight: float) -> Tensor:
    """MSGC's budget term ``λ · max(0, r − τ)``, a linear hinge."""
    return loss_weight * torch.clamp(ratio - target, min=0)


class MACBudget:
    """The budget terms of one model: ``loss_budget`` (λ·max(0, r − τ)),
    plus ``macs_ratio``, ``macs_target`` and the per-stage ratios
    (:func:`stage_logs`) for the logs (not summed into the loss: their keys
    have no ``loss``).

    ``r`` is the batch's mean per-sample MACs over dense MACs, both summed
    over the layers that report costs (:mod:`mmlgc.complexity`) at the batch's
    input size. ``target`` is read on every call (the hook anneals it).
    Distributed, ``r`` and the stage ratios are the means over ranks, the
    gradient flowing through the local ``r`` (:func:`rank_mean`), so the
    hinge and its gradient are those of the global batch.
    """

    def __init__(self, target: float = 1.0, loss_weight: float = 30.0):
        check_fraction(type(self).__name__, 'target', target)
        check_non_negative(type(self).__name__, 'loss_weight', loss_weight)
        self.target = target
        self.loss_weight = loss_weight

    def __call__(self, model: nn.Module) -> Dict[str, Tensor]:
        costs = collect_costs(model)
        ratios = rank_mean(dict(macs_ratio=costs.ratio, **stage_logs(costs)))
        ratio = ratios.pop('macs_ratio')
        return dict(
            loss_budget=mac_budget_loss(ratio, self.target, self.loss_weight),
            macs_ratio=ratio.detach(),
            macs_target=ratio.new_tensor(self.target),
            **{k: v.detach() for k, v in ratios.items()})


def _argument_names(argument: str) -> Callable[[str], str]:
    """Names in error messages: ``budget.target`` when the values come
    from a backbone's ``budget`` dict, ``target`` when they are a hook's own
    arguments."""
    return lambda key: f'{argument}.{key}' if argument else key


def check_progress_window(owner: str, begin_name: str, begin,
                          end_name: str, end) -> None:
    """``0 <= begin <= end <= 1``: the progress fractions bounding a
    schedule (the budget's anneal, DGC's pruning ramp)."""
    if not 0 <= begin <= end <= 1:
        raise ValueError(
            f'{owner}: {begin_name}={begin!r}, {end_name}={end!r} must '
            f'satisfy 0 <= {begin_name} <= {end_name} <= 1')


class AnnealedMACBudget(MACBudget):
    """MSGC's budget with its schedule: ``τ`` falls linearly from 1 to
    ``final_target`` while the training progress goes from ``anneal_begin``
    to ``anneal_end`` (MSGC: 0 and ½), then stays there.

    :meth:`set_progress` sets ``τ`` (from the progress alone, so a resumed
    run continues the schedule).
    """

    def __init__(self,
                 target: float,
                 loss_weight: float = 30.0,
                 anneal_begin: float = 0.0,
                 anneal_end: float = 0.5,
                 owner: str = 'AnnealedMACBudget',
                 argument: str = ''):
        name = _argument_names(argument)
        check_fraction(owner, name('target'), target)
        check_non_negative(owner, name('loss_weight'), loss_weight)
        check_progress_window(owner, name('anneal_begin'), anneal_begin,
                              name('anneal_end'), anneal_end)
        super().__init__(1.0, loss_weight)
        self.final_target = target
        self.anneal_begin, self.anneal_end = anneal_begin, anneal_end

    def target_at(self, progress: float) -> float:
        """``τ`` at a training progress in [0, 1]."""
        if progress <= self.anneal_begin:
            return 1.0
        if progress >= self.anneal_end:
            return self.final_target
        frac = (progress - self.anneal_begin) / (
            self.anneal_end - self.anneal_begin)
        return 1.0 + frac * (self.final_target - 1.0)

    def set_progress(self, progress: float, model=None) -> None:
        self.target = self.target_at(progress)

    def describe(self) -> str:
        return (f'MAC budget (target {self.final_target}, loss_weight '
                f'{self.loss_weight}, annealed from 1 over training progress '
                f'{self.anneal_begin}-{self.anneal_end})')


class SaliencyL1:
    """DGC's sparsity term ``loss_saliency = λ · Σ_layers Σ_heads mean(s)``
    (``λ = 1e-5``), plus ``macs_ratio`` and the per-stage ratios
    (:func:`stage_logs`) for the logs.

    Collected from every layer that left a ``saliency_l1`` tensor on its last
    forward (:class:`mmlgc.layers.DGCConv`); a layer counts only if it also
    reported a cost record in this forward (:func:`attach_aux_losses` clears
    the records first), so a layer the forward skipped contributes no stale
    term. The logged ratios are means over ranks (:func:`rank_mean`); the
    saliency term is a per-sample mean, which DDP's gradient averaging
    already makes the global batch's.
    """

    def __init__(self, loss_weight: float = 1e-5):
        check_non_negative(type(self).__name__, 'loss_weight', loss_weight)
        self.loss_weight = loss_weight

    def __call__(self, model: nn.Module) -> Dict[str, Tensor]:
        terms = [
            m.saliency_l1 for m in model.modules()
            if isinstance(m, CostReporter) and m.last_cost is not None
            and getattr(m, 'saliency_l1', None) is not None
        ]
        if not terms:
            raise RuntimeError(
                f'{type(model).__name__} has no layer with a saliency term: '
                'it holds no DGC layer, or it has not run forward yet.')
        total = terms[0]
        for term in terms[1:]:
            total = total + term.to(total.device)
        costs = collect_costs(model)
        ratios = rank_mean(dict(macs_ratio=costs.ratio, **stage_logs(costs)))
        return dict(
            loss_saliency=self.loss_weight * total,
            **{k: v.detach() for k, v in ratios.items()})


class DGCPruning(SaliencyL1):
    """DGC's training signal: the saliency L1 term and the pruning schedule
    of ``k`` (:func:`mmlgc.layers.dgc.prune_schedule`: none up to
    ``ramp_begin``, a linear ramp to the final ``k`` at ``ramp_end``; DGC:
    1/12 and 3/4). :meth:`set_progress` writes ``k`` into every DGC layer
    of ``model`` (a buffer: checkpoints and evaluation carry it)."""

    def __init__(self,
                 loss_weight: float = 1e-5,
                 ramp_begin: float = RAMP_BEGIN,
                 ramp_end: float = RAMP_END,
                 owner: str = 'DGCPruning',
                 argument: str = ''):
        name = _argument_names(argument)
        check_non_negative(owner, name('loss_weight'), loss_weight)
        check_progress_window(owner, name('ramp_begin'), ramp_begin,
                              name('ramp_end'), ramp_end)
        super().__init__(loss_weight)
        self.ramp_begin, self.ramp_end = ramp_begin, ramp_end

    def set_progress(self, progress: float, model: nn.Module) -> None:
        for layer in dgc_layers(model):
            layer.set_progress(progress, self.ramp_begin, self.ramp_end)

    def describe(self) -> str:
        return (f'pruning schedule (ramp over training progress '
                f'{self.ramp_begin:.3g}-{self.ramp_end:.3g}) and saliency '
                f'loss (loss_weight {self.loss_weight})')


def attach_aux_losses(model: nn.Module,
                      terms: Callable[[nn.Module], Dict[str, Tensor]]
                      ) -> List:
    """Add ``terms(model)`` to the loss dict of every ``mode='loss'``
    forward of ``model``. Returns the hook handles (``.remove()`` detaches).
    """

    def clear(module, args, kwargs):
        clear_costs(module)

    def add(module, args, kwargs, output):
        mode = kwargs.get('mode', args[2] if len(args) > 2 else 'tensor')
        if mode != 'loss' or not isinstance(output, dict):
            return output
        extra = terms(module)
        clash = set(extra) & set(output)
        if clash:
            raise KeyError(f'auxiliary loss keys {sorted(clash)} are already '
                           f'in the loss dict of {type(module).__name__}')
        output.update(extra)
        return output

    return [
        model.register_forward_pre_hook(clear, with_kwargs=True),
        model.register_forward_hook(add, with_kwargs=True)
    ]
