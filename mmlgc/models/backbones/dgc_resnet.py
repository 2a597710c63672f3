"""DGC ResNet: mmdet's ResNet with dynamic group convs (``docs/dgc.md``).

Mapping onto mmdet's ResNet. The DGC reference keeps torchvision's
post-activation ResNet (conv -> BN -> ReLU, residual add, ReLU) and replaces
convs by :class:`~mmlgc.layers.DGCConv`, which *adds* its own pre-activation
BN -> ReLU on its input. So a DGC block is an mmdet block whose convs each
gain a leading BN -> ReLU and saliency generators; nothing is removed:

* BasicBlock (ResNet-18/34, the reference's placement): ``conv1`` and
  ``conv2`` (3x3) and the stride-2 downsample 1x1 (``downsample.0``) are
  DGC; ``norm1``/``norm2``/``downsample.1`` stay after them. The projection
  shortcut thus becomes BN -> ReLU -> gated 1x1 -> BN: no longer the linear
  projection of mmdet's ResNet (the identity shortcuts stay identities).
* Bottleneck (ResNet-50+, not in the reference, which has no DGC ResNet-50):
  all three convs (1x1, 3x3, 1x1) and the downsample 1x1 are DGC, the
  direct extension of "every conv of a block is DGC" (also what the DGC
  paper does with CondenseNet-style 1x1s).
* Stem (7x7 conv, BN, ReLU, max-pool) and the classifier stay dense.

A dense mmdet / torchvision / mmpretrain ResNet checkpoint therefore loads
every tensor it has: stem, ``convX.weight`` (the DGC weight is the dense
``[O, C, kh, kw]`` in output order), all post-conv norms. Missing, and kept
at their initialisation (reported in one log line): per DGC conv the
pre-activation norm ``convX.pre_norm.*`` (identity at init: weight 1, bias 0,
running mean 0 / var 1), the ``convX.saliency_generator.*`` FCs and the
buffers ``convX.pruned_channels`` (k = 0) and ``convX.threshold`` (-inf).
"""
from typing import Optional

import torch
import torch.utils.checkpoint as cp
from mmdet.models.backbones.resnet import BasicBlock, Bottleneck
from torch import Tensor, nn

from ...complexity import conv_output_size
from ...layers import DGCConv
from ...layers.dgc import RAMP_BEGIN, RAMP_END, generator_squeeze
from ...layers.norms import at_initial_statistics
from ...registry import MODELS
from ...utils.checks import check_divides, check_fraction
from ..dense_checkpoints import keep_method_state_on_dense_load
from ..losses import DGCPruning
from ..training_signal import TrainingSignalMixin, build_training_signal
from .grouped_resnet import (GroupedBlockMixin, GroupedResNet,
                             grouped_arch_settings)

#: What a DGC conv has beyond the dense conv (absent from a dense
#: checkpoint), as the layer declares it.
DGC_KEYS = DGCConv.method_state
#: For ``paramwise_cfg.custom_keys``.
SALIENCY_GENERATOR_KEY = 'saliency_generator'
#: DGC's schedule: no pruning for the first 1/12 of training, a linear ramp
#: to the final k at 3/4, saliency L1 weight 1e-5 (the backbone's
#: ``schedule`` argument overrides any of these keys).
DEFAULT_SCHEDULE = dict(loss_weight=1e-5, ramp_begin=RAMP_BEGIN,
                        ramp_end=RAMP_END)


class _DGCBlockMixin(GroupedBlockMixin):
    """Replaces the block's convs (and its downsample conv) by DGCConvs and
    reports the ReLUs between them (the DGC convs report themselves).

    Args:
        heads, keep, squeeze, mode, tie_break, start_as_dense:
            :class:`DGCConv`'s.
        dgc_norm_cfg: its pre-activation norm.
        **kwargs: mmdet's block arguments.
    """

    replaced_by = 'the DGC convs'
    _convs: tuple = ()

    def __init__(self,
                 inplanes,
                 planes,
                 heads=4,
                 keep=0.45,
                 squeeze=16,
                 mode='head',
                 tie_break='index',
                 dgc_norm_cfg=dict(type='BN'),
                 start_as_dense=False,
                 **kwargs):
        super().__init__(inplanes, planes, **kwargs)

        def to_dgc(conv):
            return DGCConv.from_conv(
                conv,
                heads=heads,
                keep=keep,
                squeeze=squeeze,
                mode=mode,
                tie_break=tie_break,
                norm_cfg=dgc_norm_cfg,
                start_as_dense=start_as_dense)

        self._replace_convs(self._convs, to_dgc)
        if self.downsample is not None:
            # mmdet's ResLayer: [AvgPool2d (avg_down)], 1x1 conv, norm.
            for index, module in enumerate(self.downsample):
                if isinstance(module, nn.Conv2d):
                    self.downsample[index] = to_dgc(module)

    def forward(self, x: Tensor) -> Tensor:
        # mmdet's forward, with a non-reentrant checkpoint so the saliency
        # terms the DGC convs leave keep their graph under with_cp.
        if self.with_cp and x.requires_grad:
            out = cp.checkpoint(self._inner_forward, x, use_reentrant=False)
        else:
            out = self._inner_forward(x)
        out = self.relu(out)
        relu = self._relu_ops(x, out)
        self.report_cost(relu, relu, x.shape[0], x.device)
        return out


