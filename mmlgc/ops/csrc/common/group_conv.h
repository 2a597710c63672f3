// Shared by the dynamic and the ragged group conv on every device.
//
// Both ops compile their arguments into one host-side *plan*: a list of tasks,
// each "convolve these input channels of sample n (each times a scale) with
// these weight entries into these output channels". Weight entry (r, c, tap)
// of a task lives at `weight_flat[row_offset[r] + col_offset[c] + tap]`, which
// covers the dense [O, C, kh, kw] weight of the dynamic op and the packed
// per-group weights of the ragged op alike. Kernels only ever visit the
// (input channel, output channel) pairs listed in a task, so work scales with
// the active pairs and never with the zeros of a mask.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/OptionalArrayRef.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <vector>

namespace mmlgc {

struct ConvGeometry {
  int64_t in_h, in_w, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
      dilation_h, dilation_w, out_h, out_w;

  int64_t taps() const { return kernel_h * kernel_w; }
};

// a * b * ... for non-negative factors; a clear error naming `what` when it
// overflows int64 (sizes from user arguments reach offset arithmetic).
int64_t checked_product(const char* op, const char* what,
                        std::initializer_list<int64_t> factors);

// Validates stride/padding/dilation (two values each) and the kernel size,
// and derives the output size; a stride past the last kernel position is
// clamped there (same result). `op` names the caller in error messages.
ConvGeometry make_geometry(const char* op, const at::Tensor& input,
                           int64_t kernel_h, int64_t kernel_w,
                           at::IntArrayRef stride, at::IntArrayRef padding,
                           at::IntArrayRef dilation);

struct GroupConvTask {
  int64_t sample;
  int64_t in_begin, in_count;    // slice of GroupConvPlan::in_*
  int64_t out_begin, out_count;  // slice of GroupConvPlan::out_*
};

struct GroupConvPlan {
  int64_t batch = 0, in_channels = 0, out_channels = 0, taps = 0;
  std::vector<GroupConvTask> tasks;
  std::vector<int64_t> in_channel;  // input channel read by each task entry
  std::vector<int64_t> col_offset;  // weight offset of that input channel
  std::vector<double> in_scale;     // multiplies that input channel
  std::vector<int64_t> out_channel; // output channel written
  std::vector<int64_t> row_offset;  // weight offset of that output channel
  // Every output channel of every sample is written by exactly one task
  // (else the output must start zeroed: masked-out channels are zero).
  bool covers_all_outputs = true;

  // Total multiply-accumulates per output pixel: sum over tasks of
  // in_count * out_count * taps.
  int64_t macs_per_pixel() const;
};

// Tasks padded to a common size, for kernels that run a chunk of tasks as one
// batched GEMM or one grouped convolution. Entry (i, c) of a chunk is task i's
// c-th input channel: `in_index` = n * C + channel, or -1 for padding (then
// its scale is 0 and col_offset -1); likewise (i, r) for output channels.
struct PaddedChunk {
  int64_t tasks = 0, in_width = 0, out_width = 0;
  std::vector<int64_t> in_index, col_offset, out_index, row_offset;
  std::vector<double> in_scale;
};

// Splits the plan's tasks (largest first, so padding stays small) into
// chunks whose cost tasks * (in_width * in_cost + out_width * out_cost)
// stays under `budget` (a chunk holds at least one task). Tasks reading no
// input channel are dropped when `skip_empty_inputs`.
std::vector<PaddedChunk> pad_tasks(const GroupConvPlan& plan, int64_t in_cost,
                                   int64_t out_cost, int64_t budget,
                                   bool skip_empty_inputs);

// Dynamic group conv: `mask` [N, G, C] (output group g reads channel c of
// sample n, scaled by mask[n, g, c], iff that is non-zero) and the optional
// `out_mask` [N, O] (output channel o of sample n is computed iff non-zero).
// Group g holds output channels [g*O/G, (g+1)*O/G), or, `interleaved`, the
// channels j*G + g. Weight [O, C, kh, kw], dense, rows in output order.
GroupConvPlan plan_dynamic_group_conv(const at::Tensor& mask,
                                      const std::optional<at::Tensor>& out_mask,
                                      int64_t out_channels, int64_t taps,
                                      bool interleaved);

// Ragged group conv: group g reads in_index[in_offset_g : +in_sizes[g]] and
// writes the next out_sizes[g] output channels; its weight is the next
// out_sizes[g] * in_sizes[g] * taps entries of the flat packed weight.
GroupConvPlan plan_ragged_group_conv(const at::Tensor& in_index,
                                     at::IntArrayRef in_sizes,
                                     at::IntArrayRef out_sizes, int64_t batch,
                                     int64_t in_channels, int64_t taps);

// Shape/dtype/device checks of the dynamic op's tensors.
void check_dynamic_group_conv_args(const char* op, const at::Tensor& input,
                                   const at::Tensor& weight,
                                   const std::optional<at::Tensor>& bias,
                                   const at::Tensor& mask,
                                   const std::optional<at::Tensor>& out_mask);

// Shape/dtype/device checks of the ragged op's tensors and group sizes;
// returns the number of output channels, sum(out_sizes).
int64_t check_ragged_group_conv_args(const char* op, const at::Tensor& input,
                                  const at::Tensor& weight,
                                  const std::optional<at::Tensor>& bias,
                                  const at::Tensor& in_index,
                                  at::IntArrayRef in_sizes,
                                  at::IntArrayRef out_sizes,
                                  at::IntArrayRef kernel_size);

// Per-device forward of a plan: out [N, plan.out_channels, out_h, out_w].
at::Tensor group_conv_forward_cpu(const at::Tensor& input,
                                  const at::Tensor& weight_flat,
                                  const std::optional<at::Tensor>& bias,
                                  const GroupConvPlan& plan,
                                  const ConvGeometry& geo);

// Shape, dtype and device of a backward's `grad_out`: [N, out_channels,
// out_h, out_w] like the forward's output. Checked before planning, so the
// plan's size is bounded by tensors that exist.
void check_grad_out(const char* op, const at::Tensor& grad_out,
                    const at::Tensor& input, int64_t out_channels,
                    const ConvGeometry& geo);

// Device-generic backward of a plan (ATen convolution backward on gathered
// tensors). Returns {grad_input, grad_weight_flat, grad_bias}; entries not
// requested by `needs` are undefined.
std::tuple<at::Tensor, at::Tensor, at::Tensor> group_conv_backward(
    const at::Tensor& grad_out, const at::Tensor& input,
    const at::Tensor& weight_flat, const GroupConvPlan& plan,
    const ConvGeometry& geo, std::array<bool, 3> needs);

// Gradients not requested come back as empty tensors (the schema returns
// three Tensors; undefined ones would not survive the dispatcher's checks).
std::tuple<at::Tensor, at::Tensor, at::Tensor> defined_or_empty(
    std::tuple<at::Tensor, at::Tensor, at::Tensor> grads,
    const at::TensorOptions& options);

}  // namespace mmlgc
