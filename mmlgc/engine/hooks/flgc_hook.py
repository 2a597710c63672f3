"""Watching FLGC's group assignments move while a model trains."""
from typing import Dict, Optional

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from ...layers import FLGCConv2d
from ...registry import HOOKS


def flgc_assignments(model) -> Dict[str, torch.Tensor]:
    """Group of every input channel and filter of every FLGC conv:
    ``{name: [C + O] int64}`` (argmax of the logits, on the CPU)."""
    return {
        name: torch.cat(module.assignments()).cpu()
        for name, module in model.named_modules()
        if isinstance(module, FLGCConv2d)
    }


def moved_fraction(start: Dict[str, torch.Tensor],
                   now: Dict[str, torch.Tensor]) -> float:
    """Fraction of the channels and filters (of every FLGC conv in both)
    whose group differs."""
    moved = total = 0
    for name, groups in now.items():
        if name in start:
            moved += int((groups != start[name]).sum())
            total += groups.numel()
    return moved / max(total, 1)


@HOOKS.register_module()
class FLGCAssignmentHook(Hook):
    """Logs ``flgc_moved``, the fraction of FLGC input channels and filters
    whose group differs from the one they had when training started,
    with the training losses; at the end, one line per the ``top`` layers
    that moved most.

    FLGC learns its groups by gradient descent on the assignment logits
    (straight-through); this is how a run shows they really move. The
    reference for "started" is the state at ``before_train`` (after loading
    a checkpoint or resuming).
    """

    priority = 'LOW'

    def __init__(self, top: int = 5):
        if isinstance(top, bool) or not isinstance(top, int) or top < 0:
            raise ValueError(f'FLGCAssignmentHook: top={top!r} must be an '
                             'integer >= 0')
        self.top = top
        self._start: Optional[Dict[str, torch.Tensor]] = None

    @staticmethod
    def _model(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def before_train(self, runner) -> None:
        self._start = flgc_assignments(self._model(runner))

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if not self._start:
            return
        now = flgc_assignments(self._model(runner))
        runner.message_hub.update_scalar('train/flgc_moved',
                                         moved_fraction(self._start, now))

    def after_train(self, runner) -> None:
        if not self._start:
            return
        now = flgc_assignments(self._model(runner))
        per_layer = sorted(((moved_fraction({n: self._start[n]}, {n: g}), n)
                            for n, g in now.items() if n in self._start),
                           reverse=True)
        lines = [f'  {name}: {fraction:.1%}'
                 for fraction, name in per_layer[:self.top]]
        print_log(
            f'FLGC assignments moved during training: '
            f'{moved_fraction(self._start, now):.2%} of all channels and '
            f'filters; most in\n' + '\n'.join(lines),
            logger='current')
