"""Static learned groups: the masked training conv, its group layout and the
deployed ragged conv (exactness, folded reorders, state-dict round trips)."""
import pytest
import torch
import torch.nn.functional as F
from mmcv.cnn import fuse_conv_bn
from torch import nn

from mmlgc.complexity import collect_costs
from mmlgc.deploy import DeployableBackboneMixin
from mmlgc.layers import (ConnectionMaskedConv2d, GroupLayout,
                          RaggedGroupConv2d, fold_output_order,
                          replace_masked_convs)


class FixedMaskConv2d(ConnectionMaskedConv2d):
    """The simplest subclass: the mask is a buffer."""

    def __init__(self, *args, mask=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer('mask', mask.float())

    def connection_mask(self):
        return self.mask


def grouped_mask(out_channels, in_channels, groups, density=0.5, seed=0,
                 empty_group=False):
    """Random mask whose rows take ``groups`` distinct values (overlapping
    input sets, unequal group sizes), optionally one empty set."""
    gen = torch.Generator().manual_seed(seed)
    sets = torch.rand(groups, in_channels, generator=gen) < density
    sets[:, 0] |= ~sets.any(1)  # no accidental empty set
    if empty_group:
        sets[-1] = False
    group_of = torch.randint(groups, (out_channels, ), generator=gen)
    group_of[:groups] = torch.arange(groups)  # every group has a filter
    return sets[group_of]


def masked_conv(in_channels=6, out_channels=8, kernel_size=3, groups=3,
                bias=True, empty_group=False, seed=0, **kwargs):
    torch.manual_seed(seed)
    mask = grouped_mask(out_channels, in_channels, groups, seed=seed,
                        empty_group=empty_group)
    return FixedMaskConv2d(in_channels, out_channels, kernel_size,
                           bias=bias, mask=mask, **kwargs).double()


def test_layout_round_trip_and_order():
    mask = grouped_mask(10, 7, 4)
    layout = GroupLayout.from_mask(mask)
    assert torch.equal(layout.to_mask(7), mask.float())
    assert len(layout.in_index) == len(torch.unique(mask, dim=0))
    assert sorted(layout.filter_order.tolist()) == list(range(10))
    # groups ordered by their first filter; each group's filters share a row
    firsts = [int(o[0]) for o in layout.out_index]
    assert firsts == sorted(firsts)
    for ins, outs in zip(layout.in_index, layout.out_index):
        assert (mask[outs] == mask[outs[0]]).all()
        assert torch.equal(torch.nonzero(mask[outs[0]]).flatten(), ins)
    assert layout.connections == int(mask.sum())


def test_layout_rejects_non_matrix():
    with pytest.raises(ValueError, match=r'\[O, C\]'):
        GroupLayout.from_mask(torch.ones(2, 3, 1))


def test_masked_forward_and_macs():
    conv = masked_conv(padding=1, stride=2)
    x = torch.randn(2, 6, 9, 9, dtype=torch.float64)
    out = conv(x)
    expected = F.conv2d(x, conv.weight * conv.mask[:, :, None, None],
                        conv.bias, 2, 1)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    record = conv.last_cost
    spatial = 5 * 5
    assert record.dense == 9 * 6 * 8 * spatial + 8 * spatial
    assert torch.equal(record.dynamic,
                       torch.full((2, ),
                                  9. * int(conv.mask.sum()) * spatial +
                                  8 * spatial,
                                  dtype=record.dynamic.dtype))


def test_masked_conv_checks_mask_shape():
    conv = FixedMaskConv2d(4, 5, 1, mask=torch.ones(5, 3))
    with pytest.raises(ValueError, match='expected'):
        conv(torch.randn(1, 4, 3, 3))


def test_straight_through_mask_gradient_reaches_mask_source():
    logits = torch.zeros(8, 6, requires_grad=True)

    class SoftMask(ConnectionMaskedConv2d):

        def connection_mask(self):
            soft = logits.sigmoid()
            return (soft > 0.4).float() - soft.detach() + soft

    conv = SoftMask(6, 8, 3, padding=1)
    conv(torch.randn(1, 6, 5, 5)).square().sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


@pytest.mark.parametrize('kwargs', [
    dict(),
    dict(bias=False),
    dict(kernel_size=1),
    dict(stride=2, padding=1),
    dict(dilation=2, padding=2),
    dict(empty_group=True),
    dict(groups=1),
    dict(groups=8),
])
def test_ragged_matches_masked(kwargs):
    conv = masked_conv(**kwargs)
    deployed = RaggedGroupConv2d.from_conv(conv)
    x = torch.randn(3, 6, 10, 11, dtype=torch.float64)
    torch.testing.assert_close(deployed(x), conv(x), rtol=1e-10, atol=1e-10)
    assert deployed.connections == int(conv.mask.sum())
    assert deployed.last_cost.dense == conv.last_cost.dense
    assert torch.equal(deployed.last_cost.dynamic, conv.last_cost.dynamic)


def test_ragged_weight_holds_only_connections():
    conv = masked_conv(in_channels=16, out_channels=12, groups=4)
    deployed = RaggedGroupConv2d.from_conv(conv)
    assert deployed.weight.numel() == int(conv.mask.sum()) * 9
    assert len(deployed._in_sizes) == len(torch.unique(conv.mask, dim=0))


def _chain(first, second):
    return lambda x: second(F.relu(first(x)))


@pytest.mark.parametrize('consumer_kind', ['ragged', 'dense'])
def test_fold_output_order(consumer_kind):
    producer = masked_conv(6, 8, 1, groups=3, seed=1)
    if consumer_kind == 'ragged':
        consumer = masked_conv(8, 5, 3, groups=2, seed=2, padding=1)
        reference = _chain(producer, consumer)
        deployed_consumer = RaggedGroupConv2d.from_conv(consumer)
    else:
        consumer = nn.Conv2d(8, 5, 3, padding=1).double()
        reference = _chain(producer, consumer)
        deployed_consumer = nn.Conv2d(8, 5, 3, padding=1).double()
        deployed_consumer.load_state_dict(consumer.state_dict())
    deployed_producer = RaggedGroupConv2d.from_conv(producer)
    assert deployed_producer._reorder  # the test exercises a real reorder
    fold_output_order(deployed_producer, deployed_consumer)
    assert deployed_producer.output_index.numel() == 0
    x = torch.randn(2, 6, 7, 7, dtype=torch.float64)
    torch.testing.assert_close(
        _chain(deployed_producer, deployed_consumer)(x), reference(x),
        rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match='already folded'):
        fold_output_order(deployed_producer, deployed_consumer)


def test_fold_refuses_a_consumer_it_cannot_permute():
    producer = RaggedGroupConv2d.from_conv(masked_conv(6, 8, 1, seed=1))
    depthwise = nn.Conv2d(8, 8, 3, groups=8)
    with pytest.raises(TypeError, match='cannot fold'):
        fold_output_order(producer, depthwise)
    assert producer.output_index.numel() == 8  # untouched


def test_placeholder_takes_a_deployed_state_dict():
    deployed = RaggedGroupConv2d.from_conv(masked_conv(stride=2, padding=1))
    placeholder = RaggedGroupConv2d(6, 8, 3, 2, 1).double()
    x = torch.randn(1, 6, 8, 8, dtype=torch.float64)
    assert not torch.allclose(placeholder(x), deployed(x))
    placeholder.load_state_dict(deployed.state_dict())
    torch.testing.assert_close(placeholder(x), deployed(x), rtol=0, atol=0)
    assert placeholder.extra_repr() == deployed.extra_repr()


class TinyStaticBackbone(DeployableBackboneMixin, nn.Module):
    """masked 1x1 -> BN -> ReLU -> masked 3x3 -> BN -> ReLU -> dense 1x1:
    the pattern of a bottleneck with static groups."""

    def __init__(self, deploy=False):
        super().__init__()
        self.conv1 = masked_conv(6, 8, 1, bias=False, seed=3).float()
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = masked_conv(8, 10, 3, bias=False, seed=4,
                                 padding=1).float()
        self.bn2 = nn.BatchNorm2d(10)
        self.conv3 = nn.Conv2d(10, 4, 1)
        self.deploy = False
        if deploy:
            self.switch_to_deploy()

    def fold_group_orders(self):
        fold_output_order(self.conv1, self.conv2)
        fold_output_order(self.conv2, self.conv3)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.conv3(x)


def test_backbone_deploy_exact_and_reloadable():
    torch.manual_seed(0)
    model = TinyStaticBackbone()
    for bn in (model.bn1, model.bn2):  # non-trivial statistics to fold
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
    model.eval()
    x = torch.randn(2, 6, 9, 9)
    expected = model(x)
    masked_macs = collect_costs(model).dynamic
    model.switch_to_deploy()
    assert isinstance(model.conv1, RaggedGroupConv2d)
    assert model.conv1.output_index.numel() == 0  # folded
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(collect_costs(model).dynamic, masked_macs)
    # a deploy=True build (other random masks) loads the deployed weights
    torch.manual_seed(1)
    rebuilt = TinyStaticBackbone(deploy=True)
    rebuilt.load_state_dict(model.state_dict())
    torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)
    with pytest.raises(RuntimeError, match='inference only'):
        rebuilt.train()


def test_replace_masked_convs_placeholder():
    model = nn.Sequential(masked_conv(), nn.ReLU(),
                          nn.Sequential(masked_conv(8, 4)))
    names = replace_masked_convs(model, placeholder=True)
    assert names == ['0', '2.0']
    assert isinstance(model[2][0], RaggedGroupConv2d)
    assert model[2][0].weight.numel() == 0


def test_fuse_conv_bn_keeps_the_mask():
    """BN folding (mmcv's fuse_conv_bn) scales filters; the mask must still
    apply to the folded weight."""
    model = nn.Sequential(masked_conv().float(), nn.BatchNorm2d(8)).eval()
    model[1].running_var.uniform_(0.5, 2)
    x = torch.randn(1, 6, 5, 5)
    expected = model(x)
    fused = fuse_conv_bn(model)
    torch.testing.assert_close(fused(x), expected, rtol=1e-5, atol=1e-6)
