// Softmax cross-entropy: the fused multi-head kernel behind the backend's cross_entropy_multihead, which
// also implements cross_entropy_hard / cross_entropy_soft as the one-head case.
//
// One block per (row, head). Pass 1 reads the row once with an online log-sum-exp (and, for soft
// targets, sum t and sum t*x); pass 2 reads it again (mostly from L2) and writes the gradient. The loss
// uses sum_c t_c (lse - x_c) = tsum*lse - sum t*x, the same quantity as the CPU's.
// Logits and dlogits f32 or bf16 per head (loaded to float, dlogits rounded once); loss and targets f32.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "bf16.cuh"
#include "cuda_common.cuh"
#include "device.cuh"

namespace geoloc::cuda {
namespace {
using detail::expect;

/// Heads per launch (the table is a kernel parameter); more are split into several launches.
constexpr int kMaxLossHeads = 16;

struct HeadArgs {
  const void* logits;     // f32 or bf16 (bf16 below), as dlogits
  const int32_t* labels;  // hard labels, or nullptr
  const float* targets;   // soft targets (f32), or nullptr
  float* loss;            // f32 whatever the logits' dtype
  void* dlogits;
  int64_t n, c;
  float grad_scale;
  bool bf16;  // logits and dlogits are bf16: loaded to float, dlogits rounded once
};
// Passed by value as a kernel parameter (16 heads * 72 B): no host-to-device copy of a table;
// __grid_constant__ lets blocks index it without a per-thread copy to local memory.
struct HeadTable {
  HeadArgs h[kMaxLossHeads];
  int count;
};

// 1024 threads per row when a head is wide: with a batch of a few hundred rows there are only a couple of
// blocks per SM, and memory-bound code needs the whole SM's threads in flight; 256 for narrow heads.
constexpr int kXentMaxThreads = 1024;

__global__ void __launch_bounds__(kXentMaxThreads)
    multihead_xent_kernel(const __grid_constant__ HeadTable table) {
  const HeadArgs& H = table.h[blockIdx.y];
  const int64_t row = blockIdx.x;
  if (row >= H.n) return;
  __shared__ float sm_m[32], sm_s[32], sm_r[32];
  const int64_t C = H.c;
  const bool b16 = H.bf16;
  const float* xf = static_cast<const float*>(H.logits) + row * C;
  const dev::bf16* xb = static_cast<const dev::bf16*>(H.logits) + row * C;
  float* df = static_cast<float*>(H.dlogits) + row * C;
  dev::bf16* db = static_cast<dev::bf16*>(H.dlogits) + row * C;
  auto x = [&](int64_t j) { return b16 ? dev::ld(xb, j) : xf[j]; };
  auto set_d = [&](int64_t j, float v) {
    if (b16)
      dev::st(db, j, v);
    else
      df[j] = v;
  };
  const float gs = H.grad_scale;
  if (H.labels) {
    const int32_t y = H.labels[row];
    if (y < 0) {  // ignored sample
      for (int64_t j = threadIdx.x; j < C; j += blockDim.x) set_d(j, 0.0f);
      if (threadIdx.x == 0) H.loss[row] = 0.0f;
      return;
    }
    dev::Lse st{-INFINITY, 0.0f};
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) st = dev::lse_push(st, x(j));
    st = dev::block_lse(st, sm_m, sm_s);
    const float lse = st.m + logf(st.s);
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) {
      const float g = gs * expf(x(j) - lse);
      set_d(j, j == y ? g - gs : g);
    }
    if (threadIdx.x == 0) H.loss[row] = y < C ? lse - x(y) : NAN;  // ops.cpp rejects y >= C before this
    return;
  }
  const float* t = H.targets + row * C;
  dev::Lse st{-INFINITY, 0.0f};
  float tsum = 0.0f, tx = 0.0f;
  for (int64_t j = threadIdx.x; j < C; j += blockDim.x) {
    const float v = x(j), tv = t[j];
    st = dev::lse_push(st, v);
    tsum += tv;
    if (tv != 0.0f) tx += tv * v;
  }
  st = dev::block_lse(st, sm_m, sm_s);
  tsum = dev::block_sum(tsum, sm_r);
  tx = dev::block_sum(tx, sm_r);
  const float lse = st.m + logf(st.s);
  for (int64_t j = threadIdx.x; j < C; j += blockDim.x) set_d(j, gs * (tsum * expf(x(j) - lse) - t[j]));
  if (threadIdx.x == 0) H.loss[row] = tsum != 0.0f ? tsum * lse - tx : 0.0f;
}

