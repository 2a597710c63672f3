// CPU kernel of mmlgc::affine_relu_mean: y = max(scale[c] * x + shift[c], 0)
// and the per-(sample, channel) mean of y, in one pass over x. An eval-mode
// BN -> ReLU followed by a global average pool (DGC's pre-activation and its
// saliency generators' input) otherwise reads and writes the activation
// three times: the norm (into a fresh buffer), the ReLU, the pool. With a
// stride, only every stride-th row and column of y is written (what a
// strided 1x1 conv reads), the mean still over all of it.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>

namespace mmlgc {
namespace {

void check_args(const at::Tensor& input, const at::Tensor& scale,
                const at::Tensor& shift, at::IntArrayRef stride) {
  constexpr const char* op = "affine_relu_mean";
  TORCH_CHECK(input.dim() == 4, op, ": expected input [N, C, H, W], got ",
              input.sizes());
  TORCH_CHECK(stride.size() == 2 && stride[0] > 0 && stride[1] > 0, op,
              ": stride must be two positive ints, got ", stride);
  TORCH_CHECK(input.scalar_type() == at::kFloat ||
                  input.scalar_type() == at::kDouble,
              op, " (CPU): float32 and float64 are supported, got ",
              input.scalar_type());
  for (const auto& [what, t] :
       {std::pair<const char*, const at::Tensor&>{"scale", scale},
        {"shift", shift}}) {
    TORCH_CHECK(t.dim() == 1 && t.size(0) == input.size(1), op, ": ", what,
                " must be [C] = [", input.size(1), "], got ", t.sizes());
    TORCH_CHECK(t.scalar_type() == input.scalar_type(), op, ": ", what,
                " has dtype ", t.scalar_type(), " but the input has ",
                input.scalar_type());
    TORCH_CHECK(t.device() == input.device(), op, ": ", what, " is on ",
                t.device(), " but the input is on ", input.device());
  }
}

// y = max(a * x + b, 0) over n elements: stored to dst (kStore) and summed
// in independent partial sums (vectorisable).
template <typename T, bool kStore>
inline double affine_relu_run(const T* src, int64_t n, T a, T b, T* dst) {
  constexpr int64_t kLanes = 16;
  T part[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int64_t k = 0; k < kLanes; ++k) {
      const T y = std::max(a * src[i + k] + b, T(0));
      if (kStore) dst[i + k] = y;
      part[k] += y;
    }
  }
  double sum = 0;
  for (; i < n; ++i) {
    const T y = std::max(a * src[i] + b, T(0));
    if (kStore) dst[i] = y;
    sum += y;
  }
  for (int64_t k = 0; k < kLanes; ++k) sum += part[k];
  return sum;
}

template <typename T>
void affine_relu_mean_impl(const at::Tensor& x, const at::Tensor& scale,
                           const at::Tensor& shift, int64_t stride_h,
                           int64_t stride_w, at::Tensor& out,
                           at::Tensor& mean) {
  const int64_t channels = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t out_h = out.size(2), out_w = out.size(3);
  const bool strided = stride_h != 1 || stride_w != 1;
  const T* xp = x.data_ptr<T>();
  const T* a = scale.data_ptr<T>();
  const T* b = shift.data_ptr<T>();
  T* op = out.data_ptr<T>();
  T* mp = mean.data_ptr<T>();
  at::parallel_for(0, x.size(0) * channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const T av = a[plane % channels], bv = b[plane % channels];
      const T* src = xp + plane * h * w;
      T* dst = op + plane * out_h * out_w;
      double sum = 0;
      if (!strided) {
        sum = affine_relu_run<T, true>(src, h * w, av, bv, dst);
      } else {
        for (int64_t y = 0; y < h; ++y) {
          const T* row = src + y * w;
          sum += affine_relu_run<T, false>(row, w, av, bv, nullptr);
          if (y % stride_h != 0) continue;
          T* out_row = dst + (y / stride_h) * out_w;
          for (int64_t j = 0; j < out_w; ++j)
            out_row[j] = std::max(av * row[j * stride_w] + bv, T(0));
        }
      }
      mp[plane] = static_cast<T>(sum / (h * w));  // 0 / 0: NaN, as torch.mean
    }
  });
}

std::tuple<at::Tensor, at::Tensor> affine_relu_mean(const at::Tensor& input,
                                                    const at::Tensor& scale,
                                                    const at::Tensor& shift,
                                                    at::IntArrayRef stride) {
  check_args(input, scale, shift, stride);
  const at::Tensor x = input.contiguous();
  const int64_t sh = stride[0], sw = stride[1];
  at::Tensor out = at::empty({x.size(0), x.size(1), (x.size(2) + sh - 1) / sh,
                              (x.size(3) + sw - 1) / sw},
                             x.options().memory_format(
                                 at::MemoryFormat::Contiguous));
  at::Tensor mean = at::empty({x.size(0), x.size(1)}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "affine_relu_mean", [&] {
    affine_relu_mean_impl<scalar_t>(x, scale.contiguous(), shift.contiguous(),
                                    sh, sw, out, mean);
  });
  return {out, mean};
}

}  // namespace

TORCH_LIBRARY_IMPL(mmlgc, CPU, m) {
  m.impl("affine_relu_mean", affine_relu_mean);
}

}  // namespace mmlgc
