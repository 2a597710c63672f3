// Front ends of mmlgc::dynamic_group_conv and mmlgc::ragged_group_conv:
// argument checks, plan building (host), and dispatch to the per-device
// forward and the device-generic backward.
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <c10/util/safe_numerics.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "common/group_conv.h"

namespace mmlgc {

namespace {

// Geometry values, group sizes and channel counts above this are rejected:
// no real conv comes near it, and below it every product the kernels form
// (offsets, buffer sizes) fits in int64 once checked with `checked_product`.
constexpr int64_t kMaxValue = std::numeric_limits<int32_t>::max();

void check_value_range(const char* op, const char* what,
                       at::IntArrayRef values, int64_t min) {
  for (const int64_t v : values) {
    TORCH_CHECK(v >= min && v <= kMaxValue, op, ": ", what, " must be ",
                min > 0 ? "positive" : "non-negative", " and at most ",
                kMaxValue, ", got ", values);
  }
}

}  // namespace

int64_t checked_product(const char* op, const char* what,
                        std::initializer_list<int64_t> factors) {
  int64_t product = 1;
  for (const int64_t f : factors) {
    TORCH_CHECK(f >= 0 && !c10::mul_overflows(product, f, &product), op,
                ": ", what, " overflows int64 (factors ",
                std::vector<int64_t>(factors), ")");
  }
  return product;
}

ConvGeometry make_geometry(const char* op, const at::Tensor& input,
                           int64_t kernel_h, int64_t kernel_w,
                           at::IntArrayRef stride, at::IntArrayRef padding,
                           at::IntArrayRef dilation) {
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2 && dilation.size() == 2,
              op, ": stride, padding and dilation need two values each, got ",
              stride, ", ", padding, ", ", dilation);
  TORCH_CHECK(kernel_h > 0 && kernel_w > 0, op, ": empty kernel ", kernel_h,
              "x", kernel_w);
  check_value_range(op, "kernel size", {kernel_h, kernel_w}, 1);
  check_value_range(op, "stride", stride, 1);
  check_value_range(op, "dilation", dilation, 1);
  check_value_range(op, "padding", padding, 0);
  ConvGeometry g;
  g.in_h = input.size(2);
  g.in_w = input.size(3);
  g.kernel_h = kernel_h;
  g.kernel_w = kernel_w;
  g.stride_h = stride[0];
  g.stride_w = stride[1];
  g.pad_h = padding[0];
  g.pad_w = padding[1];
  g.dilation_h = dilation[0];
  g.dilation_w = dilation[1];
  const int64_t padded_h = g.in_h + 2 * g.pad_h, padded_w = g.in_w + 2 * g.pad_w;
  const int64_t span_h = g.dilation_h * (kernel_h - 1) + 1;
  const int64_t span_w = g.dilation_w * (kernel_w - 1) + 1;
  TORCH_CHECK(padded_h >= span_h && padded_w >= span_w, op, ": input ", g.in_h,
              "x", g.in_w, " (padded by ", padding,
              ") is smaller than the dilated kernel ", kernel_h, "x", kernel_w,
              " (dilation ", dilation, ")");
  // The padded input is what the kernels gather; it must be addressable.
  checked_product(op, "the padded input size",
                  {input.size(0), input.size(1), padded_h, padded_w});
  // A stride past the last kernel position leaves one output row (column)
  // whatever its value; clamping it there changes no result and keeps the
  // CPU kernel's stride_h * stride_w phase planes bounded by the input.
  g.stride_h = std::min(g.stride_h, padded_h - span_h + 1);
  g.stride_w = std::min(g.stride_w, padded_w - span_w + 1);
  g.out_h = (padded_h - span_h) / g.stride_h + 1;
  g.out_w = (padded_w - span_w) / g.stride_w + 1;
  return g;
}

int64_t GroupConvPlan::macs_per_pixel() const {
  int64_t total = 0;
  for (const auto& t : tasks) total += t.in_count * t.out_count * taps;
  return total;
}

