"""FPNs whose convs are learnable grouped convs (MSGC, DGC, FLGC).

mmdet's ``FPN`` spends most of its MACs in the 3x3 output convs
(``fpn_convs``: one per level at the level's full resolution, plus the
stride-2 extra levels of RetinaNet), which read ``out_channels`` lateral
sums. :class:`MSGCFPN` and :class:`DGCFPN` keep mmdet's FPN (same
arguments, same forward, same parameter names) and swap the ``conv`` inside
each ``fpn_convs[i]`` ``ConvModule`` (and, with ``grouped_laterals``, each
``lateral_convs[i]``) for a grouped conv that predicts its masks from its
own input, i.e. from that pyramid level alone. :class:`FLGCFPN` is the
static variant: learnt, image-independent groups (FLGC) that deploy to
ragged group convs.

What the necks share with the grouped backbones:

* MACs: every grouped conv reports a cost record (:mod:`mmlgc.complexity`)
  and the neck reports its dense convs, so :func:`mmlgc.complexity.
  collect_costs` of a detector, hence MSGC's budget (``MACBudgetHook``: the
  ratio of backbone + neck) and DGC's saliency L1 / schedule
  (``DGCScheduleHook`` sets ``k`` on every DGC conv of the model), include
  the neck, and ``tools/analysis/get_flops.py`` lists it as a module.
* Deploy: :class:`~mmlgc.deploy.DeployableBackboneMixin`'s
  ``switch_to_deploy`` (norms folded into the convs, grouped convs on
  :mod:`mmlgc.ops`) and ``deploy=True``.
* Dense checkpoints: an mmdet ``FPN`` state dict loads; the tensors only the
  grouped convs have keep their initialisation (one log line).
"""
from typing import Callable

from mmdet.models.necks import FPN
from torch import nn

from ...complexity import CostReporter, conv_macs
from ...deploy import DeployableBackboneMixin
from ...layers import DGCConv, FLGCConv2d, MSGCConv2d, SelfGatedMSGCConv2d
from ...registry import MODELS
from ...utils.checks import (check_divides, check_fraction, check_positive,
                             check_positive_int)
from ..dense_checkpoints import keep_method_state_on_dense_load


class _GroupedFPNMixin(DeployableBackboneMixin, CostReporter):
    """Conv replacement, the cost of the convs left dense, dense
    checkpoints and ``deploy`` for an mmdet ``FPN`` subclass.

    Subclasses set ``count_norm_ops`` (their method's convention for a norm
    after a conv); what a dense FPN lacks, the grouped convs declare
    (``method_state``).
    """

    count_norm_ops: bool = True

    def _replace_convs(self, make: Callable[[nn.Conv2d], nn.Conv2d],
                       grouped_laterals: bool) -> None:
        self.grouped_laterals = grouped_laterals
        groups = [self.fpn_convs]
        if grouped_laterals:
            groups.append(self.lateral_convs)
        for convs in groups:
            for module in convs:
                module.conv = make(module.conv)
                # The MAC convention's op per output when a norm follows.
                for flag in ('followed_by_norm', 'norm_follows'):
                    if hasattr(module.conv, flag):
                        setattr(module.conv, flag, self.count_norm_ops
                                and module.with_norm)
        keep_method_state_on_dense_load(self, _describe_conv_state)
        # FPN's default init_cfg (Xavier on layer='Conv2d') matches a module
        # by its class or direct bases' names, which misses the MSGC convs
        # (a Conv2d two levels up): name them too, so the grouped convs start
        # as a dense FPN's would.
        if isinstance(self.init_cfg, dict):
            layers = self.init_cfg.get('layer') or []
            layers = [layers] if isinstance(layers, str) else list(layers)
            if 'Conv2d' in layers:
                self.init_cfg = dict(self.init_cfg,
                                     layer=layers + ['MSGCConv2d'])

    def _check_inputs(self, inputs) -> None:
        """The backbone's levels must match ``in_channels``: mmdet's FPN
        would fail inside a lateral conv, naming neither the level nor the
        config key. (Checked per forward: a few integer comparisons.)"""
        got = [x.shape[1] for x in inputs]
        if got != list(self.in_channels):
            levels = ', '.join(
                f'level {i}: {c} vs {e}' for i, (c, e) in enumerate(
                    zip(got, self.in_channels)) if c != e)
            raise ValueError(
                f'{type(self).__name__}: in_channels={list(self.in_channels)}'
                f' does not match the backbone\'s outputs {got}' +
                (f' ({levels}, backbone vs neck)' if levels else
                 f' ({len(got)} levels vs {len(self.in_channels)})') +
                '; set the neck\'s in_channels to the backbone\'s output '
                'channels (and the backbone\'s out_indices)')

    def _setup_deploy(self, deploy: bool) -> None:
        self.deploy = False
        if deploy:
            self.switch_to_deploy()

    def forward(self, inputs) -> tuple:
        self._check_inputs(inputs)
        if not self.grouped_laterals:
            # The dense 1x1 laterals, so the record covers the whole neck.
            macs = sum(
                conv_macs(lateral.conv.in_channels, self.out_channels, 1,
                          x.shape[2:],
                          norm=self.count_norm_ops and lateral.with_norm)
                for lateral, x in zip(self.lateral_convs,
                                      inputs[self.start_level:]))
            self.report_cost(macs, macs, inputs[0].shape[0],
                             inputs[0].device)
        return super().forward(inputs)


