// CUDA forward of the group conv plans (dynamic and ragged ops).
//
// Tasks are padded into chunks (pad_tasks, largest first); per chunk:
//   1. an indexed im2col writes, for every task, only the columns of the
//      input channels it lists (scaled), [tasks, in_width * taps, pixels];
//   2. a gather builds the tasks' weight matrices [tasks, out_width,
//      in_width * taps] from the flat weight (row + column offsets);
//   3. one batched GEMM (cuBLAS, at::bmm) multiplies them;
//   4. a scatter writes each task's rows to its output channels, plus bias.
// Work is the active (input, output) channel pairs plus the padding within
// a chunk. The backward is the device-generic one (group_conv_backward.cpp).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>

#include "../common/group_conv.h"

namespace mmlgc {
namespace {

constexpr int kThreads = 256;
// Elements of the im2col buffer and GEMM result per chunk (a chunk holds at
// least one task, whatever its size).
constexpr int64_t kChunkElements = int64_t{1} << 26;

int64_t blocks_for(int64_t elements) {
  return std::min<int64_t>((elements + kThreads - 1) / kThreads, 65535L * 32);
}

#define MMLGC_CUDA_LOOP(i, total)                                       \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;     \
       i < (total); i += (int64_t)blockDim.x * gridDim.x)

struct DeviceGeometry {
  int64_t in_h, in_w, out_w, kernel_w, stride_h, stride_w, pad_h, pad_w,
      dilation_h, dilation_w, taps, pixels;
  int64_t stride_n, stride_c, stride_y, stride_x;  // input strides
  int64_t channels;
};

// cols[i][k * taps + t][p] = scale[i][k] * input[n, c, y, x] for the k-th
// input channel (n, c) of task i, zero outside the image or for padding.
template <typename scalar_t>
__global__ void indexed_im2col_kernel(const scalar_t* __restrict__ input,
                                      const int64_t* __restrict__ in_index,
                                      const scalar_t* __restrict__ in_scale,
                                      scalar_t* __restrict__ cols,
                                      int64_t total, int64_t in_width,
                                      DeviceGeometry g) {
  using opmath_t = at::opmath_type<scalar_t>;
  MMLGC_CUDA_LOOP(i, total) {
    const int64_t p = i % g.pixels;
    int64_t rest = i / g.pixels;
    const int64_t t = rest % g.taps;
    const int64_t entry = rest / g.taps;  // task * in_width + k
    const int64_t idx = in_index[entry];
    scalar_t value = scalar_t(0);
    if (idx >= 0) {
      const int64_t n = idx / g.channels, c = idx % g.channels;
      const int64_t oh = p / g.out_w, ow = p % g.out_w;
      const int64_t y =
          oh * g.stride_h - g.pad_h + (t / g.kernel_w) * g.dilation_h;
      const int64_t x =
          ow * g.stride_w - g.pad_w + (t % g.kernel_w) * g.dilation_w;
      if (y >= 0 && y < g.in_h && x >= 0 && x < g.in_w) {
        value = static_cast<scalar_t>(
            static_cast<opmath_t>(input[n * g.stride_n + c * g.stride_c +
                                        y * g.stride_y + x * g.stride_x]) *
            static_cast<opmath_t>(in_scale[entry]));
      }
    }
    cols[i] = value;
  }
}

// w[i][r][k * taps + t] = weight[row_offset[i][r] + col_offset[i][k] + t].
template <typename scalar_t>
__global__ void gather_weights_kernel(const scalar_t* __restrict__ weight,
                                      const int64_t* __restrict__ row_offset,
                                      const int64_t* __restrict__ col_offset,
                                      scalar_t* __restrict__ w, int64_t total,
                                      int64_t in_width, int64_t out_width,
                                      int64_t taps) {
  MMLGC_CUDA_LOOP(i, total) {
    const int64_t t = i % taps;
    int64_t rest = i / taps;
    const int64_t k = rest % in_width;
    rest /= in_width;
    const int64_t r = rest % out_width;
    const int64_t task = rest / out_width;
    const int64_t row = row_offset[task * out_width + r];
    const int64_t col = col_offset[task * in_width + k];
    w[i] = (row >= 0 && col >= 0) ? weight[row + col + t] : scalar_t(0);
  }
}

// out[n, o, p] = result[i][r][p] + bias[o] for the r-th output (n, o) of
// task i; padding rows are dropped.
template <typename scalar_t>
__global__ void scatter_outputs_kernel(const scalar_t* __restrict__ result,
                                       const int64_t* __restrict__ out_index,
                                       const scalar_t* __restrict__ bias,
                                       scalar_t* __restrict__ out,
                                       int64_t total, int64_t pixels,
                                       int64_t out_channels) {
  MMLGC_CUDA_LOOP(i, total) {
    const int64_t row = i / pixels;  // task * out_width + r
    const int64_t idx = out_index[row];
    if (idx < 0) continue;
    scalar_t value = result[i];
    if (bias != nullptr) value += bias[idx % out_channels];
    out[idx * pixels + i % pixels] = value;
  }
}

}  // namespace