namespace {

void check_float_like(const char* op, const char* what, const at::Tensor& t,
                      const at::Tensor& input) {
  TORCH_CHECK(t.scalar_type() == input.scalar_type(), op, ": ", what,
              " has dtype ", t.scalar_type(), " but the input has ",
              input.scalar_type());
  TORCH_CHECK(t.device() == input.device(), op, ": ", what, " is on ",
              t.device(), " but the input is on ", input.device());
}

// Masks and out_masks are read as real numbers (on the host, as doubles).
void check_real(const char* op, const char* what, const at::Tensor& t,
                const at::Tensor& input) {
  TORCH_CHECK(!at::isComplexType(t.scalar_type()), op, ": ", what,
              " must be real (floating point, integer or bool), got ",
              t.scalar_type());
  TORCH_CHECK(t.device() == input.device(), op, ": ", what, " is on ",
              t.device(), " but the input is on ", input.device());
}

void check_common(const char* op, const at::Tensor& input,
                  const at::Tensor& weight,
                  const std::optional<at::Tensor>& bias) {
  TORCH_CHECK(input.dim() == 4, op, ": expected input [N, C, H, W], got ",
              input.sizes());
  TORCH_CHECK(at::isFloatingType(input.scalar_type()), op,
              ": input must be floating point, got ", input.scalar_type());
  check_float_like(op, "weight", weight, input);
  if (bias) {
    check_float_like(op, "bias", *bias, input);
    TORCH_CHECK(bias->dim() == 1, op, ": bias must be 1-D, got ",
                bias->sizes());
  }
}

}  // namespace

void check_dynamic_group_conv_args(const char* op, const at::Tensor& input,
                                   const at::Tensor& weight,
                                   const std::optional<at::Tensor>& bias,
                                   const at::Tensor& mask,
                                   const std::optional<at::Tensor>& out_mask) {
  check_common(op, input, weight, bias);
  TORCH_CHECK(weight.dim() == 4 && weight.size(1) == input.size(1), op,
              ": weight must be [O, C, kh, kw] with C = ", input.size(1),
              " input channels, got ", weight.sizes());
  const int64_t n = input.size(0), c = input.size(1), o = weight.size(0);
  TORCH_CHECK(mask.dim() == 3 && mask.size(0) == n && mask.size(2) == c, op,
              ": mask must be [N, G, C] = [", n, ", G, ", c, "], got ",
              mask.sizes());
  check_real(op, "mask", mask, input);
  const int64_t groups = mask.size(1);
  TORCH_CHECK(groups > 0 && o % groups == 0, op, ": ", o,
              " output channels cannot be split into ", groups,
              " equal groups (mask has G = ", groups, ")");
  if (bias) {
    TORCH_CHECK(bias->size(0) == o, op, ": bias has ", bias->size(0),
                " entries for ", o, " output channels");
  }
  if (out_mask) {
    TORCH_CHECK(out_mask->dim() == 2 && out_mask->size(0) == n &&
                    out_mask->size(1) == o,
                op, ": out_mask must be [N, O] = [", n, ", ", o, "], got ",
                out_mask->sizes());
    check_real(op, "out_mask", *out_mask, input);
  }
}

int64_t check_ragged_group_conv_args(const char* op, const at::Tensor& input,
                                  const at::Tensor& weight,
                                  const std::optional<at::Tensor>& bias,
                                  const at::Tensor& in_index,
                                  at::IntArrayRef in_sizes,
                                  at::IntArrayRef out_sizes,
                                  at::IntArrayRef kernel_size) {
  check_common(op, input, weight, bias);
  TORCH_CHECK(kernel_size.size() == 2, op,
              ": kernel_size needs two values, got ", kernel_size);
  TORCH_CHECK(in_sizes.size() == out_sizes.size() && !in_sizes.empty(), op,
              ": in_sizes and out_sizes need one entry per group, got ",
              in_sizes.size(), " and ", out_sizes.size());
  TORCH_CHECK(in_index.dim() == 1 && in_index.scalar_type() == at::kLong, op,
              ": in_index must be a 1-D int64 tensor, got ", in_index.sizes(),
              " ", in_index.scalar_type());
  TORCH_CHECK(in_index.device() == input.device(), op, ": in_index is on ",
              in_index.device(), " but the input is on ", input.device());
  check_value_range(op, "kernel_size", kernel_size, 1);
  int64_t entries = 0, indices = 0, outputs = 0;
  for (size_t g = 0; g < in_sizes.size(); ++g) {
    TORCH_CHECK(in_sizes[g] >= 0 && out_sizes[g] >= 0, op,
                ": negative group size in group ", g, ": in_sizes[", g,
                "] = ", in_sizes[g], ", out_sizes[", g, "] = ", out_sizes[g]);
    TORCH_CHECK(in_sizes[g] <= kMaxValue && out_sizes[g] <= kMaxValue, op,
                ": group ", g, " is too large: in_sizes[", g, "] = ",
                in_sizes[g], ", out_sizes[", g, "] = ", out_sizes[g],
                " (at most ", kMaxValue, ")");
    indices += in_sizes[g];
    outputs += out_sizes[g];
    const int64_t block = checked_product(
        op, "the packed weight size",
        {in_sizes[g], out_sizes[g], kernel_size[0], kernel_size[1]});
    TORCH_CHECK(!c10::add_overflows(entries, block, &entries), op,
                ": the packed weight size overflows int64");
  }
  TORCH_CHECK(outputs <= kMaxValue, op, ": out_sizes sum to ", outputs,
              " output channels (at most ", kMaxValue, ")");
  TORCH_CHECK(in_index.numel() == indices, op, ": in_index has ",
              in_index.numel(), " entries but in_sizes sum to ", indices);
  TORCH_CHECK(weight.dim() == 1 && weight.numel() == entries, op,
              ": the packed weight must be 1-D with sum_g out_sizes[g] * "
              "in_sizes[g] * kh * kw = ",
              entries, " entries, got ", weight.sizes());
  if (bias) {
    TORCH_CHECK(bias->size(0) == outputs, op, ": bias has ", bias->size(0),
                " entries for ", outputs, " output channels");
  }
  return outputs;
}

