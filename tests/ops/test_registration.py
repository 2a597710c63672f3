"""Every mmlgc op has a CPU kernel, a fake kernel and, where nvcc exists
(CI), a CUDA kernel -- built, linked and registered even without a GPU."""
import os

import pytest
import torch

import mmlgc.ops  # noqa: F401  (registers the fake kernels and autograd)

OPS = [
    'gather_channels', 'gather_channels_backward', 'dynamic_group_conv',
    'dynamic_group_conv_backward', 'ragged_group_conv',
    'ragged_group_conv_backward'
]


def _cuda_build_expected():
    from torch.utils.cpp_extension import CUDA_HOME
    force = os.getenv('FORCE_CUDA')
    if force is not None:
        return force == '1'
    return torch.version.cuda is not None and CUDA_HOME is not None


@pytest.mark.parametrize('op', OPS)
def test_cpu_and_fake_kernels_are_registered(op):
    name = f'mmlgc::{op}'
    assert torch._C._dispatch_has_kernel_for_dispatch_key(name, 'CPU')
    assert torch._C._dispatch_has_kernel_for_dispatch_key(name, 'Meta') or (
        torch._library.simple_registry.singleton.find(name).fake_impl.kernel
        is not None)


@pytest.mark.skipif(not _cuda_build_expected(),
                    reason='CPU-only build (no nvcc or FORCE_CUDA=0)')
@pytest.mark.parametrize('op', OPS)
def test_cuda_kernels_are_compiled_and_registered(op):
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f'mmlgc::{op}',
                                                          'CUDA')
