// CPU forward of the group conv plans (dynamic and ragged ops): a direct
// convolution that reads only the input channels a task lists.
//
// 1. Gather: every input channel some task of sample n reads is copied once
//    into a zero-padded buffer, split into stride_h * stride_w phase planes,
//    so that each kernel tap becomes a *contiguous* read at a fixed offset
//    from the output position (flattened over rows of width `plane_w`;
//    the plane_w - out_w extra columns per row are computed and dropped).
// 2. Compute: each work item is (task, block of R output channels, run of
//    output tiles of V vectors). A register-blocked micro-kernel does R x V
//    vector FMAs per (input channel, tap): V loads and R weight broadcasts
//    taken straight from the flat weight (row pointer + column offset), so
//    there is no per-call weight packing -- it cost more than it saved on
//    small maps, where each weight is used for few pixels. Input channels
//    are taken in blocks swept over all tiles of an item (rows stay in L1).
// The micro-kernel is compiled for AVX-512, AVX2 and baseline SIMD and picked
// at run time. Items are handed out dynamically: tasks differ in size.
//
// Strided pointwise convs (1x1, no padding, stride > 1) take another path:
// each task is one GEMM (its weight entries x its gathered, subsampled input
// rows) run by ATen's BLAS; the direct kernel would gather every phase plane
// and read one. Unstrided 1x1 convs run the direct kernel: per task a GEMM
// has few rows (a head's outputs) and re-reads its inputs per task, and on
// ResNet-50 and MobileNetV2 shapes the direct kernel measured 1.1-1.8x
// faster (batch 1 and 8, 7x7 to 200x304 maps, one thread).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "../common/group_conv.h"

#define MMLGC_INLINE inline __attribute__((always_inline))

