"""SG-CNN ResNet: mmdet's ResNet whose block convs self-group
(``docs/sgcnn.md``).

Placement, as the SG-CNN reference's ResNet: every conv of a block
(BasicBlock: both 3x3; Bottleneck: 1x1, 3x3, 1x1) is a
:class:`~mmlgc.layers.SelfGroupedConv2d`; the stem and the downsample convs
stay dense. The classifier FC is grouped by
:class:`mmlgc.models.SelfGroupedLinearClsHead`. The convs keep the dense
weight names and shapes, so a dense mmdet / mmpretrain / torchvision ResNet
checkpoint loads with only the grouping buffers (``mask``,
``grouped_ratio``) missing, which keep their dense initialisation; a grouped
checkpoint (``init_cfg=Pretrained``, prefix ``backbone.``) brings its masks.
Nothing changes the masks but :class:`mmlgc.engine.SelfGroupingHook` and
``tools/sgcnn_group.py``: a detector fine-tunes with them frozen.

Costs (``mmlgc.complexity``, the MSGC convention shared by every method):
each grouped conv reports its active connections, the blocks their dense
downsample conv, the backbone its stem; see
:func:`mmlgc.layers.self_grouping.reference_complexity` for the SG-CNN
reference counter's convention, which the paper's numbers use.
"""
import torch
from mmdet.models.backbones.resnet import BasicBlock, Bottleneck
from torch import Tensor

from ...complexity import collect_costs, downsample_macs
from ...layers.self_grouping import SelfGroupedConv2d, group_model
from ...layers.static_groups import fold_output_order
from ...registry import MODELS
from ..dense_checkpoints import keep_dense_load_grouping_state
from .grouped_resnet import (GroupedBlockMixin, GroupedResNet,
                             grouped_arch_settings)


class _SGCNNBlockMixin(GroupedBlockMixin):
    """Swaps the block's convs for self-grouped ones and reports the dense
    downsample conv (the grouped convs report themselves)."""

    replaced_by = 'the self-grouped convs'
    unsupported_reason = 'its convs are self-grouped plain convs'
    _convs: tuple = ()

    def __init__(self, inplanes, planes, **kwargs):
        super().__init__(inplanes, planes, **kwargs)
        self._replace_convs(self._convs, SelfGroupedConv2d.from_conv)

    def forward(self, x: Tensor) -> Tensor:
        out = super().forward(x)
        if self.downsample is not None:
            macs = downsample_macs(self.downsample, x.shape, out.shape)
            self.report_cost(macs, macs, x.shape[0], x.device)
        return out

    @property
    def grouped_convs(self):
        """The block's convs in data-flow order."""
        return [getattr(self, name) for name in self._convs]

    def fold_group_orders(self):
        """Within a block only elementwise ops (folded BN, ReLU) sit between
        consecutive convs, each the single reader of the previous one's
        output: fold those reorders. The last conv's output meets the
        shortcut and keeps its ``index_select``."""
        convs = self.grouped_convs
        for producer, consumer in zip(convs[:-1], convs[1:]):
            fold_output_order(producer, consumer)


class SGCNNBasicBlock(_SGCNNBlockMixin, BasicBlock):
    """BasicBlock with self-grouped ``conv1`` and ``conv2``."""

    _convs = ('conv1', 'conv2')


class SGCNNBottleneck(_SGCNNBlockMixin, Bottleneck):
    """Bottleneck with self-grouped ``conv1``, ``conv2`` and ``conv3``."""

    _convs = ('conv1', 'conv2', 'conv3')


@MODELS.register_module()
class SGCNNResNet(GroupedResNet):
    """ResNet (depth 18/34/50/101/152) with self-grouped block convs;
    mmdet ResNet's arguments and outputs, usable as an mmdet or mmpretrain
    backbone.

    A fresh model is the dense ResNet (every mask all ones). Grouping is
    done by :class:`mmlgc.engine.SelfGroupingHook` (training schedule) or
    ``tools/sgcnn_group.py`` (one shot); the masks and each layer's
    ``grouped_ratio`` are persistent buffers.

    Args:
        deploy: build the deployed structure (BN folded, grouped convs as
            :class:`~mmlgc.layers.RaggedGroupConv2d` placeholders that take
            their layout from the deployed state dict), so
            ``tools/deploy.py`` output loads.
        **kwargs: mmdet ``ResNet`` arguments (``depth``, ``out_indices``,
            ``frozen_stages``, ``norm_cfg``, ``norm_eval``, ``style``,
            ``with_cp``, ``avg_down``, ``init_cfg``, ...). ``dcn``,
            ``plugins``, ``conv_cfg`` and ``deep_stem`` are not supported.

    Deployed, each grouped conv runs its clusters as one ragged group conv;
    the channel order of ``conv1`` (and ``conv2`` of a Bottleneck), read by
    the next conv only, is folded into that conv; the block's last conv
    feeds the residual add and keeps one ``index_select``.
    """

    arch_settings = grouped_arch_settings(SGCNNBasicBlock, SGCNNBottleneck)

    def __init__(self, depth: int, deploy: bool = False, **kwargs):
        super().__init__(depth, {}, **kwargs)
        keep_dense_load_grouping_state(self)
        self.init_deploy(deploy)

    @torch.no_grad()
    def calibrate_untrained(self, x, target, seed):
        """Self-group every grouped conv in one step to the pruned fraction
        ``r`` that brings the MACs ratio measured on ``x`` to ``target``:
        the ratio falls linearly in ``r`` by the grouped convs' connection
        MACs (their BN op stays). Returns (r, ratio)."""
        self(x)
        costs = collect_costs(self)
        grouped = 0.0
        for module in self.modules():
            if isinstance(module, SelfGroupedConv2d):
                record = module.last_cost
                k2c = module.weight[0].numel()
                grouped += record.dense * k2c / (k2c + 1)  # without BN op
        ratio = min(max((1 - target) * costs.dense / grouped, 0.01), 0.99)
        group_model(self, ratio, seed=seed)
        self(x)
        return ratio, collect_costs(self).ratio.item()
