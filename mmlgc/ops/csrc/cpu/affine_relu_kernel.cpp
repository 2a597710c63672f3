// CPU kernel of mmlgc::affine_relu_mean: y = max(scale[c] * x + shift[c], 0)
// and the per-(sample, channel) mean of y, in one pass over x. An eval-mode
// BN -> ReLU followed by a global average pool (DGC's pre-activation and its
// saliency generators' input) otherwise reads and writes the activation
// three times: the norm (into a fresh buffer), the ReLU, the pool.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <algorithm>

namespace mmlgc {
namespace {

void check_args(const at::Tensor& input, const at::Tensor& scale,
                const at::Tensor& shift) {
  constexpr const char* op = "affine_relu_mean";
  TORCH_CHECK(input.dim() == 4, op, ": expected input [N, C, H, W], got ",
              input.sizes());
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

template <typename T>
void affine_relu_mean_impl(const at::Tensor& x, const at::Tensor& scale,
                           const at::Tensor& shift, at::Tensor& out,
                           at::Tensor& mean) {
  const int64_t channels = x.size(1), hw = x.size(2) * x.size(3);
  const T* xp = x.data_ptr<T>();
  const T* a = scale.data_ptr<T>();
  const T* b = shift.data_ptr<T>();
  T* op = out.data_ptr<T>();
  T* mp = mean.data_ptr<T>();
  constexpr int64_t kLanes = 16;  // independent partial sums: vectorisable
  at::parallel_for(0, x.size(0) * channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const T av = a[plane % channels], bv = b[plane % channels];
      const T* src = xp + plane * hw;
      T* dst = op + plane * hw;
      T part[kLanes] = {};
      int64_t i = 0;
      for (; i + kLanes <= hw; i += kLanes) {
        for (int64_t k = 0; k < kLanes; ++k) {
          const T y = std::max(av * src[i + k] + bv, T(0));
          dst[i + k] = y;
          part[k] += y;
        }
      }
      double sum = 0;
      for (; i < hw; ++i) {
        const T y = std::max(av * src[i] + bv, T(0));
        dst[i] = y;
        sum += y;
      }
      for (int64_t k = 0; k < kLanes; ++k) sum += part[k];
      mp[plane] = static_cast<T>(sum / hw);  // 0 / 0: NaN, as torch.mean
    }
  });
}

std::tuple<at::Tensor, at::Tensor> affine_relu_mean(const at::Tensor& input,
                                                    const at::Tensor& scale,
                                                    const at::Tensor& shift) {
  check_args(input, scale, shift);
  const at::Tensor x = input.contiguous();
  at::Tensor out = at::empty_like(x, at::MemoryFormat::Contiguous);
  at::Tensor mean = at::empty({x.size(0), x.size(1)}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "affine_relu_mean", [&] {
    affine_relu_mean_impl<scalar_t>(x, scale.contiguous(), shift.contiguous(),
                                    out, mean);
  });
  return {out, mean};
}

}  // namespace

TORCH_LIBRARY_IMPL(mmlgc, CPU, m) {
  m.impl("affine_relu_mean", affine_relu_mean);
}

}  // namespace mmlgc