GroupConvPlan plan_dynamic_group_conv(const at::Tensor& mask,
                                      const std::optional<at::Tensor>& out_mask,
                                      int64_t out_channels, int64_t taps,
                                      bool interleaved) {
  // Masks are small ([N, G, C]); reading them on the host costs one sync on
  // the GPU, which the data-dependent shapes of the plan require anyway.
  const auto m = mask.to(at::kCPU, at::kDouble).contiguous();
  at::Tensor om;
  if (out_mask) om = out_mask->to(at::kCPU, at::kDouble).contiguous();
  GroupConvPlan plan;
  plan.batch = m.size(0);
  plan.in_channels = m.size(2);
  plan.out_channels = out_channels;
  plan.taps = taps;
  plan.covers_all_outputs = !out_mask.has_value();
  const int64_t groups = m.size(1), channels = m.size(2);
  const int64_t per_group = out_channels / groups;
  const double* mp = m.data_ptr<double>();
  const double* op = om.defined() ? om.data_ptr<double>() : nullptr;
  plan.tasks.reserve(plan.batch * groups);
  for (int64_t n = 0; n < plan.batch; ++n) {
    for (int64_t g = 0; g < groups; ++g) {
      GroupConvTask task{n, static_cast<int64_t>(plan.in_channel.size()), 0,
                         static_cast<int64_t>(plan.out_channel.size()), 0};
      for (int64_t j = 0; j < per_group; ++j) {
        const int64_t o = interleaved ? j * groups + g : g * per_group + j;
        if (op && op[n * out_channels + o] == 0) continue;
        // It selects outputs, it does not scale them: a 0.5 would be
        // silently read as 1.
        TORCH_CHECK(!op || op[n * out_channels + o] == 1,
                    "dynamic_group_conv: out_mask must be binary (0 or 1), "
                    "got ", op[n * out_channels + o], " at [", n, ", ", o,
                    "]");
        plan.out_channel.push_back(o);
        plan.row_offset.push_back(o * channels * taps);
      }
      task.out_count = plan.out_channel.size() - task.out_begin;
      // A group whose outputs are all masked out reads nothing.
      if (task.out_count == 0) continue;
      const double* row = mp + (n * groups + g) * channels;
      for (int64_t c = 0; c < channels; ++c) {
        if (row[c] == 0) continue;
        plan.in_channel.push_back(c);
        plan.col_offset.push_back(c * taps);
        plan.in_scale.push_back(row[c]);
      }
      task.in_count = plan.in_channel.size() - task.in_begin;
      plan.tasks.push_back(task);
    }
  }
  return plan;
}