class DGCBasicBlock(_DGCBlockMixin, BasicBlock):
    """BasicBlock with DGC ``conv1``, ``conv2`` and downsample conv."""

    _convs = ('conv1', 'conv2')

    def _inner_forward(self, x):
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        out += identity  # in place, as mmdet's blocks
        return out

    def _relu_ops(self, x, out):
        # After norm1 and after the add (DGC counter: input numel each).
        return 2 * out[0].numel()


class DGCBottleneck(_DGCBlockMixin, Bottleneck):
    """Bottleneck with DGC ``conv1``, ``conv2``, ``conv3`` and downsample
    conv (the reference has no Bottleneck; see the module docstring)."""

    _convs = ('conv1', 'conv2', 'conv3')

    def _inner_forward(self, x):
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.relu(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        out += identity  # in place, as mmdet's blocks
        return out

    def _relu_ops(self, x, out):
        size1 = conv_output_size(x.shape[2:], 1, self.conv1_stride, 0, 1)
        width = self.planes
        return (width * size1[0] * size1[1] +
                width * out.shape[2] * out.shape[3] + out[0].numel())


@MODELS.register_module()
class DGCResNet(TrainingSignalMixin, GroupedResNet):
    """ResNet (depth 18/34/50/101/152) with DGC blocks; mmdet ResNet's
    arguments and outputs, usable as an mmdet or mmpretrain backbone.

    Args:
        heads: ``G`` of every DGC conv (4).
        keep: target fraction of input channels each head keeps (0.45:
            prune 55%, the paper's ResNet-18 setting).
        squeeze: generator squeeze ratio (16; the layer halves it below 80
            input channels).
        mode: ``'head'`` (DGC) or ``'global'`` (DGC-G, see
            :class:`mmlgc.layers.GlobalThreshold`).
        tie_break: top-k tie rule (:class:`mmlgc.layers.TopKSaliencyGate`).
        dgc_norm_cfg: the DGC convs' pre-activation norm; default the
            backbone's ``norm_cfg``.
        dgc_norm_eval: whether ``norm_eval`` also freezes the
            pre-activation norms (default False). A DGC conv is quadratic in
            its input scale (the saliency, computed from the input,
            multiplies it), so these norms are what keeps saliencies O(1):
            with statistics that do not match the data (a fresh model, a
            dense checkpoint, which has none, or ImageNet statistics at
            detection resolutions) activations grow doubly exponentially
            with depth and overflow. So by default, under mmdet's
            ``norm_eval=True``, the post-conv BNs are frozen as in mmdet and
            the pre-activation BNs normalise with batch statistics (over
            ``N·H·W`` positions per channel, enough at 2 images per GPU,
            unlike the pooled ``N``-vectors of MSGC's generators), their
            running statistics adapting to the data. ``True`` freezes them
            too; ``train()`` then refuses pre-activation norms still at their
            initial statistics (non-finite outputs) and says what to set.
            Frozen stages keep theirs frozen.
        start_as_dense: for training from a dense checkpoint: what it lacks
            starts as an identity, so that the network computes the dense
            one until the schedule starts pruning (saliencies exactly 1,
            each pre-activation BN set from its first training batch to
            pass its input through; :class:`DGCConv`). False (default) is
            DGC's from-scratch init, under which a dense network's features
            are rescaled at random in every conv: on the shapes task one
            epoch from the dense checkpoint then stayed at chance.
        schedule: DGC's pruning schedule and saliency loss, applied whenever
            an mmengine Runner trains the backbone, with no hook in the
            config: keys ``loss_weight`` (1e-5), ``ramp_begin`` (1/12),
            ``ramp_end`` (3/4); a dict sets any of them, ``None`` trains
            without (``k`` stays 0: no pruning;
            :mod:`mmlgc.models.training_signal`).
            ``mmlgc.DGCScheduleHook`` in the config replaces it; DGC-G
            (``mode='global'``) requires that hook.
        deploy: build the deployed structure (BN folded into the convs,
            sparse eval), so ``tools/deploy.py`` output loads.
        **kwargs: mmdet ``ResNet`` arguments (``depth``, ``out_indices``,
            ``frozen_stages``, ``norm_cfg``, ``norm_eval``, ``style``,
            ``with_cp``, ``avg_down``, ``init_cfg``, ...). ``dcn``,
            ``plugins`` and ``deep_stem`` are not supported.

    ``k`` of every layer is set from the training progress (``schedule``,
    or :class:`mmlgc.engine.DGCScheduleHook`); it is a buffer, so
    checkpoints carry it.
    """

    arch_settings = grouped_arch_settings(DGCBasicBlock, DGCBottleneck)
    sparse_types = (DGCConv, )
    # The DGC reference counter: the max-pool's output numel x 9.
    stem_pool_ops = 9

    def __init__(self,
                 depth: int,
                 heads: int = 4,
                 keep: float = 0.45,
                 squeeze: int = 16,
                 mode: str = 'head',
                 tie_break: str = 'index',
                 dgc_norm_cfg='same',
                 dgc_norm_eval: bool = False,
                 start_as_dense: bool = False,
                 schedule: Optional[dict] = DEFAULT_SCHEDULE,
                 deploy: bool = False,
                 **kwargs):
        _, widths = self.check_arch(depth, kwargs)
        owner = type(self).__name__
        check_divides(owner, 'heads', heads, widths, 'the stage widths')
        check_fraction(owner, 'keep', keep)
        # The narrowest DGC conv input: layer1.0's (the stem's output) or
        # the first stage's width.
        generator_squeeze(owner, min(kwargs.get('stem_channels') or widths[0],
                                     widths[0]), squeeze)
        if dgc_norm_cfg == 'same':
            dgc_norm_cfg = kwargs.get('norm_cfg',
                                      dict(type='BN', requires_grad=True))
        self.dgc_norm_eval = dgc_norm_eval
        super().__init__(
            depth,
            dict(
                heads=heads,
                keep=keep,
                squeeze=squeeze,
                mode=mode,
                tie_break=tie_break,
                dgc_norm_cfg=dgc_norm_cfg,
                start_as_dense=start_as_dense), **kwargs)
        keep_method_state_on_dense_load(self, _describe_dgc_state)
        # Trains with DGC's schedule and loss whatever the config's hooks
        # (mmlgc.models.training_signal); DGCScheduleHook takes them over.
        self.training_signal = build_training_signal(
            self, 'schedule', 'DGCScheduleHook', schedule, DGCPruning,
            DEFAULT_SCHEDULE,
            hook_required=("mode='global' (DGC-G) agrees its pruning "
                           'threshold over windows of iterations, which '
                           'only the hook does') if mode == 'global' else None)
        self.init_deploy(deploy)

    def train(self, mode: bool = True):
        super().train(mode)
        if not (mode and self.norm_eval):
            return self
        pre_norms = {
            f'{name}.{conv_name}.pre_norm': module.pre_norm
            for index, name in enumerate(self.res_layers)
            if index + 1 > self.frozen_stages
            for conv_name, module in getattr(self, name).named_modules()
            if isinstance(module, DGCConv) and module.pre_activation
        }
        if not self.dgc_norm_eval:
            for norm in pre_norms.values():
                norm.train()
            return self
        # Frozen at the statistics they were built with, the pre-activation
        # norms let activations overflow (NaN losses): an error here, at the
        # start of training, says what to change instead.
        unset = [name for name, norm in pre_norms.items()
                 if at_initial_statistics(norm)]
        if unset:
            raise RuntimeError(
                f'{type(self).__name__}: dgc_norm_eval=True with norm_eval='
                f'True freezes the pre-activation norms, and {len(unset)} of '
                f'them ({unset[0]}, ...) have never seen data (a fresh model, '
                'or a dense checkpoint, which has none): their outputs '
                'overflow. Set dgc_norm_eval=False (they normalise with '
                'batch statistics), or load a DGC checkpoint that has them.')
        return self

    @torch.no_grad()
    def calibrate_untrained(self, x, target, seed):
        """The ``k`` its ``keep`` gives at the end of the schedule
        (``target`` does not apply). Returns (None, ratio)."""
        for module in self.modules():
            if isinstance(module, DGCConv):
                module.set_progress(1.0)
        return super().calibrate_untrained(x, target, seed)

    def init_weights(self):
        super().init_weights()
        if self.mmdet_default_init:
            # mm*'s Kaiming init took fan_out over each DGC conv's dense
            # weight; the reference's heads are separate convs.
            for module in self.modules():
                if isinstance(module, DGCConv):
                    module.kaiming_init_per_head()


def _describe_dgc_state(absent) -> str:
    convs = {k.split('.pre_norm.')[0] for k in absent if '.pre_norm.' in k}
    return (f'DGC state for {len(convs)} DGC convs ({len(absent)} tensors: '
            'pre-activation norms, saliency generators, k and threshold '
            'buffers)')
