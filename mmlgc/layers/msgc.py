"""MSGC's grouped dynamic conv (``docs/msgc.md``)."""
from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import plans
from ..complexity import CostReporter, conv_macs
from ..utils.checks import check_divides
from .generators import AttentionGenerator, MaskGenerator


class MSGCConv2d(nn.Conv2d):
    """A conv whose output group ``g`` reads ``input * mask[:, g]``.

    The weight keeps the dense ``[O, C, kh, kw]`` shape, so a dense
    checkpoint initialises it unchanged. ``forward`` takes the masks the
    block's generators produced (``[N, G, C]``, binary or binary x attention)
    and optionally an ``out_mask`` ``[N, O]`` of output channels some consumer
    reads.

    Two executions, identical up to float rounding on the channels consumers
    read, both through :func:`mmlgc.ops.dynamic_group_conv` (by its
    execution plan, :mod:`mmlgc.ops.plans`):

    * masked (training, or masks that need gradients): the MSGC
      reference's form, replicated input x mask and a ``groups=G`` dense
      conv (``sparse=False``: the op's reference,
      :func:`mmlgc.ops.reference.dynamic_group_conv`); straight-through
      gradients reach the generators.
    * sparse (eval, ``sparse_eval=True``): only the active (input, output)
      channel pairs are computed and ``out_mask``-ed outputs skipped (they
      come out as zeros). Where the kernels cannot run (no compiled
      extension, an unsupported dtype) the op runs the reference.

    ``sparse_eval=False`` keeps the masked form in eval (what the reference
    measures; the benchmark compares both).
    """

    sparse_eval: bool = True

    def forward(self, input: Tensor, mask: Tensor,
                out_mask: Optional[Tensor] = None) -> Tensor:
        if self.padding_mode != 'zeros':
            raise NotImplementedError('MSGCConv2d supports zero padding only')
        if self.groups != 1:
            raise ValueError('MSGCConv2d holds the dense weight (groups=1); '
                             'the groups come from the mask')
        # The masked form in training, with sparse_eval=False, and for masks
        # that carry gradients (even where grad mode is off, as in a trace):
        # it computes every output, as the reference does (in training,
        # batch-statistics norms see them). Otherwise the fastest exact
        # execution on this CPU (mmlgc.ops.plans); the op runs the reference
        # where its kernels cannot.
        sparse = self.runs_sparse(mask)
        return plans.dynamic_group_conv(input, self.weight, self.bias, mask,
                                        out_mask if sparse else None,
                                        self.stride, self.padding,
                                        self.dilation, sparse=sparse)

    def runs_sparse(self, mask: Tensor) -> bool:
        """Whether :meth:`forward` with ``mask`` takes the sparse
        execution (else the masked form)."""
        return (self.sparse_eval and not self.training
                and not mask.requires_grad)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> 'MSGCConv2d':
        """An MSGCConv2d with ``conv``'s geometry (fresh parameters)."""
        return cls(conv.in_channels, conv.out_channels, conv.kernel_size,
                   conv.stride, conv.padding, conv.dilation, 1,
                   conv.bias is not None)


class SelfGatedMSGCConv2d(CostReporter, MSGCConv2d):
    """An :class:`MSGCConv2d` with its own generators, conditioned on the
    conv's own input: ``forward(x)`` alone, so it drops in where a plain conv
    is called (an FPN's ``ConvModule.conv``).

    In a backbone block all masks come from the block input and the block
    reports its cost; a neck conv has no block around it, so this layer
    pools its input, predicts ``[N, G, C]`` masks (and optionally MSGC's
    attention) and reports its own :class:`~mmlgc.complexity.CostRecord`:
    ``dense`` is the conv (plus one op per output when a norm follows,
    ``followed_by_norm``), ``dynamic`` the conv at each image's mask density
    (attention multiply included) plus the GAP and the generators. No
    producer "bonus" is credited: in an FPN the conv's input channels (the
    lateral sums) also feed the top-down path, so the producer computes them
    whether this conv reads them or not.

    Parameter names of the conv are ``nn.Conv2d``'s, so a dense conv's
    ``weight``/``bias`` load unchanged; only ``mask_generator.*`` (and
    ``attention_generator.*``) are new.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation,
            bias: as ``nn.Conv2d`` (``groups`` is 1; the heads are groups).
        heads: ``G``; must divide ``out_channels``.
        attention: add MSGC's attention generator.
        squeeze: generator hidden width ``in_channels // squeeze``.
        gate_bias: initial mask logit (2.0: ~88% of channels open).
        tau: gate temperature.
        generator_norm_cfg: norm of the generators' hidden layer; None (the
            default here) for none: it would normalise pooled ``N x C``
            vectors, noise at detection batch sizes, and a neck has no
            classification pretraining to freeze statistics from
            (``docs/detection.md``: freeze, sync, or go without).
    """

    followed_by_norm: bool = False

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size,
                 stride=1,
                 padding=0,
                 dilation=1,
                 bias: bool = True,
                 heads: int = 4,
                 attention: bool = False,
                 squeeze: int = 8,
                 gate_bias: float = 2.0,
                 tau: float = 2 / 3,
                 generator_norm_cfg: Optional[dict] = None):
        check_divides(type(self).__name__, 'heads', heads, [out_channels],
                      'the output channels')
        super().__init__(in_channels, out_channels, kernel_size, stride,
                         padding, dilation, 1, bias)
        self.heads = heads
        self.mask_generator = MaskGenerator(in_channels, in_channels, heads,
                                            squeeze, gate_bias, tau,
                                            generator_norm_cfg)
        self.attention_generator = AttentionGenerator(
            in_channels, in_channels, heads, squeeze,
            generator_norm_cfg) if attention else None

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, **kwargs) -> 'SelfGatedMSGCConv2d':
        """A layer with ``conv``'s geometry (fresh parameters)."""
        if conv.groups != 1:
            raise ValueError('SelfGatedMSGCConv2d replaces dense convs '
                             '(groups=1)')
        return cls(conv.in_channels, conv.out_channels, conv.kernel_size,
                   conv.stride, conv.padding, conv.dilation,
                   conv.bias is not None, **kwargs)

    def reset_generators(self) -> None:
        """The generators' own initialisation (gate bias; attention starting
        at exactly 1), which a layer-wide init such as an FPN's Xavier
        overwrites."""
        self.mask_generator.init_output()
        if self.attention_generator is not None:
            self.attention_generator.init_output()

    def forward(self, input: Tensor) -> Tensor:
        pooled = F.adaptive_avg_pool2d(input, 1).flatten(1)
        mask = self.mask_generator(pooled)
        weighted = mask
        if self.attention_generator is not None:
            weighted = mask * self.attention_generator(pooled)
        out = super().forward(input, weighted)
        self._report(input, out, mask)
        return out

    def _report(self, input: Tensor, out: Tensor, mask: Tensor) -> None:
        dense = conv_macs(self.in_channels, self.out_channels,
                          self.kernel_size, out.shape[2:],
                          norm=self.followed_by_norm)
        numel = input.shape[1] * input.shape[2] * input.shape[3]
        generators = numel + self.mask_generator.macs  # GAP + generator
        attention = 0
        if self.attention_generator is not None:
            generators += self.attention_generator.macs
            attention = self.heads * numel  # the multiply on the input
        self.density = mask.detach().flatten(1).mean(1)
        self.report_cost(
            dense,
            mask.flatten(1).mean(1) * (dense + attention) + generators,
            input.shape[0])

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, heads={self.heads}'
