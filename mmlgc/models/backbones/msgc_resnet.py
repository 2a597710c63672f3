"""MSGC ResNet: mmdet's ResNet with middle-spectrum grouped dynamic convs.

Placement follows the MSGC reference (``docs/msgc.md``): in a BasicBlock,
conv1 reads a per-sample channel mask of the block input and conv2 is the
G-head grouped dynamic conv; in a Bottleneck, conv1 and conv3 read channel
masks and the 3x3 conv2 is G-head. All masks of a block come from its pooled
input. The stem and the downsample convs stay dense. Parameter names and
shapes are mmdet's (and torchvision's / mmpretrain's), so dense checkpoints
load with only the generator keys missing.
"""
import functools
from typing import Optional

import torch.utils.checkpoint as cp
from mmdet.models.backbones.resnet import BasicBlock, Bottleneck
from torch import Tensor

from ...complexity import (ShapeOf, conv_macs, conv_output_size,
                           downsample_macs)
from ...layers import MSGCConv2d
from ...registry import MODELS
from ...utils.checks import check_divides, check_positive_int
from .grouped_resnet import (GroupedBlockMixin, GroupedResNet,
                             grouped_arch_settings)
from .msgc_base import (DEFAULT_BUDGET, MSGCBackboneMixin, MSGCBlockMixin,
                        density, unread_fraction)


class _MSGCResBlockMixin(MSGCBlockMixin, GroupedBlockMixin):
    """MSGC convs in place of the block's convs (``conv2``, the 3x3, is the
    G-head one; the others read a plain channel mask) and their generators,
    all conditioned on the block input; mmdet's block arguments pass on.

    Args:
        heads: groups G of ``conv2``.
        attention: attention generators for the convs in ``attended``.
        squeeze: generator squeeze ratio (default ``default_squeeze``).
        gate_bias, tau, generator_norm_cfg: see :class:`MSGCResNet`.
    """

    replaced_by = 'the MSGC convs'
    _convs: tuple = ()
    #: Indices of the convs that get attention with ``attention=True``.
    attended: tuple = ()
    #: The reference's squeeze ratio for this block.
    default_squeeze: int = 4

    def __init__(self,
                 inplanes,
                 planes,
                 heads=4,
                 attention=False,
                 squeeze=None,
                 gate_bias=2.0,
                 tau=2 / 3,
                 generator_norm_cfg=dict(type='BN'),
                 **kwargs):
        self._check_heads(heads, planes, 'conv2')
        super().__init__(inplanes, planes, **kwargs)
        self.heads = heads
        self._replace_convs(self._convs, MSGCConv2d.from_conv)
        # {conv index: (its input channels, groups)}; conv2 is G-head.
        masks = {
            i: (getattr(self, name).in_channels, heads if i == 2 else 1)
            for i, name in enumerate(self._convs, 1)
        }
        attended = {i: masks[i] for i in self.attended} if attention else {}
        self._make_generators(inplanes, masks, attended,
                              squeeze or self.default_squeeze, gate_bias, tau,
                              generator_norm_cfg)

    def forward(self, x: Tensor) -> Tensor:
        # Generators run outside the checkpointed part so their cost keeps
        # its graph under with_cp.
        masks, attention, generator_macs = self._generate(x)
        inner = functools.partial(
            self._inner_forward, masks=masks, attention=attention)
        if self.with_cp and x.requires_grad:
            out = cp.checkpoint(inner, x, use_reentrant=False)
        else:
            out = inner(x)
        self.defer_cost(self._report, ShapeOf(x), ShapeOf(out), masks,
                        attention, generator_macs)
        return self.relu(out)


class MSGCBasicBlock(_MSGCResBlockMixin, BasicBlock):
    """BasicBlock: conv1 masked per input channel, conv2 G-head dynamic.

    With ``attention``, both convs get an attention generator, as in the
    reference's BasicBlock.
    """

    _convs = ('conv1', 'conv2')
    attended = (1, 2)

    def _inner_forward(self, x, masks, attention):
        out = self.conv1(x, self._weighted(masks, attention, 1),
                         masks[2].amax(1))
        out = self.relu(self.norm1(out))
        out = self.norm2(self.conv2(out, self._weighted(masks, attention, 2)))
        identity = x if self.downsample is None else self.downsample(x)
        out += identity  # in place, as mmdet's blocks
        return out

    def _report(self, x, out, masks, attention, generator_macs):
        size = out.shape[2:]
        inplanes, planes = x.shape[1], out.shape[1]
        dense1 = conv_macs(inplanes, planes, 3, size)
        dense2 = conv_macs(planes, planes, 3, size)
        att1 = inplanes * x.shape[2] * x.shape[3] if attention else 0
        att2 = self.heads * planes * size[0] * size[1] if attention else 0
        cost1 = density(masks[1]) * (dense1 + att1)
        cost2 = density(masks[2]) * (dense2 + att2)
        # conv1 outputs no head of conv2 reads are never computed.
        bonus = unread_fraction(masks[2].detach()) * cost1.detach()
        downsample = downsample_macs(self.downsample, x.shape, out.shape)
        self.report_cost(dense1 + dense2 + downsample,
                         cost1 + cost2 - bonus + generator_macs + downsample,
                         x.shape[0])