namespace mmlgc {
namespace {

// Output tiles per work item: amortises the weight packing of an item over
// several tiles while leaving enough items to balance threads.
constexpr int64_t kTilesPerItem = 4;
// Input channels per pass over an item's tiles (keeps their rows in L1).
constexpr int64_t kChannelBlock = 16;

struct Layout {
  int64_t plane_w = 0;     // row width of a phase plane (>= out_w)
  int64_t positions = 0;   // out_h * plane_w flattened output positions
  int64_t plane_len = 0;   // elements per phase plane, incl. zero tail
  int64_t phases = 0;      // stride_h * stride_w
  int64_t plane_h = 0;     // rows of a phase plane holding data
  std::vector<int64_t> tap_offset;  // per tap: phase plane + row/col shift
  // Tap offsets at least a vector apart: the lines a tile reads start there.
  std::vector<int64_t> prefetch_offset;
};

Layout make_layout(const ConvGeometry& g, int64_t tile) {
  Layout l;
  const int64_t shift_h = (g.kernel_h - 1) * g.dilation_h / g.stride_h;
  const int64_t shift_w = (g.kernel_w - 1) * g.dilation_w / g.stride_w;
  l.plane_w = g.out_w + shift_w;
  l.plane_h = g.out_h + shift_h;
  l.positions = g.out_h * l.plane_w;
  l.phases = g.stride_h * g.stride_w;
  const int64_t tiles = (l.positions + tile - 1) / tile;
  // The last tile reads past the last position by up to the largest shift.
  l.plane_len = std::max(tiles * tile + shift_h * l.plane_w + shift_w,
                         l.plane_h * l.plane_w);
  l.plane_len = (l.plane_len + 15) / 16 * 16;
  for (int64_t i = 0; i < g.kernel_h; ++i) {
    for (int64_t j = 0; j < g.kernel_w; ++j) {
      const int64_t dy = i * g.dilation_h, dx = j * g.dilation_w;
      const int64_t phase = (dy % g.stride_h) * g.stride_w + dx % g.stride_w;
      l.tap_offset.push_back(phase * l.plane_len +
                             (dy / g.stride_h) * l.plane_w + dx / g.stride_w);
    }
  }
  std::vector<int64_t> sorted(l.tap_offset);
  std::sort(sorted.begin(), sorted.end());
  for (int64_t o : sorted)
    if (l.prefetch_offset.empty() || o - l.prefetch_offset.back() >= 16)
      l.prefetch_offset.push_back(o);
  return l;
}

// Copies input channel (n, c) into its phase planes, zero-padded.
template <typename T>
void gather_channel(const T* src, int64_t stride_y, int64_t stride_x,
                    const ConvGeometry& g, const Layout& l, T* dst) {
  const int64_t step = g.stride_w * stride_x;
  for (int64_t a = 0; a < g.stride_h; ++a) {
    for (int64_t b = 0; b < g.stride_w; ++b) {
      T* plane = dst + (a * g.stride_w + b) * l.plane_len;
      // Plane columns j in [j_begin, j_end) read image columns
      // x = j * stride_w + b - pad_w in [0, in_w); the others are padding.
      const int64_t first = g.pad_w - b;
      const int64_t j_begin = std::clamp<int64_t>(
          (first + g.stride_w - 1) / g.stride_w, 0, l.plane_w);
      const int64_t j_end = std::clamp<int64_t>(
          (g.in_w + first + g.stride_w - 1) / g.stride_w, j_begin, l.plane_w);
      const int64_t n = j_end - j_begin;
      for (int64_t i = 0; i < l.plane_h; ++i) {
        T* row = plane + i * l.plane_w;
        const int64_t y = i * g.stride_h + a - g.pad_h;
        if (y < 0 || y >= g.in_h || n == 0) {
          std::fill(row, row + l.plane_w, T(0));
          continue;
        }
        std::fill(row, row + j_begin, T(0));
        const T* s = src + y * stride_y + (j_begin * g.stride_w - first) * stride_x;
        T* d = row + j_begin;
        if (step == 1) {
          std::memcpy(d, s, n * sizeof(T));
        } else if (step == 2) {  // stride-2 convs: a constant stride vectorises
          for (int64_t j = 0; j < n; ++j) d[j] = s[2 * j];
        } else {
          for (int64_t j = 0; j < n; ++j) d[j] = s[j * step];
        }
        std::fill(row + j_end, row + l.plane_w, T(0));
      }
      std::fill(plane + l.plane_h * l.plane_w, plane + l.plane_len, T(0));
    }
  }
}

struct WorkItem {
  int64_t task, out_first, tile_first, tile_end;
};

template <typename T>
struct Context {
  const GroupConvPlan* plan;
  const ConvGeometry* geo;
  const Layout* layout;
  const T* gathered;             // [slots][phases][plane_len]
  const int64_t* task_slots;     // gathered slot of each task input channel
  const int64_t* slot_begin;     // per task: its first entry in task_slots
  const T* entry_scale;          // per plan input entry: its scale
  const T* weight;               // flat
  const T* bias;                 // or nullptr
  T* out;                        // [N, O, out_h, out_w]
  const WorkItem* items;
};

// tile[R][V * VW] (+)= sum over the listed input channels c and taps t of
// weight(r, c, t) * x_c[q0 + tap_offset[t] + i]. Weights are broadcast straight
// from the flat weight (row pointer + column offset): no packing pass.
template <typename T, int VW, int R, int V, bool kScaled>
MMLGC_INLINE void micro_tile(const T* const* chans, const int64_t* cols,
                             const T* scales, int64_t count,
                             const int64_t* tap_offset, int64_t taps,
                             const T* const* rows, int64_t q0, T* tile,
                             bool accumulate, const int64_t* pf,
                             int64_t npf) {
  typedef T vec __attribute__((vector_size(VW * sizeof(T))));
  vec acc[R][V];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < V; ++v) {
      if (accumulate) {
        std::memcpy(&acc[r][v], tile + (r * V + v) * VW, sizeof(vec));
      } else {
        acc[r][v] = vec{};
      }
    }
  for (int64_t c = 0; c < count; ++c) {
    const T* x = chans[c] + q0;
    // Prefetch the next channel's lines for this tile: the hardware
    // prefetcher cannot follow this many concurrent streams (measured: up to
    // 1.4x faster on 200x304 maps, 1.1-1.3x on 56x56).
    {
      const T* xn = (c + 1 < count ? chans[c + 1] : chans[c]) + q0;
      for (int64_t i = 0; i < npf; ++i) {
        const char* base = reinterpret_cast<const char*>(xn + pf[i]);
#pragma GCC unroll 8
        for (int v = 0; v <= V; ++v) __builtin_prefetch(base + v * 64);
      }
    }
    const T* w[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) w[r] = rows[r] + cols[c];
    for (int64_t t = 0; t < taps; ++t) {
      const T* xt = x + tap_offset[t];
      vec xv[V];
#pragma GCC unroll 16
      for (int v = 0; v < V; ++v) {
        std::memcpy(&xv[v], xt + v * VW, sizeof(vec));
        if (kScaled) xv[v] *= scales[c];
      }
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const T wr = w[r][t];
#pragma GCC unroll 16
        for (int v = 0; v < V; ++v) acc[r][v] += xv[v] * wr;
      }
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < V; ++v)
      std::memcpy(tile + (r * V + v) * VW, &acc[r][v], sizeof(vec));
}

template <typename T, int VW, int R, int V, bool kScaled>
MMLGC_INLINE void run_item(const Context<T>& ctx, int64_t index,
                           std::vector<const T*>& chans) {
  constexpr int64_t kTile = VW * V;
  const auto& plan = *ctx.plan;
  const auto& geo = *ctx.geo;
  const auto& l = *ctx.layout;
  const WorkItem& item = ctx.items[index];
  const GroupConvTask& task = plan.tasks[item.task];
  const int64_t in_count = task.in_count;
  const int64_t rows = std::min<int64_t>(R, task.out_count - item.out_first);
  const int64_t* out_channel = plan.out_channel.data() + task.out_begin + item.out_first;
  const int64_t* row_offset = plan.row_offset.data() + task.out_begin + item.out_first;

  // Rows past the block's end repeat the last one: computed, never stored.
  const T* w_rows[R];
  for (int64_t r = 0; r < R; ++r)
    w_rows[r] = ctx.weight + row_offset[std::min<int64_t>(r, rows - 1)];
  chans.resize(std::max<int64_t>(in_count, 1));
  const int64_t chan_len = l.phases * l.plane_len;
  for (int64_t c = 0; c < in_count; ++c) {
    chans[c] = ctx.gathered + ctx.task_slots[ctx.slot_begin[item.task] + c] * chan_len;
  }
  const int64_t* cols = plan.col_offset.data() + task.in_begin;
  const T* scales = ctx.entry_scale + task.in_begin;

  // Channels in blocks, each swept over all tiles of the item, so that a
  // block's input rows stay in L1 from one tile to the next.
  alignas(64) T tiles[kTilesPerItem * R * kTile];
  const int64_t n_tiles = item.tile_end - item.tile_first;
  for (int64_t c0 = 0; c0 < std::max<int64_t>(in_count, 1);
       c0 += kChannelBlock) {
    const int64_t count = std::min(kChannelBlock, in_count - c0);
    for (int64_t i = 0; i < n_tiles; ++i) {
      micro_tile<T, VW, R, V, kScaled>(
          chans.data() + c0, cols + c0, scales + c0, count, l.tap_offset.data(),
          plan.taps, w_rows, (item.tile_first + i) * kTile,
          tiles + i * R * kTile, c0 > 0, l.prefetch_offset.data(),
          l.prefetch_offset.size());
    }
  }

  const int64_t out_plane = geo.out_h * geo.out_w;
  for (int64_t i = 0; i < n_tiles; ++i) {
    const int64_t q0 = (item.tile_first + i) * kTile;
    const int64_t q_end = std::min(q0 + kTile, l.positions);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t o = out_channel[r];
      const T b = ctx.bias ? ctx.bias[o] : T(0);
      T* dst = ctx.out + (task.sample * plan.out_channels + o) * out_plane;
      const T* src = tiles + (i * R + r) * kTile - q0;
      // Copy row segments, dropping the plane_w - out_w padding columns.
      for (int64_t q = q0; q < q_end;) {
        const int64_t oh = q / l.plane_w;
        const int64_t seg_end = std::min(q_end, oh * l.plane_w + geo.out_w);
        T* d = dst + oh * geo.out_w - oh * l.plane_w;
        for (int64_t p = q; p < seg_end; ++p) d[p] = src[p] + b;
        q = (oh + 1) * l.plane_w;
      }
    }
  }
}

