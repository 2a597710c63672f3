"""MSGC MobileNetV2: mmdet's MobileNetV2 whose linear 1x1 projections are
G-head grouped dynamic convs (``docs/msgc.md``).

In each inverted residual, one mask generator (pooled block input, squeeze 4)
predicts ``[N, G, hidden]`` masks; head ``g`` of the projection reads the
depthwise output masked by ``mask[:, g]`` (times attention, if enabled). The
expansion and depthwise convs are the dense ones, and the cost of the hidden
channels no head reads is credited back, as in the reference ("bonus"); in
sparse eval (deploy) blocks with an expansion do not compute them
(:func:`read_hidden_only`).
Parameter names are mmdet's / mmpretrain's, so their MobileNetV2 checkpoints
load with only the generator keys missing.
"""
from typing import Optional

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import ConvModule
from mmdet.models.layers import InvertedResidual
from torch import Tensor, nn

from ...complexity import ShapeOf, conv_macs, conv_output_size
from ...layers import MSGCConv2d
from ...layers.norms import eval_batch_norm_affine, is_eval_batch_norm
from ...ops.plans import plannable
from ...registry import MODELS
from ...utils.checks import check_positive_int, check_unsupported
from .grouped_mobilenet_v2 import GroupedMobileNetV2
from .msgc_base import (DEFAULT_BUDGET, MSGCBackboneMixin, MSGCBlockMixin,
                        density, unread_fraction)


class MSGCInvertedResidual(MSGCBlockMixin, InvertedResidual):
    """Inverted residual whose ``linear_conv`` is a G-head dynamic conv over
    the hidden channels."""

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 mid_channels: int,
                 heads: int = 4,
                 attention: bool = False,
                 squeeze: int = 4,
                 gate_bias: float = 2.0,
                 tau: float = 2 / 3,
                 generator_norm_cfg: Optional[dict] = dict(type='BN'),
                 se_cfg=None,
                 **kwargs):
        check_unsupported(type(self).__name__,
                          'the MSGC convs replace the convs they would modify',
                          se_cfg=se_cfg)
        self._check_heads(heads, out_channels, 'linear_conv')
        super().__init__(in_channels, out_channels, mid_channels, **kwargs)
        self.heads = heads
        self.linear_conv.conv = MSGCConv2d.from_conv(self.linear_conv.conv)
        masks = {1: (mid_channels, heads)}
        self._make_generators(in_channels, masks, masks if attention else {},
                              squeeze, gate_bias, tau, generator_norm_cfg)

    def forward(self, x: Tensor) -> Tensor:
        masks, attention, generator_macs = self._generate(x)

        def _inner_forward(x):
            linear = self.linear_conv
            if self._reads_sparsely(linear.conv, masks[1], x):
                out = read_hidden_only(x, self.expand_conv,
                                       self.depthwise_conv, masks[1])
            else:
                out = x
                if self.with_expand_conv:
                    out = self.expand_conv(out)
                out = self.depthwise_conv(out)
            out = linear.conv(out, self._weighted(masks, attention, 1))
            if linear.with_norm:
                out = linear.norm(out)
            if not self.with_res_shortcut:
                return out
            out = self.drop_path(out)
            out += x  # in place: a fresh output, no new buffer
            return out

        if self.with_cp and x.requires_grad:
            out = cp.checkpoint(_inner_forward, x, use_reentrant=False)
        else:
            out = _inner_forward(x)
        self.defer_cost(self._report, ShapeOf(x), ShapeOf(out), masks,
                        attention, generator_macs)
        return out

    def _reads_sparsely(self, conv: MSGCConv2d, mask: Tensor,
                        x: Tensor) -> bool:
        """Where the projection runs sparsely (its own rule), so hidden
        channels no head reads need not exist. Not in a block without an
        expansion: its hidden channels are the block's input, and leaving
        some out would save only depthwise MACs, fewer than the gathers
        cost (MobileNetV2's first block ran 1.8x slower for it)."""
        expand = self.expand_conv.conv if self.with_expand_conv else None
        return (expand is not None and conv.runs_sparse(mask)
                and plannable(x) and _plain(self.depthwise_conv)
                and _plain(self.expand_conv) and expand.kernel_size == (1, 1)
                and expand.stride == (1, 1) and expand.groups == 1)

    def _report(self, x, out, masks, attention, generator_macs):
        hidden = self.depthwise_conv.conv.out_channels
        size = out.shape[2:]
        hw_out = size[0] * size[1]
        expand = (conv_macs(x.shape[1], hidden, 1, x.shape[2:])
                  if self.with_expand_conv else 0)
        depthwise = conv_macs(hidden, hidden, 3, size, groups=hidden)
        # The reference does not count the projection's BN.
        project = conv_macs(hidden, out.shape[1], 1, size, norm=False)
        att = self.heads * hidden * hw_out if attention else 0
        cost = density(masks[1]) * (project + att)
        # Hidden channels no head reads need neither expansion nor depthwise.
        bonus = unread_fraction(masks[1].detach()) * (expand + depthwise)
        self.report_cost(expand + depthwise + project,
                         expand + depthwise + cost - bonus + generator_macs,
                         x.shape[0])


