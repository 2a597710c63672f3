"""Starting points as the references': MSGC's mask generators when the rest
of the backbone comes from a dense checkpoint, DGC's convs from scratch."""
import math

import pytest
import torch
from mmdet.models.backbones import ResNet
from mmengine.runner import save_checkpoint

from mmlgc.layers import DGCConv, MaskGenerator
from mmlgc.models import DGCResNet, MSGCResNet


def _pretrained(path):
    return dict(type='Pretrained', checkpoint=path)


@pytest.fixture
def dense_resnet18(tmp_path):
    """A dense ResNet-18 checkpoint with non-trivial residual branches (a
    trained network has no zeroed last norms)."""
    torch.manual_seed(0)
    dense = ResNet(depth=18, zero_init_residual=False)
    dense.init_weights()
    path = str(tmp_path / 'resnet18.pth')
    save_checkpoint({'state_dict': dense.state_dict()}, path)
    return path


def _open_fractions(model, x):
    """Per mask generator, the fraction of its eval masks that is open."""
    fractions = []
    handles = [
        m.register_forward_hook(
            lambda mod, args, out: fractions.append(out.mean().item()))
        for m in model.modules() if isinstance(m, MaskGenerator)
    ]
    with torch.no_grad():
        model.eval()(x)
    for handle in handles:
        handle.remove()
    return fractions


def test_msgc_generators_from_a_dense_checkpoint_start_as_the_reference(
        dense_resnet18):
    """The reference Kaiming-initialises every conv (normal, fan_out, ReLU),
    generators included, then loads the dense weights; the generators,
    absent from the checkpoint, keep that init (std 0.071 / all masks open
    with PyTorch's default init)."""
    torch.manual_seed(0)
    model = MSGCResNet(depth=18, init_cfg=_pretrained(dense_resnet18))
    model.init_weights()
    generator = model.layer1[0].mask_generator1
    expand, project = generator.layers[0], generator.layers[-1]
    # fan_out of a 1x1 conv is its output channels: 64 / 4 and 1 x 64.
    assert expand.weight.std().item() == pytest.approx(
        math.sqrt(2 / 16), rel=0.1)
    assert project.weight.std().item() == pytest.approx(
        math.sqrt(2 / 64), rel=0.1)
    assert project.bias.eq(2.0).all()
    torch.manual_seed(1)
    fractions = _open_fractions(model, torch.randn(8, 3, 64, 64))
    # Mostly open, as the reference's (0.81-1.0), but not all.
    assert min(fractions) < 1
    assert sum(fractions) / len(fractions) >= 0.81
    # The dense weights are the checkpoint's.
    dense = torch.load(dense_resnet18, weights_only=False)['state_dict']
    torch.testing.assert_close(model.layer3[1].conv2.weight,
                               dense['layer3.1.conv2.weight'])


def test_msgc_checkpoint_keeps_its_generators(tmp_path):
    trained = MSGCResNet(depth=18, base_channels=16, attention=True)
    trained.init_weights()
    with torch.no_grad():
        for name, param in trained.named_parameters():
            if 'generator' in name:
                param.normal_()
    path = str(tmp_path / 'msgc.pth')
    save_checkpoint({'state_dict': trained.state_dict()}, path)
    model = MSGCResNet(depth=18, base_channels=16, attention=True,
                       init_cfg=_pretrained(path))
    model.init_weights()
    loaded = model.state_dict()
    for key, value in trained.state_dict().items():
        torch.testing.assert_close(loaded[key], value, msg=key)


def test_dgc_convs_from_scratch_have_the_reference_per_head_spread():
    """Each of the reference's heads is its own ``[O/G, C, k, k]`` conv,
    Kaiming-initialised with fan_out ``O/G·k²``: ResNet-18's
    layer1.0.conv1 has std 0.118 (0.059 with the dense weight's fan_out)."""
    torch.manual_seed(0)
    model = DGCResNet(depth=18)
    model.init_weights()
    assert model.layer1[0].conv1.weight.std().item() == pytest.approx(
        0.118, rel=0.03)
    for name, conv in model.named_modules():
        if isinstance(conv, DGCConv):
            fan_out = (conv.out_channels // conv.heads *
                       conv.kernel_size[0] * conv.kernel_size[1])
            assert conv.weight.std().item() == pytest.approx(
                math.sqrt(2 / fan_out), rel=0.05), name
    # The stem stays a dense conv with mm*'s Kaiming init.
    assert model.conv1.weight.std().item() == pytest.approx(
        math.sqrt(2 / (64 * 49)), rel=0.05)