GroupConvPlan plan_ragged_group_conv(const at::Tensor& in_index,
                                     at::IntArrayRef in_sizes,
                                     at::IntArrayRef out_sizes, int64_t batch,
                                     int64_t in_channels, int64_t taps) {
  const auto idx = in_index.to(at::kCPU).contiguous();
  const int64_t* ip = idx.data_ptr<int64_t>();
  for (int64_t i = 0; i < idx.numel(); ++i) {
    TORCH_CHECK(ip[i] >= 0 && ip[i] < in_channels,
                "ragged_group_conv: in_index entry ", ip[i], " out of range for ",
                in_channels, " input channels");
  }
  GroupConvPlan plan;
  plan.batch = batch;
  plan.in_channels = in_channels;
  plan.taps = taps;
  for (auto s : out_sizes) plan.out_channels += s;
  // Entries of the first sample; the others share them (static groups).
  int64_t in_pos = 0, out_pos = 0, weight_pos = 0;
  std::vector<GroupConvTask> groups;
  for (size_t g = 0; g < in_sizes.size(); ++g) {
    GroupConvTask task{0, static_cast<int64_t>(plan.in_channel.size()),
                       in_sizes[g], static_cast<int64_t>(plan.out_channel.size()),
                       out_sizes[g]};
    for (int64_t c = 0; c < in_sizes[g]; ++c) {
      plan.in_channel.push_back(ip[in_pos + c]);
      plan.col_offset.push_back(c * taps);
      plan.in_scale.push_back(1.0);
    }
    for (int64_t o = 0; o < out_sizes[g]; ++o) {
      plan.out_channel.push_back(out_pos + o);
      plan.row_offset.push_back(weight_pos + o * in_sizes[g] * taps);
    }
    in_pos += in_sizes[g];
    out_pos += out_sizes[g];
    weight_pos += out_sizes[g] * in_sizes[g] * taps;
    if (task.out_count > 0) groups.push_back(task);
  }
  plan.tasks.reserve(batch * groups.size());
  for (int64_t n = 0; n < batch; ++n) {
    for (auto task : groups) {
      task.sample = n;
      plan.tasks.push_back(task);
    }
  }
  return plan;
}

std::vector<PaddedChunk> pad_tasks(const GroupConvPlan& plan, int64_t in_cost,
                                   int64_t out_cost, int64_t budget,
                                   bool skip_empty_inputs) {
  std::vector<int64_t> order;
  for (size_t i = 0; i < plan.tasks.size(); ++i)
    if (!skip_empty_inputs || plan.tasks[i].in_count > 0) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    const auto &ta = plan.tasks[a], &tb = plan.tasks[b];
    return std::make_pair(ta.in_count, ta.out_count) >
           std::make_pair(tb.in_count, tb.out_count);
  });
  std::vector<PaddedChunk> chunks;
  for (size_t first = 0; first < order.size();) {
    const int64_t in_width = plan.tasks[order[first]].in_count;
    int64_t out_width = 0;
    size_t last = first;
    while (last < order.size()) {
      const int64_t w = std::max(out_width, plan.tasks[order[last]].out_count);
      const int64_t count = last - first + 1;
      if (last > first && count * (in_width * in_cost + w * out_cost) > budget)
        break;
      out_width = w;
      ++last;
    }
    PaddedChunk chunk;
    chunk.tasks = last - first;
    chunk.in_width = in_width;
    chunk.out_width = out_width;
    chunk.in_index.assign(chunk.tasks * in_width, -1);
    chunk.col_offset.assign(chunk.tasks * in_width, -1);
    chunk.in_scale.assign(chunk.tasks * in_width, 0.0);
    chunk.out_index.assign(chunk.tasks * out_width, -1);
    chunk.row_offset.assign(chunk.tasks * out_width, -1);
    for (int64_t i = 0; i < chunk.tasks; ++i) {
      const auto& t = plan.tasks[order[first + i]];
      for (int64_t k = 0; k < t.in_count; ++k) {
        const int64_t e = t.in_begin + k;
        chunk.in_index[i * in_width + k] =
            t.sample * plan.in_channels + plan.in_channel[e];
        chunk.col_offset[i * in_width + k] = plan.col_offset[e];
        chunk.in_scale[i * in_width + k] = plan.in_scale[e];
      }
      for (int64_t r = 0; r < t.out_count; ++r) {
        const int64_t e = t.out_begin + r;
        chunk.out_index[i * out_width + r] =
            t.sample * plan.out_channels + plan.out_channel[e];
        chunk.row_offset[i * out_width + r] = plan.row_offset[e];
      }
    }
    chunks.push_back(std::move(chunk));
    first = last;
  }
  return chunks;
}

