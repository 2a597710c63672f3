"""Pure-PyTorch definitions of the mmlgc ops.

The compiled kernels (``csrc/``) are tested against these for exact equality;
they are also the readable specification of each op.
"""
import torch


def gather_channels(input: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``out[n, k] = input[n, index[n, k]]`` for ``input`` of shape
    ``[N, C, H, W]`` and ``index`` of shape ``[N, K]`` (duplicates allowed)."""
    batch = torch.arange(input.shape[0], device=input.device)[:, None]
    return input[batch, index]
