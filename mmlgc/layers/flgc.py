"""FLGC's fully learnable group convolution (``docs/flgc.md``; Wang et
al., CVPR 2019).

Each layer learns which of ``G`` groups every input channel belongs to
(logits ``[C, G]``) and which group every filter belongs to (logits
``[O, G]``). Forward uses the row-wise argmax as one-hot assignments ``S``
(channels) and ``T`` (filters); filter ``o`` reads channel ``c`` iff both
are in the same group: ``M = T·Sᵀ``. The conv trains densely with
``W ⊙ M`` (:class:`~mmlgc.layers.static_groups.ConnectionMaskedConv2d`) and
deploys as a ragged group conv (unequal groups, through the shared static
groups module).
"""
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils.checks import check_positive_int
from .static_groups import ConnectionMaskedConv2d

#: Substring of the parameter names of every FLGC assignment matrix (for
#: ``paramwise_cfg.custom_keys``: no weight decay on them).
GROUP_LOGITS_KEY = 'group_logits'


class FLGCConv2d(ConnectionMaskedConv2d, nn.Conv2d):
    """A conv whose input channels and filters are split into
    ``num_groups`` learnt, unequal groups.

    Parameters: the dense ``weight`` ``[O, C, kh, kw]`` (same name and shape
    as ``nn.Conv2d``, so a dense checkpoint loads) and the assignment logits
    ``in_group_logits`` ``[C, G]`` and ``out_group_logits`` ``[O, G]``.

    Gradients (straight-through, as in the paper): the forward mask is
    built from the one-hot argmax assignments; its gradient reaches the
    *soft* assignments (row softmax of the logits) as if the mask were
    ``T·Sᵀ`` with ``T = onehot − soft.detach() + soft`` (and ``S`` alike).
    Every logit of a row gets a gradient, so a channel or filter can move
    to another group. (A public re-implementation zeroes the gradient of
    every entry but the argmax's; its assignments never change.) The mask
    is assembled so that its forward values are exactly 0 and 1, which the
    MAC count and the deployed layout rely on.

    Degenerate groups are legal: a group with filters but no input channels
    gives those filters an all-zero row (they output their bias; their
    filter logits still get gradients from the channels of other groups and
    can leave); a group with channels but no filters leaves those channels
    unread (all-zero column). Both come out of the deployed layout as they
    are (an empty input set; channels no group reads).

    ``nn.Conv2d`` is repeated among the direct bases (the MRO is unchanged)
    because mmengine's initialisers (``dict(type='Kaiming', layer='Conv2d')``,
    mm* ResNets' default) match a module by its class and *direct* bases'
    names only: without it the dense weight would silently keep PyTorch's
    default initialisation.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation,
        bias: as ``nn.Conv2d`` (``groups`` is always 1: the groups come
            from the assignments).
        num_groups: ``G``, any positive integer (groups come out unequal;
            a group may end up empty).
        logit_init: ``'normal'``: i.i.d. N(0, 1) logits, as the public
            reference initialises them (the paper gives no initialisation),
            i.e. random groups of random sizes; ``'contiguous'``: the
            standard group conv (channel ``c`` in group ``⌊c·G/C⌋``, filter
            ``o`` in ``⌊o·G/O⌋``; logit 1 for that group, 0 elsewhere)
            plus N(0, ``init_std``) noise, so training starts from equal
            groups (exact when G divides C and O, with the default no
            noise).
        init_std: noise of the ``'contiguous'`` initialisation.
        norm_follows: a BN follows (MAC convention, see the base class).
    """

    # The assignments are the layer's connectivity: model averaging (EMA)
    # copies them, so the averaged weights keep the trained groups
    # (mmlgc.utils.model_averaging).
    discrete_state = ('in_group_logits', 'out_group_logits')
    # What the dense conv has not: a dense checkpoint keeps them at their
    # initialisation (mmlgc.models.dense_checkpoints).
    method_state = discrete_state

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size,
                 stride=1,
                 padding=0,
                 dilation=1,
                 bias: bool = True,
                 num_groups: int = 8,
                 logit_init: str = 'normal',
                 init_std: float = 0.0,
                 norm_follows: bool = True):
        owner = type(self).__name__
        check_positive_int(owner, 'num_groups', num_groups)
        if logit_init not in ('normal', 'contiguous'):
            raise ValueError(f'{owner}: logit_init={logit_init!r} must be '
                             "'normal' or 'contiguous'")
        super().__init__(in_channels, out_channels, kernel_size, stride,
                         padding, dilation, 1, bias)
        self.num_groups = num_groups
        self.logit_init, self.init_std = logit_init, init_std
        self.norm_follows = norm_follows
        self.in_group_logits = nn.Parameter(
            torch.empty(in_channels, num_groups))
        self.out_group_logits = nn.Parameter(
            torch.empty(out_channels, num_groups))
        self.reset_group_logits()

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, **kwargs) -> 'FLGCConv2d':
        """An FLGC conv with ``conv``'s geometry (fresh parameters)."""
        if conv.groups != 1:
            raise ValueError('FLGC replaces a dense conv (groups=1), got '
                             f'groups={conv.groups}')
        return cls(conv.in_channels, conv.out_channels, conv.kernel_size,
                   conv.stride, conv.padding, conv.dilation,
                   conv.bias is not None, **kwargs)

    @torch.no_grad()
    def reset_group_logits(self) -> None:
        """(Re)initialise the assignment logits (see ``logit_init``)."""
        for logits in (self.in_group_logits, self.out_group_logits):
            if self.logit_init == 'normal':
                nn.init.normal_(logits)
                continue
            rows = logits.shape[0]
            group = torch.arange(rows) * self.num_groups // rows
            logits.copy_(F.one_hot(group, self.num_groups).to(logits))
            if self.init_std > 0:
                logits.add_(torch.randn_like(logits), alpha=self.init_std)

    def assignments(self):
        """(group of each input channel ``[C]``, group of each filter
        ``[O]``): the row-wise argmax (ties: the lower group)."""
        return (self.in_group_logits.detach().argmax(1),
                self.out_group_logits.detach().argmax(1))

    def group_sizes(self):
        """(input channels per group ``[G]``, filters per group ``[G]``)."""
        channels, filters = self.assignments()
        return (torch.bincount(channels, minlength=self.num_groups),
                torch.bincount(filters, minlength=self.num_groups))

    def connection_mask(self) -> Tensor:
        """``M = T·Sᵀ`` ``[O, C]`` from the one-hot assignments, with
        straight-through gradients to the soft assignments."""
        channels, filters = self.assignments()
        dtype = self.weight.dtype
        hard = (filters[:, None] == channels[None, :]).to(dtype)
        needs_grad = torch.is_grad_enabled() and (
            self.in_group_logits.requires_grad
            or self.out_group_logits.requires_grad)
        if not needs_grad:
            return hard
        soft_in = self.in_group_logits.softmax(1).to(dtype)
        soft_out = self.out_group_logits.softmax(1).to(dtype)
        hard_in = F.one_hot(channels, self.num_groups).to(dtype)
        hard_out = F.one_hot(filters, self.num_groups).to(dtype)
        # d(T_st·S_stᵀ) with the forward values T = hard_out, S = hard_in:
        # dM/dT = S, dM/dS = T. Added as (x − x.detach()), exactly 0 in the
        # forward, so the mask's values stay exactly 0/1.
        surrogate = hard_out @ soft_in.t() + soft_out @ hard_in.t()
        return hard + (surrogate - surrogate.detach())

    def extra_repr(self) -> str:
        return super().extra_repr() + f', num_groups={self.num_groups}'
