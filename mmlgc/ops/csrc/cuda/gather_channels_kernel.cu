#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../common/gather_channels.h"

namespace mmlgc {
namespace {

constexpr int kThreads = 256;

int64_t blocks_for(int64_t elements) {
  return std::min<int64_t>((elements + kThreads - 1) / kThreads, 65535L * 32);
}

// A bad index would fault inside the kernel, so the range is validated before
// the launch (one min/max reduction and a sync).
void check_index_range(const at::Tensor& index, int64_t channels) {
  if (index.numel() == 0) return;
  const int64_t low = index.min().item<int64_t>();
  const int64_t high = index.max().item<int64_t>();
  TORCH_CHECK(low >= 0 && high < channels, "gather_channels: index ",
              low < 0 ? low : high, " out of range for ", channels,
              " channels");
}

template <typename scalar_t>
__global__ void gather_channels_kernel(const scalar_t* __restrict__ input,
                                       const int64_t* __restrict__ index,
                                       scalar_t* __restrict__ output,
                                       int64_t total, int64_t channels,
                                       int64_t selected, int64_t plane) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
       i += (int64_t)blockDim.x * gridDim.x) {
    const int64_t p = i % plane;
    const int64_t nk = i / plane;
    const int64_t n = nk / selected;
    output[i] = input[input_plane_offset(n, index[nk], channels, plane) + p];
  }
}

template <typename scalar_t>
__global__ void gather_channels_backward_kernel(
    const scalar_t* __restrict__ grad, const int64_t* __restrict__ index,
    scalar_t* __restrict__ grad_input, int64_t total, int64_t channels,
    int64_t selected, int64_t plane) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
       i += (int64_t)blockDim.x * gridDim.x) {
    const int64_t p = i % plane;
    const int64_t nk = i / plane;
    const int64_t n = nk / selected;
    // Duplicated indices add into one plane: atomics, as index_add_ on CUDA.
    gpuAtomicAdd(
        grad_input + input_plane_offset(n, index[nk], channels, plane) + p,
        grad[i]);
  }
}

at::Tensor gather_channels_cuda(const at::Tensor& input,
                                const at::Tensor& index) {
  check_gather_args("gather_channels", input, index);
  c10::cuda::CUDAGuard guard(input.device());
  const auto x = input.contiguous();
  const auto idx = index.contiguous();
  const int64_t batch = x.size(0), channels = x.size(1);
  const int64_t plane = x.size(2) * x.size(3);
  const int64_t selected = idx.size(1);
  check_index_range(idx, channels);
  auto out = at::empty({batch, selected, x.size(2), x.size(3)}, x.options());
  const int64_t total = out.numel();
  if (total == 0) return out;
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "gather_channels_cuda", [&] {
        gather_channels_kernel<scalar_t>
            <<<blocks_for(total), kThreads, 0, stream>>>(
                x.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(),
                out.data_ptr<scalar_t>(), total, channels, selected, plane);
      });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor gather_channels_backward_cuda(const at::Tensor& grad,
                                         const at::Tensor& index,
                                         int64_t channels) {
  check_gather_backward_args(grad, index, channels);
  c10::cuda::CUDAGuard guard(grad.device());
  const auto g = grad.contiguous();
  const auto idx = index.contiguous();
  const int64_t batch = g.size(0), plane = g.size(2) * g.size(3);
  const int64_t selected = idx.size(1);
  check_index_range(idx, channels);
  auto grad_input =
      at::zeros({batch, channels, g.size(2), g.size(3)}, g.options());
  const int64_t total = g.numel();
  if (total == 0) return grad_input;
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, g.scalar_type(),
      "gather_channels_backward_cuda", [&] {
        gather_channels_backward_kernel<scalar_t>
            <<<blocks_for(total), kThreads, 0, stream>>>(
                g.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(),
                grad_input.data_ptr<scalar_t>(), total, channels, selected,
                plane);
      });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(mmlgc, CUDA, m) {
  m.impl("gather_channels", &gather_channels_cuda);
  m.impl("gather_channels_backward", &gather_channels_backward_cuda);
}

}  // namespace mmlgc
