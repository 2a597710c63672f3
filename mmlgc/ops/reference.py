"""Pure-PyTorch definitions of the mmlgc ops.

The compiled kernels (C++ in ``csrc/``, Triton in ``triton_kernels/``) are
tested against these; they are also the readable specification of each op.
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch.nn.modules.utils import _pair


def dynamic_group_conv(input: torch.Tensor,
                       weight: torch.Tensor,
                       bias: Optional[torch.Tensor],
                       mask: torch.Tensor,
                       out_mask: Optional[torch.Tensor] = None,
                       stride=1,
                       padding=0,
                       dilation=1,
                       interleaved: bool = False) -> torch.Tensor:
    """The masked form the MSGC and DGC references train with: the input is
    replicated once per group, multiplied by that group's mask ``[N, G, C]``
    and convolved by one ``groups=G`` conv with the dense ``[O, C, kh, kw]``
    weight (memory x G, dense compute). ``interleaved``: group ``g`` holds
    output channels ``j * G + g`` instead of ``[g * O/G, (g + 1) * O/G)``
    (the groups' outputs channel-shuffled, DGC's order; weight rows and bias
    in output order). Output channels whose ``out_mask`` ``[N, O]`` entry is
    zero are zero (bias included). Differentiable in every argument, the
    masks included."""
    if interleaved:
        return as_group_major(dynamic_group_conv, input, weight, bias, mask,
                              out_mask, stride, padding, dilation)
    groups = mask.shape[1]
    replicated = (input.unsqueeze(1) * mask[:, :, :, None, None]).flatten(1, 2)
    out = F.conv2d(replicated, weight, bias, _pair(stride), _pair(padding),
                   _pair(dilation), groups)
    if out_mask is not None:
        out = torch.where(out_mask[:, :, None, None] != 0, out,
                          out.new_zeros(()))
    return out


def affine_relu_mean(input: torch.Tensor, scale: torch.Tensor,
                     shift: torch.Tensor, stride=1):
    """``y = relu(scale[c] * input + shift[c])`` (an eval BN -> ReLU,
    folded to one affine per channel) and its mean over ``H, W``:
    ``(y[:, :, ::stride_h, ::stride_w], mean [N, C])`` -- ``y`` at every
    stride-th row and column (what a strided 1x1 conv reads), the mean over
    all of it."""
    stride_h, stride_w = _pair(stride)
    out = torch.relu(input * scale[:, None, None] + shift[:, None, None])
    return out[:, :, ::stride_h, ::stride_w], out.mean((2, 3))


def as_group_major(contiguous, input, weight, bias, mask, out_mask, stride,
                   padding, dilation) -> torch.Tensor:
    """A dynamic group conv of *interleaved* groups computed by
    ``contiguous``, an implementation of contiguous ones (same arguments):
    weight rows, bias and ``out_mask`` shuffled to the group-major order,
    the output shuffled back."""
    groups = mask.shape[1]
    per_group = weight.shape[0] // groups
    weight = shuffle_channels(weight[None], per_group)[0]
    if bias is not None:
        bias = shuffle_channels(bias[None], per_group)[0]
    if out_mask is not None:
        out_mask = shuffle_channels(out_mask, per_group)
    return shuffle_channels(
        contiguous(input, weight, bias, mask, out_mask, stride, padding,
                   dilation), groups)


def shuffle_channels(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle of dim 1 (``C = groups * k``): channel
    ``g * k + j`` moves to ``j * groups + g``. Its inverse is the shuffle
    with ``k`` groups."""
    n, c = x.shape[:2]
    return x.reshape(n, groups, c // groups, *x.shape[2:]).transpose(
        1, 2).reshape(x.shape)


def ragged_group_conv(input: torch.Tensor,
                      weight: torch.Tensor,
                      bias: Optional[torch.Tensor],
                      in_index: torch.Tensor,
                      in_sizes: Sequence[int],
                      out_sizes: Sequence[int],
                      kernel_size,
                      stride=1,
                      padding=0,
                      dilation=1) -> torch.Tensor:
    """One ``F.conv2d`` per group: group ``g`` convolves the channels
    ``in_index[sum(in_sizes[:g]) : +in_sizes[g]]`` with its
    ``[out_sizes[g], in_sizes[g], kh, kw]`` block of the flat ``weight``; the
    groups' outputs are concatenated in order."""
    kh, kw = _pair(kernel_size)
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    outs, first_in, first_weight = [], 0, 0
    empty_size = None
    for c, o in zip(in_sizes, out_sizes):
        if c == 0 or o == 0:  # reads or writes nothing: zero (+ bias)
            if empty_size is None:
                # The output size as F.conv2d defines it (a one-channel
                # conv of zeros; this module imports torch alone), once.
                empty_size = F.conv2d(
                    input.new_zeros(1, 1, *input.shape[2:]),
                    input.new_zeros(1, 1, kh, kw), None, stride, padding,
                    dilation).shape[2:]
            outs.append(input.new_zeros(input.shape[0], o, *empty_size))
        else:
            block = weight[first_weight:first_weight + o * c * kh * kw]
            outs.append(
                F.conv2d(input[:, in_index[first_in:first_in + c]],
                         block.view(o, c, kh, kw), None, stride, padding,
                         dilation))
        first_in += c
        first_weight += o * c * kh * kw
    out = torch.cat(outs, 1)
    if bias is not None:
        out = out + bias[:, None, None]
    return out
