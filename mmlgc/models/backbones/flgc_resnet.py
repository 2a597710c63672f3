"""FLGC ResNet: mmdet's ResNet with fully learnable group convs
(``docs/flgc.md``).

Placement:

* Bottleneck (ResNet-50+): the two 1x1 convs (``conv1``, ``conv3``) are
  FLGC, the 3x3 ``conv2`` stays dense (the placement ``docs/flgc.md`` and
  issue 6 give: FLGC on the 1x1 convs; the paper's text available here does
  not say more). With
  ``depthwise=True`` the 3x3 becomes depthwise (``groups=width``): the
  paper's depthwise-separable variant (its "5x faster than ResNet-50 on a
  CPU" model); that conv then no longer has the dense shape, so a dense
  checkpoint loads everything but ``conv2``.
* BasicBlock (ResNet-18/34; the paper has no BasicBlock model): both 3x3
  convs are FLGC, the direct reading of "replace the block's convs" for a
  block without 1x1 convs (what the shapes demo trains).
* The stem, the downsample 1x1 projections and the classifier stay dense,
  as in the other methods here.

Weights keep mmdet's (and torchvision's / mmpretrain's) names and shapes,
so a dense checkpoint loads with only the ``*_group_logits`` missing.

Deploy: every FLGC conv becomes a ragged group conv; the group order of
``conv1``'s output folds into ``conv2`` (its only reader: a dense 3x3's
input channels, a depthwise 3x3's channels and then ``conv3``'s input
index); ``conv2``/``conv3`` outputs that meet the residual sum keep one
``index_select`` back to the original order.

MACs (MSGC's counting convention, ``mmlgc.complexity``): the FLGC convs
report their actual connectivity; the block reports its dense 3x3 (or
depthwise) conv and downsample, the backbone its stem. The "dense" count is
the vanilla ResNet's (a full 3x3 conv2 in the depthwise variant too), so
the ratio compares against the plain ResNet.
"""
from mmcv.cnn import build_conv_layer
from mmdet.models.backbones.resnet import BasicBlock, Bottleneck
from torch import Tensor

from ...complexity import conv_macs, downsample_macs
from ...layers import FLGCConv2d, fold_output_order
from ...registry import MODELS
from ...utils.checks import check_non_negative, check_positive_int
from .flgc_base import FLGCBackboneMixin, fold_through_depthwise
from .grouped_resnet import (GroupedBlockMixin, GroupedResNet,
                             grouped_arch_settings)


class _FLGCBlockMixin(GroupedBlockMixin):
    """FLGC convs in place of the block's ``_convs``.

    Args:
        num_groups, logit_init, init_std: :class:`FLGCConv2d`'s.
        **kwargs: mmdet's block arguments.
    """

    replaced_by = 'the FLGC convs'
    _convs: tuple = ()

    def __init__(self,
                 inplanes,
                 planes,
                 num_groups=8,
                 logit_init='normal',
                 init_std=0.0,
                 **kwargs):
        super().__init__(inplanes, planes, **kwargs)
        self._replace_convs(
            self._convs, lambda conv: FLGCConv2d.from_conv(
                conv,
                num_groups=num_groups,
                logit_init=logit_init,
                init_std=init_std))