def _plain(module: ConvModule) -> bool:
    """A conv -> [eval BN or folded] -> elementwise activation ConvModule,
    whose output channels can be computed for a subset alone."""
    norm = module.norm if module.with_norm else None
    return (module.order == ('conv', 'norm', 'act')
            and not module.with_explicit_padding
            and not isinstance(module.conv.padding, str)
            and (norm is None or isinstance(norm, nn.Identity)
                 or is_eval_batch_norm(norm)))


def _folded_rows(module: ConvModule, index: Tensor):
    """The conv weight and bias of output channels ``index``, an eval BN
    folded in: ``module(x)[:, index]`` is the activation of the conv with
    them."""
    conv = module.conv
    weight = conv.weight.index_select(0, index)
    bias = (conv.bias.index_select(0, index) if conv.bias is not None else
            weight.new_zeros(index.numel()))
    norm = module.norm if module.with_norm else None
    if is_eval_batch_norm(norm):
        scale, shift = (t.index_select(0, index)
                        for t in eval_batch_norm_affine(norm))
        weight = weight * scale.view(-1, 1, 1, 1)
        bias = bias * scale + shift
    return weight, bias


def _activate(module: ConvModule, x: Tensor) -> Tensor:
    return module.activate(x) if module.with_activation else x


def read_hidden_only(x: Tensor, expand: ConvModule, depthwise: ConvModule,
                     mask: Tensor) -> Tensor:
    """The depthwise output of an inverted residual on the hidden channels
    some head reads (``mask`` ``[N, G, hidden]``), zeros elsewhere: the
    expansion (a 1x1 conv) and depthwise convs computed for those channels
    only (for a batch, their union over the images). Exact where the
    projection reads: every other channel is masked out.

    The hidden channels are computed channels-last: the expansion as one
    GEMM whose rows are pixels, so its output is channels-last for free, and
    ATen's depthwise conv on a channels-last subset measured about twice as
    fast as on the NCHW one (whose odd channel counts it handles poorly)."""
    read = mask.ne(0).any(1).any(0).nonzero().flatten()
    conv = depthwise.conv
    full = x.new_zeros((x.shape[0], conv.out_channels) + conv_output_size(
        x.shape[2:], conv.kernel_size, conv.stride, conv.padding,
        conv.dilation))
    if read.numel() == 0:  # every gate closed: the projection reads nothing
        return full
    n, c, h, w = x.shape
    weight, bias = _folded_rows(expand, read)
    pixels = torch.matmul(x.reshape(n, c, h * w).transpose(1, 2),
                          weight.view(read.numel(), c).t())
    pixels += bias
    hidden = _activate(expand, pixels.view(n, h, w, -1).permute(0, 3, 1, 2))
    weight, bias = _folded_rows(depthwise, read)
    out = _activate(depthwise, F.conv2d(hidden, weight, bias, conv.stride,
                                        conv.padding, conv.dilation,
                                        read.numel()))
    return full.index_copy_(1, read, out.contiguous())


@MODELS.register_module()
class MSGCMobileNetV2(MSGCBackboneMixin, GroupedMobileNetV2):
    """MobileNetV2 with MSGC projections; mmdet MobileNetV2's arguments
    (``widen_factor``, ``out_indices``, ``frozen_stages``, ``norm_cfg``,
    ``act_cfg``, ``norm_eval``, ``with_cp``, ``init_cfg``) and outputs.
    Loads mmdet MobileNetV2 and torchvision ``mobilenet_v2`` state dicts
    (renamed on load, :mod:`~mmlgc.models.backbones.grouped_mobilenet_v2`).

    Args:
        heads: groups G of the projections (default 4).
        attention: add MSGC's attention generators.
        squeeze: generator squeeze ratio (4, as in the reference).
        gate_bias, tau, generator_norm_cfg, budget, deploy: as in
            :class:`MSGCResNet`.
    """

    block_type = MSGCInvertedResidual

    def __init__(self,
                 heads: int = 4,
                 attention: bool = False,
                 squeeze: int = 4,
                 gate_bias: float = 2.0,
                 tau: float = 2 / 3,
                 generator_norm_cfg='same',
                 budget: Optional[dict] = DEFAULT_BUDGET,
                 deploy: bool = False,
                 **kwargs):
        owner = type(self).__name__
        check_positive_int(owner, 'heads', heads)
        check_positive_int(owner, 'squeeze', squeeze)
        super().__init__(
            self.block_arguments(
                owner, kwargs, dict(type='BN'), heads=heads,
                attention=attention, squeeze=squeeze, gate_bias=gate_bias,
                tau=tau, generator_norm_cfg=generator_norm_cfg), **kwargs)
        self._setup_msgc(budget)
        self.init_deploy(deploy)