class MSGCBottleneck(_MSGCResBlockMixin, Bottleneck):
    """Bottleneck: conv1 and conv3 masked per input channel, the 3x3 conv2
    G-head dynamic; attention (optional) on conv2 only, as in the reference.
    """

    _convs = ('conv1', 'conv2', 'conv3')
    attended = (2, )
    default_squeeze = 8

    def _inner_forward(self, x, masks, attention):
        read_by_conv2, read_by_conv3 = masks[2].amax(1), masks[3][:, 0]
        out = self.relu(self.norm1(self.conv1(x, masks[1], read_by_conv2)))
        out = self.relu(
            self.norm2(
                self.conv2(out, self._weighted(masks, attention, 2),
                           read_by_conv3)))
        out = self.norm3(self.conv3(out, masks[3]))
        identity = x if self.downsample is None else self.downsample(x)
        out += identity  # in place, as mmdet's blocks
        return out

    def _report(self, x, out, masks, attention, generator_macs):
        inplanes, width = x.shape[1], self.planes
        size1 = conv_output_size(x.shape[2:], 1, self.conv1_stride, 0, 1)
        size2 = out.shape[2:]
        dense1 = conv_macs(inplanes, width, 1, size1)
        dense2 = conv_macs(width, width, 3, size2)
        dense3 = conv_macs(width, out.shape[1], 1, size2)
        # The attention multiply acts on conv2's input.
        att2 = self.heads * width * size1[0] * size1[1] if attention else 0
        cost1 = density(masks[1]) * dense1
        cost2 = density(masks[2]) * (dense2 + att2)
        cost3 = density(masks[3]) * dense3
        mask2, unread3 = masks[2].detach(), 1 - masks[3].detach()[:, 0]
        # conv1 outputs no head of conv2 reads, and conv2 outputs conv3 does
        # not read, are never computed. Per sample (the reference multiplies
        # batch means; per sample is what a sample really costs).
        bonus2 = unread_fraction(mask2) * cost1.detach()
        head_cost = (dense2 + att2) / self.heads
        bonus3 = sum(
            mask2[:, g].mean(1) * head_cost * part.mean(1)
            for g, part in enumerate(unread3.chunk(self.heads, dim=1)))
        downsample = downsample_macs(self.downsample, x.shape, out.shape)
        self.report_cost(
            dense1 + dense2 + dense3 + downsample,
            cost1 + cost2 + cost3 - bonus2 - bonus3 + generator_macs +
            downsample, x.shape[0])


@MODELS.register_module()
class MSGCResNet(MSGCBackboneMixin, GroupedResNet):
    """ResNet (depth 18/34/50/101/152) with MSGC blocks; mmdet ResNet's
    arguments and outputs, usable as an mmdet or mmpretrain backbone.

    Args:
        heads: groups G of the dynamic convs (default 4).
        attention: add MSGC's attention generators.
        squeeze: generator squeeze ratio; default 4 for BasicBlock and 8 for
            Bottleneck, as in the reference.
        gate_bias: initial bias of the mask logits (2.0: ~88% open).
        tau: temperature of the binary-concrete gate.
        generator_norm_cfg: norm in the generators' hidden layer; default
            the backbone's ``norm_cfg``. It acts on pooled ``N x C`` vectors,
            which a training-mode BN cannot normalise at detection batch sizes
            (2 per GPU; one image fails outright). The detection configs keep
            mmdet's ``norm_eval=True``, which puts these BNs in eval mode with
            every other BN of the backbone: the generators use the statistics
            learnt in classification pretraining (frozen). Pretraining runs
            them in train mode at batch >= 32 per GPU. ``SyncBN`` in
            ``norm_cfg`` syncs them too; ``None`` removes them.
        budget: the MAC budget the backbone trains with whenever an mmengine
            Runner trains it, with no hook in the config: keys ``target``
            (0.5), ``loss_weight`` (λ, 30), ``anneal_begin`` (0),
            ``anneal_end`` (0.5); a dict sets any of them, ``None`` trains
            without (:mod:`mmlgc.models.training_signal`).
            ``mmlgc.MACBudgetHook`` in the config replaces it.
        **kwargs: mmdet ``ResNet`` arguments (``depth``, ``out_indices``,
            ``frozen_stages``, ``norm_cfg``, ``norm_eval``, ``style``,
            ``with_cp``, ``init_cfg``, ...). ``dcn`` and ``plugins`` are not
            supported.

    A frozen stage (``frozen_stages``) keeps its gates in eval mode: its
    masks are deterministic and its cost still counts toward the budget.
    """

    arch_settings = grouped_arch_settings(MSGCBasicBlock, MSGCBottleneck)

    def __init__(self,
                 depth: int,
                 heads: int = 4,
                 attention: bool = False,
                 squeeze: Optional[int] = None,
                 gate_bias: float = 2.0,
                 tau: float = 2 / 3,
                 generator_norm_cfg='same',
                 budget: Optional[dict] = DEFAULT_BUDGET,
                 deploy: bool = False,
                 **kwargs):
        block, widths = self.check_arch(depth, kwargs)
        owner = type(self).__name__
        if squeeze is None:
            squeeze = block.default_squeeze
            given = f'squeeze={squeeze} (the default at depth {depth})'
        else:
            check_positive_int(owner, 'squeeze', squeeze)
            given = f'squeeze={squeeze}'
        check_divides(owner, 'heads', heads, widths, 'the stage widths')
        # The generators read each block's input: the stem's output for
        # layer1.0, a stage's output for every other block.
        narrowest = min(
            kwargs.get('stem_channels') or widths[0],
            widths[0] * block.expansion)
        if narrowest < squeeze:
            raise ValueError(
                f'{owner}: {given} leaves the mask generators no hidden '
                f'channel in blocks with {narrowest} input channels: squeeze '
                f'must be at most {narrowest}')
        super().__init__(
            depth,
            self.block_arguments(
                owner, kwargs, dict(type='BN', requires_grad=True),
                heads=heads, attention=attention, squeeze=squeeze,
                gate_bias=gate_bias, tau=tau,
                generator_norm_cfg=generator_norm_cfg), **kwargs)
        self._setup_msgc(budget)
        self.init_deploy(deploy)
