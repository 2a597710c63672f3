"""A synchronised batch norm that runs on CPU (gloo) as well as on GPU."""
import torch
import torch.distributed.nn.functional as dist_fn
from mmengine.dist import get_world_size
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from ..registry import MODELS


@MODELS.register_module('AllReduceSyncBN')
class AllReduceSyncBatchNorm(_BatchNorm):
    """Batch norm whose training statistics are those of the global batch
    (every rank's samples), on any device and process-group backend.

    Why not ``nn.SyncBatchNorm`` (mmcv's ``SyncBN``): in torch 2.14 its
    forward raises ``ValueError: SyncBatchNorm expected input tensor to be on
    GPU or XPU or privateuseone`` for CPU tensors (measured with gloo), so a
    CPU multi-process run cannot sync. This layer syncs with one differentiable
    ``all_reduce`` (``torch.distributed.nn``) of the per-channel
    ``[Σx, Σx², count]``: the mean and biased variance are the global batch's,
    the running variance is updated with the unbiased global one (as
    ``nn.SyncBatchNorm``), and the backward of the ``all_reduce`` sums every
    rank's gradient w.r.t. the statistics, so after DDP's gradient averaging
    the parameters get the gradient of the single-process global batch.

    Meant for small per-rank batches of pooled vectors (MSGC's generators, the
    ``N x C x 1 x 1`` hidden layer) and feature maps alike; one extra
    ``all_reduce`` of ``3·C`` values per layer and pass. ``Σx²/n − mean²``
    loses precision only for activations whose mean dwarfs their spread,
    which a normalised network does not produce.

    Undistributed (or in eval mode, or with ``track_running_stats`` and
    eval) it is exactly ``nn.BatchNorm*``. Ranks with an empty batch still
    take part in the ``all_reduce`` (count 0). mmdet's ``norm_eval`` and
    mmengine's BN-aware code see a ``_BatchNorm``. The CPU fallback of
    :func:`mmlgc.engine.setup_cpu_distributed` swaps ``SyncBN`` for this
    layer in a config. Config: ``norm_cfg=dict(type='mmlgc.AllReduceSyncBN')``.
    """

    _abbr_ = 'bn'

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(
                f'{type(self).__name__}: expected at least 2D input (got '
                f'{input.dim()}D input)')

    def _use_batch_stats(self) -> bool:
        return self.training or not self.track_running_stats

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        if not self._use_batch_stats() or get_world_size() == 1:
            return super().forward(input)
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)

        reduce_dims = [0] + list(range(2, input.dim()))
        # Statistics in float32 at least (fp16 sums of squares overflow).
        x = input if input.dtype == torch.float64 else input.float()
        count = x.new_tensor(float(x.numel() // x.shape[1]))
        stats = torch.cat([
            x.sum(reduce_dims),
            (x * x).sum(reduce_dims),
            count.view(1)
        ])
        stats = dist_fn.all_reduce(stats)  # sum over ranks, differentiable
        channels = input.shape[1]
        total = stats[-1]
        mean = stats[:channels] / total
        var = (stats[channels:2 * channels] / total - mean * mean).clamp(min=0)

        if self.training and self.track_running_stats:
            momentum = (self.momentum if self.momentum is not None else
                        1.0 / float(self.num_batches_tracked))
            with torch.no_grad():
                unbiased = var * total / (total - 1).clamp(min=1)
                self.running_mean.lerp_(mean.to(self.running_mean), momentum)
                self.running_var.lerp_(unbiased.to(self.running_var),
                                       momentum)

        shape = [1, channels] + [1] * (input.dim() - 2)
        out = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(input.dtype)


__all__ = ['AllReduceSyncBatchNorm']
