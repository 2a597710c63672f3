"""Host-side planning of the Triton group conv: argument checks and the index
tensors the kernel walks.

Everything here is ATen (torch) code on the arguments' device, so it runs
unchanged on the CPU tensors of the interpreter tests. A plan describes the
conv as *tasks*: "convolve these input channels of sample ``n`` (each times
a scale) with these weight entries into these output channels". Weight entry
(row ``r``, input entry ``k``, tap) of a task lives at
``weight_flat[row_offset[r] + col_offset[k] + tap]``, which covers the dense
``[O, C, kh, kw]`` weight of the dynamic op and the packed per-group weights
of the ragged op alike (the same layout as the C++ CPU kernels' plan).

The kernel's grid is one program per (work item, pixel tile); a work item is
up to ``block_rows`` output rows of one task, recorded as the int64 row
``[sample, in_begin, in_count, row_begin, row_count]`` of ``work``.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

# Work-item columns.
WORK_FIELDS = ('sample', 'in_begin', 'in_count', 'row_begin', 'row_count')

# Geometry values and sizes above this are rejected, as by the C++ ops.
_MAX_VALUE = 2**31 - 1


@dataclass
class GroupConvPlan:
    """Index tensors of a group conv (see the module docstring)."""
    in_channel: Tensor  # int64 [E]: input channel of each input entry
    col_offset: Tensor  # int64 [E]: its weight offset within a row
    in_scale: Tensor  # float32 [E]: multiplies that channel
    out_channel: Tensor  # int64 [R]: output channel of each row
    row_offset: Tensor  # int64 [R]: the row's weight offset
    task_sample: Tensor  # int64 [T]
    task_in: Tensor  # int64 [T, 2]: begin, count into the entries
    task_out: Tensor  # int64 [T, 2]: begin, count into the rows
    # Every output element is written by some task (else zero-initialise).
    covers_all_outputs: bool

    def work_items(self, block_rows: int) -> Tensor:
        """int64 ``[W, 5]`` (:data:`WORK_FIELDS`): tasks cut into tiles of
        at most ``block_rows`` output rows; tasks without rows vanish."""
        out_begin, out_count = self.task_out.unbind(1)
        tiles = (out_count + block_rows - 1) // block_rows
        task = torch.repeat_interleave(
            torch.arange(tiles.numel(), device=tiles.device), tiles)
        first_tile = torch.cumsum(tiles, 0) - tiles
        tile = (torch.arange(task.numel(), device=task.device) -
                first_tile[task])
        row_begin = out_begin[task] + tile * block_rows
        row_count = torch.clamp(out_count[task] - tile * block_rows,
                                max=block_rows)
        return torch.stack([
            self.task_sample[task], self.task_in[task, 0],
            self.task_in[task, 1], row_begin, row_count
        ], 1).contiguous()

    def max_rows(self) -> int:
        return int(self.task_out[:, 1].max()) if self.task_out.numel() else 0


def _exclusive_cumsum(counts: Tensor) -> Tensor:
    return torch.cumsum(counts, 0) - counts


def _long(values, device) -> Tensor:
    return torch.as_tensor(values, dtype=torch.int64, device=device)


# ----------------------------------------------------------------------------
# Argument checks (the C++ front end's, for the tensors it never sees: the
# CUDA kernel is this Python code). Messages name the op and the argument.
# ----------------------------------------------------------------------------

def _check(cond: bool, op: str, *message) -> None:
    if not cond:
        raise RuntimeError(f'{op}: ' + ''.join(str(m) for m in message))


def _check_pair(op: str, what: str, values: Sequence[int], low: int) -> None:
    _check(
        len(values) == 2, op, f'{what} needs two values, got {list(values)}')
    _check(all(low <= v <= _MAX_VALUE for v in values), op,
           f'{what} must be {"positive" if low else "non-negative"} and at '
           f'most {_MAX_VALUE}, got {list(values)}')


def _check_common(op: str, input: Tensor, weight: Tensor,
                  bias: Optional[Tensor]) -> None:
    _check(input.dim() == 4, op,
           f'expected input [N, C, H, W], got {list(input.shape)}')
    _check(input.is_floating_point(), op,
           f'input must be floating point, got {input.dtype}')
    for what, t in (('weight', weight), ('bias', bias)):
        if t is None:
            continue
        _check(t.dtype == input.dtype, op,
               f'{what} has dtype {t.dtype} but the input has {input.dtype}')
        _check(t.device == input.device, op,
               f'{what} is on {t.device} but the input is on {input.device}')
    if bias is not None:
        _check(bias.dim() == 1, op,
               f'bias must be 1-D, got {list(bias.shape)}')


def conv_geometry(op: str, input: Tensor, kernel_size: Sequence[int],
                  stride: Sequence[int], padding: Sequence[int],
                  dilation: Sequence[int]) -> Tuple[int, int]:
    """Checks the conv arguments; returns the output size ``(h, w)``."""
    _check_pair(op, 'kernel size', kernel_size, 1)
    _check_pair(op, 'stride', stride, 1)
    _check_pair(op, 'dilation', dilation, 1)
    _check_pair(op, 'padding', padding, 0)
    out = []
    for size, k, s, p, d in zip(input.shape[2:], kernel_size, stride,
                                padding, dilation):
        span = d * (k - 1) + 1
        _check(size + 2 * p >= span, op,
               f'input {input.shape[2]}x{input.shape[3]} (padded by '
               f'{list(padding)}) is smaller than the dilated kernel '
               f'{kernel_size[0]}x{kernel_size[1]} (dilation '
               f'{list(dilation)})')
        out.append((size + 2 * p - span) // s + 1)
    return out[0], out[1]


def check_dynamic_args(op: str, input: Tensor, weight: Tensor,
                       bias: Optional[Tensor], mask: Tensor,
                       out_mask: Optional[Tensor]) -> None:
    _check_common(op, input, weight, bias)
    n, c = input.shape[:2]
    _check(weight.dim() == 4 and weight.shape[1] == c, op,
           f'weight must be [O, C, kh, kw] with C = {c} input channels, got '
           f'{list(weight.shape)}')
    _check(mask.dim() == 3 and mask.shape[0] == n and mask.shape[2] == c, op,
           f'mask must be [N, G, C] = [{n}, G, {c}], got {list(mask.shape)}')
    groups, o = mask.shape[1], weight.shape[0]
    _check(groups > 0 and o % groups == 0, op,
           f'{o} output channels cannot be split into {groups} equal groups '
           f'(mask has G = {groups})')
    if bias is not None:
        _check(bias.shape[0] == o, op,
               f'bias has {bias.shape[0]} entries for {o} output channels')
    for what, t in (('mask', mask), ('out_mask', out_mask)):
        if t is None:
            continue
        _check(not t.is_complex(), op,
               f'{what} must be real (floating point, integer or bool), got '
               f'{t.dtype}')
        _check(t.device == input.device, op,
               f'{what} is on {t.device} but the input is on {input.device}')
    if out_mask is not None:
        _check(out_mask.shape == (n, o), op,
               f'out_mask must be [N, O] = [{n}, {o}], got '
               f'{list(out_mask.shape)}')


def check_ragged_args(op: str, input: Tensor, weight: Tensor,
                      bias: Optional[Tensor], in_index: Tensor,
                      in_sizes: Sequence[int], out_sizes: Sequence[int],
                      kernel_size: Sequence[int]) -> None:
    _check_common(op, input, weight, bias)
    _check_pair(op, 'kernel_size', kernel_size, 1)
    _check(
        len(in_sizes) == len(out_sizes) and len(in_sizes) > 0, op,
        'in_sizes and out_sizes need one entry per group, got '
        f'{len(in_sizes)} and {len(out_sizes)}')
    _check(in_index.dim() == 1 and in_index.dtype == torch.int64, op,
           f'in_index must be a 1-D int64 tensor, got {list(in_index.shape)} '
           f'{in_index.dtype}')
    _check(in_index.device == input.device, op,
           f'in_index is on {in_index.device} but the input is on '
           f'{input.device}')
    for g, (c, o) in enumerate(zip(in_sizes, out_sizes)):
        _check(0 <= c <= _MAX_VALUE and 0 <= o <= _MAX_VALUE, op,
               f'group {g} has in_sizes[{g}] = {c}, out_sizes[{g}] = {o} '
               f'(each must be in [0, {_MAX_VALUE}])')
    _check(in_index.numel() == sum(in_sizes), op,
           f'in_index has {in_index.numel()} entries but in_sizes sum to '
           f'{sum(in_sizes)}')
    taps = kernel_size[0] * kernel_size[1]
    entries = sum(c * o * taps for c, o in zip(in_sizes, out_sizes))
    _check(weight.dim() == 1 and weight.numel() == entries, op,
           'the packed weight must be 1-D with sum_g out_sizes[g] * '
           f'in_sizes[g] * kh * kw = {entries} entries, got '
           f'{list(weight.shape)}')
    if bias is not None:
        _check(bias.shape[0] == sum(out_sizes), op,
               f'bias has {bias.shape[0]} entries for {sum(out_sizes)} '
               'output channels')


# ----------------------------------------------------------------------------
# Plans.
# ----------------------------------------------------------------------------

def plan_dynamic(mask: Tensor, out_mask: Optional[Tensor], out_channels: int,
                 taps: int, interleaved: bool = False) -> GroupConvPlan:
    """Task ``n * G + g`` reads the channels with ``mask[n, g] != 0`` (scaled
    by those values) into group ``g``'s output channels of sample ``n`` that
    ``out_mask`` keeps (``g * O/G + j``, or ``j * G + g`` when
    ``interleaved``)."""
    n, groups, channels = mask.shape
    per_group = out_channels // groups
    device = mask.device
    active = mask != 0
    entries = active.nonzero()  # (n, g, c), row-major like the tasks
    in_channel = entries[:, 2]
    in_count = active.sum(2).view(-1)
    if out_mask is None:
        keep = torch.ones(n, groups, per_group, dtype=torch.bool,
                          device=device)
    else:
        # It selects outputs, it does not scale them: a 0.5 would be
        # silently read as 1.
        bad = (out_mask != 0) & (out_mask != 1)
        if bool(bad.any()):
            where = bad.nonzero()[0].tolist()
            raise RuntimeError(
                'dynamic_group_conv: out_mask must be binary (0 or 1), got '
                f'{out_mask[tuple(where)].item()} at {where}')
        keep = out_mask != 0
        keep = (keep.view(n, per_group, groups).transpose(1, 2)
                if interleaved else keep.view(n, groups, per_group))
    rows = keep.nonzero()  # (n, g, j)
    out_channel = (rows[:, 2] * groups + rows[:, 1] if interleaved else
                   rows[:, 1] * per_group + rows[:, 2])
    out_count = keep.sum(2).view(-1)
    return GroupConvPlan(
        in_channel=in_channel,
        col_offset=in_channel * taps,
        in_scale=mask[active].to(torch.float32),
        out_channel=out_channel,
        row_offset=out_channel * (channels * taps),
        task_sample=torch.arange(n, device=device).repeat_interleave(groups),
        task_in=torch.stack([_exclusive_cumsum(in_count), in_count], 1),
        task_out=torch.stack([_exclusive_cumsum(out_count), out_count], 1),
        covers_all_outputs=out_mask is None)


def plan_ragged(in_index: Tensor, in_sizes: List[int], out_sizes: List[int],
                batch: int, in_channels: int, taps: int) -> GroupConvPlan:
    """Task ``n * G + g`` convolves group ``g``'s input channels of sample
    ``n``; the input entries and rows are shared by the samples."""
    device = in_index.device
    if in_index.numel():
        bad = (in_index < 0) | (in_index >= in_channels)
        if bool(bad.any()):
            raise RuntimeError(
                f'ragged_group_conv: in_index entry '
                f'{in_index[bad][0].item()} is out of range for '
                f'{in_channels} input channels')
    groups = len(in_sizes)
    in_begin, out_begin, weight_begin = [], [], []
    first_in = first_out = first_weight = 0
    for c, o in zip(in_sizes, out_sizes):
        in_begin.append(first_in)
        out_begin.append(first_out)
        weight_begin.append(first_weight)
        first_in, first_out = first_in + c, first_out + o
        first_weight += c * o * taps
    in_sizes_t, out_sizes_t = _long(in_sizes, device), _long(out_sizes, device)
    entry_group = torch.repeat_interleave(
        torch.arange(groups, device=device), in_sizes_t)
    position = (torch.arange(first_in, device=device) -
                _long(in_begin, device)[entry_group])
    out_channel = torch.arange(first_out, device=device)
    row_group = torch.repeat_interleave(
        torch.arange(groups, device=device), out_sizes_t)
    row_in_group = out_channel - _long(out_begin, device)[row_group]
    row_offset = (_long(weight_begin, device)[row_group] +
                  row_in_group * in_sizes_t[row_group] * taps)
    task_in = torch.stack([_long(in_begin, device), in_sizes_t], 1)
    task_out = torch.stack([_long(out_begin, device), out_sizes_t], 1)
    return GroupConvPlan(
        in_channel=in_index,
        col_offset=position * taps,
        in_scale=torch.ones(first_in, dtype=torch.float32, device=device),
        out_channel=out_channel,
        row_offset=row_offset,
        task_sample=torch.arange(batch, device=device).repeat_interleave(
            groups),
        task_in=task_in.repeat(batch, 1),
        task_out=task_out.repeat(batch, 1),
        covers_all_outputs=True)