template <typename T, int VW, int R, int V>
MMLGC_INLINE void run_items(const Context<T>& ctx, bool scaled,
                            std::atomic<int64_t>* next, int64_t count) {
  std::vector<const T*> chans;
  for (int64_t i = next->fetch_add(1); i < count; i = next->fetch_add(1)) {
    if (scaled) {
      run_item<T, VW, R, V, true>(ctx, i, chans);
    } else {
      run_item<T, VW, R, V, false>(ctx, i, chans);
    }
  }
}

template <typename T>
using RunItems = void (*)(const Context<T>&, bool, std::atomic<int64_t>*,
                          int64_t);

// One register-blocking choice of the micro-kernel for an instruction set.
template <typename T>
struct Kernel {
  int64_t rows, tile;  // R and V * VW
  RunItems<T> run;
};

#if defined(__x86_64__) || defined(__i386__)
template <typename T, int R, int V>
__attribute__((target("avx512f,fma"))) void run_avx512(
    const Context<T>& ctx, bool scaled, std::atomic<int64_t>* next,
    int64_t count) {
  run_items<T, 64 / sizeof(T), R, V>(ctx, scaled, next, count);
}

template <typename T, int R, int V>
__attribute__((target("avx2,fma"))) void run_avx2(
    const Context<T>& ctx, bool scaled, std::atomic<int64_t>* next,
    int64_t count) {
  run_items<T, 32 / sizeof(T), R, V>(ctx, scaled, next, count);
}
#endif

