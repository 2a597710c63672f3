"""The shell every grouped MobileNetV2 shares: mmdet's MobileNetV2 built
from a method's inverted residual, torchvision ``mobilenet_v2`` checkpoints
renamed on load, and the cost of the dense stem and last conv.

A method adds its block (``block_type``, mmdet's ``InvertedResidual`` with
its own arguments) and a backbone that subclasses
:class:`GroupedMobileNetV2`, hands the block arguments to
``super().__init__`` and ends with ``self.init_deploy(deploy)``.
"""
import re
from typing import Dict

from mmdet.models.backbones.mobilenet_v2 import MobileNetV2
from torch import Tensor, nn

from ...complexity import CostReporter, conv_macs, conv_output_size
from ...deploy import DeployableBackboneMixin
from .dense_counterpart import DenseCounterpartMixin


class GroupedMobileNetV2(DenseCounterpartMixin, DeployableBackboneMixin,
                         CostReporter, MobileNetV2):
    """mmdet's ``MobileNetV2`` whose blocks are ``block_type`` built with
    ``block_kwargs``; loads mmdet / mmpretrain MobileNetV2 and torchvision
    ``mobilenet_v2`` state dicts (renamed by
    :func:`torchvision_to_mmdet_keys`)."""

    block_type: type
    dense_class = MobileNetV2

    def __init__(self, block_kwargs: dict, **kwargs):
        self._block_kwargs = block_kwargs
        super().__init__(**kwargs)
        # Registered first, so the method's dense-load pre-hook sees mmdet's
        # names.
        self._register_load_state_dict_pre_hook(
            _convert_torchvision_keys, with_module=True)

    def make_layer(self, out_channels, num_blocks, stride, expand_ratio):
        """mmdet's ``make_layer`` with the method's block and arguments."""
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

    def forward(self, x: Tensor):
        # Stem conv and the last 1x1 conv (which runs whatever out_indices
        # says), each with its BN op; the blocks report their own costs.
        stem = self.conv1.conv
        size = conv_output_size(x.shape[2:], 3, stem.stride[0], 1, 1)
        macs = conv_macs(x.shape[1], stem.out_channels, 3, size)
        for _, _, _, stride in self.arch_settings:
            size = conv_output_size(size, 3, stride, 1, 1)
        last = self.conv2.conv
        macs += conv_macs(last.in_channels, last.out_channels, 1, size)
        self.report_cost(macs, macs, x.shape[0], x.device)
        return super().forward(x)


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