@MODELS.register_module()
class MSGCFPN(_GroupedFPNMixin, FPN):
    """mmdet's ``FPN`` with MSGC output convs (``docs/msgc.md``).

    Every ``fpn_convs[i].conv`` (the 3x3 output convs, the extra stride-2
    levels included) becomes a :class:`~mmlgc.layers.SelfGatedMSGCConv2d`:
    its ``G`` output groups each read, per image, the input channels a mask
    generator on the level's pooled input opens. ``grouped_laterals`` does
    the same to the 1x1 lateral convs (mask from the backbone feature).

    Args:
        in_channels, out_channels, num_outs, start_level, end_level,
            add_extra_convs, relu_before_extra_convs, no_norm_on_lateral,
            conv_cfg, norm_cfg, act_cfg, upsample_cfg, init_cfg: mmdet
            ``FPN``'s.
        heads: groups ``G`` of every grouped conv (4).
        attention: add MSGC's attention generators.
        squeeze: generator hidden width ``C // squeeze`` (8: the levels are
            as wide as a Bottleneck's input).
        gate_bias: initial mask logit (2.0: ~88% of channels open).
        tau: gate temperature.
        generator_norm_cfg: norm in the generators' hidden layer; None (no
            norm, the default): see :class:`~mmlgc.layers.
            SelfGatedMSGCConv2d`.
        grouped_laterals: also group the 1x1 lateral convs.
        deploy: build the deployed structure (norms folded, sparse eval), so
            ``tools/deploy.py`` output loads.
    """

    sparse_types = (MSGCConv2d, )

    def __init__(self,
                 in_channels,
                 out_channels,
                 num_outs,
                 *args,
                 heads: int = 4,
                 attention: bool = False,
                 squeeze: int = 8,
                 gate_bias: float = 2.0,
                 tau: float = 2 / 3,
                 generator_norm_cfg=None,
                 grouped_laterals: bool = False,
                 deploy: bool = False,
                 **kwargs):
        owner = type(self).__name__
        check_divides(owner, 'heads', heads, [out_channels], 'out_channels')
        check_positive_int(owner, 'squeeze', squeeze)
        check_positive(owner, 'tau', tau)
        super().__init__(in_channels, out_channels, num_outs, *args,
                         **kwargs)
        options = dict(heads=heads, attention=attention, squeeze=squeeze,
                       gate_bias=gate_bias, tau=tau,
                       generator_norm_cfg=generator_norm_cfg)
        self._replace_convs(
            lambda conv: SelfGatedMSGCConv2d.from_conv(conv, **options),
            grouped_laterals)
        self._setup_deploy(deploy)

    def init_weights(self):
        super().init_weights()
        # FPN's Xavier init covers every nn.Conv2d, the generators' 1x1
        # convs included: restore the gate bias (and attention's identity
        # start). A Pretrained init keeps what it loaded.
        if isinstance(self.init_cfg, dict) and \
                self.init_cfg.get('type') == 'Pretrained':
            return
        for module in self.modules():
            if isinstance(module, SelfGatedMSGCConv2d):
                module.reset_generators()


