"""DGC's dynamic group conv (``docs/dgc.md``) and the pruning schedule.

A :class:`DGCConv` is a pre-activation conv (its own BN -> ReLU on its
input) split into ``G`` heads. Each head has a saliency generator, keeps per
sample the ``C - k`` most salient input channels (scaled by their saliency)
and convolves them into ``O / G`` outputs; the heads' outputs are interleaved
(channel shuffle). ``k`` follows the training progress (:func:`prune_schedule`)
and lives in a persistent buffer, so evaluation and resumed runs use the
value training reached.

DGC-G, the global-threshold variant of the paper (never released): instead of
``k`` per head, a channel is kept iff its saliency exceeds one network-wide
threshold (buffer ``threshold`` of every layer), estimated by
:class:`GlobalThreshold` (driven by :class:`mmlgc.engine.DGCScheduleHook`) so
that on average the scheduled fraction is pruned. Heads and layers then keep
uneven numbers of channels.
"""
import math
from typing import Iterable, List, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from torch import Tensor, nn

from ..ops import affine_relu_mean, plans
from ..complexity import CostReporter, conv_macs
from ..utils.checks import check_divides, check_fraction, check_positive_int
from .gates import TopKSaliencyGate
from .generators import SaliencyGenerator
from .norms import (at_initial_statistics, eval_batch_norm_affine,
                    has_running_statistics, is_eval_batch_norm)

#: DGC's schedule: no pruning before 1/12 of training, a linear ramp to the
#: final ``k`` at 3/4, then fixed.
RAMP_BEGIN, RAMP_END = 1 / 12, 3 / 4


def prune_schedule(progress: float,
                   ramp_begin: float = RAMP_BEGIN,
                   ramp_end: float = RAMP_END) -> float:
    """Fraction in [0, 1] of the final pruning reached at ``progress``
    (iterations done / total). ``ramp_begin == ramp_end`` gives a step
    (``0, 0``: prune fully from the start, for fine-tuning a DGC network).

    The reference: ``k = round(C·(1−keep)·1.5·(p − 1/12))`` for
    ``1/12 < p < 3/4`` (``1.5 = 1 / (3/4 − 1/12)``) and the full ``k`` from
    3/4 on.
    """
    if not 0 <= ramp_begin <= ramp_end <= 1:
        raise ValueError(f'prune_schedule: ramp_begin={ramp_begin!r}, '
                         f'ramp_end={ramp_end!r} must satisfy '
                         '0 <= ramp_begin <= ramp_end <= 1')
    if progress >= ramp_end:
        return 1.0
    if progress <= ramp_begin:
        return 0.0
    return (progress - ramp_begin) / (ramp_end - ramp_begin)


