"""The cost record each grouped-conv layer leaves behind on forward.

Convention (the MSGC reference counter, ``docs/msgc.md``): one MAC per
multiply-accumulate, plus one op per output element of a conv that BN (+ReLU)
follows. Costs are counted at the *actual* input size of the forward, so a
detector's 800x1216 batch is counted as such.
"""
import functools
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Optional, Sequence, Union

import torch
from torch import Tensor, nn
from torch.nn.modules.utils import _pair


def conv_output_size(size, kernel_size, stride, padding, dilation) -> tuple:
    """``(out_h, out_w)`` of a conv over an ``(h, w)`` input."""
    return tuple((s + 2 * p - d * (k - 1) - 1) // st + 1 for s, k, st, p, d in
                 zip(size, _pair(kernel_size), _pair(stride), _pair(padding),
                     _pair(dilation)))


def conv_macs(in_channels: int,
              out_channels: int,
              kernel_size: Union[int, Sequence[int]],
              out_size: Sequence[int],
              groups: int = 1,
              norm: bool = True) -> int:
    """MACs of one conv over one sample: ``k² · C/groups · O · H'W'``, plus
    ``O · H'W'`` when a BN (and activation) follows (``norm=True``)."""
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size,
                                                      int) else kernel_size
    spatial = int(out_size[0]) * int(out_size[1])
    macs = kh * kw * (in_channels // groups) * out_channels * spatial
    return macs + (out_channels * spatial if norm else 0)


def downsample_macs(downsample: Optional[nn.Module], in_shape: Sequence[int],
                    out_shape: Sequence[int]) -> int:
    """MACs of a ResNet block's projection shortcut over one sample, in the
    MSGC convention: the 1x1 conv's only (its BN is not counted); 0 for a
    block without one."""
    if downsample is None:
        return 0
    return conv_macs(in_shape[1], out_shape[1], 1, out_shape[2:], norm=False)


@dataclass
class CostRecord:
    """What one layer cost on its last forward.

    Attributes:
        dense: MACs of the dense (ungrouped, unmasked) layer per sample: the
            denominator of the budget ratio. Excludes what exists only
            because of the method (generators, attention multiplies).
        dynamic: ``[N]`` MACs each sample costs when only active connections
            are computed, generators included. Differentiable w.r.t. the
            masks where the method's budget loss needs it.
        expected: static expected MACs per sample where a method defines
            one independently of the masks (DGC: the conv at its target keep
            fraction, the reference counter's number); None means "the
            measured ``dynamic`` mean".
    """
    dense: float
    dynamic: Tensor
    expected: Optional[float] = None


@dataclass
class CostSummary:
    """Costs summed over a model's reporting layers (per sample)."""
    dense: float
    dynamic: Tensor
    per_layer: Dict[str, CostRecord] = field(default_factory=dict)

    @property
    def ratio(self) -> Tensor:
        """Batch-mean dynamic MACs over dense MACs (MSGC's ``r``)."""
        return self.dynamic.mean() / self.dense

    @property
    def expected(self) -> float:
        """Static expected MACs per sample: each layer's ``expected``, or
        its measured batch mean where it defines none."""
        return sum(
            r.expected if r.expected is not None else
            float(r.dynamic.detach().double().mean())
            for r in self.per_layer.values())


class ShapeOf:
    """An activation's stand-in in a deferred cost report: its shape,
    without keeping the tensor alive until the record is read."""
    __slots__ = ('shape', )

    def __init__(self, tensor: Tensor):
        self.shape = tensor.shape


class CostReporter:
    """Mixin of modules that report a :class:`CostRecord` per forward.

    A reporting module calls :meth:`report_cost` in its forward, or
    :meth:`defer_cost` when computing the record takes many small ops:
    it then runs only if someone reads ``last_cost`` (the budget loss,
    ``get_flops``), so plain inference does not pay for it. Records of
    nested reporters are not merged, so a module reports only its own
    operations (a block reports its convs, not its parent's stem).
    """
    _cost: Union[None, CostRecord, Callable[[], None]] = None

    @property
    def last_cost(self) -> Optional[CostRecord]:
        """What the last forward cost (None before any forward)."""
        if callable(self._cost):
            report, self._cost = self._cost, None
            report()
        return self._cost

    @last_cost.setter
    def last_cost(self, record: Optional[CostRecord]) -> None:
        self._cost = record

    def report_cost(self, dense: float, dynamic: Union[Tensor, float],
                    batch_size: int, device=None,
                    expected: Optional[float] = None) -> None:
        if not isinstance(dynamic, Tensor):
            dynamic = torch.full((batch_size, ), float(dynamic),
                                 device=device)
        self.last_cost = CostRecord(
            float(dense), dynamic,
            None if expected is None else float(expected))

    def defer_cost(self, report: Callable[..., None], *args) -> None:
        """Call ``report(*args)`` (which calls :meth:`report_cost`) when
        ``last_cost`` is first read. Pass activations as :class:`ShapeOf`.
        Gradients still reach what ``args`` hold (the masks): the budget
        loss reads the record in the same iteration."""
        self._cost = functools.partial(report, *args)


def _reporters(model: nn.Module) -> Iterable:
    for name, module in model.named_modules():
        if isinstance(module, CostReporter):
            yield name, module


def clear_costs(model: nn.Module) -> None:
    """Forget every record, so a layer skipped by the next forward cannot
    contribute a stale one."""
    for _, module in _reporters(model):
        module.last_cost = None


def collect_costs(model: nn.Module) -> CostSummary:
    """Sum the records of the last forward. Raises if no layer reported,
    which means no learnable grouped layer ran."""
    per_layer = {
        name: module.last_cost
        for name, module in _reporters(model) if module.last_cost is not None
    }
    if not per_layer:
        raise RuntimeError(
            f'{type(model).__name__} has no layer that reported its MACs: '
            'it holds no mmlgc grouped layer, or it has not run forward yet.')
    records = list(per_layer.values())
    dynamic = records[0].dynamic
    for record in records[1:]:
        dynamic = dynamic + record.dynamic.to(dynamic.device)
    return CostSummary(
        dense=sum(r.dense for r in records),
        dynamic=dynamic,
        per_layer=per_layer)
