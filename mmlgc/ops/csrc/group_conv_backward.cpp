// Backward of the group conv plans, for every device: tasks are padded to a
// common size per chunk, their channels gathered with index_select, and one
// grouped ATen convolution backward (oneDNN / cuDNN) runs per chunk; the
// gradients are scattered back with index_add. Work scales with the active
// channel pairs (plus the padding within a chunk), never with the zeros of a
// mask. Masks and indices get no gradient: gates train on the dense
// reference path (see mmlgc/ops/reference.py).
#include <ATen/TensorOperators.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/convolution_backward.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/index_select.h>
#include <ATen/ops/index_add.h>


#include "common/group_conv.h"

namespace mmlgc {
namespace {

// Upper bound on the elements of the gathered input and gradient of a chunk.
constexpr int64_t kChunkElements = int64_t{1} << 25;

at::Tensor host_long(std::vector<int64_t>& v, const at::Device& device) {
  return at::from_blob(v.data(), {static_cast<int64_t>(v.size())}, at::kLong)
      .to(device);
}

// Appends one zero row so that padding entries can index it (also to an
// empty `t`: a ragged conv whose groups all read no channel packs no weight).
at::Tensor with_zero_row(const at::Tensor& t) {
  auto row = t.sizes().vec();
  row[0] = 1;
  return at::cat({t, at::zeros(row, t.options())});
}

}  // namespace

void check_grad_out(const char* op, const at::Tensor& grad_out,
                    const at::Tensor& input, int64_t out_channels,
                    const ConvGeometry& geo) {
  const int64_t n = input.size(0), o = out_channels;
  TORCH_CHECK(grad_out.dim() == 4 && grad_out.size(0) == n &&
                  grad_out.size(1) == o && grad_out.size(2) == geo.out_h &&
                  grad_out.size(3) == geo.out_w,
              op, ": grad_out must be [", n, ", ", o, ", ",
              geo.out_h, ", ", geo.out_w, "], got ", grad_out.sizes());
  TORCH_CHECK(grad_out.scalar_type() == input.scalar_type(),
              op, ": grad_out has dtype ",
              grad_out.scalar_type(), " but the input has ",
              input.scalar_type());
  TORCH_CHECK(grad_out.device() == input.device(),
              op, ": grad_out is on ", grad_out.device(),
              " but the input is on ", input.device());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> group_conv_backward(
    const at::Tensor& grad_out, const at::Tensor& input,
    const at::Tensor& weight_flat, const GroupConvPlan& plan,
    const ConvGeometry& geo, std::array<bool, 3> needs) {
  const int64_t n = plan.batch, c = plan.in_channels, o = plan.out_channels;
  const auto device = input.device();
  const int64_t plane_in = geo.in_h * geo.in_w, taps = plan.taps;
  at::Tensor grad_input, grad_weight, grad_bias;

  if (needs[2]) {
    std::vector<double> active(n * o, 0.0);
    for (const auto& t : plan.tasks)
      for (int64_t r = 0; r < t.out_count; ++r)
        active[t.sample * o + plan.out_channel[t.out_begin + r]] = 1.0;
    const auto act = at::from_blob(active.data(), {n, o}, at::kDouble)
                         .to(grad_out.options());
    grad_bias = (grad_out.sum({2, 3}) * act).sum(0);
  }
  if (!needs[0] && !needs[1]) return {grad_input, grad_weight, grad_bias};

  const auto x_rows = with_zero_row(input.reshape({n * c, geo.in_h, geo.in_w}));
  const auto gy_rows =
      with_zero_row(grad_out.reshape({n * o, geo.out_h, geo.out_w}));
  const auto w_rows = with_zero_row(weight_flat.reshape({-1, 1})).view(-1);
  at::Tensor grad_x_rows, grad_w_rows;
  if (needs[0]) grad_x_rows = at::zeros({n * c + 1, geo.in_h, geo.in_w}, input.options());
  if (needs[1]) grad_w_rows = at::zeros({weight_flat.numel() + 1}, input.options());

  const int64_t plane_out = geo.out_h * geo.out_w;
  const int64_t dummy_x = n * c, dummy_y = n * o, dummy_w = weight_flat.numel();
  for (auto& chunk : pad_tasks(plan, plane_in, plane_out, kChunkElements,
                               /*skip_empty_inputs=*/true)) {
    const int64_t tc = chunk.tasks, kmax = chunk.in_width,
                  rmax = chunk.out_width;
    // Padding entries index the zero row appended to each operand.
    std::vector<int64_t> w_idx(tc * rmax * kmax * taps, dummy_w);
    for (int64_t i = 0; i < tc; ++i) {
      for (int64_t r = 0; r < rmax; ++r) {
        const int64_t row = chunk.row_offset[i * rmax + r];
        for (int64_t k = 0; k < kmax; ++k) {
          const int64_t col = chunk.col_offset[i * kmax + k];
          if (row < 0 || col < 0) continue;
          int64_t* dst = &w_idx[((i * rmax + r) * kmax + k) * taps];
          for (int64_t p = 0; p < taps; ++p) dst[p] = row + col + p;
        }
      }
    }
    for (auto& v : chunk.in_index) v = v < 0 ? dummy_x : v;
    for (auto& v : chunk.out_index) v = v < 0 ? dummy_y : v;
    const auto in_t = host_long(chunk.in_index, device);
    const auto out_t = host_long(chunk.out_index, device);
    const auto w_t = host_long(w_idx, device);
    const auto scale_t =
        at::from_blob(chunk.in_scale.data(), {tc, 1, kmax, 1}, at::kDouble)
            .to(input.options());
    const auto xg = x_rows.index_select(0, in_t).view(
        {1, tc * kmax, geo.in_h, geo.in_w});
    const auto gy = gy_rows.index_select(0, out_t).view(
        {1, tc * rmax, geo.out_h, geo.out_w});
    const auto wg = (w_rows.index_select(0, w_t).view({tc, rmax, kmax, taps}) *
                     scale_t)
                        .view({tc * rmax, kmax, geo.kernel_h, geo.kernel_w});
    auto [gx, gw, unused] = at::convolution_backward(
        gy, xg, wg, std::nullopt, {geo.stride_h, geo.stride_w},
        {geo.pad_h, geo.pad_w}, {geo.dilation_h, geo.dilation_w}, false,
        {0, 0}, tc, {needs[0], needs[1], false});
    if (needs[0]) {
      // The scale sits in wg, so gx is already the input's gradient.
      grad_x_rows.index_add_(0, in_t,
                             gx.view({tc * kmax, geo.in_h, geo.in_w}));
    }
    if (needs[1]) {
      grad_w_rows.index_add_(
          0, w_t, (gw.view({tc, rmax, kmax, taps}) * scale_t).reshape(-1));
    }
  }
  if (needs[0]) {
    grad_input = grad_x_rows.narrow(0, 0, n * c).view(
        {n, c, geo.in_h, geo.in_w});
  }
  if (needs[1]) grad_weight = grad_w_rows.narrow(0, 0, weight_flat.numel());
  return {grad_input, grad_weight, grad_bias};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> defined_or_empty(
    std::tuple<at::Tensor, at::Tensor, at::Tensor> grads,
    const at::TensorOptions& options) {
  auto fill = [&](at::Tensor& t) {
    if (!t.defined()) t = at::empty({0}, options);
  };
  fill(std::get<0>(grads));
  fill(std::get<1>(grads));
  fill(std::get<2>(grads));
  return grads;
}

}  // namespace mmlgc