void launch(const std::vector<CrossEntropyHead>& heads, const char* fn) {
  GEOLOC_CHECK(!heads.empty() && heads.size() <= size_t(kMaxLossHeads), ShapeError, "cuda::", fn, ": ",
               heads.size(), " heads (1 to ", kMaxLossHeads, " allowed)");
  HeadTable tab{};
  tab.count = static_cast<int>(heads.size());
  int64_t max_n = 0, max_c = 0;
  const Device dev0 = heads[0].logits.defined() ? heads[0].logits.device() : Device::cpu();
  for (size_t i = 0; i < heads.size(); ++i) {
    const CrossEntropyHead& h = heads[i];
    const DType t = detail::expect_fp(h.logits, h.logits.dtype(), fn, "logits");
    expect(h.loss, DType::F32, fn, "loss");
    detail::expect_fp(h.dlogits, t, fn, "dlogits");
    GEOLOC_CHECK(h.logits.ndim() == 2, ShapeError, "cuda::", fn, ": head ", i, " logits must be [N,C], got ",
                 h.logits.str());
    GEOLOC_CHECK(h.logits.device() == dev0, ShapeError, "cuda::", fn, ": head ", i, " is on ",
                 h.logits.device().str(), ", head 0 on ", dev0.str());
    const int64_t n = h.logits.dim(0), c = h.logits.dim(1);
    GEOLOC_CHECK(h.loss.numel() == n && h.dlogits.shape() == h.logits.shape(), ShapeError, "cuda::", fn,
                 ": head ", i, " loss ", h.loss.str(), " / dlogits ", h.dlogits.str(),
                 " do not match logits ", h.logits.str());
    GEOLOC_CHECK(h.labels.defined() != h.targets.defined(), ShapeError, "cuda::", fn, ": head ", i,
                 " needs exactly one of labels and targets");
    HeadArgs& a = tab.h[i];
    if (h.labels.defined()) {
      expect(h.labels, DType::I32, fn, "labels");
      GEOLOC_CHECK(h.labels.numel() == n, ShapeError, "cuda::", fn, ": head ", i, " labels ", h.labels.str(),
                   " do not match logits ", h.logits.str());
      a.labels = h.labels.data<int32_t>();
    } else {
      expect(h.targets, DType::F32, fn, "targets");
      GEOLOC_CHECK(h.targets.shape() == h.logits.shape(), ShapeError, "cuda::", fn, ": head ", i, " targets ",
                   h.targets.str(), " do not match logits ", h.logits.str());
      a.targets = static_cast<const float*>(h.targets.raw());
    }
    a.logits = h.logits.raw();
    a.loss = static_cast<float*>(h.loss.raw());
    a.dlogits = h.dlogits.raw();
    a.bf16 = t == DType::BF16;
    a.n = c > 0 ? n : 0;  // a head without classes has nothing to write but its loss (see below)
    a.c = c;
    a.grad_scale = h.grad_scale;
    max_n = std::max(max_n, n);
    max_c = std::max(max_c, c);
    GEOLOC_CHECK(c > 0 || n == 0, ShapeError, "cuda::", fn, ": head ", i, " has no classes");
  }
  if (max_n == 0) return;
  GEOLOC_CHECK(max_n <= 0x7fffffffLL, ShapeError, "cuda::", fn, ": too many rows (", max_n, ")");
  Context& ctx = detail::context_of(heads[0].logits, fn);
  cudaStream_t s = detail::stream_of(ctx);
  const int threads = max_c >= 8192 ? kXentMaxThreads : 256;
  GEOLOC_LAUNCH(dim3(static_cast<unsigned>(max_n), static_cast<unsigned>(tab.count)), threads, 0, s,
                multihead_xent_kernel)
  (tab);
  GEOLOC_CUDA_LAUNCH_CHECK(s, "multihead_xent_kernel");
}
}  // namespace

void cross_entropy_multihead(const std::vector<CrossEntropyHead>& heads) {
  for (size_t i = 0; i < heads.size(); i += kMaxLossHeads) {
    const size_t end = std::min(heads.size(), i + size_t(kMaxLossHeads));
    launch(std::vector<CrossEntropyHead>(heads.begin() + static_cast<std::ptrdiff_t>(i),
                                         heads.begin() + static_cast<std::ptrdiff_t>(end)),
           "cross_entropy_multihead");
  }
}

void cross_entropy_hard(const Tensor& logits, const Tensor& labels, const Tensor& loss, const Tensor& dlogits,
                        float grad_scale) {
  launch({CrossEntropyHead{logits, labels, Tensor(), loss, dlogits, grad_scale}}, "cross_entropy_hard");
}

void cross_entropy_soft(const Tensor& logits, const Tensor& targets, const Tensor& loss, const Tensor& dlogits,
                        float grad_scale) {
  launch({CrossEntropyHead{logits, Tensor(), targets, loss, dlogits, grad_scale}}, "cross_entropy_soft");
}

}  // namespace geoloc::cuda