template <typename T, int R, int V>
void run_baseline(const Context<T>& ctx, bool scaled,
                  std::atomic<int64_t>* next, int64_t count) {
  run_items<T, 16 / sizeof(T), R, V>(ctx, scaled, next, count);
}

// Register blockings per instruction set: 24 accumulators of 32 AVX-512
// registers, 12 of 16 AVX2 ones. Both shapes of a set are tried on the plan
// and the one wasting the fewest padded rows/positions wins (small feature
// maps favour long tiles, narrow groups short ones).
template <typename T>
std::vector<Kernel<T>> kernels_for_cpu() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) {
    constexpr int64_t vw = 64 / sizeof(T);
    return {{8, 3 * vw, run_avx512<T, 8, 3>}, {6, 4 * vw, run_avx512<T, 6, 4>}};
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    constexpr int64_t vw = 32 / sizeof(T);
    return {{4, 3 * vw, run_avx2<T, 4, 3>}, {3, 4 * vw, run_avx2<T, 3, 4>}};
  }
#endif
  constexpr int64_t vw = 16 / sizeof(T);
  return {{4, 2 * vw, run_baseline<T, 4, 2>}};
}

template <typename T>
Kernel<T> pick_kernel(const GroupConvPlan& plan, const ConvGeometry& geo) {
  const auto kernels = kernels_for_cpu<T>();
  Kernel<T> best = kernels.front();
  double best_cost = -1;
  for (const auto& k : kernels) {
    const Layout l = make_layout(geo, k.tile);
    const int64_t tiles = (l.positions + k.tile - 1) / k.tile;
    double cost = 0;
    for (const auto& t : plan.tasks) {
      const int64_t blocks = (t.out_count + k.rows - 1) / k.rows;
      cost += static_cast<double>(blocks * k.rows) * t.in_count * tiles * k.tile;
    }
    if (best_cost < 0 || cost < best_cost) {
      best = k;
      best_cost = cost;
    }
  }
  return best;
}

