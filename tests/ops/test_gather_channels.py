"""mmlgc::gather_channels: the C++ CPU kernel against the PyTorch reference.

The CUDA kernel implements the same op and is compiled in CI; it runs only
where a GPU exists (the CUDA cases below skip otherwise).
"""
import pytest
import torch

from mmlgc.ops import gather_channels, reference

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


def _inputs(dtype, device, per_sample, n=3, c=7, k=5, h=4, w=5):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, w, generator=g).to(dtype=dtype, device=device)
    if per_sample:
        index = torch.randint(0, c, (n, k), generator=g)
    else:
        index = torch.randint(0, c, (k, ), generator=g)
    index[..., 0] = index[..., 1]  # always at least one duplicate
    return x, index.to(device)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize(
    'dtype', [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize('per_sample', [True, False])
def test_forward_equals_reference(device, dtype, per_sample):
    x, index = _inputs(dtype, device, per_sample)
    out = gather_channels(x, index)
    full_index = index if per_sample else index.expand(x.shape[0], -1)
    assert torch.equal(out, reference.gather_channels(x, full_index))


@pytest.mark.parametrize('device', DEVICES)
def test_backward_equals_reference(device):
    x, index = _inputs(torch.float64, device, per_sample=True)
    grad = torch.randn(x.shape[0], index.shape[1], *x.shape[2:],
                       dtype=x.dtype, device=device)
    x1 = x.clone().requires_grad_()
    gather_channels(x1, index).backward(grad)
    x2 = x.clone().requires_grad_()
    reference.gather_channels(x2, index).backward(grad)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=0, atol=1e-12)


def test_gradcheck_and_gradgradcheck():
    x, index = _inputs(torch.float64, 'cpu', per_sample=True)
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda t: gather_channels(t, index), x)
    assert torch.autograd.gradgradcheck(lambda t: gather_channels(t, index),
                                        x)


def test_opcheck():
    """Schema, fake (meta) kernel, autograd registration, torch.compile."""
    x, index = _inputs(torch.float32, 'cpu', per_sample=True)
    torch.library.opcheck(torch.ops.mmlgc.gather_channels.default,
                          (x.requires_grad_(), index))
    grad = torch.randn(x.shape[0], index.shape[1], *x.shape[2:],
                       requires_grad=True)
    torch.library.opcheck(torch.ops.mmlgc.gather_channels_backward.default,
                          (grad, index, x.shape[1]))


def test_non_contiguous_input():
    x, index = _inputs(torch.float32, 'cpu', per_sample=True)
    x_nc = x.transpose(2, 3)
    assert torch.equal(
        gather_channels(x_nc, index), reference.gather_channels(x_nc, index))


def test_empty_selection():
    x, _ = _inputs(torch.float32, 'cpu', per_sample=True)
    index = torch.empty(x.shape[0], 0, dtype=torch.long)
    assert gather_channels(x, index).shape == (x.shape[0], 0, *x.shape[2:])


@pytest.mark.parametrize('bad_index, message', [
    (torch.tensor([[0, 7]] * 3), 'out of range'),
    (torch.tensor([[0, -1]] * 3), 'out of range'),
    (torch.tensor([[0, 1]] * 3, dtype=torch.int32), 'int64'),
    (torch.tensor([[0, 1]] * 2), r'shape \[N, K\]'),
])
def test_bad_index_is_a_clear_error(bad_index, message):
    x = torch.randn(3, 7, 2, 2)
    with pytest.raises(RuntimeError, match=message):
        gather_channels(x, bad_index)


def test_bad_input_rank_is_a_clear_error():
    with pytest.raises(RuntimeError, match=r'\[N, C, H, W\]'):
        gather_channels(torch.randn(3, 7, 2), torch.zeros(3, 1).long())


def test_fallback_to_reference_warns_once(monkeypatch):
    from mmlgc.ops import _ext_loader
    monkeypatch.setattr(_ext_loader, '_EXT_ERROR', ImportError('not built'))
    monkeypatch.setattr(_ext_loader, '_warned', False)
    x, index = _inputs(torch.float64, 'cpu', per_sample=True)
    x.requires_grad_()
    with pytest.warns(RuntimeWarning, match='not built'):
        out = gather_channels(x, index)
    assert torch.equal(out, reference.gather_channels(x, index))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        gather_channels(x, index).sum().backward()  # no second warning
    assert x.grad is not None
