"""Entry points of the Triton group convs, with the signatures of
:func:`mmlgc.ops.dynamic_group_conv` and :func:`mmlgc.ops.ragged_group_conv`.

On a GPU they are the CUDA kernels of ``mmlgc::dynamic_group_conv`` and
``mmlgc::ragged_group_conv`` (see :mod:`mmlgc.ops.cuda_kernels`). With
``TRITON_INTERPRET=1`` set before triton is imported they also take CPU
tensors: the tests run them that way.
"""
from typing import Optional, Sequence

from torch import Tensor
from torch.nn.modules.utils import _pair

from .. import reference
from .group_conv_kernel import KERNEL_DTYPES, TileConfig, launch
from .plan import (check_dynamic_args, check_ragged_args, conv_geometry,
                   plan_dynamic, plan_ragged)


def dynamic_group_conv(input: Tensor,
                       weight: Tensor,
                       bias: Optional[Tensor],
                       mask: Tensor,
                       out_mask: Optional[Tensor] = None,
                       stride=1,
                       padding=0,
                       dilation=1,
                       interleaved: bool = False,
                       *,
                       _tile: Optional[TileConfig] = None) -> Tensor:
    """See :func:`mmlgc.ops.dynamic_group_conv`. float64 runs the reference
    (the kernel covers float32, float16 and bfloat16). No autograd here:
    the op's registered backward differentiates it."""
    op = 'dynamic_group_conv'
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    check_dynamic_args(op, input, weight, bias, mask, out_mask)
    kernel_size = tuple(weight.shape[2:])
    out_size = conv_geometry(op, input, kernel_size, stride, padding,
                             dilation)
    if input.dtype not in KERNEL_DTYPES:
        return reference.dynamic_group_conv(input, weight, bias, mask,
                                            out_mask, stride, padding,
                                            dilation, interleaved)
    plan = plan_dynamic(mask, out_mask, weight.shape[0],
                        kernel_size[0] * kernel_size[1], interleaved)
    return launch(input, weight.contiguous().view(-1), _contiguous(bias),
                  plan, weight.shape[0], kernel_size, stride, padding,
                  dilation, out_size, _tile)


def ragged_group_conv(input: Tensor,
                      weight: Tensor,
                      bias: Optional[Tensor],
                      in_index: Tensor,
                      in_sizes: Sequence[int],
                      out_sizes: Sequence[int],
                      kernel_size,
                      stride=1,
                      padding=0,
                      dilation=1,
                      *,
                      _tile: Optional[TileConfig] = None) -> Tensor:
    """See :func:`mmlgc.ops.ragged_group_conv`; float64 runs the
    reference."""
    op = 'ragged_group_conv'
    kernel_size, stride = _pair(kernel_size), _pair(stride)
    padding, dilation = _pair(padding), _pair(dilation)
    in_sizes, out_sizes = [int(s) for s in in_sizes], [int(s) for s in
                                                      out_sizes]
    check_ragged_args(op, input, weight, bias, in_index, in_sizes, out_sizes,
                      kernel_size)
    out_size = conv_geometry(op, input, kernel_size, stride, padding,
                             dilation)
    if input.dtype not in KERNEL_DTYPES:
        return reference.ragged_group_conv(input, weight, bias, in_index,
                                           in_sizes, out_sizes, kernel_size,
                                           stride, padding, dilation)
    plan = plan_ragged(in_index.contiguous(), in_sizes, out_sizes,
                       input.shape[0], input.shape[1],
                       kernel_size[0] * kernel_size[1])
    return launch(input, weight.contiguous(), _contiguous(bias), plan,
                  sum(out_sizes), kernel_size, stride, padding, dilation,
                  out_size, _tile)


def _contiguous(t: Optional[Tensor]) -> Optional[Tensor]:
    return None if t is None else t.contiguous()
