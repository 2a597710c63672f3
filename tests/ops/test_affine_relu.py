"""mmlgc::affine_relu_mean (eval BN -> ReLU -> global average pool in one
pass) against its reference and an eval BatchNorm2d, its fallbacks and its
argument errors."""
import pytest
import torch
import torch.nn.functional as F

from mmlgc.ops import affine_relu_mean, ext_available, reference

pytestmark = pytest.mark.skipif(not ext_available(),
                                reason='needs the compiled mmlgc._ext')


def _args(n, c, h, w, dtype, layout='contiguous', seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=gen, dtype=dtype)
    if layout == 'channels_last':
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == 'strided':
        x = torch.cat([x, x], 3)[..., ::2]
    scale = torch.randn(c, generator=gen, dtype=dtype)  # negative ones too
    shift = torch.randn(c, generator=gen, dtype=dtype)
    return x, scale, shift


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('shape, layout', [
    ((1, 3, 5, 7), 'contiguous'),  # fewer pixels than one vector of sums
    ((2, 5, 9, 16), 'channels_last'),
    ((3, 4, 17, 13), 'strided'),
    ((1, 2, 1, 1), 'contiguous'),
    ((2, 3, 0, 4), 'contiguous'),  # no pixels: the mean is NaN, as torch's
])
@pytest.mark.parametrize('stride', [1, 2, (3, 2)])
def test_matches_reference(shape, layout, dtype, stride):
    args = _args(*shape, dtype, layout)
    out, mean = affine_relu_mean(*args, stride=stride)
    ref_out, ref_mean = reference.affine_relu_mean(*args, stride=stride)
    tol = dict(atol=1e-6, rtol=1e-6) if dtype == torch.float32 else {}
    torch.testing.assert_close(out, ref_out, **tol)
    torch.testing.assert_close(mean, ref_mean, equal_nan=True, **tol)
    assert out.is_contiguous() and mean.shape == shape[:2]
    assert (out >= 0).all()


def test_is_an_eval_batch_norm_then_relu_then_pool():
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(6).eval()
    with torch.no_grad():
        for t in (bn.weight, bn.bias, bn.running_mean):
            t.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 6, 8, 5)
    scale = torch.rsqrt(bn.running_var + bn.eps) * bn.weight
    shift = bn.bias - bn.running_mean * scale
    with torch.no_grad():
        out, mean = affine_relu_mean(x, scale, shift)
        want = F.relu(bn(x))
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(mean, want.mean((2, 3)))


def test_gradients_take_the_reference():
    x, scale, shift = _args(2, 3, 4, 4, torch.float64)
    x.requires_grad_()
    out, mean = affine_relu_mean(x, scale, shift)
    (grad, ) = torch.autograd.grad((out.sum() + mean.sum()), x)
    ref_out, ref_mean = reference.affine_relu_mean(x, scale, shift)
    (want, ) = torch.autograd.grad((ref_out.sum() + ref_mean.sum()), x)
    torch.testing.assert_close(grad, want)


@pytest.mark.parametrize('stride', [(1, 1), (2, 2)])
def test_opcheck_schema_and_fake(stride):
    torch.library.opcheck(torch.ops.mmlgc.affine_relu_mean.default,
                          (*_args(2, 3, 5, 5, torch.float32), stride),
                          test_utils=('test_schema', 'test_faketensor'))


def test_stride_returns_what_a_strided_pointwise_conv_reads():
    """A 1x1 conv of stride s reads rows and columns 0, s, 2s, ...: with
    the stride, the op returns those only (the mean still over all)."""
    x, scale, shift = _args(1, 4, 9, 8, torch.float64)
    weight = torch.randn(5, 4, 1, 1, dtype=torch.float64)
    full, mean = affine_relu_mean(x, scale, shift)
    sub, sub_mean = affine_relu_mean(x, scale, shift, stride=2)
    assert sub.shape == (1, 4, 5, 4)
    torch.testing.assert_close(F.conv2d(sub, weight),
                               F.conv2d(full, weight, stride=2))
    torch.testing.assert_close(sub_mean, mean)


@pytest.mark.parametrize('change, match', [
    (lambda x, s, b: (x[0], s, b), 'expected input'),
    (lambda x, s, b: (x, s[:-1], b), 'scale must be'),
    (lambda x, s, b: (x, s, b.double()), 'shift has dtype'),
    (lambda x, s, b: (x.half(), s.half(), b.half()), 'float32 and float64'),
    (lambda x, s, b: (x, s, b, (0, 1)), 'stride must be'),
])
def test_malformed_arguments_are_clear_errors(change, match):
    args = change(*_args(1, 3, 4, 4, torch.float32))
    with pytest.raises(RuntimeError, match=match):
        torch.ops.mmlgc.affine_relu_mean(*args)
