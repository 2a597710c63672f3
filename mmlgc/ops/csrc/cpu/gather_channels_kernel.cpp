#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <cstring>

#include "../common/gather_channels.h"

namespace mmlgc {
namespace {

void check_index_range(const at::Tensor& index, int64_t channels) {
  const auto* idx = index.data_ptr<int64_t>();
  for (int64_t i = 0; i < index.numel(); ++i) {
    TORCH_CHECK(idx[i] >= 0 && idx[i] < channels, "gather_channels: index ",
                idx[i], " out of range for ", channels, " channels");
  }
}

at::Tensor gather_channels_cpu(const at::Tensor& input,
                               const at::Tensor& index) {
  check_gather_args("gather_channels", input, index);
  const auto x = input.contiguous();
  const auto idx = index.contiguous();
  const int64_t batch = x.size(0), channels = x.size(1);
  const int64_t plane = x.size(2) * x.size(3);
  const int64_t selected = idx.size(1);
  check_index_range(idx, channels);
  auto out = at::empty({batch, selected, x.size(2), x.size(3)}, x.options());
  if (out.numel() == 0) return out;

  const auto* idx_ptr = idx.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "gather_channels_cpu", [&] {
        const auto* src = x.data_ptr<scalar_t>();
        auto* dst = out.data_ptr<scalar_t>();
        // One task per output plane: each is a contiguous copy.
        at::parallel_for(0, batch * selected, 1, [&](int64_t begin,
                                                     int64_t end) {
          for (int64_t i = begin; i < end; ++i) {
            const int64_t n = i / selected, k = i % selected;
            std::memcpy(
                dst + output_plane_offset(n, k, selected, plane),
                src + input_plane_offset(n, idx_ptr[i], channels, plane),
                plane * sizeof(scalar_t));
          }
        });
      });
  return out;
}

at::Tensor gather_channels_backward_cpu(const at::Tensor& grad,
                                        const at::Tensor& index,
                                        int64_t channels) {
  check_gather_backward_args(grad, index, channels);
  const auto g = grad.contiguous();
  const auto idx = index.contiguous();
  const int64_t batch = g.size(0), plane = g.size(2) * g.size(3);
  const int64_t selected = idx.size(1);
  check_index_range(idx, channels);
  auto grad_input =
      at::zeros({batch, channels, g.size(2), g.size(3)}, g.options());
  if (grad_input.numel() == 0) return grad_input;

  const auto* idx_ptr = idx.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, g.scalar_type(), "gather_channels_backward_cpu",
      [&] {
        const auto* src = g.data_ptr<scalar_t>();
        auto* dst = grad_input.data_ptr<scalar_t>();
        // One task per input plane, summing its copies in k order: no two
        // tasks write the same memory, and the result is deterministic.
        at::parallel_for(0, batch * channels, 1, [&](int64_t begin,
                                                     int64_t end) {
          for (int64_t i = begin; i < end; ++i) {
            const int64_t n = i / channels, c = i % channels;
            auto* out_plane = dst + input_plane_offset(n, c, channels, plane);
            for (int64_t k = 0; k < selected; ++k) {
              if (idx_ptr[n * selected + k] != c) continue;
              const auto* in_plane =
                  src + output_plane_offset(n, k, selected, plane);
              for (int64_t p = 0; p < plane; ++p) out_plane[p] += in_plane[p];
            }
          }
        });
      });
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(mmlgc, CPU, m) {
  m.impl("gather_channels", &gather_channels_cpu);
  m.impl("gather_channels_backward", &gather_channels_backward_cpu);
}

}  // namespace mmlgc