def generator_squeeze(owner: str, in_channels: int, squeeze: int) -> int:
    """The squeeze ratio of a DGC conv's saliency generators: ``squeeze``,
    halved below 80 input channels as in the reference. A ratio that leaves
    no hidden channel is an error of ``owner`` that gives ``squeeze`` (the
    value the user set, not the halved one)."""
    check_positive_int(owner, 'squeeze', squeeze)
    halved = max(squeeze // 2, 1) if in_channels < 80 else squeeze
    if in_channels < halved:
        largest = 2 * in_channels + 1 if in_channels < 80 else in_channels
        raise ValueError(
            f'{owner}: squeeze={squeeze} leaves the saliency generators no '
            f'hidden channel for {in_channels} input channels (hidden width '
            f'{in_channels} // {halved}: DGC halves squeeze below 80 input '
            f'channels): squeeze must be at most {largest}')
    return halved


class DGCConv(CostReporter, nn.Conv2d):
    """Dynamic group conv: BN -> ReLU -> G saliency-gated heads -> shuffle.

    The weight is one dense ``[O, C, kh, kw]`` tensor in the *output* order
    (after the shuffle): output channel ``o`` belongs to head ``o % G``, as
    the reference's interleaving (``out[j·G + g] = head_g[j]``) puts it. So
    the shuffle costs no parameter permutation: a dense conv's weight
    (mmdet/torchvision checkpoint) loads as is, the BN after the conv folds
    row-wise as for any conv (``mmcv.cnn.fuse_conv_bn``), and the op reads
    its heads in that order (``interleaved=True``): the kernels write each
    head's outputs where the shuffle puts them, with no copy afterwards.

    Executions (identical up to rounding), both through
    :func:`mmlgc.ops.dynamic_group_conv` (by its execution plan,
    :mod:`mmlgc.ops.plans`):

    * masked (training, or masks that need gradients): the reference's
      form, replicated input x saliency mask and one ``groups=G`` conv
      (``sparse=False``: the op's reference,
      :func:`mmlgc.ops.reference.dynamic_group_conv`), then the shuffle.
    * sparse (eval with ``sparse_eval``): the per-sample "index layer" the
      reference's users asked for: the op gathers each head's kept channels
      (scaled by their saliency) and computes only those pairs, into the
      shuffled positions. Where the kernels cannot run (no compiled
      extension, an unsupported dtype) the op runs the reference.

    Each forward leaves:

    * ``saliency_l1``: ``Σ_heads mean_{n,c}(s)``, the layer's part of DGC's
      L1 term (the reference's ``mask.mean()`` per head, summed);
    * a cost record (:mod:`mmlgc.complexity`) in the DGC reference counter's
      convention: pre-activation ReLU (input numel), GAP (input numel), the
      generators (:attr:`SaliencyGenerator.macs`) and the conv, scaled per
      sample and head by the fraction of channels it reads (``dynamic``) or
      by ``keep`` (``expected``, the reference counter's static number). BN
      is not counted. ``dense`` is the unpruned layer: ReLU + full conv.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation,
            bias: as ``nn.Conv2d`` (``groups`` is always 1: the heads are the
            groups).
        heads: ``G``; must divide ``out_channels``.
        keep: target fraction of input channels a head keeps (0.45 for the
            paper's ResNet-18, i.e. prune 55%).
        squeeze: generator squeeze ratio ``r``, halved when
            ``in_channels < 80`` as in the reference (16 -> 8).
        mode: ``'head'`` (DGC: top-k per sample and head) or ``'global'``
            (DGC-G: one network-wide saliency threshold).
        tie_break: see :class:`TopKSaliencyGate` (``'index'``: exactly ``k``).
        norm_cfg: the pre-activation norm (mmcv config).
        pre_activation: apply the pre-activation norm -> ReLU (DGC's
            design). ``False`` gates and convolves the input as it comes
            (no ``pre_norm``, no ReLU): for convs whose dense counterpart
            reads unrectified features, e.g. an FPN's output convs on the
            lateral sums (:class:`mmlgc.models.DGCFPN`).
        start_as_dense: start as the dense conv it replaces, for training
            from a dense checkpoint (not DGC's from-scratch init): the
            saliencies start at exactly 1 (:class:`SaliencyGenerator`'s
            ``uniform_start``), and at its first training batch a
            pre-activation BN still at its initial statistics takes that
            batch's per-channel mean and standard deviation as its bias and
            weight (a data-dependent init, as Glow's ActNorm; averaged over
            the processes of a distributed run), so that BN -> ReLU passes
            a non-negative input (every DGC conv of a ResNet reads a ReLU's
            output) through unchanged. With ``k = 0``, as DGC's schedule
            starts, the layer then computes the dense conv.
    """

    MODES = ('head', 'global')
    # The schedule's k and DGC-G's threshold: model averaging (EMA) copies
    # them (mmlgc.utils.model_averaging).
    discrete_state = ('pruned_channels', 'threshold')
    # What the dense conv has not: a dense checkpoint keeps them at their
    # initialisation (mmlgc.models.dense_checkpoints).
    method_state = ('pre_norm', 'saliency_generator', 'pruned_channels',
                    'threshold')
    sparse_eval: bool = True

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size,
                 stride=1,
                 padding=0,
                 dilation=1,
                 bias: bool = False,
                 heads: int = 4,
                 keep: float = 0.45,
                 squeeze: int = 16,
                 mode: str = 'head',
                 tie_break: str = 'index',
                 norm_cfg: dict = dict(type='BN'),
                 pre_activation: bool = True,
                 start_as_dense: bool = False):
        owner = type(self).__name__
        check_divides(owner, 'heads', heads, [out_channels],
                      'the output channels')
        check_fraction(owner, 'keep', keep)
        if mode not in self.MODES:
            raise ValueError(f'{owner}: mode={mode!r} must be one of '
                             f'{self.MODES}')
        super().__init__(in_channels, out_channels, kernel_size, stride,
                         padding, dilation, 1, bias)
        self.heads, self.keep, self.mode = heads, keep, mode
        self.pre_activation = pre_activation
        if pre_activation:
            self.pre_norm = build_norm_layer(norm_cfg, in_channels)[1]
            if start_as_dense and not (
                    has_running_statistics(self.pre_norm)
                    and getattr(self.pre_norm, 'affine', False)):
                raise ValueError(
                    f'{owner}: start_as_dense=True sets the pre-activation '
                    "norm's affine and running statistics from a batch; "
                    f'norm_cfg={norm_cfg!r} ({type(self.pre_norm).__name__})'
                    ' has not both: use a BN type with affine=True')
        self.start_as_dense = start_as_dense
        self.saliency_generator = SaliencyGenerator(
            in_channels, heads, generator_squeeze(owner, in_channels,
                                                  squeeze),
            uniform_start=start_as_dense)
        self.gate = TopKSaliencyGate(tie_break)
        # k (channels each head drops per sample) and DGC-G's threshold:
        # persistent, so eval and a resumed run use what training reached.
        self.register_buffer('pruned_channels',
                             torch.zeros((), dtype=torch.long))
        self.register_buffer('threshold', torch.tensor(float('-inf')))
        self._saliency: Optional[Tensor] = None  # of the last forward
        # DGC-G statistics: the hook sets ``collect_saliency`` for the
        # iterations it samples; the forward then leaves ``collected``.
        self.collect_saliency = False
        self.collected = None

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, **kwargs) -> 'DGCConv':
        """A DGCConv with ``conv``'s geometry (fresh parameters)."""
        if conv.groups != 1:
            raise ValueError(f'{cls.__name__} replaces dense convs '
                             f'(groups=1), got groups={conv.groups}')
        return cls(conv.in_channels, conv.out_channels, conv.kernel_size,
                   conv.stride, conv.padding, conv.dilation,
                   conv.bias is not None, **kwargs)

    def kaiming_init_per_head(self) -> None:
        """Kaiming normal (fan_out, ReLU) as the reference initialises each
        head: its own ``[O/G, C, kh, kw]`` conv, so fan_out is ``O/G·kh·kw``
        (mm*'s Kaiming init sees the dense ``[O, C, kh, kw]`` weight and
        gives it ``sqrt(G)`` times less spread)."""
        fan_out = (self.out_channels // self.heads * self.kernel_size[0] *
                   self.kernel_size[1])
        nn.init.normal_(self.weight, 0, math.sqrt(2 / fan_out))
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    # -- schedule -----------------------------------------------------------
    def k_at(self, fraction: float) -> int:
        """``k`` at a fraction of the final pruning (the reference's
        ``round(C·(1−keep)·fraction)``; Python's round, as there)."""
        return round(self.in_channels * (1 - self.keep) * fraction)

    def set_progress(self, progress: float, ramp_begin: float = RAMP_BEGIN,
                     ramp_end: float = RAMP_END) -> None:
        self.pruned_channels.fill_(
            self.k_at(prune_schedule(progress, ramp_begin, ramp_end)))

    @property
    def k(self) -> int:
        return int(self.pruned_channels)

    # -- forward ------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        if self.padding_mode != 'zeros':
            raise NotImplementedError('DGCConv supports zero padding only')
        # A strided 1x1 conv (a ResNet downsample) running sparsely reads
        # every stride-th pixel: only those are activated (the pool still
        # sees all), and the conv runs unstrided on them.
        subsample = self._reads_subsampled()
        activated, pooled = self._pre_activate(
            x, self.stride if subsample else (1, 1))
        saliency = self.saliency_generator(pooled)
        self._saliency = saliency
        if self.mode == 'global':
            mask = self.gate.threshold(saliency, float(self.threshold))
        else:
            mask = self.gate(saliency, self.k)
        out = self._grouped_conv(activated, mask,
                                 (1, 1) if subsample else self.stride)
        conv = conv_macs(self.in_channels, self.out_channels,
                         self.kernel_size, out.shape[2:], norm=False)
        if self.collect_saliency and self.training:
            # Input channel of one head: conv / (G·C) MACs.
            self.collected = (saliency.detach(),
                              conv / (self.heads * self.in_channels))
        self._report(x, mask, conv)
        return out

    @property
    def saliency_l1(self) -> Optional[Tensor]:
        """``Σ_heads mean_{n,c}(s)`` of the last forward, computed when read
        (the loss reads it in training; eval never does)."""
        saliency = self._saliency
        return None if saliency is None else saliency.mean((0, 2)).sum()

    def _reads_subsampled(self) -> bool:
        """A strided 1x1 conv without padding whose forward runs sparsely
        for sure (no gradients anywhere)."""
        return (self.kernel_size == (1, 1) and self.padding == (0, 0)
                and self.stride != (1, 1) and self.sparse_eval
                and not self.training and not torch.is_grad_enabled())

    def _pre_activate(self, x: Tensor, stride=(1, 1)):
        """The pre-activation BN -> ReLU (if any) of ``x`` at every
        ``stride``-th row and column, and the global average pool of all of
        it (the generators' input). An eval BN is one affine per channel:
        then the norm, the ReLU and the pool run as one pass
        (:func:`mmlgc.ops.affine_relu_mean`; as three, they cost DGC
        ResNet-18 ~40 of its ~330 ms at 800x1216, one thread)."""
        sub_h, sub_w = stride
        if not self.pre_activation:
            return x[:, :, ::sub_h, ::sub_w], x.mean((2, 3))
        norm = self.pre_norm
        if is_eval_batch_norm(norm):
            return affine_relu_mean(x, *self._pre_norm_affine(), stride)
        if (self.start_as_dense and self.training
                and at_initial_statistics(norm)):
            self._pass_through_pre_norm(x)
        # In place on the norm's fresh output: at detection sizes a second
        # full-size tensor cost DGC ResNet-50 ~0.1 s (800x1216).
        x = F.relu(norm(x), inplace=True)
        return x[:, :, ::sub_h, ::sub_w], x.mean((2, 3))

    def _pre_norm_affine(self):
        """The eval pre-activation BN as ``(scale, shift)`` per channel
        (as ATen's eval BN computes them), kept until its tensors change;
        with gradients, recomputed each call."""
        norm = self.pre_norm
        tensors = (norm.weight, norm.bias, norm.running_mean,
                   norm.running_var)
        if torch.is_grad_enabled() and any(
                t is not None and t.requires_grad for t in tensors):
            return eval_batch_norm_affine(norm)
        key = plans.state_key(tensors)
        cached = self.__dict__.get('_pre_norm_affine_cache')
        if cached is None or cached[0] != key:
            with torch.no_grad():
                cached = (key, eval_batch_norm_affine(norm))
            self._pre_norm_affine_cache = cached
        return cached[1]

    @torch.no_grad()
    def _pass_through_pre_norm(self, x: Tensor) -> None:
        """``start_as_dense``: the pre-activation BN's affine and running
        statistics from ``x``'s per-channel moments, so that it maps ``x``
        (this batch exactly) to itself."""
        moments = torch.stack([x.mean((0, 2, 3)), x.square().mean((0, 2, 3))])
        if dist.is_available() and dist.is_initialized():
            # Every process the same parameters, as DDP assumes.
            dist.all_reduce(moments)
            moments /= dist.get_world_size()
        mean, var = moments[0], (moments[1] - moments[0].square()).clamp_(0)
        norm = self.pre_norm
        norm.weight.copy_((var + norm.eps).sqrt())
        norm.bias.copy_(mean)
        norm.running_mean.copy_(mean)
        norm.running_var.copy_(var)

    def _grouped_conv(self, x: Tensor, mask: Tensor, stride) -> Tensor:
        # The masked form in training, with sparse_eval=False, and for masks
        # that carry gradients (even where grad mode is off, as in a
        # trace); otherwise the fastest exact execution on this CPU
        # (mmlgc.ops.plans). The op runs the reference where its kernels
        # cannot. Head g writes the output channels j·G + g (the shuffle).
        sparse = (self.sparse_eval and not self.training
                  and not mask.requires_grad)
        return plans.dynamic_group_conv(x, self.weight, self.bias, mask,
                                        None, stride, self.padding,
                                        self.dilation, sparse=sparse,
                                        interleaved=True)

    def _report(self, x: Tensor, mask: Tensor, conv: int) -> None:
        numel = x.shape[1] * x.shape[2] * x.shape[3]
        gap = numel
        relu = numel if self.pre_activation else 0
        fixed = relu + gap + self.saliency_generator.macs
        # Per sample, the fraction of (head, input channel) pairs read, and
        # the full conv's MACs: kept for analyses (DGC-G's uneven layers).
        self.read_fraction = (mask.detach() != 0).flatten(1).float().mean(1)
        self.conv_cost = conv
        self.report_cost(relu + conv, fixed + self.read_fraction * conv,
                         x.shape[0], expected=fixed + self.keep * conv)

    def extra_repr(self) -> str:
        return (f'{super().extra_repr()}, heads={self.heads}, '
                f'keep={self.keep}, mode={self.mode!r}, '
                f'pre_activation={self.pre_activation}')


