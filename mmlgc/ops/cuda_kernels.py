"""CUDA implementations of ``mmlgc::dynamic_group_conv`` and
``mmlgc::ragged_group_conv``: the Triton kernels of
:mod:`mmlgc.ops.triton_kernels`, behind a self-check.

The backward ops are the device-generic C++ ones (ATen convolution backward
on gathered channels: cuDNN on a GPU), registered for every backend in
``csrc/group_conv.cpp``.

No machine of this project has a GPU, so the kernels are verified by the
Triton interpreter and an ahead-of-time compile (see ``docs/gpu.md``). As a
last guard, the first call on each CUDA device of a process runs a few small
cases through the kernel and the reference; on a mismatch (or an error) it
warns once and runs the reference on that device from then on, so a wrong
kernel cannot silently change a result. ``MMLGC_GPU_SELF_CHECK=0`` turns
the check off.
"""
import os
import threading
import warnings
from typing import Callable, Dict, List

import torch

from . import reference

SELF_CHECK_ENV = 'MMLGC_GPU_SELF_CHECK'


def _triton():
    # Imported on the first CUDA call: importing triton takes about a
    # second, which a CPU-only process should not pay.
    from . import triton_kernels
    return triton_kernels


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    if got.shape != want.shape:
        return float('inf')
    if not want.numel():
        return 0.0
    scale = max(want.abs().max().item(), 1.0)
    return ((got.double() - want.double()).abs().max().item() / scale)


class SelfCheckedKernel:
    """Runs ``kernel`` on a device once it agreed with ``reference`` on
    ``cases`` there; otherwise ``reference``.

    ``cases(device)`` returns argument tuples; both sides run them in
    float32 with TF32 off, the reference in float64, and must agree to
    ``tolerance`` (relative to each output's largest magnitude). Devices
    are checked independently, each at its first call.
    """

    def __init__(self, name: str, kernel: Callable, reference: Callable,
                 cases: Callable[[torch.device], List[tuple]],
                 tolerance: float = 1e-4):
        self.name = name
        self.kernel = kernel
        self.reference = reference
        self.cases = cases
        self.tolerance = tolerance
        self._trusted: Dict[torch.device, bool] = {}
        self._lock = threading.Lock()

    def __call__(self, *args):
        if os.environ.get(SELF_CHECK_ENV, '1') == '0':
            return self.kernel(*args)
        device = args[0].device
        if device not in self._trusted:
            with self._lock:
                if device not in self._trusted:
                    self._trusted[device] = self._check(device)
        if self._trusted[device]:
            return self.kernel(*args)
        return self.reference(*args)

    def _check(self, device: torch.device) -> bool:
        problem = None
        tf32 = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False
        try:
            for i, args in enumerate(self.cases(device)):
                want = self.reference(*[
                    a.double() if torch.is_tensor(a) and a.is_floating_point()
                    else a for a in args
                ])
                try:
                    got = self.kernel(*args)
                except Exception as e:  # a broken kernel must not stop a run
                    problem = f'case {i} raised {type(e).__name__}: {e}'
                    break
                err = _relative_error(got, want)
                if not err <= self.tolerance:
                    problem = (f'case {i}: relative error {err:.3g} > '
                               f'{self.tolerance:g}')
                    break
        finally:
            torch.backends.cudnn.allow_tf32 = tf32
        if problem is None:
            return True
        warnings.warn(
            f'mmlgc: the Triton {self.name} kernel disagrees with the '
            f'reference on {device} ({problem}); {self.name} runs the '
            'slower pure-PyTorch reference on this device from now on. '
            'Please report this with the output of '
            f'tools/analysis/check_gpu.py. {SELF_CHECK_ENV}=0 skips the '
            'check.', RuntimeWarning, stacklevel=3)
        return False