template <typename T>
void forward_impl(const at::Tensor& input, const at::Tensor& weight_flat,
                  const std::optional<at::Tensor>& bias,
                  const GroupConvPlan& plan, const ConvGeometry& geo,
                  at::Tensor& out) {
  const Kernel<T> kernel = pick_kernel<T>(plan, geo);
  const Layout layout = make_layout(geo, kernel.tile);

  // Slots of the gathered buffer: one per (sample, channel) read by a task.
  std::vector<int64_t> slot_of(plan.batch * plan.in_channels, -1);
  std::vector<int64_t> slot_source;  // (n * C + c) of each slot
  // Per task, the slots of its input channels: tasks of different samples
  // may share plan entries (static groups), never slots.
  std::vector<int64_t> slot_begin(plan.tasks.size() + 1, 0);
  for (size_t t = 0; t < plan.tasks.size(); ++t)
    slot_begin[t + 1] = slot_begin[t] + plan.tasks[t].in_count;
  std::vector<int64_t> task_slots(slot_begin.back());
  for (size_t t = 0; t < plan.tasks.size(); ++t) {
    const auto& task = plan.tasks[t];
    for (int64_t e = task.in_begin; e < task.in_begin + task.in_count; ++e) {
      auto& s = slot_of[task.sample * plan.in_channels + plan.in_channel[e]];
      if (s < 0) {
        s = slot_source.size();
        slot_source.push_back(task.sample * plan.in_channels +
                              plan.in_channel[e]);
      }
      task_slots[slot_begin[t] + e - task.in_begin] = s;
    }
  }
  const int64_t chan_len = layout.phases * layout.plane_len;
  // Reused across calls (grow-only, per calling thread): a fresh buffer of
  // this size would be mmap'ed and page-faulted in on every call.
  static thread_local std::vector<T> gathered_buffer;
  const size_t gathered_size = std::max<size_t>(slot_source.size() * chan_len, 1);
  if (gathered_buffer.size() < gathered_size) gathered_buffer.resize(gathered_size);
  T* const gathered = gathered_buffer.data();
  const T* x = input.data_ptr<T>();
  const auto st = input.strides();
  at::parallel_for(0, slot_source.size(), 1, [&](int64_t b, int64_t e) {
    for (int64_t s = b; s < e; ++s) {
      const int64_t n = slot_source[s] / plan.in_channels;
      const int64_t c = slot_source[s] % plan.in_channels;
      gather_channel<T>(x + n * st[0] + c * st[1], st[2], st[3], geo, layout,
                        gathered + s * chan_len);
    }
  });

  // Spatial runs outermost: the threads then work on the same rows of every
  // task and block at about the same time, and those rows stay in cache
  // instead of the whole input being streamed once per task and block.
  std::vector<WorkItem> items;
  const int64_t tiles = (layout.positions + kernel.tile - 1) / kernel.tile;
  for (int64_t q = 0; q < tiles; q += kTilesPerItem) {
    for (size_t t = 0; t < plan.tasks.size(); ++t) {
      for (int64_t r = 0; r < plan.tasks[t].out_count; r += kernel.rows) {
        items.push_back({static_cast<int64_t>(t), r, q,
                         std::min(q + kTilesPerItem, tiles)});
      }
    }
  }
  const T* b = nullptr;
  at::Tensor bias_c;
  if (bias) {
    bias_c = bias->contiguous();
    b = bias_c.data_ptr<T>();
  }
  std::vector<T> entry_scale(plan.in_scale.begin(), plan.in_scale.end());
  const bool scaled = std::any_of(entry_scale.begin(), entry_scale.end(),
                                  [](T s) { return s != T(1); });
  const Context<T> ctx{&plan,
                       &geo,
                       &layout,
                       gathered,
                       task_slots.data(),
                       slot_begin.data(),
                       entry_scale.data(),
                       weight_flat.data_ptr<T>(),
                       b,
                       out.data_ptr<T>(),
                       items.data()};
  std::atomic<int64_t> next{0};
  const int64_t count = items.size();
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) {
    kernel.run(ctx, scaled, &next, count);
  });
}

bool is_strided_pointwise(const ConvGeometry& g) {
  return g.kernel_h == 1 && g.kernel_w == 1 && g.pad_h == 0 && g.pad_w == 0 &&
         (g.stride_h != 1 || g.stride_w != 1);
}

