"""Static learned groups (SG-CNN's clusters, FLGC's assignments;
``docs/ops.md``): a conv whose connectivity is a fixed ``[O, C]`` mask
while it trains, and its deployed form on the ragged group conv op.

Deploy recipe (CondenseNet's, §5): filters that read the same input-channel
set form one group; the groups run as one :func:`mmlgc.ops.ragged_group_conv`
(unequal sizes, overlapping input sets allowed), whose outputs come out in
group order. The original order is restored by one ``index_select`` unless
:func:`fold_output_order` moved the permutation into the single consumer.
"""
from dataclasses import dataclass
from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from .. import ops
from ..ops import plans
from ..complexity import CostReporter, conv_macs


class ConnectionMaskedConv2d(nn.Conv2d, CostReporter):
    """A conv whose filter ``o`` reads input channel ``c`` iff
    ``connection_mask()[o, c]`` is non-zero.

    Subclasses define :meth:`connection_mask` (``[O, C]``, 0/1 values; it may
    carry straight-through gradients). The weight keeps the dense
    ``[O, C, kh, kw]`` shape and name, so a dense checkpoint loads unchanged.
    ``forward`` is the dense conv with ``weight * mask`` (what the methods
    train with) and reports its MACs from the actual connectivity.

    Attributes:
        norm_follows: a BN (+activation) follows, so each output element
            costs one more op (the MSGC counting convention).
    """

    norm_follows: bool = True

    def connection_mask(self) -> Tensor:
        raise NotImplementedError

    def forward(self, input: Tensor) -> Tensor:
        if self.groups != 1 or self.padding_mode != 'zeros':
            raise ValueError(
                f'{type(self).__name__} needs groups=1 and zero padding: the '
                'groups come from its connection mask')
        mask = self.connection_mask()
        if mask.shape != self.weight.shape[:2]:
            raise ValueError(
                f'{type(self).__name__}: connection mask is '
                f'{tuple(mask.shape)}, expected [O, C] = '
                f'{list(self.weight.shape[:2])}')
        weight = self.weight * mask.to(self.weight.dtype)[:, :, None, None]
        out = F.conv2d(input, weight, self.bias, self.stride, self.padding,
                       self.dilation)
        connections = float(mask.detach().count_nonzero())
        self.report_cost(
            *connectivity_macs(self, connections, out.shape[2:]),
            batch_size=out.shape[0],
            device=out.device)
        return out

    def layout(self) -> 'GroupLayout':
        """The current connectivity as groups."""
        return GroupLayout.from_mask(self.connection_mask().detach())


def connectivity_macs(conv, connections: float, out_size) -> tuple:
    """(dense, actual) MACs per sample of ``conv`` (a masked or ragged conv
    with ``in_channels``, ``out_channels``, ``kernel_size`` and
    ``norm_follows``) when ``connections`` (filter, channel) pairs are
    active."""
    kh, kw = _pair(conv.kernel_size)
    spatial = int(out_size[0]) * int(out_size[1])
    dense = conv_macs(conv.in_channels, conv.out_channels, (kh, kw),
                      out_size, norm=conv.norm_follows)
    actual = kh * kw * connections * spatial
    if conv.norm_follows:
        actual += conv.out_channels * spatial
    return dense, actual


@dataclass
class GroupLayout:
    """Static connectivity as groups: the filters ``out_index[g]`` all read
    exactly the input channels ``in_index[g]`` (sorted int64 tensors; the
    ``out_index`` partition the filters, ``in_index`` may overlap or be
    empty)."""
    in_index: List[Tensor]
    out_index: List[Tensor]

    @classmethod
    def from_mask(cls, mask: Tensor) -> 'GroupLayout':
        """Groups of ``mask`` ``[O, C]`` (non-zero = connected): one per
        distinct row, ordered by their first filter (deterministic)."""
        if mask.dim() != 2:
            raise ValueError(f'{cls.__name__}.from_mask: a connection mask '
                             f'is [O, C], got {tuple(mask.shape)}')
        rows = mask.detach().cpu() != 0
        sets, group_of = torch.unique(rows, dim=0, return_inverse=True)
        members = [
            torch.nonzero(group_of == g).flatten() for g in range(len(sets))
        ]
        order = sorted(range(len(sets)), key=lambda g: int(members[g][0]))
        return cls(
            in_index=[torch.nonzero(sets[g]).flatten() for g in order],
            out_index=[members[g] for g in order])

    @property
    def in_sizes(self) -> List[int]:
        return [len(i) for i in self.in_index]

    @property
    def out_sizes(self) -> List[int]:
        return [len(o) for o in self.out_index]

    @property
    def connections(self) -> int:
        return sum(i * o for i, o in zip(self.in_sizes, self.out_sizes))

    @property
    def filter_order(self) -> Tensor:
        """Filter at each output position of the ragged op."""
        return torch.cat(self.out_index)

    def to_mask(self, in_channels: int) -> Tensor:
        """The ``[O, C]`` 0/1 float mask this layout describes."""
        mask = torch.zeros(sum(self.out_sizes), in_channels)
        for ins, outs in zip(self.in_index, self.out_index):
            mask[outs[:, None], ins[None, :]] = 1
        return mask


