// Index arithmetic shared by the CPU and CUDA channel-gather kernels, so both
// read the same layout: input [N, C, H*W], index [N, K], output [N, K, H*W].
#pragma once
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

}  // namespace mmlgc