// Strided 1x1 convs, one GEMM per task: out[n, task rows] = W[rows, cols] *
// scale[cols] @ x[n, cols, subsampled] (+ bias), written in place when the
// task's output channels are consecutive (both ops' usual layout), else
// through a temporary. The gathers cost about (rows * cols + cols * pixels)
// copies against rows * cols * pixels multiply-adds.
template <typename T>
void pointwise_forward_impl(const at::Tensor& input,
                            const at::Tensor& weight_flat,
                            const std::optional<at::Tensor>& bias,
                            const GroupConvPlan& plan, const ConvGeometry& geo,
                            at::Tensor& out) {
  const at::Tensor x = input.contiguous();
  const int64_t in_hw = geo.in_h * geo.in_w, hw = geo.out_h * geo.out_w;
  const T* xp = x.data_ptr<T>();
  const T* w = weight_flat.data_ptr<T>();
  at::Tensor bias_c;
  if (bias) bias_c = bias->contiguous();
  const auto opts = x.options();
  std::vector<T> a_buf, b_buf;
  for (const auto& task : plan.tasks) {
    const int64_t k = task.in_count, m = task.out_count;
    if (m == 0) continue;
    const int64_t first = plan.out_channel[task.out_begin];
    bool consecutive = true;
    for (int64_t r = 1; r < m && consecutive; ++r)
      consecutive = plan.out_channel[task.out_begin + r] == first + r;
    T* out_n = out.data_ptr<T>() + task.sample * plan.out_channels * hw;
    at::Tensor result =
        consecutive ? at::from_blob(out_n + first * hw, {m, hw}, opts)
                    : at::empty({m, hw}, opts);
    if (k == 0) {
      result.zero_();
    } else {
      a_buf.resize(m * k);
      b_buf.resize(k * hw);
      const int64_t* cols = plan.col_offset.data() + task.in_begin;
      const double* scale = plan.in_scale.data() + task.in_begin;
      at::parallel_for(0, m, 64, [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) {
          const T* row = w + plan.row_offset[task.out_begin + r];
          T* dst = a_buf.data() + r * k;
          for (int64_t c = 0; c < k; ++c)
            dst[c] = row[cols[c]] * static_cast<T>(scale[c]);
        }
      });
      const T* x_n = xp + task.sample * plan.in_channels * in_hw;
      at::parallel_for(0, k, 16, [&](int64_t b, int64_t e) {
        for (int64_t c = b; c < e; ++c) {
          const T* src = x_n + plan.in_channel[task.in_begin + c] * in_hw;
          T* dst = b_buf.data() + c * hw;
          for (int64_t y = 0; y < geo.out_h; ++y) {
            const T* s = src + y * geo.stride_h * geo.in_w;
            for (int64_t j = 0; j < geo.out_w; ++j)
              dst[y * geo.out_w + j] = s[j * geo.stride_w];
          }
        }
      });
      const at::Tensor a = at::from_blob(a_buf.data(), {m, k}, opts);
      const at::Tensor b = at::from_blob(b_buf.data(), {k, hw}, opts);
      at::mm_out(result, a, b);
    }
    for (int64_t r = 0; r < m; ++r) {
      const int64_t o = plan.out_channel[task.out_begin + r];
      T* dst = out_n + o * hw;
      if (!consecutive)
        std::memcpy(dst, result.data_ptr<T>() + r * hw, hw * sizeof(T));
      if (bias) {
        const T v = bias_c.data_ptr<T>()[o];
        for (int64_t p = 0; p < hw; ++p) dst[p] += v;
      }
    }
  }
}

}  // namespace

at::Tensor group_conv_forward_cpu(const at::Tensor& input,
                                  const at::Tensor& weight_flat,
                                  const std::optional<at::Tensor>& bias,
                                  const GroupConvPlan& plan,
                                  const ConvGeometry& geo) {
  TORCH_CHECK(input.scalar_type() == at::kFloat ||
                  input.scalar_type() == at::kDouble,
              "mmlgc group conv (CPU): float32 and float64 are supported, got ",
              input.scalar_type());
  const auto opts = input.options().memory_format(at::MemoryFormat::Contiguous);
  const std::vector<int64_t> shape{plan.batch, plan.out_channels, geo.out_h,
                                   geo.out_w};
  at::Tensor out =
      plan.covers_all_outputs ? at::empty(shape, opts) : at::zeros(shape, opts);
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "group_conv_forward_cpu", [&] {
    if (is_strided_pointwise(geo)) {
      pointwise_forward_impl<scalar_t>(input, weight_flat, bias, plan, geo,
                                       out);
    } else {
      forward_impl<scalar_t>(input, weight_flat, bias, plan, geo, out);
    }
  });
  return out;
}

}  // namespace mmlgc
