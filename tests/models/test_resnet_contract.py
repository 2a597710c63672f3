"""mmdet's ResNet contract, held by every grouped ResNet in ResNet's place:
the arguments mmdet's own ResNet tests exercise (zero_init_residual,
conv_cfg, norm_eval, frozen_stages, out_indices, with_cp, style) act as
they do on ``mmdet.models.backbones.ResNet``, or are refused by name."""
import pytest
import torch
from mmdet.models.backbones import ResNet
from mmengine.runner import save_checkpoint
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmlgc.layers import DGCConv
from mmlgc.models import DGCResNet, FLGCResNet, MSGCResNet, SGCNNResNet

BACKBONES = [MSGCResNet, DGCResNet, SGCNNResNet, FLGCResNet]
BLOCKS = {
    MSGCResNet: ('MSGCBasicBlock', 'MSGCBottleneck'),
    DGCResNet: ('DGCBasicBlock', 'DGCBottleneck'),
    SGCNNResNet: ('SGCNNBasicBlock', 'SGCNNBottleneck'),
    FLGCResNet: ('FLGCBasicBlock', 'FLGCBottleneck'),
}
SMALL = dict(base_channels=16)


def _built(cls, depth=18, init=True, **kwargs):
    model = cls(depth=depth, **SMALL, **kwargs)
    if init:
        model.init_weights()
    return model


def _zero_norms(model):
    """Names of the norm weights that are all zero."""
    return {
        name
        for name, module in model.named_modules()
        if isinstance(module, _BatchNorm) and module.weight.eq(0).all()
    }


def _dense_checkpoint(tmp_path, depth):
    dense = ResNet(depth=depth, **SMALL, zero_init_residual=False)
    dense.init_weights()
    path = str(tmp_path / f'resnet{depth}.pth')
    save_checkpoint({'state_dict': dense.state_dict()}, path)
    return path


@pytest.mark.parametrize('depth', [18, 50])
@pytest.mark.parametrize('cls', BACKBONES, ids=lambda c: c.__name__)
def test_zero_init_residual_as_mmdet(cls, depth, tmp_path):
    """mmdet's default (True) zeroes the last norm of every residual branch
    (norm2 / norm3), the same norms as in mmdet's ResNet; False, or a
    checkpoint to start from, leaves them alone."""
    expected = _zero_norms(_built(ResNet, depth))
    assert expected and all(
        name.endswith('bn3' if depth == 50 else 'bn2') for name in expected)
    model = _built(cls, depth)
    assert _zero_norms(model) == expected
    for name in expected:
        assert model.get_submodule(name).bias.eq(0).all()
    assert not _zero_norms(_built(cls, depth, zero_init_residual=False))
    pretrained = dict(type='Pretrained',
                      checkpoint=_dense_checkpoint(tmp_path, depth))
    assert not _zero_norms(_built(cls, depth, init_cfg=pretrained))


@pytest.mark.parametrize('cls', BACKBONES, ids=lambda c: c.__name__)
def test_conv_cfg_that_the_grouped_convs_cannot_apply_is_refused(cls):
    with pytest.raises(NotImplementedError) as info:
        _built(cls, init=False, conv_cfg=dict(type='ConvWS'))
    message = str(info.value)
    assert f"{BLOCKS[cls][0]}: conv_cfg={{'type': 'ConvWS'}}" in message
    assert 'not supported' in message
    # A conv_cfg that builds mmdet's plain conv is what they replace.
    model = _built(cls, conv_cfg=dict(type='Conv2d'))
    assert type(model.conv1) is nn.Conv2d
    model(torch.randn(2, 3, 32, 32))


@pytest.mark.parametrize('cls', BACKBONES, ids=lambda c: c.__name__)
def test_norm_eval_from_scratch_trains_finite(cls):
    """mmdet's detection default norm_eval=True on a fresh backbone: the
    norms mmdet freezes are frozen and the outputs are finite. DGC's
    pre-activation norms (inside its convs) keep normalising with batch
    statistics: frozen at their initial values they overflow."""
    torch.manual_seed(0)
    model = _built(cls, norm_eval=True).train()
    pre_norms = {
        m.pre_norm
        for m in model.modules() if isinstance(m, DGCConv)
    }
    assert bool(pre_norms) == (cls is DGCResNet)
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            assert module.training == (module in pre_norms)
    outs = model(torch.randn(2, 3, 64, 64))
    assert len(outs) == 4 and all(torch.isfinite(o).all() for o in outs)


