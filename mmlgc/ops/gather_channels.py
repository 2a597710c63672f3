"""Channel gather: select (and repeat) input channels per sample.

The deploy step of every learned-group method starts here: gather the channels
each group reads, then run one standard ``groups=G`` conv on the gathered
tensor (CondenseNet's recipe, ``methods.md`` §5).
"""
import torch
from torch import Tensor

from . import reference
from ._ext_loader import ext_available, warn_fallback


def gather_channels(input: Tensor, index: Tensor) -> Tensor:
    """Gather channels of ``input`` ``[N, C, H, W]``.

    Args:
        input: feature map, float32/float64/float16/bfloat16.
        index: int64 channel indices, ``[K]`` (the same for every sample) or
            ``[N, K]`` (per sample). Duplicates are allowed; their gradients
            add up.

    Returns:
        ``[N, K, H, W]`` with ``out[n, k] = input[n, index[n, k]]``.
    """
    if index.dim() == 1:
        index = index.expand(input.shape[0], -1)
    if not ext_available():
        warn_fallback()
        return reference.gather_channels(input, index)
    return torch.ops.mmlgc.gather_channels(input, index)


def _gather_channels_fake(input, index):
    return input.new_empty(
        (input.shape[0], index.shape[1], input.shape[2], input.shape[3]))


def _gather_channels_backward_fake(grad, index, channels):
    return grad.new_empty(
        (grad.shape[0], channels, grad.shape[2], grad.shape[3]))


def _setup_context(ctx, inputs, output):
    input, index = inputs
    ctx.save_for_backward(index)
    ctx.channels = input.shape[1]


def _backward(ctx, grad):
    index, = ctx.saved_tensors
    return torch.ops.mmlgc.gather_channels_backward(
        grad, index, ctx.channels), None


def _setup_context_backward(ctx, inputs, output):
    _, index, _ = inputs
    ctx.save_for_backward(index)


def _backward_backward(ctx, grad_grad_input):
    # The backward is linear in ``grad``; its adjoint is the gather itself.
    index, = ctx.saved_tensors
    return torch.ops.mmlgc.gather_channels(grad_grad_input, index), None, None


if ext_available():
    torch.library.register_fake('mmlgc::gather_channels',
                                _gather_channels_fake)
    torch.library.register_fake('mmlgc::gather_channels_backward',
                                _gather_channels_backward_fake)
    torch.library.register_autograd(
        'mmlgc::gather_channels', _backward, setup_context=_setup_context)
    torch.library.register_autograd(
        'mmlgc::gather_channels_backward',
        _backward_backward,
        setup_context=_setup_context_backward)