def dgc_layers(model: nn.Module) -> List[DGCConv]:
    return [m for m in model.modules() if isinstance(m, DGCConv)]


def weighted_quantile(values: Tensor, weights: Tensor,
                      fraction: float) -> float:
    """Smallest value ``t`` whose weighted share of values ``<= t`` reaches
    ``fraction``; ``-inf`` for ``fraction <= 0`` (nothing pruned)."""
    if fraction <= 0:
        return float('-inf')
    order = values.argsort()
    share = weights[order].double().cumsum(0)
    share = share / share[-1]
    index = torch.searchsorted(share, share.new_tensor([fraction]))
    return float(values[order][index.clamp(max=len(values) - 1)])


class GlobalThreshold:
    """DGC-G's network-wide saliency threshold.

    The paper reports a global-threshold variant but released no code; this
    is our design. Over the sampled iterations (the last ones of each
    epoch, chosen by the hook) every layer's raw saliencies (before any
    gating) are pooled network-wide; per iteration the threshold is the
    weighted quantile at the scheduled prune fraction, and the estimate is
    the mean of these per-iteration thresholds. Gating ``s > threshold``
    then prunes on average that fraction while heads and layers keep uneven
    numbers of channels.

    ``weighting='macs'`` (default) weighs a channel of a head by the MACs
    its removal saves (``k²·(O/G)·H'W'``), so the fraction is of conv MACs,
    as DGC's per-head ``k`` prunes that fraction of every layer's MACs;
    ``'channels'`` counts channels. Averaging per-iteration quantiles keeps
    memory constant (no saliency history) and matches the batch-level
    selection the network will see.
    """

    WEIGHTINGS = ('macs', 'channels')

    def __init__(self, weighting: str = 'macs'):
        if weighting not in self.WEIGHTINGS:
            raise ValueError(f'{type(self).__name__}: weighting='
                             f'{weighting!r} must be one of {self.WEIGHTINGS}')
        self.weighting = weighting
        self.thresholds: List[float] = []

    def add(self, layers: Iterable[DGCConv], fraction: float) -> None:
        """Add one iteration: the ``collected`` saliencies of ``layers``
        (consumed), at target prune ``fraction`` of the total."""
        values, weights = [], []
        for layer in layers:
            if layer.collected is None:
                continue
            saliency, channel_macs = layer.collected
            layer.collected = None
            values.append(saliency.flatten().float())
            weights.append(
                torch.full_like(values[-1], channel_macs if self.weighting ==
                                'macs' else 1.0))
        if values:
            self.thresholds.append(
                weighted_quantile(torch.cat(values), torch.cat(weights),
                                  fraction))

    def pop(self) -> Optional[float]:
        """The estimate over the iterations added since the last pop (None
        if none were)."""
        if not self.thresholds:
            return None
        values = torch.tensor(self.thresholds, dtype=torch.float64)
        self.thresholds = []
        if torch.isinf(values).any():
            return float('-inf')
        return float(values.mean())