def test_dgc_frozen_pre_activation_norms_need_statistics(tmp_path):
    """``dgc_norm_eval=True`` freezes the pre-activation norms too: refused
    while they hold no statistics (fresh, or from a dense checkpoint), with
    what to set; accepted once a DGC checkpoint brings them."""
    pretrained = dict(type='Pretrained',
                      checkpoint=_dense_checkpoint(tmp_path, 18))
    for init_cfg in (None, pretrained):
        model = _built(DGCResNet, norm_eval=True, dgc_norm_eval=True,
                       init_cfg=init_cfg)
        with pytest.raises(RuntimeError) as info:
            model.train()
        assert ('DGCResNet: dgc_norm_eval=True with norm_eval=True'
                in str(info.value))
        assert 'Set dgc_norm_eval=False' in str(info.value)
    trained = _built(DGCResNet, norm_eval=False).train()
    trained(torch.randn(4, 3, 64, 64))  # running statistics
    path = str(tmp_path / 'dgc.pth')
    save_checkpoint({'state_dict': trained.state_dict()}, path)
    model = _built(DGCResNet, norm_eval=True, dgc_norm_eval=True,
                   init_cfg=dict(type='Pretrained', checkpoint=path))
    model.train()
    assert not model.layer2[0].conv1.pre_norm.training


@pytest.mark.parametrize('cls', BACKBONES, ids=lambda c: c.__name__)
def test_frozen_stages(cls):
    model = _built(cls, frozen_stages=1, norm_eval=False).train()
    frozen = [model.conv1, model.norm1, model.layer1]
    for module in frozen:
        for param in module.parameters():
            assert not param.requires_grad
        for norm in module.modules():
            if isinstance(norm, _BatchNorm):
                assert not norm.training
    assert all(p.requires_grad for p in model.layer2.parameters())
    model(torch.randn(2, 3, 32, 32))


@pytest.mark.parametrize('depth', [18, 50])
@pytest.mark.parametrize('cls', BACKBONES, ids=lambda c: c.__name__)
def test_out_indices_with_cp_and_style(cls, depth):
    expansion = 4 if depth == 50 else 1
    model = _built(cls, depth, out_indices=(0, 2), with_cp=True,
                   style='caffe', norm_eval=False).train()
    assert all(block.with_cp for layer in (model.layer1, model.layer4)
               for block in layer)
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    outs = model(x)
    assert [tuple(o.shape) for o in outs] == [
        (2, 16 * expansion, 16, 16), (2, 64 * expansion, 4, 4)]
    sum(o.sum() for o in outs).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    # caffe style: a Bottleneck strides in its 1x1 conv1, as mmdet's.
    block = model.layer2[0]
    reference = ResNet(depth=depth, **SMALL, style='caffe').layer2[0]
    assert block.conv1.stride == reference.conv1.stride
    assert block.conv2.stride == reference.conv2.stride
    if depth == 50:
        assert block.conv1.stride == (2, 2)


def test_generator_width_errors_name_the_backbone_and_the_users_value():
    """DGC halves squeeze below 80 input channels and MSGC's default depends
    on the block: the messages give the value the user set (or say it is the
    default) and the backbone's name."""
    with pytest.raises(ValueError) as info:
        DGCResNet(depth=18, base_channels=4, stem_channels=4, heads=2)
    assert str(info.value).startswith(
        'DGCResNet: squeeze=16 leaves the saliency generators no hidden '
        'channel for 4 input channels')
    assert str(info.value).endswith('squeeze must be at most 9')
    DGCResNet(depth=18, base_channels=4, stem_channels=4, heads=2, squeeze=9)
    with pytest.raises(ValueError) as info:
        MSGCResNet(depth=18, base_channels=4, stem_channels=2)
    assert str(info.value) == (
        'MSGCResNet: squeeze=4 (the default at depth 18) leaves the mask '
        'generators no hidden channel in blocks with 2 input channels: '
        'squeeze must be at most 2')
    MSGCResNet(depth=18, base_channels=4, stem_channels=2, squeeze=2)