namespace {

at::Tensor forward(const at::Tensor& input, const at::Tensor& weight_flat,
                   const std::optional<at::Tensor>& bias,
                   const GroupConvPlan& plan, const ConvGeometry& geo) {
  TORCH_CHECK(input.is_cpu(), "mmlgc group conv: no C++ kernel for device ",
              input.device());
  return group_conv_forward_cpu(input, weight_flat, bias, plan, geo);
}

at::Tensor dynamic_group_conv(const at::Tensor& input, const at::Tensor& weight,
                              const std::optional<at::Tensor>& bias,
                              const at::Tensor& mask,
                              const std::optional<at::Tensor>& out_mask,
                              at::IntArrayRef stride, at::IntArrayRef padding,
                              at::IntArrayRef dilation, bool interleaved) {
  constexpr const char* op = "dynamic_group_conv";
  check_dynamic_group_conv_args(op, input, weight, bias, mask, out_mask);
  const auto geo = make_geometry(op, input, weight.size(2), weight.size(3),
                                 stride, padding, dilation);
  checked_product(op, "the output size",
                  {input.size(0), weight.size(0), geo.out_h, geo.out_w});
  const auto plan = plan_dynamic_group_conv(mask, out_mask, weight.size(0),
                                            geo.taps(), interleaved);
  return forward(input, weight.contiguous().view(-1), bias, plan, geo);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> dynamic_group_conv_backward(
    const at::Tensor& grad_out, const at::Tensor& input,
    const at::Tensor& weight, const at::Tensor& mask,
    const std::optional<at::Tensor>& out_mask, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation,
    std::array<bool, 3> needs, bool interleaved) {
  constexpr const char* op = "dynamic_group_conv_backward";
  check_dynamic_group_conv_args(op, input, weight, std::nullopt, mask,
                                out_mask);
  const auto geo = make_geometry(op, input, weight.size(2), weight.size(3),
                                 stride, padding, dilation);
  check_grad_out(op, grad_out, input, weight.size(0), geo);
  const auto plan = plan_dynamic_group_conv(mask, out_mask, weight.size(0),
                                            geo.taps(), interleaved);
  auto [grad_input, grad_weight, grad_bias] = group_conv_backward(
      grad_out, input, weight.contiguous().view(-1), plan, geo, needs);
  if (grad_weight.defined()) grad_weight = grad_weight.view(weight.sizes());
  return defined_or_empty({grad_input, grad_weight, grad_bias},
                          input.options());
}

at::Tensor ragged_group_conv(const at::Tensor& input, const at::Tensor& weight,
                             const std::optional<at::Tensor>& bias,
                             const at::Tensor& in_index,
                             at::IntArrayRef in_sizes,
                             at::IntArrayRef out_sizes,
                             at::IntArrayRef kernel_size,
                             at::IntArrayRef stride, at::IntArrayRef padding,
                             at::IntArrayRef dilation) {
  constexpr const char* op = "ragged_group_conv";
  const int64_t outputs = check_ragged_group_conv_args(
      op, input, weight, bias, in_index, in_sizes, out_sizes, kernel_size);
  const auto geo = make_geometry(op, input, kernel_size[0], kernel_size[1],
                                 stride, padding, dilation);
  checked_product(op, "the output size",
                  {input.size(0), outputs, geo.out_h, geo.out_w});
  const auto plan = plan_ragged_group_conv(in_index, in_sizes, out_sizes,
                                           input.size(0), input.size(1),
                                           geo.taps());
  return forward(input, weight.contiguous(), bias, plan, geo);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ragged_group_conv_backward(
    const at::Tensor& grad_out, const at::Tensor& input,
    const at::Tensor& weight, const at::Tensor& in_index,
    at::IntArrayRef in_sizes, at::IntArrayRef out_sizes,
    at::IntArrayRef kernel_size, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation,
    std::array<bool, 3> needs) {
  constexpr const char* op = "ragged_group_conv_backward";
  const int64_t outputs = check_ragged_group_conv_args(
      op, input, weight, std::nullopt, in_index, in_sizes, out_sizes,
      kernel_size);
  const auto geo = make_geometry(op, input, kernel_size[0], kernel_size[1],
                                 stride, padding, dilation);
  check_grad_out(op, grad_out, input, outputs, geo);
  const auto plan = plan_ragged_group_conv(in_index, in_sizes, out_sizes,
                                           input.size(0), input.size(1),
                                           geo.taps());
  return defined_or_empty(group_conv_backward(grad_out, input,
                                              weight.contiguous(), plan, geo,
                                              needs),
                          input.options());
}

}  // namespace

// The forward's C++ kernel is CPU-only; on CUDA the Triton kernels run
// (registered from Python, mmlgc/ops/cuda_kernels.py).
TORCH_LIBRARY_IMPL(mmlgc, CPU, m) {
  m.impl("dynamic_group_conv", dynamic_group_conv);
  m.impl("ragged_group_conv", ragged_group_conv);
}

// The backward is ATen code on gathered channels (oneDNN on CPU, cuDNN on
// CUDA): one registration serves every device.
TORCH_LIBRARY_IMPL(mmlgc, CompositeExplicitAutograd, m) {
  m.impl("dynamic_group_conv_backward", dynamic_group_conv_backward);
  m.impl("ragged_group_conv_backward", ragged_group_conv_backward);
}

}  // namespace mmlgc