class FLGCBasicBlock(_FLGCBlockMixin, BasicBlock):
    """BasicBlock whose two 3x3 convs are FLGC."""

    _convs = ('conv1', 'conv2')

    def __init__(self, inplanes, planes, depthwise=False, **kwargs):
        if depthwise:
            raise ValueError(f'{type(self).__name__}: depthwise=True turns a '
                             "Bottleneck's 3x3 conv depthwise (depth 50, 101, "
                             '152); a BasicBlock (depth 18, 34) has none')
        super().__init__(inplanes, planes, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        out = super().forward(x)
        if self.downsample is not None:  # the FLGC convs report themselves
            macs = downsample_macs(self.downsample, x.shape, out.shape)
            self.report_cost(macs, macs, x.shape[0], x.device)
        return out

    def fold_group_orders(self):
        # conv1 -> norm1 (folded) -> ReLU -> conv2: one reader. conv2's
        # output meets the residual: it keeps its index_select.
        fold_output_order(self.conv1, self.conv2)


class FLGCBottleneck(_FLGCBlockMixin, Bottleneck):
    """Bottleneck whose 1x1 convs are FLGC; ``depthwise=True``: its 3x3
    conv is depthwise (the paper's depthwise-separable variant)."""

    _convs = ('conv1', 'conv3')

    def __init__(self, inplanes, planes, depthwise=False, **kwargs):
        super().__init__(inplanes, planes, **kwargs)
        self.depthwise = depthwise
        if depthwise:
            # Same name and place in the module order (BN folding pairs it
            # with norm2).
            self.conv2 = build_conv_layer(
                self.conv_cfg,
                planes,
                planes,
                kernel_size=3,
                stride=self.conv2_stride,
                padding=self.dilation,
                dilation=self.dilation,
                groups=planes,
                bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = super().forward(x)
        width = self.planes
        size2 = out.shape[2:]
        full = conv_macs(width, width, 3, size2)
        actual = conv_macs(width, width, 3, size2,
                           groups=width) if self.depthwise else full
        downsample = downsample_macs(self.downsample, x.shape, out.shape)
        self.report_cost(full + downsample, actual + downsample, x.shape[0],
                         x.device)
        return out

    def fold_group_orders(self):
        if self.depthwise:
            fold_through_depthwise(self.conv1, self.conv2, self.conv3)
        else:
            fold_output_order(self.conv1, self.conv2)


@MODELS.register_module()
class FLGCResNet(FLGCBackboneMixin, GroupedResNet):
    """ResNet (depth 18/34/50/101/152) with FLGC blocks; mmdet ResNet's
    arguments and outputs, usable as an mmdet or mmpretrain backbone
    (``type='mmlgc.FLGCResNet'``).

    Args:
        num_groups: ``G`` of every FLGC conv (8; any positive integer).
        depthwise: Bottleneck only: depthwise 3x3 convs (the paper's
            depthwise-separable ResNet-50).
        logit_init, init_std: initialisation of the assignment logits, see
            :class:`~mmlgc.layers.FLGCConv2d` (default: the public
            reference's i.i.d. N(0, 1)).
        deploy: build the deployed structure (BN folded, ragged group
            convs), so ``tools/deploy.py`` output loads.
        **kwargs: mmdet ``ResNet`` arguments (``depth``, ``out_indices``,
            ``frozen_stages``, ``norm_cfg``, ``norm_eval``, ``style``,
            ``with_cp``, ``avg_down``, ``init_cfg``, ...). ``dcn``,
            ``plugins`` and ``deep_stem`` are not supported.
    """

    arch_settings = grouped_arch_settings(FLGCBasicBlock, FLGCBottleneck)

    def __init__(self,
                 depth: int,
                 num_groups: int = 8,
                 depthwise: bool = False,
                 logit_init: str = 'normal',
                 init_std: float = 0.0,
                 deploy: bool = False,
                 **kwargs):
        self.check_arch(depth, kwargs)
        owner = type(self).__name__
        check_positive_int(owner, 'num_groups', num_groups)
        check_non_negative(owner, 'init_std', init_std)
        super().__init__(
            depth,
            dict(
                depthwise=depthwise,
                num_groups=num_groups,
                logit_init=logit_init,
                init_std=init_std), **kwargs)
        if depthwise:
            self._register_load_state_dict_pre_hook(
                _keep_depthwise_on_dense_load, with_module=True)
        self._setup_flgc()
        self.init_deploy(deploy)


def _keep_depthwise_on_dense_load(module, state_dict, prefix, *args):
    """A dense checkpoint's full 3x3 ``conv2`` cannot initialise a depthwise
    one: keep the depthwise init (one log line) rather than leave a shape
    mismatch, which mmlgc's checkpoint checks reject as another
    architecture."""
    from mmengine.logging import print_log
    kept = 0
    for name, block in module.named_modules():
        if not isinstance(block, FLGCBottleneck) or not block.depthwise:
            continue
        key = f'{prefix}{name}.conv2.weight'
        own = block.conv2.weight
        if key in state_dict and state_dict[key].shape != own.shape:
            state_dict[key] = own.detach()
            kept += 1
    if kept:
        print_log(
            f'{type(module).__name__}: the checkpoint has dense 3x3 convs '
            f'where {kept} depthwise conv2 are; they keep their '
            'initialisation.',
            logger='current')
