// Shared by the CPU and CUDA channel-gather kernels: argument checks (host)
// and index arithmetic (host and device), so both read the same layout:
// input [N, C, H*W], index [N, K], output [N, K, H*W].
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>

#if defined(__CUDACC__)
#define MMLGC_HOST_DEVICE __host__ __device__
#else
#define MMLGC_HOST_DEVICE
#endif

namespace mmlgc {

// Offset of the first element of input plane (n, c).
MMLGC_HOST_DEVICE inline int64_t input_plane_offset(int64_t n, int64_t c,
                                                    int64_t channels,
                                                    int64_t plane) {
  return (n * channels + c) * plane;
}

// Offset of the first element of output plane (n, k).
MMLGC_HOST_DEVICE inline int64_t output_plane_offset(int64_t n, int64_t k,
                                                     int64_t selected,
                                                     int64_t plane) {
  return (n * selected + k) * plane;
}

// Shape, dtype and device checks of `features` ([N, C, H, W] input or
// [N, K, H, W] gradient) and `index` ([N, K] int64). The index *range* is
// checked per device: a loop on the CPU, one reduction on the GPU.
inline void check_gather_args(const char* op, const at::Tensor& features,
                              const at::Tensor& index) {
  TORCH_CHECK(features.dim() == 4, op, ": expected a [N, C, H, W] tensor, got ",
              features.sizes());
  TORCH_CHECK(at::isFloatingType(features.scalar_type()), op,
              ": features must be floating point, got ",
              features.scalar_type());
  TORCH_CHECK(index.scalar_type() == at::kLong, op,
              ": index must be int64, got ", index.scalar_type());
  TORCH_CHECK(index.dim() == 2 && index.size(0) == features.size(0), op,
              ": index must have shape [N, K] with N = ", features.size(0),
              ", got ", index.sizes());
  TORCH_CHECK(index.device() == features.device(), op, ": index is on ",
              index.device(), " but the features are on ", features.device());
}

inline void check_gather_backward_args(const at::Tensor& grad,
                                       const at::Tensor& index,
                                       int64_t channels) {
  check_gather_args("gather_channels_backward", grad, index);
  TORCH_CHECK(grad.size(1) == index.size(1),
              "gather_channels_backward: grad has ", grad.size(1),
              " channels but index selects ", index.size(1));
  TORCH_CHECK(channels >= 0, "gather_channels_backward: negative channels");
}

}  // namespace mmlgc