def dynamic_check_cases(device) -> List[tuple]:
    """Small dynamic convs: 3x3 with padding, real-valued masks with an
    empty group, an out_mask, stride 2 and dilation 2 (a second sample
    reads an all-one mask), the same with interleaved groups, and a 1x1
    conv in channels_last."""
    gen = torch.Generator().manual_seed(17)

    def randn(*shape):
        return torch.randn(*shape, generator=gen)

    mask = (torch.rand(2, 4, 20, generator=gen) < 0.5) * randn(2, 4, 20)
    mask[0, 1] = 0
    mask[1, 3] = 1
    out_mask = torch.rand(2, 24, generator=gen) < 0.7
    pointwise_mask = (torch.rand(1, 2, 40, generator=gen) < 0.3).float()
    cases = [
        (randn(2, 20, 9, 11), randn(24, 20, 3, 3), randn(24), mask, None,
         [1, 1], [1, 1], [1, 1]),
        (randn(2, 20, 13, 10), randn(24, 20, 3, 3), None, mask, out_mask,
         [2, 2], [2, 1], [2, 2]),
        (randn(2, 20, 13, 10), randn(24, 20, 3, 3), randn(24), mask,
         out_mask, [2, 2], [2, 1], [2, 2], True),
        (randn(1, 40, 6, 7).contiguous(memory_format=torch.channels_last),
         randn(36, 40, 1, 1), randn(36), pointwise_mask, None, [1, 1],
         [0, 0], [1, 1]),
    ]
    return [tuple(a.to(device) if torch.is_tensor(a) else a for a in case)
            for case in cases]


def ragged_check_cases(device) -> List[tuple]:
    """Small ragged convs: unequal, overlapping groups, one reading no
    channel, 3x3 with stride and padding."""
    gen = torch.Generator().manual_seed(17)
    in_sizes, out_sizes = [7, 0, 12, 3], [5, 2, 20, 9]
    in_index = torch.cat(
        [torch.randperm(16, generator=gen)[:s] for s in in_sizes])
    weight = torch.randn(sum(i * o * 9 for i, o in zip(in_sizes, out_sizes)),
                         generator=gen)
    case = (torch.randn(2, 16, 10, 9, generator=gen), weight,
            torch.randn(sum(out_sizes), generator=gen), in_index, in_sizes,
            out_sizes, [3, 3], [2, 1], [1, 1], [1, 1])
    return [tuple(a.to(device) if torch.is_tensor(a) else a for a in case)]


def _dynamic_kernel(*args):
    return _triton().dynamic_group_conv(*args)


def _ragged_kernel(*args):
    return _triton().ragged_group_conv(*args)


checked_dynamic_group_conv = SelfCheckedKernel(
    'dynamic_group_conv', _dynamic_kernel, reference.dynamic_group_conv,
    dynamic_check_cases)
checked_ragged_group_conv = SelfCheckedKernel(
    'ragged_group_conv', _ragged_kernel, reference.ragged_group_conv,
    ragged_check_cases)


# The argument checks come first: a CPU tensor among CUDA ones is the
# caller's error, to be reported as such, not a case for the self-check.
def dynamic_group_conv_cuda(input, weight, bias, mask, out_mask, stride,
                            padding, dilation, interleaved=False):
    _triton().plan.check_dynamic_args('dynamic_group_conv', input, weight,
                                      bias, mask, out_mask)
    return checked_dynamic_group_conv(input, weight, bias, mask, out_mask,
                                      stride, padding, dilation, interleaved)


def ragged_group_conv_cuda(input, weight, bias, in_index, in_sizes,
                           out_sizes, kernel_size, stride, padding,
                           dilation):
    _triton().plan.check_ragged_args('ragged_group_conv', input, weight, bias,
                                     in_index, in_sizes, out_sizes,
                                     kernel_size)
    return checked_ragged_group_conv(input, weight, bias, in_index, in_sizes,
                                     out_sizes, kernel_size, stride, padding,
                                     dilation)


def register() -> None:
    """Makes the Triton kernels the CUDA implementations of the forward
    ops (the schemas come from the compiled ``mmlgc._ext``)."""
    torch.library.register_kernel('mmlgc::dynamic_group_conv', 'cuda',
                                  dynamic_group_conv_cuda)
    torch.library.register_kernel('mmlgc::ragged_group_conv', 'cuda',
                                  ragged_group_conv_cuda)
