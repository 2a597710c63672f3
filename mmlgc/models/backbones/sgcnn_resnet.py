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
from mmdet.models.backbones.resnet import BasicBlock, Bottleneck, ResNet
from torch import Tensor, nn

from ...complexity import CostReporter, conv_macs, downsample_macs
from ...deploy import DeployableBackboneMixin
from ...layers.self_grouping import GROUPING_STATE, SelfGroupedConv2d
from ...layers.static_groups import fold_output_order
from ...ops.reference import conv_output_size
from ...registry import MODELS
from ...utils.checks import check_resnet_args
from ..dense_checkpoints import keep_method_state_on_dense_load, plural
from .grouped_resnet import GroupedResNetMixin, check_block_conv_cfg


class _SGCNNBlockMixin(CostReporter):
    """Swaps the block's convs for self-grouped ones and reports the dense
    downsample conv (the grouped convs report themselves)."""

    _convs: tuple = ()

    def __init__(self,
                 inplanes,
                 planes,
                 stride=1,
                 dilation=1,
                 downsample=None,
                 style='pytorch',
                 with_cp=False,
                 conv_cfg=None,
                 norm_cfg=dict(type='BN'),
                 dcn=None,
                 plugins=None,
                 init_cfg=None):
        used = [k for k, v in dict(dcn=dcn, plugins=plugins).items() if v]
        if used:
            raise NotImplementedError(
                f'{type(self).__name__} does not support {", ".join(used)}: '
                'its convs are self-grouped plain convs')
        check_block_conv_cfg(type(self).__name__, conv_cfg,
                             'the self-grouped convs')
        super().__init__(inplanes, planes, stride, dilation, downsample,
                         style, with_cp, conv_cfg, norm_cfg, None, None,
                         init_cfg)
        for name in self._convs:
            setattr(self, name, SelfGroupedConv2d.from_conv(getattr(
                self, name)))

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


class SGCNNBasicBlock(_SGCNNBlockMixin, BasicBlock):
    """BasicBlock with self-grouped ``conv1`` and ``conv2``."""

    _convs = ('conv1', 'conv2')


class SGCNNBottleneck(_SGCNNBlockMixin, Bottleneck):
    """Bottleneck with self-grouped ``conv1``, ``conv2`` and ``conv3``."""

    _convs = ('conv1', 'conv2', 'conv3')


@MODELS.register_module()
class SGCNNResNet(DeployableBackboneMixin, CostReporter, GroupedResNetMixin,
                  ResNet):
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

    arch_settings = {
        18: (SGCNNBasicBlock, (2, 2, 2, 2)),
        34: (SGCNNBasicBlock, (3, 4, 6, 3)),
        50: (SGCNNBottleneck, (3, 4, 6, 3)),
        101: (SGCNNBottleneck, (3, 4, 23, 3)),
        152: (SGCNNBottleneck, (3, 8, 36, 3))
    }

    def __init__(self, depth: int, deploy: bool = False, **kwargs):
        if depth not in self.arch_settings:
            raise KeyError(f'invalid depth {depth} for SGCNNResNet; choose '
                           f'from {sorted(self.arch_settings)}')
        check_resnet_args(type(self).__name__, kwargs)
        super().__init__(depth, **kwargs)
        if self.deep_stem:
            raise NotImplementedError(
                f'{type(self).__name__}: deep_stem=True is not supported: '
                'the standard stem only')
        keep_dense_load_grouping_state(self)
        self.deploy = False
        if deploy:
            self.switch_to_deploy()

    def forward(self, x: Tensor):
        stem = conv_output_size(x.shape[2:], 7, 2, 3, 1)
        pooled = conv_output_size(stem, 3, 2, 1, 1)
        # MSGC's convention: stem conv + BN op, 4 ops per max-pool output.
        stem_macs = (conv_macs(x.shape[1], self.stem_channels, 7, stem) +
                     4 * self.stem_channels * pooled[0] * pooled[1])
        self.report_cost(stem_macs, stem_macs, x.shape[0], x.device)
        return super().forward(x)

    def fold_group_orders(self):
        """Within a block only elementwise ops (folded BN, ReLU) sit between
        consecutive convs, each the single reader of the previous one's
        output: fold those reorders. The last conv's output meets the
        shortcut and keeps its ``index_select``."""
        for name in self.res_layers:
            for block in getattr(self, name):
                convs = block.grouped_convs
                for producer, consumer in zip(convs[:-1], convs[1:]):
                    fold_output_order(producer, consumer)


def keep_dense_load_grouping_state(module: nn.Module) -> None:
    """A dense checkpoint loads into ``module`` (a backbone or head); its
    self-grouped layers stay dense, said in one log line."""
    keep_method_state_on_dense_load(
        module, lambda key: key.rpartition('.')[2] in GROUPING_STATE,
        lambda absent: 'self-grouping state for ' + plural(
            len({k.rpartition('.')[0] for k in absent}), 'layer') +
        f' ({len(absent)} tensors: masks and grouped ratios)')
