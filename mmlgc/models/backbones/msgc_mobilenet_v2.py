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
import re
from typing import Dict, Optional

import torch.utils.checkpoint as cp
from mmdet.models.backbones.mobilenet_v2 import MobileNetV2
from mmdet.models.layers import InvertedResidual
from torch import Tensor, nn

from ...complexity import ShapeOf, conv_macs
from ...layers import MSGCConv2d
from ...ops.reference import conv_output_size
from ...registry import MODELS
from ...utils.checks import (check_positive, check_positive_int,
                             check_unsupported)
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


def torchvision_to_mmdet_keys(state_dict: Dict, prefix: str = '') -> Dict:
    """Rename a torchvision ``mobilenet_v2`` state dict to mmdet's
    MobileNetV2 names (``features.N`` -> ``conv1`` / ``layerL.B`` /
    ``conv2``; the classifier is dropped). Other keys pass unchanged.

    The MSGC reference starts ImageNet training from torchvision's weights;
    this lets ``init_cfg=dict(type='Pretrained',
    checkpoint='torchvision://mobilenet_v2')`` do the same.
    """
    blocks = [(layer, index)
              for layer, (_, _, num, _) in enumerate(
                  MobileNetV2.arch_settings, 1) for index in range(num)]
    last = len(blocks) + 1
    converted = {}
    for key, value in state_dict.items():
        match = re.fullmatch(re.escape(prefix) + r'features\.(\d+)\.(.*)', key)
        if match is None:
            if not key.startswith(prefix + 'classifier.'):
                converted[key] = value
            continue
        feature, rest = int(match[1]), match[2]
        if feature in (0, last):  # ConvBNReLU: 0 conv, 1 bn
            name = 'conv1' if feature == 0 else 'conv2'
            part, tail = rest.split('.', 1)
            new = f'{name}.{"conv" if part == "0" else "bn"}.{tail}'
        else:
            layer, index = blocks[feature - 1]
            # conv.[0 expand (t != 1)], dw, linear conv, linear bn.
            names = (['depthwise_conv', 'linear_conv']
                     if layer == 1 else
                     ['expand_conv', 'depthwise_conv', 'linear_conv'])
            _, part, tail = rest.split('.', 2)
            part = int(part)
            if part < len(names) - 1:  # ConvBNReLU: .0 conv, .1 bn
                sub, tail = tail.split('.', 1)
                new = f'{names[part]}.{"conv" if sub == "0" else "bn"}.{tail}'
            else:  # the projection: a bare conv, then its BN
                kind = 'conv' if part == len(names) - 1 else 'bn'
                new = f'linear_conv.{kind}.{tail}'
            new = f'layer{layer}.{index}.{new}'
        converted[prefix + new] = value
    return converted


def _convert_torchvision_keys(module, state_dict, prefix, *args):
    if any(k.startswith(prefix + 'features.') for k in state_dict):
        converted = torchvision_to_mmdet_keys(state_dict, prefix)
        state_dict.clear()
        state_dict.update(converted)


class InvertedResidualLayers:
    """mmdet ``MobileNetV2.make_layer`` building the method's block
    (``block_type``) with the backbone's ``_block_kwargs``."""

    block_type: type

    def make_layer(self, out_channels, num_blocks, stride, expand_ratio):
        layers = []
        for i in range(num_blocks):
            layers.append(
                self.block_type(
                    self.in_channels,
                    out_channels,
                    mid_channels=int(round(self.in_channels * expand_ratio)),
                    stride=stride if i == 0 else 1,
                    with_expand_conv=expand_ratio != 1,
                    conv_cfg=self.conv_cfg,
                    norm_cfg=self.norm_cfg,
                    act_cfg=self.act_cfg,
                    with_cp=self.with_cp,
                    **self._block_kwargs))
            self.in_channels = out_channels
        return nn.Sequential(*layers)


@MODELS.register_module()
class MSGCMobileNetV2(InvertedResidualLayers, MSGCBackboneMixin, MobileNetV2):
    """MobileNetV2 with MSGC projections; mmdet MobileNetV2's arguments
    (``widen_factor``, ``out_indices``, ``frozen_stages``, ``norm_cfg``,
    ``act_cfg``, ``norm_eval``, ``with_cp``, ``init_cfg``) and outputs.
    Loads mmdet MobileNetV2 and torchvision ``mobilenet_v2`` state dicts
    (renamed by :func:`torchvision_to_mmdet_keys`).

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
        self._block_kwargs = dict(
            heads=heads,
            attention=attention,
            squeeze=squeeze,
            gate_bias=gate_bias,
            tau=tau,
            generator_norm_cfg=generator_norm_cfg)
        super().__init__(**kwargs)
        # Registered first, so the generator pre-hook sees mmdet's names.
        self._register_load_state_dict_pre_hook(
            _convert_torchvision_keys, with_module=True)
        self._setup_msgc(gate_bias, budget)
        self.init_deploy(deploy)

    def forward(self, x: Tensor):
        # Stem conv and the last 1x1 conv (which runs whatever out_indices
        # says), each with its BN op; the blocks report their own costs.
        size = conv_output_size(x.shape[2:], 3, 2, 1, 1)
        macs = conv_macs(x.shape[1], self.conv1.conv.out_channels, 3, size)
        for _, _, _, stride in self.arch_settings:
            size = conv_output_size(size, 3, stride, 1, 1)
        last = self.conv2.conv
        macs += conv_macs(last.in_channels, last.out_channels, 1, size)
        self.report_cost(macs, macs, x.shape[0], x.device)
        return super().forward(x)
