"""MSGC's grouped dynamic conv (``methods.md`` §1)."""
from typing import Optional

from torch import Tensor, nn

from .. import ops


class MSGCConv2d(nn.Conv2d):
    """A conv whose output group ``g`` reads ``input * mask[:, g]``.

    The weight keeps the dense ``[O, C, kh, kw]`` shape, so a dense
    checkpoint initialises it unchanged. ``forward`` takes the masks the
    block's generators produced (``[N, G, C]``, binary or binary x attention)
    and optionally an ``out_mask`` ``[N, O]`` of output channels some consumer
    reads.

    Two executions, identical up to float rounding on the channels consumers
    read:

    * masked (training, or whenever the masks need gradients): the MSGC
      reference's form, replicated input x mask and a ``groups=G`` dense conv
      (:func:`mmlgc.ops.reference.dynamic_group_conv`); straight-through
      gradients reach the generators.
    * sparse (eval, ``sparse_eval=True``): :func:`mmlgc.ops.dynamic_group_conv`
      computes only the active (input, output) channel pairs and skips
      ``out_mask``-ed outputs (they come out as zeros). Without the compiled
      extension it falls back to the reference.

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
        args = (self.stride, self.padding, self.dilation)
        if self.training or not self.sparse_eval or mask.requires_grad:
            return ops.reference.dynamic_group_conv(input, self.weight,
                                                    self.bias, mask, None,
                                                    *args)
        return ops.dynamic_group_conv(input, self.weight, self.bias, mask,
                                      out_mask, *args)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> 'MSGCConv2d':
        """An MSGCConv2d with ``conv``'s geometry (fresh parameters)."""
        return cls(conv.in_channels, conv.out_channels, conv.kernel_size,
                   conv.stride, conv.padding, conv.dilation, 1,
                   conv.bias is not None)
