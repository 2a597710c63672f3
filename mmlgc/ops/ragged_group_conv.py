"""Ragged group conv: static groups of unequal sizes, possibly overlapping
input sets (deployed FLGC, SG-CNN and CondenseNet-style layers;
``docs/ops.md``). Work scales with ``sum_g in_sizes[g] * out_sizes[g]``.
"""
from typing import List, Optional, Sequence

import torch
from torch import Tensor
from torch.nn.modules.utils import _pair

from ..complexity import conv_output_size
from . import reference
from ._ext_loader import ext_available, no_double_backward, warn_fallback
from .dynamic_group_conv import CPU_KERNEL_DTYPES


def ragged_group_conv(input: Tensor,
                      weight: Tensor,
                      bias: Optional[Tensor],
                      in_index: Tensor,
                      in_sizes: Sequence[int],
                      out_sizes: Sequence[int],
                      kernel_size,
                      stride=1,
                      padding=0,
                      dilation=1) -> Tensor:
    """Grouped conv with unequal groups.

    Args:
        input: ``[N, C, H, W]``.
        weight: flat, the groups' ``[out_sizes[g], in_sizes[g], kh, kw]``
            blocks concatenated in group order (see :func:`pack_weights`).
        bias: ``[sum(out_sizes)]`` or None.
        in_index: int64 ``[sum(in_sizes)]``: the input channels of group 0,
            then of group 1, ...; sets may overlap and need not be sorted.
        in_sizes, out_sizes: per group, input channels read and output
            channels written. Outputs are in group order.
        kernel_size, stride, padding, dilation: as for ``F.conv2d``.

    Returns:
        ``[N, sum(out_sizes), H', W']``, contiguous.

    Gradients flow to ``input``, ``weight`` and ``bias``. Without the
    compiled extension (one warning) and, on CPU, for dtypes other than
    float32/float64, the reference (one ``F.conv2d`` per group) runs.
    """
    args = (input, weight, bias, in_index, list(in_sizes), list(out_sizes),
            _pair(kernel_size), _pair(stride), _pair(padding),
            _pair(dilation))
    if input.device.type == 'cpu' and input.dtype not in CPU_KERNEL_DTYPES:
        return reference.ragged_group_conv(*args)
    if not ext_available():
        warn_fallback()
        return reference.ragged_group_conv(*args)
    return torch.ops.mmlgc.ragged_group_conv(*args)


def pack_weights(blocks: Sequence[Tensor]) -> Tensor:
    """Flat weight of :func:`ragged_group_conv` from per-group
    ``[out_g, in_g, kh, kw]`` blocks."""
    return torch.cat([b.reshape(-1) for b in blocks])


def unpack_weights(weight: Tensor, in_sizes: Sequence[int],
                   out_sizes: Sequence[int], kernel_size) -> List[Tensor]:
    """Inverse of :func:`pack_weights`: views of the per-group blocks."""
    kh, kw = _pair(kernel_size)
    sizes = [o * c * kh * kw for c, o in zip(in_sizes, out_sizes)]
    return [
        block.view(o, c, kh, kw) for block, c, o in zip(
            weight.split(sizes), in_sizes, out_sizes)
    ]


def _fake(input, weight, bias, in_index, in_sizes, out_sizes, kernel_size,
          stride, padding, dilation):
    out_size = conv_output_size(input.shape[2:], kernel_size,
                                          stride, padding, dilation)
    return input.new_empty((input.shape[0], sum(out_sizes), *out_size))


def _backward_fake(grad_out, input, weight, in_index, in_sizes, out_sizes,
                   kernel_size, stride, padding, dilation, output_mask):
    shapes = (input.shape, weight.shape, (sum(out_sizes), ))
    return tuple(
        input.new_empty(shape if need else (0, ))
        for shape, need in zip(shapes, output_mask))


def _setup_context(ctx, inputs, output):
    input, weight, bias, in_index, *static = inputs
    ctx.save_for_backward(input, weight, in_index)
    ctx.static_args = static  # sizes, kernel_size, stride, padding, dilation
    ctx.has_bias = bias is not None


def _backward(ctx, grad_out):
    input, weight, in_index = ctx.saved_tensors
    needs = [
        ctx.needs_input_grad[0], ctx.needs_input_grad[1],
        ctx.has_bias and ctx.needs_input_grad[2]
    ]
    grads = torch.ops.mmlgc.ragged_group_conv_backward(
        grad_out, input, weight, in_index, *ctx.static_args, needs)
    grads = [g if need else None for g, need in zip(grads, needs)]
    return (*grads, None, None, None, None, None, None, None)


if ext_available():
    torch.library.register_fake('mmlgc::ragged_group_conv', _fake)
    torch.library.register_fake('mmlgc::ragged_group_conv_backward',
                                _backward_fake)
    torch.library.register_autograd(
        'mmlgc::ragged_group_conv', _backward, setup_context=_setup_context)
    torch.library.register_autograd('mmlgc::ragged_group_conv_backward',
                                    no_double_backward)