at::Tensor group_conv_forward_cuda(const at::Tensor& input,
                                   const at::Tensor& weight_flat,
                                   const std::optional<at::Tensor>& bias,
                                   const GroupConvPlan& plan,
                                   const ConvGeometry& geo) {
  c10::cuda::CUDAGuard guard(input.device());
  const std::vector<int64_t> shape{plan.batch, plan.out_channels, geo.out_h,
                                   geo.out_w};
  const auto opts = input.options().memory_format(at::MemoryFormat::Contiguous);
  at::Tensor out =
      plan.covers_all_outputs ? at::empty(shape, opts) : at::zeros(shape, opts);
  if (out.numel() == 0) return out;
  at::Tensor bias_c;
  if (bias) bias_c = bias->contiguous();
  const auto weight = weight_flat.contiguous();

  DeviceGeometry g;
  g.in_h = geo.in_h;
  g.in_w = geo.in_w;
  g.out_w = geo.out_w;
  g.kernel_w = geo.kernel_w;
  g.stride_h = geo.stride_h;
  g.stride_w = geo.stride_w;
  g.pad_h = geo.pad_h;
  g.pad_w = geo.pad_w;
  g.dilation_h = geo.dilation_h;
  g.dilation_w = geo.dilation_w;
  g.taps = geo.taps();
  g.pixels = geo.out_h * geo.out_w;
  g.stride_n = input.stride(0);
  g.stride_c = input.stride(1);
  g.stride_y = input.stride(2);
  g.stride_x = input.stride(3);
  g.channels = plan.in_channels;

  auto stream = at::cuda::getCurrentCUDAStream();
  auto chunks = pad_tasks(plan, g.taps * g.pixels, g.pixels, kChunkElements,
                          /*skip_empty_inputs=*/false);
  for (auto& chunk : chunks) {
    const int64_t tc = chunk.tasks, kw = chunk.in_width, rw = chunk.out_width;
    // One host-to-device copy for all index arrays of the chunk.
    std::vector<int64_t> host;
    host.reserve(2 * tc * kw + 2 * tc * rw);
    for (const auto* v : {&chunk.in_index, &chunk.col_offset,
                          &chunk.out_index, &chunk.row_offset})
      host.insert(host.end(), v->begin(), v->end());
    const auto idx = at::from_blob(host.data(), {(int64_t)host.size()},
                                   at::kLong)
                         .to(input.device());
    const int64_t* in_index = idx.data_ptr<int64_t>();
    const int64_t* col_offset = in_index + tc * kw;
    const int64_t* out_index = col_offset + tc * kw;
    const int64_t* row_offset = out_index + tc * rw;
    const auto scale = at::from_blob(chunk.in_scale.data(), {tc * kw},
                                     at::kDouble)
                           .to(input.options());

    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, input.scalar_type(),
        "group_conv_forward_cuda", [&] {
          at::Tensor result;
          if (kw == 0) {
            // Tasks reading no channel: their outputs are just the bias.
            result = at::zeros({tc, rw, g.pixels}, input.options());
          } else {
            auto cols = at::empty({tc, kw * g.taps, g.pixels}, input.options());
            auto w = at::empty({tc, rw, kw * g.taps}, input.options());
            const int64_t n_cols = cols.numel(), n_w = w.numel();
            indexed_im2col_kernel<scalar_t>
                <<<blocks_for(n_cols), kThreads, 0, stream>>>(
                    input.data_ptr<scalar_t>(), in_index,
                    scale.data_ptr<scalar_t>(), cols.data_ptr<scalar_t>(),
                    n_cols, kw, g);
            C10_CUDA_KERNEL_LAUNCH_CHECK();
            gather_weights_kernel<scalar_t>
                <<<blocks_for(n_w), kThreads, 0, stream>>>(
                    weight.data_ptr<scalar_t>(), row_offset, col_offset,
                    w.data_ptr<scalar_t>(), n_w, kw, rw, g.taps);
            C10_CUDA_KERNEL_LAUNCH_CHECK();
            result = at::bmm(w, cols);
          }
          const int64_t n_out = result.numel();
          scatter_outputs_kernel<scalar_t>
              <<<blocks_for(n_out), kThreads, 0, stream>>>(
                  result.data_ptr<scalar_t>(), out_index,
                  bias ? bias_c.data_ptr<scalar_t>() : nullptr,
                  out.data_ptr<scalar_t>(), n_out, g.pixels,
                  plan.out_channels);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
  }
  return out;
}

}  // namespace mmlgc
