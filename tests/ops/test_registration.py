"""Every mmlgc op has a kernel for CPU and CUDA and a fake kernel, even
without a GPU: the forward ops' C++ CPU kernels and Triton CUDA kernels, the
backward ops' device-generic ATen kernel."""
import pytest
import torch

import mmlgc.ops  # noqa: F401  (registers fake, autograd and CUDA kernels)
from mmlgc.ops import cuda_kernels

FORWARD_OPS = ['dynamic_group_conv', 'ragged_group_conv']
OPS = FORWARD_OPS + [f'{op}_backward' for op in FORWARD_OPS]


@pytest.mark.parametrize('op', OPS)
def test_cpu_cuda_and_fake_kernels_are_registered(op):
    name = f'mmlgc::{op}'
    for key in ('CPU', 'CUDA'):
        assert torch._C._dispatch_has_computed_kernel_for_dispatch_key(
            name, key), key
    assert torch._C._dispatch_has_kernel_for_dispatch_key(name, 'Meta') or (
        torch._library.simple_registry.singleton.find(name).fake_impl.kernel
        is not None)


@pytest.mark.parametrize('op', FORWARD_OPS)
def test_the_cuda_forward_kernel_is_the_triton_one(op):
    """The C++ library has no CUDA forward; the CUDA kernel is the one
    :mod:`mmlgc.ops.cuda_kernels` registers (self-check, then Triton)."""
    name = f'mmlgc::{op}'
    assert torch._C._dispatch_has_kernel_for_dispatch_key(name, 'CUDA')
    dump = torch._C._dispatch_dump(name)
    cuda_lines = [line for line in dump.splitlines()
                  if line.startswith('CUDA')]
    # Registered from Python (torch.library), not by the C++ library.
    assert cuda_lines and 'torch/library.py' in cuda_lines[0], dump
    assert callable(getattr(cuda_kernels, f'{op}_cuda'))


@pytest.mark.parametrize('op', [f'{op}_backward' for op in FORWARD_OPS])
def test_backward_is_device_generic(op):
    assert torch._C._dispatch_has_kernel_for_dispatch_key(
        f'mmlgc::{op}', 'CompositeExplicitAutograd')