def inverse_permutation(order: Tensor) -> Tensor:
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order), device=order.device)
    return inverse


class RaggedGroupConv2d(nn.Module, CostReporter):
    """A deployed static grouped conv on
    :func:`mmlgc.ops.ragged_group_conv`.

    Built from a trained :class:`ConnectionMaskedConv2d` by :meth:`from_conv`
    (BN already folded into it). The group structure lives in buffers
    (``in_index``, ``in_sizes``, ``out_sizes``, ``output_index``) and the
    packed weight's size depends on it, so a module built with any layout
    (e.g. from a ``deploy=True`` config) takes the sizes of the deployed state
    dict it loads.

    ``output_index`` gathers the original filter order from the op's group
    order; it is empty once :func:`fold_output_order` moved the order into the
    consumer, and the output then stays in group order.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size,
                 stride=1,
                 padding=0,
                 dilation=1,
                 bias: bool = True,
                 norm_follows: bool = True):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride, self.padding = _pair(stride), _pair(padding)
        self.dilation = _pair(dilation)
        self.norm_follows = norm_follows
        # Placeholder structure: one group reading nothing.
        self.weight = nn.Parameter(torch.empty(0))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.register_buffer('in_index', torch.empty(0, dtype=torch.long))
        self.register_buffer('in_sizes', torch.zeros(1, dtype=torch.long))
        self.register_buffer('out_sizes',
                             torch.tensor([out_channels], dtype=torch.long))
        self.register_buffer('output_index',
                             torch.arange(out_channels, dtype=torch.long))
        self._register_load_state_dict_pre_hook(_take_loaded_sizes,
                                                with_module=True)
        self.register_load_state_dict_post_hook(
            lambda module, _: module._refresh())
        self._refresh()

    @classmethod
    def from_conv(cls, conv: ConnectionMaskedConv2d) -> 'RaggedGroupConv2d':
        """The compact form of ``conv``'s current connectivity (same outputs
        in the same order)."""
        layout = conv.layout()
        deployed = cls(conv.in_channels, conv.out_channels, conv.kernel_size,
                       conv.stride, conv.padding, conv.dilation,
                       conv.bias is not None, conv.norm_follows)
        weight = conv.weight.detach()
        blocks = [
            weight[outs][:, ins] for ins, outs in zip(layout.in_index,
                                                      layout.out_index)
        ]
        order = layout.filter_order.to(weight.device)
        deployed.weight = nn.Parameter(ops.pack_weights(blocks))
        if conv.bias is not None:
            deployed.bias = nn.Parameter(conv.bias.detach()[order].clone())
        device = weight.device
        deployed.in_index = torch.cat(layout.in_index).to(device)
        deployed.in_sizes = torch.tensor(layout.in_sizes, device=device)
        deployed.out_sizes = torch.tensor(layout.out_sizes, device=device)
        deployed.output_index = inverse_permutation(order)
        deployed._refresh()
        return deployed

    def _refresh(self):
        """Cache the sizes as Python lists (the op takes lists) after the
        buffers changed."""
        self._in_sizes = self.in_sizes.tolist()
        self._out_sizes = self.out_sizes.tolist()
        index = self.output_index
        self._reorder = index.numel() > 0 and not torch.equal(
            index.cpu(), torch.arange(index.numel()))

    @property
    def filter_order(self) -> Tensor:
        """Original filter at each output position of the op."""
        if self.output_index.numel() == 0:
            raise RuntimeError(f'{type(self).__name__}: the output order '
                               'was folded into a consumer')
        return inverse_permutation(self.output_index)

    @property
    def connections(self) -> int:
        return int((self.in_sizes * self.out_sizes).sum())

    def forward(self, input: Tensor) -> Tensor:
        # The fastest exact execution measured on this CPU (the ragged op
        # and its reorder, a zero-weight dense conv, or merged groups on
        # oneDNN's grouped conv): mmlgc.ops.plans.
        out = plans.ragged_forward(self, input)
        self.report_cost(
            *connectivity_macs(self, self.connections, out.shape[2:]),
            batch_size=out.shape[0],
            device=out.device)
        return out

    def extra_repr(self) -> str:
        return (f'{self.in_channels}, {self.out_channels}, '
                f'kernel_size={self.kernel_size}, stride={self.stride}, '
                f'groups={len(self._in_sizes)}, connections='
                f'{self.connections}/{self.in_channels * self.out_channels}, '
                f'reordered={self._reorder}')


def _take_loaded_sizes(module, state_dict, prefix, *args):
    """Resize the structure-dependent tensors to the state dict's (a deployed
    layout differs from the one the module was built with)."""
    for name in ('weight', 'in_index', 'in_sizes', 'out_sizes',
                 'output_index'):
        loaded = state_dict.get(prefix + name)
        current = getattr(module, name)
        if loaded is None or loaded.shape == current.shape:
            continue
        resized = torch.empty(loaded.shape, dtype=current.dtype,
                              device=current.device)
        if isinstance(current, nn.Parameter):
            setattr(module, name, nn.Parameter(resized))
        else:
            setattr(module, name, resized)


def fold_output_order(producer: RaggedGroupConv2d,
                      consumer: nn.Module) -> None:
    """Let ``producer`` emit its group order and make ``consumer`` (its only
    reader, with only elementwise ops between them) read that order, saving
    the ``index_select``.

    ``consumer``: a :class:`RaggedGroupConv2d` (its ``in_index`` remapped) or
    a dense ``nn.Conv2d`` with ``groups=1`` (its weight's input channels
    permuted).
    """
    if producer.output_index.numel() == 0:
        raise ValueError(f'fold_output_order: the order of the producer '
                         f'{type(producer).__name__} is already folded')
    if not producer._reorder:  # already in filter order
        producer.output_index = producer.output_index.new_empty(0)
        producer._refresh()
        return
    position = producer.output_index  # filter -> position in group order
    if isinstance(consumer, RaggedGroupConv2d):
        consumer.in_index = position[consumer.in_index]
    elif isinstance(consumer, nn.Conv2d) and consumer.groups == 1:
        order = producer.filter_order
        consumer.weight = nn.Parameter(
            consumer.weight.detach().index_select(1, order))
    else:
        raise TypeError(
            'fold_output_order: cannot fold a channel order into '
            f'{type(consumer).__name__}: '
            'only a ragged or a dense (groups=1) conv reads permuted inputs')
    producer.output_index = producer.output_index.new_empty(0)
    producer._refresh()


def replace_masked_convs(module: nn.Module,
                         placeholder: bool = False) -> List[str]:
    """Swap every :class:`ConnectionMaskedConv2d` under ``module`` for its
    :class:`RaggedGroupConv2d` (``placeholder=True``: an empty one with the
    same geometry, to be filled by loading a deployed state dict). Returns
    the replaced names."""
    replaced = []
    for name, child in list(module.named_modules()):
        if not isinstance(child, ConnectionMaskedConv2d):
            continue
        parent_name, _, attr = name.rpartition('.')
        parent = module.get_submodule(parent_name) if parent_name else module
        if placeholder:
            new = RaggedGroupConv2d(child.in_channels, child.out_channels,
                                    child.kernel_size, child.stride,
                                    child.padding, child.dilation,
                                    child.bias is not None,
                                    child.norm_follows)
        else:
            new = RaggedGroupConv2d.from_conv(child)
        setattr(parent, attr, new)
        replaced.append(name)
    return replaced
