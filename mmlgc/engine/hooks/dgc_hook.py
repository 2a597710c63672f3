"""DGC's pruning schedule and saliency loss as an mmengine hook."""
from typing import Optional

import torch
from mmengine.dist import all_reduce
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ...layers.dgc import (RAMP_BEGIN, RAMP_END, GlobalThreshold, dgc_layers,
                           prune_schedule)
from ...models.losses import DGCPruning, attach_aux_losses
from ...models.training_signal import yield_training_signals
from ...registry import HOOKS
from ...utils.checks import check_positive_int


@HOOKS.register_module()
class DGCScheduleHook(Hook):
    """Sets ``k`` of every DGC layer from the training progress before each
    training iteration, and adds ``loss_saliency`` (``λ·Σ mean(s)``) and
    ``macs_ratio`` to the model's losses.

    Progress ``p = runner.iter / runner.max_iters`` (the reference's
    ``(epoch·iters_per_epoch + i) / (epochs·iters_per_epoch)``): no pruning
    for ``p <= ramp_begin``, a linear ramp to the final ``k`` at
    ``ramp_end``, then fixed (DGC: 1/12 and 3/4). ``k`` is derived from
    ``runner.iter`` alone and stored in the layers' ``pruned_channels``
    buffers, so a resumed run continues the schedule and evaluation (which
    this hook does not touch) uses the value training reached.
    ``ramp_begin = ramp_end = 0`` prunes fully from the first iteration, for
    fine-tuning a DGC-pretrained backbone (detection).

    DGC-G (layers built with ``mode='global'``): over the last
    ``collect_iters`` iterations of every window of ``interval`` iterations
    (default: one epoch, ``len(runner.train_dataloader)``) the layers' raw
    saliencies are pooled network-wide (:class:`mmlgc.layers.GlobalThreshold`);
    at the end of the window the threshold that prunes on average the
    scheduled fraction is averaged over ranks and written to every layer's
    ``threshold`` buffer, used from the next iteration on, in eval and after
    a resume (a resumed run restarts the collection of a partial window).

    Args:
        loss_weight: ``λ`` of the saliency L1 term (1e-5 in DGC).
        ramp_begin, ramp_end: progress fractions bounding the ramp of ``k``.
        collect_iters: DGC-G, iterations sampled per window.
        interval: DGC-G, window length in iterations (default: an epoch).
        weighting: DGC-G, ``'macs'`` or ``'channels'``
            (:class:`mmlgc.layers.GlobalThreshold`).
    """

    priority = 'NORMAL'

    def __init__(self,
                 loss_weight: float = 1e-5,
                 ramp_begin: float = RAMP_BEGIN,
                 ramp_end: float = RAMP_END,
                 collect_iters: int = 100,
                 interval: Optional[int] = None,
                 weighting: str = 'macs'):
        self.loss = DGCPruning(loss_weight, ramp_begin, ramp_end,
                               owner='DGCScheduleHook')
        check_positive_int('DGCScheduleHook', 'collect_iters', collect_iters)
        if interval is not None:
            check_positive_int('DGCScheduleHook', 'interval', interval)
        self.ramp_begin, self.ramp_end = ramp_begin, ramp_end
        self.collect_iters, self.interval = collect_iters, interval
        self.threshold = GlobalThreshold(weighting)
        self._handles: Optional[list] = None

    @staticmethod
    def _model(runner):
        return runner.model.module if is_model_wrapper(
            runner.model) else runner.model

    def _window(self, runner) -> int:
        return self.interval or len(runner.train_dataloader)

    def before_train(self, runner) -> None:
        model = self._model(runner)
        yield_training_signals(model, type(self).__name__)
        self._handles = attach_aux_losses(model, self.loss)
        self.loss.set_progress(runner.iter / runner.max_iters, model)

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        model = self._model(runner)
        self.loss.set_progress(runner.iter / runner.max_iters, model)
        layers = dgc_layers(model)
        if any(layer.mode == 'global' for layer in layers):
            window = self._window(runner)
            left = window - runner.iter % window  # iterations, this included
            for layer in layers:
                layer.collect_saliency = left <= self.collect_iters

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None) -> None:
        layers = [
            m for m in dgc_layers(self._model(runner)) if m.mode == 'global'
        ]
        if not layers:
            return
        window = self._window(runner)
        done = runner.iter + 1
        # The fraction the next window should prune (the schedule at its
        # start; the reference's k changes within an epoch, DGC-G's
        # threshold once per window). A DGCResNet's layers share ``keep``.
        fraction = max(1 - layer.keep for layer in layers) * prune_schedule(
            done / runner.max_iters, self.ramp_begin, self.ramp_end)
        self.threshold.add(layers, fraction)
        if done % window and done != runner.max_iters:
            return
        value = self.threshold.pop()
        if value is None:
            return
        value = torch.tensor(value, dtype=torch.float64)
        if torch.isfinite(value):
            all_reduce(value, op='mean')  # in place; no-op undistributed
        for layer in layers:
            layer.threshold.fill_(float(value))
            layer.collect_saliency = False

    def after_train(self, runner) -> None:
        for handle in self._handles or []:
            handle.remove()
        self._handles = None
