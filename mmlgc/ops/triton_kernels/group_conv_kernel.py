"""The Triton forward kernel of both group convs, its tile table and launch.

An implicit GEMM per work item (see :mod:`.plan`): an output tile of
``BLOCK_R`` rows (output channels) by ``BLOCK_P`` pixels accumulates, for
each kernel tap, ``weight[rows, entries] @ input[entries, pixels]`` over the
task's gathered input entries in blocks of ``BLOCK_K``. The input tile is
loaded straight from the feature map at the tap's shifted pixel positions
(masked at the borders), so no im2col buffer exists; any input strides work,
channels_last included. Accumulation is fp32 whatever the input dtype.
"""
import os
from typing import Dict, NamedTuple, Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from .plan import GroupConvPlan

# Input dtypes the kernel implements (float64 runs the reference).
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
AUTOTUNE_ENV = 'MMLGC_TRITON_AUTOTUNE'


class TileConfig(NamedTuple):
    block_r: int  # output channels per tile
    block_p: int  # output pixels per tile
    block_k: int  # input entries per reduction step
    num_warps: int
    num_stages: int

    @property
    def name(self) -> str:
        return (f'R{self.block_r}_P{self.block_p}_K{self.block_k}'
                f'_w{self.num_warps}_s{self.num_stages}')


# The fixed tables :func:`choose_tile` picks from, per input element size;
# every entry is compiled for sm_80 and sm_90 by
# tools/analysis/compile_gpu_kernels.py. All blocks are >= 16, the minimum
# of tl.dot on the GPU. fp32 tiles reduce over half the entries per step and
# pipeline less: with fp16's they spill registers.
TILE_CONFIGS = {
    2: (  # float16, bfloat16
        TileConfig(16, 16, 16, 1, 2),  # tiny maps (<= 4x4)
        TileConfig(16, 128, 32, 4, 2),  # few rows per task
        TileConfig(32, 64, 32, 4, 2),
        TileConfig(64, 32, 32, 4, 2),  # many rows, small maps (<= 8x8)
        TileConfig(64, 64, 32, 4, 3),
        TileConfig(128, 64, 32, 8, 3),  # wide groups, large maps
    ),
    4: (  # float32
        TileConfig(16, 16, 16, 1, 2),
        TileConfig(16, 128, 16, 4, 2),
        TileConfig(32, 64, 16, 4, 2),
        TileConfig(64, 32, 32, 4, 2),
        TileConfig(64, 64, 16, 4, 2),
        TileConfig(128, 64, 16, 8, 2),
    ),
}


def tile_configs(dtype: torch.dtype):
    """The tile table of inputs of ``dtype``."""
    return TILE_CONFIGS[torch.empty((), dtype=dtype).element_size()]


def choose_tile(max_rows: int, plane: int, dtype: torch.dtype) -> TileConfig:
    """A table entry for tasks of up to ``max_rows`` output rows over an
    output map of ``plane`` pixels: the smallest row block that holds a
    task (up to 128), pixel blocks no larger than the map needs."""
    table = tile_configs(dtype)
    if plane <= 16:
        return table[0]
    if max_rows <= 16:
        return table[1]
    if max_rows <= 32:
        return table[2]
    if plane <= 64:
        return table[3]
    if max_rows <= 64:
        return table[4]
    return table[5]


