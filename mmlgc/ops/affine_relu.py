"""An eval-mode BN -> ReLU -> global average pool in one pass: DGC's
pre-activation and the input of its saliency generators (``docs/ops.md``)."""
from typing import Tuple

import torch
from torch import Tensor
from torch.nn.modules.utils import _pair

from . import reference
from ._ext_loader import ext_available

# dtypes the C++ CPU kernel implements; others run the reference.
CPU_KERNEL_DTYPES = (torch.float32, torch.float64)


def affine_relu_mean(input: Tensor, scale: Tensor, shift: Tensor,
                     stride=1) -> Tuple[Tensor, Tensor]:
    """``(y[:, :, ::stride_h, ::stride_w], y.mean((2, 3)))`` with ``y =
    relu(scale[c] * input + shift[c])``, ``input`` ``[N, C, H, W]``,
    ``scale`` and ``shift`` ``[C]``. A stride returns ``y`` where a strided
    1x1 conv reads it (the mean is still over all of ``y``): the kernel then
    writes a quarter of it (stride 2).

    The compiled CPU kernel reads ``input`` once and writes ``y`` once
    (unfused, the norm, the ReLU and the pool read it three times and the
    norm writes a fresh buffer). Elsewhere -- other devices and dtypes,
    gradients needed, a trace, no compiled extension -- the reference
    (:func:`mmlgc.ops.reference.affine_relu_mean`) runs; it is the
    definition, and equal up to float rounding.
    """
    if (input.device.type == 'cpu' and input.dtype in CPU_KERNEL_DTYPES
            and ext_available() and not torch.jit.is_tracing()
            and not (torch.is_grad_enabled() and any(
                t.requires_grad for t in (input, scale, shift)))):
        return torch.ops.mmlgc.affine_relu_mean(input, scale, shift,
                                                _pair(stride))
    return reference.affine_relu_mean(input, scale, shift, stride)


def _fake(input, scale, shift, stride=(1, 1)):
    n, c, h, w = input.shape
    size = (-(-h // stride[0]), -(-w // stride[1]))  # ceil
    return input.new_empty((n, c) + size), input.new_empty((n, c))


if ext_available():
    torch.library.register_fake('mmlgc::affine_relu_mean', _fake)
