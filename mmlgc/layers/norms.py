"""What the layers ask of a norm: its running statistics, and an eval-mode
BN as the per-channel affine it computes."""
from typing import Tuple

import torch
from torch import Tensor, nn


def has_running_statistics(norm: nn.Module) -> bool:
    """Whether a norm keeps running statistics (BN, SyncBN; not GN, LN)."""
    return getattr(norm, 'running_mean', None) is not None


def at_initial_statistics(norm: nn.Module) -> bool:
    """A BN's running statistics never updated nor loaded (mean 0, var
    1); False for norms without running statistics (GN, LN)."""
    if not has_running_statistics(norm):
        return False
    return bool(norm.running_mean.eq(0).all() and norm.running_var.eq(1).all())


def is_eval_batch_norm(norm: nn.Module) -> bool:
    """A BN (SyncBN included) that normalises by its running statistics,
    as an eval-mode BN with them does: one affine per channel."""
    return (isinstance(norm, nn.modules.batchnorm._BatchNorm)
            and not norm.training and has_running_statistics(norm))


def eval_batch_norm_affine(norm: nn.Module) -> Tuple[Tensor, Tensor]:
    """``(scale, shift)`` per channel of an eval-mode BN
    (:func:`is_eval_batch_norm`), as ATen's eval BN computes them:
    ``norm(x) = scale[c] * x + shift[c]``."""
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    return scale, shift
