// Optimiser steps: the backend's sgd_step / adamw_step, every parameter tensor of a model in one launch
// (up to kMaxFusedParams tensors per launch; more are split into several launches).
//
// The table of tensors is a kernel parameter (CUDA >= 12.1 allows 32 KiB of parameters on sm_70+), so a
// step costs no host-to-device copy. Each tensor is cut into chunks of kChunk elements; block b finds its
// tensor by binary search over the chunk prefix sums and updates one chunk.
//
// Parameters and states are f32 (the masters); a slot's grad is f32 or bf16 (the gradient of a bf16
// working copy), per slot in the table, loaded to float (exact).
#include <cmath>
#include <cstdint>
#include <vector>

#include "bf16.cuh"
#include "cuda_common.cuh"
#include "device.cuh"
#include "geoloc/detail/math.hpp"

namespace geoloc::cuda {
namespace {
using detail::expect;

constexpr int64_t kChunk = 4096;
constexpr int kMaxFusedParams = 192;

struct Seg {
  float* p;
  const void* g;  // f32, or bf16 when g_bf16
  float* s1;
  float* s2;
  int64_t n;
  float wd;
  bool g_bf16;
};
struct SegTable {
  Seg seg[kMaxFusedParams];
  int64_t chunk_begin[kMaxFusedParams + 1];  // prefix sums of chunks per segment
  int count;
};
static_assert(sizeof(SegTable) < 31 * 1024, "kernel parameter limit");

struct SgdHyper {
  float lr, momentum, dampening;
  bool nesterov, first_step;
};
struct AdamHyper {
  float lr, beta1, beta2, eps, bc1, bc2;
};

__device__ __forceinline__ float grad_at(const Seg& s, int64_t i) {
  return s.g_bf16 ? dev::ld(static_cast<const dev::bf16*>(s.g), i) : static_cast<const float*>(s.g)[i];
}

__device__ __forceinline__ int find_seg(const SegTable& t, int64_t block) {
  int lo = 0, hi = t.count - 1;
  while (lo < hi) {  // last segment whose chunk_begin <= block
    const int mid = (lo + hi + 1) / 2;
    if (t.chunk_begin[mid] <= block)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

__global__ void fused_sgd_kernel(const __grid_constant__ SegTable t, const SgdHyper h) {
  const int si = find_seg(t, blockIdx.x);
  const Seg& s = t.seg[si];
  const int64_t begin = (blockIdx.x - t.chunk_begin[si]) * kChunk;
  const int64_t end = begin + kChunk < s.n ? begin + kChunk : s.n;
  const float momentum = s.s1 ? h.momentum : 0.0f;  // no buffer = plain SGD, as the CPU backend
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    float b = s.s1 ? s.s1[i] : 0.0f;
    s.p[i] = math::sgd_update(s.p[i], grad_at(s, i), b, h.lr, momentum, h.dampening, s.wd, h.nesterov, h.first_step);
    if (s.s1) s.s1[i] = b;
  }
}

__global__ void fused_adamw_kernel(const __grid_constant__ SegTable t, const AdamHyper h) {
  const int si = find_seg(t, blockIdx.x);
  const Seg& s = t.seg[si];
  const int64_t begin = (blockIdx.x - t.chunk_begin[si]) * kChunk;
  const int64_t end = begin + kChunk < s.n ? begin + kChunk : s.n;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x)
    s.p[i] = math::adamw_update(s.p[i], grad_at(s, i), s.s1[i], s.s2[i], h.lr, h.beta1, h.beta2, h.eps, s.wd, h.bc1,
                                h.bc2);
}

void check_slot(const OptimSlot& sl, size_t i, bool adam, const char* fn) {
  expect(sl.param, DType::F32, fn, "param");
  detail::expect_fp(sl.grad, sl.grad.dtype(), fn, "grad");  // f32 or bf16
  GEOLOC_CHECK(sl.grad.numel() == sl.param.numel() && sl.grad.device() == sl.param.device(), ShapeError,
               "cuda::", fn, ": slot ", i, " grad ", sl.grad.str(), " does not match param ", sl.param.str());
  auto state = [&](const Tensor& s, const char* what) {
    expect(s, DType::F32, fn, what);
    GEOLOC_CHECK(s.numel() == sl.param.numel() && s.device() == sl.param.device(), ShapeError, "cuda::", fn,
                 ": slot ", i, " ", what, " ", s.str(), " does not match param ", sl.param.str());
  };
  if (adam) {
    state(sl.state1, "m");
    state(sl.state2, "v");
  } else if (sl.state1.defined()) {
    state(sl.state1, "momentum_buf");
  }
}

// Fills tables of at most kMaxFusedParams tensors and launches one kernel per table.
// The slots that have a gradient (the contract skips the others, as the CPU backend does).
std::vector<OptimSlot> with_grad(const std::vector<OptimSlot>& slots) {
  std::vector<OptimSlot> out;
  for (const OptimSlot& s : slots)
    if (s.grad.defined()) out.push_back(s);
  return out;
}

template <class Launch>
void run_tables(const std::vector<OptimSlot>& slots, bool adam, const char* fn, Launch launch) {
  if (slots.empty()) return;
  const Device d = slots[0].param.defined() ? slots[0].param.device() : Device::cpu();
  for (size_t i = 0; i < slots.size(); ++i) {
    check_slot(slots[i], i, adam, fn);
    GEOLOC_CHECK(slots[i].param.device() == d, ShapeError, "cuda::", fn, ": slot ", i, " is on ",
                 slots[i].param.device().str(), ", slot 0 on ", d.str());
  }
  Context& ctx = detail::context_of(slots[0].param, fn);
  cudaStream_t s = detail::stream_of(ctx);
  size_t i = 0;
  while (i < slots.size()) {
    SegTable t{};
    int64_t chunks = 0;
    while (i < slots.size() && t.count < kMaxFusedParams) {
      const OptimSlot& sl = slots[i++];
      if (sl.param.numel() == 0) continue;
      Seg& g = t.seg[t.count];
      g.p = static_cast<float*>(sl.param.raw());
      g.g = sl.grad.raw();
      g.g_bf16 = sl.grad.dtype() == DType::BF16;
      g.s1 = sl.state1.defined() ? static_cast<float*>(sl.state1.raw()) : nullptr;
      g.s2 = sl.state2.defined() ? static_cast<float*>(sl.state2.raw()) : nullptr;
      g.n = sl.param.numel();
      g.wd = sl.weight_decay;
      t.chunk_begin[t.count] = chunks;
      chunks += (g.n + kChunk - 1) / kChunk;
      ++t.count;
    }
    t.chunk_begin[t.count] = chunks;
    if (t.count == 0) continue;
    GEOLOC_CHECK(chunks <= 0x7fffffffLL, ShapeError, "cuda::", fn, ": parameters too large for one launch");
    launch(t, static_cast<unsigned>(chunks), s);
    GEOLOC_CUDA_LAUNCH_CHECK(s, fn);
  }
}
}  // namespace

void sgd_step(const std::vector<OptimSlot>& slots, float lr, float momentum, float dampening, bool nesterov,
              bool first_step) {
  const SgdHyper h{lr, momentum, dampening, nesterov, first_step};
  run_tables(with_grad(slots), false, "sgd_step", [&](const SegTable& t, unsigned blocks, cudaStream_t s) {
    GEOLOC_LAUNCH(blocks, dev::kThreads, 0, s, fused_sgd_kernel)(t, h);
  });
}

void adamw_step(const std::vector<OptimSlot>& slots, float lr, float beta1, float beta2, float eps, int64_t step) {
  GEOLOC_CHECK(step >= 1, ValueError, "cuda::adamw_step: step must be >= 1, got ", step);
  // Bias corrections computed on the host exactly as the CPU backend does.
  const AdamHyper h{lr,
                    beta1,
                    beta2,
                    eps,
                    1.0f - std::pow(beta1, static_cast<float>(step)),
                    1.0f - std::pow(beta2, static_cast<float>(step))};
  run_tables(with_grad(slots), true, "adamw_step", [&](const SegTable& t, unsigned blocks, cudaStream_t s) {
    GEOLOC_LAUNCH(blocks, dev::kThreads, 0, s, fused_adamw_kernel)(t, h);
  });
}

}  // namespace geoloc::cuda