@triton.jit
def group_conv_forward_kernel(
        x_ptr, w_ptr, bias_ptr, out_ptr,
        work_ptr, in_channel_ptr, col_offset_ptr, in_scale_ptr,
        out_channel_ptr, row_offset_ptr,
        in_h, in_w, out_w, plane_out, pixel_tiles, out_sample_stride,
        stride_xn, stride_xc, stride_xh, stride_xw,
        kernel_w, taps, conv_stride_h, conv_stride_w, pad_h, pad_w,
        dilation_h, dilation_w,
        HAS_BIAS: tl.constexpr, DOT_PRECISION: tl.constexpr,
        BLOCK_R: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr):
    pid = tl.program_id(0)
    item = pid // pixel_tiles
    pixel_tile = pid % pixel_tiles
    work = work_ptr + item * 5
    sample = tl.load(work)
    in_begin = tl.load(work + 1)
    in_count = tl.load(work + 2)
    row_begin = tl.load(work + 3)
    row_count = tl.load(work + 4)

    rows = tl.arange(0, BLOCK_R)
    row_ok = rows < row_count
    row_offset = tl.load(row_offset_ptr + row_begin + rows, mask=row_ok,
                         other=0)
    pixels = pixel_tile * BLOCK_P + tl.arange(0, BLOCK_P)
    pixel_ok = pixels < plane_out
    top = (pixels // out_w) * conv_stride_h - pad_h
    left = (pixels % out_w) * conv_stride_w - pad_w
    x_sample = x_ptr + sample * stride_xn

    acc = tl.zeros((BLOCK_R, BLOCK_P), dtype=tl.float32)
    for tap in range(0, taps):
        ih = top + (tap // kernel_w) * dilation_h
        iw = left + (tap % kernel_w) * dilation_w
        tap_ok = pixel_ok & (ih >= 0) & (ih < in_h) & (iw >= 0) & (iw < in_w)
        # int64: a batch of large maps passes 2**31 elements.
        pixel_offset = (ih.to(tl.int64) * stride_xh +
                        iw.to(tl.int64) * stride_xw)
        for k0 in range(0, in_count, BLOCK_K):
            k = k0 + tl.arange(0, BLOCK_K)
            k_ok = k < in_count
            channel = tl.load(in_channel_ptr + in_begin + k, mask=k_ok,
                              other=0)
            col_offset = tl.load(col_offset_ptr + in_begin + k, mask=k_ok,
                                 other=0)
            scale = tl.load(in_scale_ptr + in_begin + k, mask=k_ok, other=0.0)
            x = tl.load(
                x_sample + channel[:, None] * stride_xc +
                pixel_offset[None, :],
                mask=k_ok[:, None] & tap_ok[None, :], other=0.0)
            w = tl.load(
                w_ptr + row_offset[:, None] + col_offset[None, :] + tap,
                mask=row_ok[:, None] & k_ok[None, :], other=0.0)
            # The mask's scale goes into the (smaller) weight tile.
            w = (w.to(tl.float32) * scale[None, :]).to(x.dtype)
            acc = tl.dot(w, x, acc, input_precision=DOT_PRECISION)

    out_channel = tl.load(out_channel_ptr + row_begin + rows, mask=row_ok,
                          other=0)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + out_channel, mask=row_ok, other=0.0)
        acc += bias.to(tl.float32)[:, None]
    out = (out_ptr + sample * out_sample_stride +
           out_channel[:, None] * plane_out + pixels[None, :])
    tl.store(out, acc.to(out_ptr.dtype.element_ty),
             mask=row_ok[:, None] & pixel_ok[None, :])


def dot_precision(dtype: torch.dtype) -> str:
    """fp32 inputs use TF32 only where torch lets its own convolutions
    (cuDNN) use it; fp16/bf16 multiply exactly into fp32 anyway."""
    if dtype == torch.float32 and torch.backends.cudnn.allow_tf32:
        return 'tf32'
    return 'ieee'


def launch(input: Tensor, weight_flat: Tensor, bias: Optional[Tensor],
           plan: GroupConvPlan, out_channels: int, kernel_size, stride,
           padding, dilation, out_size, tile: Optional[TileConfig] = None
           ) -> Tensor:
    """``[N, out_channels, *out_size]`` output of ``plan``; ``tile``
    overrides the table's choice (tests use it to reach multi-tile
    paths)."""
    n = input.shape[0]
    plane = out_size[0] * out_size[1]
    alloc = torch.empty if plan.covers_all_outputs else torch.zeros
    out = alloc((n, out_channels, *out_size), dtype=input.dtype,
                device=input.device)
    if tile is None:
        tile = _tile_for(input, weight_flat, bias, plan, out, kernel_size,
                         stride, padding, dilation)
    work = plan.work_items(tile.block_r)
    if work.shape[0] == 0 or plane == 0:
        return out
    _run(input, weight_flat, bias, plan, out, work, kernel_size, stride,
         padding, dilation, tile)
    return out


def interpreted() -> bool:
    """Whether the kernel runs in the Triton interpreter (decided when this
    module was imported: ``TRITON_INTERPRET=1`` set before triton)."""
    return not isinstance(group_conv_forward_kernel,
                          triton.runtime.JITFunction)


def _run(input, weight_flat, bias, plan, out, work, kernel_size, stride,
         padding, dilation, tile):
    if input.device.type != 'cuda' and not interpreted():
        raise RuntimeError(
            'mmlgc.ops.triton_kernels: tensors on '
            f'{input.device} need the Triton interpreter (TRITON_INTERPRET=1 '
            'set before triton is imported); mmlgc.ops.dynamic_group_conv '
            'and ragged_group_conv have CPU kernels of their own')
    plane = out.shape[2] * out.shape[3]
    pixel_tiles = triton.cdiv(plane, tile.block_p)
    grid = (work.shape[0] * pixel_tiles, )
    group_conv_forward_kernel[grid](
        input, weight_flat, bias if bias is not None else weight_flat, out,
        work, plan.in_channel, plan.col_offset, plan.in_scale,
        plan.out_channel, plan.row_offset,
        input.shape[2], input.shape[3], out.shape[3], plane, pixel_tiles,
        out.stride(0), *input.stride(),
        kernel_size[1], kernel_size[0] * kernel_size[1], *stride, *padding,
        *dilation,
        HAS_BIAS=bias is not None, DOT_PRECISION=dot_precision(input.dtype),
        BLOCK_R=tile.block_r, BLOCK_P=tile.block_p, BLOCK_K=tile.block_k,
        num_warps=tile.num_warps, num_stages=tile.num_stages)


# Opt-in autotuning (MMLGC_TRITON_AUTOTUNE=1): the first call of a shape
# times every table entry and keeps the fastest. Off by default: timing
# needs a GPU (the interpreter cannot), and the first call gets slow.
_tuned: Dict[tuple, TileConfig] = {}


def _tile_for(input, weight_flat, bias, plan, out, kernel_size, stride,
              padding, dilation) -> TileConfig:
    plane = out.shape[2] * out.shape[3]
    max_rows = plan.max_rows()
    if (os.environ.get(AUTOTUNE_ENV, '0') != '1'
            or input.device.type != 'cuda'):
        return choose_tile(max_rows, plane, input.dtype)
    key = (input.dtype, tuple(input.shape), tuple(out.shape), max_rows,
           int(plan.task_in[:, 1].max()) if plan.task_in.numel() else 0,
           tuple(kernel_size), tuple(stride), tuple(dilation))
    if key not in _tuned:
        import triton.testing
        timings = {}
        for tile in tile_configs(input.dtype):
            work = plan.work_items(tile.block_r)
            if work.shape[0] == 0:
                return choose_tile(max_rows, plane, input.dtype)
            timings[tile] = triton.testing.do_bench(
                lambda tile=tile, work=work: _run(
                    input, weight_flat, bias, plan, out, work, kernel_size,
                    stride, padding, dilation, tile))
        _tuned[key] = min(timings, key=timings.get)
    return _tuned[key]
