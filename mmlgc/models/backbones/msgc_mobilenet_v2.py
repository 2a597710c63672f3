"""MSGC MobileNetV2: mmdet's MobileNetV2 whose linear 1x1 projections are
G-head grouped dynamic convs (``docs/msgc.md``).

In each inverted residual, one mask generator (pooled block input, squeeze 4)
predicts ``[N, G, hidden]`` masks; head ``g`` of the projection reads the
depthwise output masked by ``mask[:, g]`` (times attention, if enabled). The
expansion and depthwise convs stay dense, but the cost of the hidden channels
no head reads is credited back, as in the reference ("bonus"). Parameter
names are mmdet's / mmpretrain's, so their MobileNetV2 checkpoints load with
only the generator keys missing.
"""
from typing import Optional

import torch.utils.checkpoint as cp
from mmdet.models.layers import InvertedResidual
from torch import Tensor

from ...complexity import ShapeOf, conv_macs
from ...layers import MSGCConv2d
from ...registry import MODELS
from ...utils.checks import (check_positive, check_positive_int,
                             check_unsupported)
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
            out = x
            if self.with_expand_conv:
                out = self.expand_conv(out)
            out = self.depthwise_conv(out)
            linear = self.linear_conv
            out = linear.conv(out, self._weighted(masks, attention, 1))
            if linear.with_norm:
                out = linear.norm(out)
            return x + self.drop_path(out) if self.with_res_shortcut else out

        if self.with_cp and x.requires_grad:
            out = cp.checkpoint(_inner_forward, x, use_reentrant=False)
        else:
            out = _inner_forward(x)
        self.defer_cost(self._report, ShapeOf(x), ShapeOf(out), masks,
                        attention, generator_macs)
        return out

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
        check_positive(owner, 'tau', tau)
        if generator_norm_cfg == 'same':
            generator_norm_cfg = kwargs.get('norm_cfg', dict(type='BN'))
        super().__init__(
            dict(
                heads=heads,
                attention=attention,
                squeeze=squeeze,
                gate_bias=gate_bias,
                tau=tau,
                generator_norm_cfg=generator_norm_cfg), **kwargs)
        self._setup_msgc(budget)
        self.init_deploy(deploy)