@MODELS.register_module()
class DGCFPN(_GroupedFPNMixin, FPN):
    """mmdet's ``FPN`` with DGC output convs (``docs/dgc.md``).

    Every ``fpn_convs[i].conv`` (and with ``grouped_laterals`` every
    ``lateral_convs[i].conv``) becomes a :class:`~mmlgc.layers.DGCConv`:
    ``G`` heads, each keeping per image the ``C - k`` channels of its input
    level that its saliency generator rates highest, scaled by their
    saliency; outputs interleaved. ``k`` follows the model's
    ``DGCScheduleHook`` like the backbone's, and ``loss_saliency`` includes
    these layers.

    Unlike the backbone's DGC convs these read their input as it comes
    (``pre_activation=False``): a dense FPN's output convs read unrectified
    lateral sums, and a pre-activation ReLU would discard their negative
    half. ``pre_activation=True`` gives DGC's BN -> ReLU -> gated conv.

    Args:
        in_channels, out_channels, num_outs, start_level, end_level,
            add_extra_convs, relu_before_extra_convs, no_norm_on_lateral,
            conv_cfg, norm_cfg, act_cfg, upsample_cfg, init_cfg: mmdet
            ``FPN``'s.
        heads, keep, squeeze, mode, tie_break: :class:`~mmlgc.layers.
            DGCConv`'s (4 heads, keep 0.45, squeeze 16, ``'head'``).
        pre_activation: DGC's pre-activation BN -> ReLU before each grouped
            conv (False).
        dgc_norm_cfg: that pre-activation norm.
        grouped_laterals: also make the 1x1 lateral convs DGC.
        deploy: build the deployed structure (norms folded, sparse eval).
    """

    # DGC's counter does not count BN.
    count_norm_ops = False
    sparse_types = (DGCConv, )

    def __init__(self,
                 in_channels,
                 out_channels,
                 num_outs,
                 *args,
                 heads: int = 4,
                 keep: float = 0.45,
                 squeeze: int = 16,
                 mode: str = 'head',
                 tie_break: str = 'index',
                 pre_activation: bool = False,
                 dgc_norm_cfg: dict = dict(type='BN'),
                 grouped_laterals: bool = False,
                 deploy: bool = False,
                 **kwargs):
        owner = type(self).__name__
        check_divides(owner, 'heads', heads, [out_channels], 'out_channels')
        check_fraction(owner, 'keep', keep)
        check_positive_int(owner, 'squeeze', squeeze)
        super().__init__(in_channels, out_channels, num_outs, *args,
                         **kwargs)
        options = dict(heads=heads, keep=keep, squeeze=squeeze, mode=mode,
                       tie_break=tie_break, norm_cfg=dgc_norm_cfg,
                       pre_activation=pre_activation)
        self._replace_convs(
            lambda conv: DGCConv.from_conv(conv, **options),
            grouped_laterals)
        self._setup_deploy(deploy)


@MODELS.register_module()
class FLGCFPN(_GroupedFPNMixin, FPN):
    """mmdet's ``FPN`` with FLGC output convs (``docs/flgc.md``): the static
    variant of the grouped necks.

    Every ``fpn_convs[i].conv`` (and with ``grouped_laterals`` every
    ``lateral_convs[i].conv``) becomes a :class:`~mmlgc.layers.FLGCConv2d`:
    its input channels and filters are split into ``num_groups`` learnt,
    unequal groups, the same for every image. Deploy
    (``switch_to_deploy`` / ``deploy=True``) replaces them by
    :class:`~mmlgc.layers.RaggedGroupConv2d` on ``mmlgc.ops``; MACs are the
    actual connectivity (the cost records of
    :class:`~mmlgc.layers.ConnectionMaskedConv2d`).
    ``mmlgc.FLGCAssignmentHook`` logs these layers' group moves with the
    backbone's.

    Args:
        in_channels, out_channels, num_outs, start_level, end_level,
            add_extra_convs, relu_before_extra_convs, no_norm_on_lateral,
            conv_cfg, norm_cfg, act_cfg, upsample_cfg, init_cfg: mmdet
            ``FPN``'s.
        num_groups, logit_init, init_std: :class:`~mmlgc.layers.
            FLGCConv2d`'s (8 groups; ``'normal'`` logits as the reference).
        grouped_laterals: also make the 1x1 lateral convs FLGC.
        deploy: build the deployed structure (ragged group convs).
    """

    def __init__(self,
                 in_channels,
                 out_channels,
                 num_outs,
                 *args,
                 num_groups: int = 8,
                 logit_init: str = 'normal',
                 init_std: float = 0.0,
                 grouped_laterals: bool = False,
                 deploy: bool = False,
                 **kwargs):
        check_positive_int(type(self).__name__, 'num_groups', num_groups)
        super().__init__(in_channels, out_channels, num_outs, *args,
                         **kwargs)
        options = dict(num_groups=num_groups, logit_init=logit_init,
                       init_std=init_std)
        self._replace_convs(
            lambda conv: FLGCConv2d.from_conv(conv, **options),
            grouped_laterals)
        self._setup_deploy(deploy)


def _describe_conv_state(absent) -> str:
    # 'fpn_convs.0.conv.pre_norm.weight' -> 'pre_norm'
    names = dict.fromkeys(
        k.split('.conv.', 1)[-1].split('.', 1)[0] for k in absent)
    return f'{len(absent)} tensors of the grouped convs ({", ".join(names)})'
