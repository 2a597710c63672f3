"""Dynamic group conv: per-sample, per-group input-channel masks computed
sparsely (MSGC's grouped dynamic conv, DGC's heads, per-sample channel
pruning with ``G = 1``; ``docs/ops.md``)."""
from typing import Optional

import torch
from torch import Tensor
from torch.nn.modules.utils import _pair

from ..complexity import conv_output_size
from . import reference
from ._ext_loader import ext_available, no_double_backward, warn_fallback

# dtypes the C++ CPU kernel implements; others fall back to the reference.
CPU_KERNEL_DTYPES = (torch.float32, torch.float64)


def dynamic_group_conv(input: Tensor,
                       weight: Tensor,
                       bias: Optional[Tensor],
                       mask: Tensor,
                       out_mask: Optional[Tensor] = None,
                       stride=1,
                       padding=0,
                       dilation=1,
                       sparse: bool = True,
                       interleaved: bool = False) -> Tensor:
    """Conv whose output group ``g`` reads ``input * mask[:, g]``.

    Args:
        input: ``[N, C, H, W]`` (any strides, channels_last included).
        weight: dense ``[O, C, kh, kw]``, as a plain conv's (a dense
            checkpoint loads unchanged); ``O`` must divide into ``G`` groups
            of ``O / G`` consecutive output channels (``interleaved``: the
            channels ``j * G + g`` of group ``g``).
        bias: ``[O]`` or None.
        mask: ``[N, G, C]``, binary or real-valued (binary x attention);
            channel ``c`` is read by group ``g`` of sample ``n`` iff
            ``mask[n, g, c] != 0``, and is multiplied by that value.
        out_mask: optional ``[N, O]``; output channels whose entry is zero
            are not computed and come out as exact zeros (no bias).
        stride, padding, dilation: as for ``F.conv2d``.
        sparse: False runs the masked dense form of the MSGC and DGC
            references (:func:`mmlgc.ops.reference.dynamic_group_conv`), the
            form they train and measure with.
        interleaved: the groups' outputs come channel-shuffled (DGC's head
            order), the shuffle folded into where the kernels write, not a
            copy afterwards.

    Returns:
        ``[N, O, H', W']``, contiguous.

    Only the active (input channel, output channel) pairs are computed, in
    the compiled kernels (C++ on CPU, Triton on a GPU), which give
    gradients for ``input``, ``weight`` and ``bias``. When ``mask`` or
    ``out_mask`` requires grad (gate training), the differentiable dense
    reference (:func:`mmlgc.ops.reference.dynamic_group_conv`) runs instead;
    so it does without the compiled extension (with one warning) and, on
    CPU, for dtypes other than float32/float64. This is the one place that
    chooses between the kernels and the reference (``docs/ops.md``).
    """
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    args = (input, weight, bias, mask, out_mask, stride, padding, dilation,
            interleaved)
    if not sparse or _masks_need_grad(mask, out_mask) or (
            input.device.type == 'cpu'
            and input.dtype not in CPU_KERNEL_DTYPES):
        return reference.dynamic_group_conv(*args)
    if not ext_available():
        warn_fallback()
        return reference.dynamic_group_conv(*args)
    return torch.ops.mmlgc.dynamic_group_conv(*args)


def _masks_need_grad(*masks) -> bool:
    return torch.is_grad_enabled() and any(
        m is not None and m.requires_grad for m in masks)


def _fake(input, weight, bias, mask, out_mask, stride, padding, dilation,
          interleaved=False):
    out_size = conv_output_size(input.shape[2:], weight.shape[2:],
                                          stride, padding, dilation)
    return input.new_empty((input.shape[0], weight.shape[0], *out_size))


def _backward_fake(grad_out, input, weight, mask, out_mask, stride, padding,
                   dilation, output_mask, interleaved=False):
    shapes = (input.shape, weight.shape, (weight.shape[0], ))
    return tuple(
        input.new_empty(shape if need else (0, ))
        for shape, need in zip(shapes, output_mask))


def _setup_context(ctx, inputs, output):
    (input, weight, bias, mask, out_mask, stride, padding, dilation,
     interleaved) = inputs
    ctx.save_for_backward(input, weight, mask, out_mask)
    ctx.conv_args = (stride, padding, dilation)
    ctx.interleaved = interleaved
    ctx.has_bias = bias is not None


def _backward(ctx, grad_out):
    input, weight, mask, out_mask = ctx.saved_tensors
    needs = [
        ctx.needs_input_grad[0], ctx.needs_input_grad[1],
        ctx.has_bias and ctx.needs_input_grad[2]
    ]
    grads = torch.ops.mmlgc.dynamic_group_conv_backward(
        grad_out, input, weight, mask, out_mask, *ctx.conv_args, needs,
        ctx.interleaved)
    grads = [g if need else None for g, need in zip(grads, needs)]
    return (*grads, None, None, None, None, None, None)


if ext_available():
    torch.library.register_fake('mmlgc::dynamic_group_conv', _fake)
    torch.library.register_fake('mmlgc::dynamic_group_conv_backward',
                                _backward_fake)
    torch.library.register_autograd(
        'mmlgc::dynamic_group_conv', _backward, setup_context=_setup_context)
    torch.library.register_autograd('mmlgc::dynamic_group_conv_backward',
                                    no_double_backward)
