"""The first-call self-check of the CUDA kernels, on CPU: a deliberately
wrong (or crashing) kernel is caught at the first call on a device, warns
once and hands every later call to the reference; a right kernel runs; the
environment switch turns the check off. (That the check's own cases pass
with the real Triton kernels is tested in the interpreter:
test_triton_kernels.py.)"""
import warnings

import pytest
import torch

from mmlgc.ops import cuda_kernels, reference
from mmlgc.ops.cuda_kernels import SELF_CHECK_ENV, SelfCheckedKernel


class CountingKernel:
    """The reference, optionally off by ``offset`` or raising."""

    def __init__(self, offset=0.0, raises=False):
        self.offset, self.raises, self.calls = offset, raises, 0

    def __call__(self, *args):
        self.calls += 1
        if self.raises:
            raise RuntimeError('illegal memory access')
        return reference.dynamic_group_conv(*args) + self.offset


def _checked(kernel):
    return SelfCheckedKernel('dynamic_group_conv', kernel,
                             reference.dynamic_group_conv,
                             cuda_kernels.dynamic_check_cases)


def _args():
    return cuda_kernels.dynamic_check_cases('cpu')[1]


@pytest.fixture(autouse=True)
def check_enabled(monkeypatch):
    monkeypatch.delenv(SELF_CHECK_ENV, raising=False)


@pytest.mark.parametrize('kernel', [
    CountingKernel(offset=1e-2),
    CountingKernel(raises=True),
], ids=['wrong', 'crashing'])
def test_a_bad_kernel_warns_once_and_the_reference_runs(kernel):
    checked, args = _checked(kernel), _args()
    with pytest.warns(RuntimeWarning, match='disagrees with the reference'):
        out = checked(*args)
    calls_after_check = kernel.calls
    assert torch.equal(out, reference.dynamic_group_conv(*args))
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no second warning
        for _ in range(3):
            out = checked(*args)
    assert torch.equal(out, reference.dynamic_group_conv(*args))
    assert kernel.calls == calls_after_check  # never again on this device


def test_a_right_kernel_runs_without_a_warning():
    kernel = CountingKernel()
    checked, args = _checked(kernel), _args()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        checked(*args)
        checked(*args)
    cases = len(cuda_kernels.dynamic_check_cases('cpu'))
    assert kernel.calls == cases + 2


def test_the_check_can_be_switched_off(monkeypatch):
    monkeypatch.setenv(SELF_CHECK_ENV, '0')
    kernel = CountingKernel(offset=1.0)
    checked, args = _checked(kernel), _args()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        out = checked(*args)
    assert kernel.calls == 1
    torch.testing.assert_close(out, reference.dynamic_group_conv(*args) + 1)


def test_the_check_runs_without_tf32_and_restores_the_switch():
    seen = []

    def kernel(*args):
        seen.append(torch.backends.cudnn.allow_tf32)
        return reference.dynamic_group_conv(*args)

    torch.backends.cudnn.allow_tf32 = True  # conftest restores it
    _checked(kernel)(*_args())
    assert seen[0] is False  # the check's cases
    assert seen[-1] is True  # the call itself
    assert torch.backends.cudnn.allow_tf32 is True


def test_ragged_check_cases_cover_an_empty_group():
    (case, ) = cuda_kernels.ragged_check_cases('cpu')
    assert 0 in case[4] and sum(case[4]) > case[0].shape[1]


def test_check_gpu_refuses_without_cuda(run_tool):
    proc = run_tool('tools/analysis/check_gpu.py', '--out', '/dev/null')
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert 'no CUDA device is visible' in proc.stderr
    assert 'test_triton_kernels.py' in proc.stderr
