"""FLGC MobileNetV2: mmdet's MobileNetV2 whose 1x1 convs are fully
learnable group convs (``docs/flgc.md``: "G = 8 on the 1x1 convs").

In each inverted residual the expansion 1x1 (when the expand ratio is not
1) and the linear 1x1 projection are FLGC by default; ``flgc_convs``
selects them (``('project', )`` is what the public re-implementation
groups). The depthwise 3x3, the stem and the last 1x1 conv stay dense.
Parameter names and shapes are mmdet's / mmpretrain's, so their
MobileNetV2 checkpoints (and torchvision's, renamed on load by
:mod:`~mmlgc.models.backbones.grouped_mobilenet_v2`) load with only the
assignment logits missing.

Deploy: the expansion's group order folds through the depthwise conv
into the projection; the projection's output (the block's) keeps one
``index_select`` back to the original order (it meets the residual sum or
the next block's two readers).

MACs: MSGC's MobileNetV2 convention (the projection's BN not counted).
"""
from typing import Sequence

from mmdet.models.layers import InvertedResidual
from torch import Tensor

from ...complexity import CostReporter, conv_macs
from ...layers import FLGCConv2d, RaggedGroupConv2d
from ...registry import MODELS
from ...utils.checks import check_non_negative, check_positive_int
from .flgc_base import FLGCBackboneMixin, fold_through_depthwise
from .grouped_mobilenet_v2 import GroupedMobileNetV2

FLGC_CONVS = ('expand', 'project')


class FLGCInvertedResidual(CostReporter, InvertedResidual):
    """Inverted residual whose 1x1 convs (those in ``flgc_convs``) are
    FLGC."""

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 mid_channels: int,
                 flgc_convs: Sequence[str] = FLGC_CONVS,
                 num_groups: int = 8,
                 logit_init: str = 'normal',
                 init_std: float = 0.0,
                 se_cfg=None,
                 **kwargs):
        if se_cfg is not None:
            raise NotImplementedError(
                f'{type(self).__name__} does not support se_cfg')
        super().__init__(in_channels, out_channels, mid_channels, **kwargs)
        flgc = dict(num_groups=num_groups, logit_init=logit_init,
                    init_std=init_std)
        if 'expand' in flgc_convs and self.with_expand_conv:
            self.expand_conv.conv = FLGCConv2d.from_conv(
                self.expand_conv.conv, **flgc)
        if 'project' in flgc_convs:
            # MSGC's counter does not count the projection's BN op.
            self.linear_conv.conv = FLGCConv2d.from_conv(
                self.linear_conv.conv, norm_follows=False, **flgc)

    def forward(self, x: Tensor) -> Tensor:
        out = super().forward(x)
        hidden = self.depthwise_conv.conv.out_channels
        size = out.shape[2:]
        # The dense parts; FLGC convs report themselves.
        dense = conv_macs(hidden, hidden, 3, size, groups=hidden)
        if self.with_expand_conv and not self._is_flgc(self.expand_conv):
            dense += conv_macs(x.shape[1], hidden, 1, x.shape[2:])
        if not self._is_flgc(self.linear_conv):
            dense += conv_macs(hidden, out.shape[1], 1, size, norm=False)
        self.report_cost(dense, dense, x.shape[0], x.device)
        return out

    @staticmethod
    def _is_flgc(conv_module) -> bool:
        # FLGC in training form, or its deployed ragged conv.
        return isinstance(conv_module.conv, (FLGCConv2d, RaggedGroupConv2d))

    def fold_group_orders(self):
        if self.with_expand_conv and self._is_flgc(self.expand_conv):
            fold_through_depthwise(self.expand_conv.conv,
                                   self.depthwise_conv.conv,
                                   self.linear_conv.conv)


@MODELS.register_module()
class FLGCMobileNetV2(FLGCBackboneMixin, GroupedMobileNetV2):
    """MobileNetV2 with FLGC 1x1 convs; mmdet MobileNetV2's arguments
    (``widen_factor``, ``out_indices``, ``frozen_stages``, ``norm_cfg``,
    ``act_cfg``, ``norm_eval``, ``with_cp``, ``init_cfg``) and outputs
    (``type='mmlgc.FLGCMobileNetV2'``).

    Args:
        num_groups: ``G`` of every FLGC conv (8, the paper's CIFAR
            setting).
        flgc_convs: which 1x1 convs of a block are FLGC: ``'expand'``,
            ``'project'`` (default both).
        logit_init, init_std: see :class:`~mmlgc.layers.FLGCConv2d`.
        deploy: build the deployed structure, so ``tools/deploy.py``
            output loads.
    """

    block_type = FLGCInvertedResidual

    def __init__(self,
                 num_groups: int = 8,
                 flgc_convs: Sequence[str] = FLGC_CONVS,
                 logit_init: str = 'normal',
                 init_std: float = 0.0,
                 deploy: bool = False,
                 **kwargs):
        check_positive_int(type(self).__name__, 'num_groups', num_groups)
        check_non_negative(type(self).__name__, 'init_std', init_std)
        unknown = set(flgc_convs) - set(FLGC_CONVS)
        if unknown:
            raise ValueError(f'{type(self).__name__}: flgc_convs='
                             f'{tuple(flgc_convs)!r} must be a subset of '
                             f'{FLGC_CONVS} (unknown: {sorted(unknown)})')
        super().__init__(
            dict(
                flgc_convs=tuple(flgc_convs),
                num_groups=num_groups,
                logit_init=logit_init,
                init_std=init_std), **kwargs)
        self._setup_flgc()
        self.init_deploy(deploy)

    def fold_group_orders(self):
        for module in self.modules():
            if isinstance(module, FLGCInvertedResidual):
                module.fold_group_orders()
