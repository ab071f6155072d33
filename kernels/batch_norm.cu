// Batch norm (channels last), plain and fused with the residual add and ReLU (training), the two steps of
// synchronised batch norm (batch_norm_stats, batch_norm_backward_dx), and the
// eval-mode apply that conv2d_bn_act_forward uses as its epilogue.
//
// Own kernels rather than cuDNN's batch norm: the backend contract has optional outputs (dx, dgamma,
// dbeta may be undefined) and is also called with statistics that are not the batch's (ops.cpp's
// eval-mode backward passes the running mean and an invstd from the running variance); cuDNN does not
// document that its backward uses the saved statistics it is given in every case, and its running
// variance and reduction order differ from the CPU reference. These kernels follow
// src/core/cpu/batch_norm.cpp step for step: per-channel sums accumulated in double, the same formulas for
// mean / biased variance / invstd / unbiased running variance, then one apply pass. The reduction is
// deterministic (fixed split of the rows, partial sums combined in a fixed order).
//
// bf16 (backend.hpp's table): x, y, residual, dy, dx, dresidual may be bf16, loaded to float, summed in
// double as in f32, and rounded once on store; gamma, beta, the statistics and dgamma / dbeta stay f32.
// detail::column_sum (the bias gradients) takes bf16 rows and writes a bf16 sum, rounded once.
#include <algorithm>
#include <cstdint>

#include "bf16.cuh"
#include "cuda_common.cuh"
#include "device.cuh"
#include "internal.cuh"
#include "geoloc/detail/math.hpp"

namespace geoloc::cuda {
namespace {
using detail::expect;
using dev::bf16;
using dev::ld;
using dev::st;

constexpr int kRowsPerBlock = 8;  // blockDim = (32 channels, 8 rows)

enum ReduceMode : int { kSum = 0, kSumSq = 1, kSumDyXhat = 2 };

// partial[(split*2 + {0,1}) * C + c]: the two sums of channel c over the rows of one split.
template <class T>
__global__ void channel_reduce_kernel(const T* __restrict__ a, const T* __restrict__ b,
                                      const float* __restrict__ mean, const float* __restrict__ invstd,
                                      int64_t rows, int64_t C, int mode, double* __restrict__ partial) {
  __shared__ double sh1[kRowsPerBlock][32], sh2[kRowsPerBlock][32];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = blockIdx.x * 32LL + tx;
  double s1 = 0.0, s2 = 0.0;
  if (c < C) {
    const float mu = mode == kSumDyXhat ? mean[c] : 0.0f, is = mode == kSumDyXhat ? invstd[c] : 0.0f;
    for (int64_t r = blockIdx.y * int64_t(kRowsPerBlock) + ty; r < rows;
         r += int64_t(gridDim.y) * kRowsPerBlock) {
      const float v = ld(a, r * C + c);
      s1 += v;
      if (mode == kSumSq)
        s2 += static_cast<double>(v) * v;
      else if (mode == kSumDyXhat)
        s2 += static_cast<double>(v) * (ld(b, r * C + c) - mu) * is;
    }
  }
  sh1[ty][tx] = s1;
  sh2[ty][tx] = s2;
  __syncthreads();
  if (ty == 0 && c < C) {
    for (int k = 1; k < kRowsPerBlock; ++k) {
      s1 += sh1[k][tx];
      s2 += sh2[k][tx];
    }
    partial[(blockIdx.y * 2LL) * C + c] = s1;
    partial[(blockIdx.y * 2LL + 1) * C + c] = s2;
  }
}

__device__ __forceinline__ void combine(const double* partial, int splits, int64_t C, int64_t c, double& s1,
                                        double& s2) {
  s1 = 0.0;
  s2 = 0.0;
  for (int k = 0; k < splits; ++k) {
    s1 += partial[(2LL * k) * C + c];
    s2 += partial[(2LL * k + 1) * C + c];
  }
}

__global__ void bn_train_finalize_kernel(const double* partial, int splits, int64_t C, int64_t m,
                                         const float* gamma, const float* beta, float momentum, float eps,
                                         float* rm, float* rv, float* save_mean, float* save_invstd,
                                         float* scale, float* shift) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= C) return;
  double sum, sumsq;
  combine(partial, splits, C, c, sum, sumsq);
  const double mu = sum / m;
  const double var = fmax(0.0, sumsq / m - mu * mu);
  const float mean = static_cast<float>(mu);
  const float invstd = static_cast<float>(1.0 / sqrt(var + eps));
  const double unbiased = m > 1 ? var * m / (m - 1) : var;
  save_mean[c] = mean;
  save_invstd[c] = invstd;
  rm[c] = static_cast<float>((1.0 - momentum) * rm[c] + momentum * mu);
  rv[c] = static_cast<float>((1.0 - momentum) * rv[c] + momentum * unbiased);
  const float sc = invstd * gamma[c];
  scale[c] = sc;
  shift[c] = beta[c] - mean * sc;
}

// batch_norm_stats: the mean and biased variance of bn_train_finalize_kernel, nothing else.
__global__ void bn_stats_finalize_kernel(const double* partial, int splits, int64_t C, int64_t m, float* mean,
                                         float* var) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= C) return;
  double sum, sumsq;
  combine(partial, splits, C, c, sum, sumsq);
  const double mu = sum / m;
  mean[c] = static_cast<float>(mu);
  var[c] = static_cast<float>(fmax(0.0, sumsq / m - mu * mu));
}

// The coefficients of bn_bwd_dx_kernel for channel c from the sums of dy and dy * xhat over `count` rows:
// k1 = gamma * invstd, mdy = sum_dy / count, mdyx = sum_dy_xhat / count.
__device__ __forceinline__ void bn_dx_coefficients(int64_t c, double sdy, double sdyx, double count,
                                                   const float* gamma, const float* invstd, float* k1, float* mdy,
                                                   float* mdyx) {
  k1[c] = gamma[c] * invstd[c];
  mdy[c] = static_cast<float>(sdy / count);
  mdyx[c] = static_cast<float>(sdyx / count);
}

// batch_norm_backward_dx: bn_bwd_finalize_kernel's coefficients from sums over every process's rows.
__global__ void bn_dx_coeff_kernel(int64_t C, double count, const float* gamma, const float* invstd,
                                   const float* sum_dy, const float* sum_dy_xhat, float* k1, float* mdy,
                                   float* mdyx) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= C) return;
  bn_dx_coefficients(c, sum_dy[c], sum_dy_xhat[c], count, gamma, invstd, k1, mdy, mdyx);
}

__global__ void bn_eval_fold_kernel(int64_t C, const float* gamma, const float* beta, const float* rm,
                                    const float* rv, float eps, float* scale, float* shift) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= C) return;
  const float sc = gamma[c] / sqrtf(rv[c] + eps);
  scale[c] = sc;
  shift[c] = beta[c] - rm[c] * sc;
}

__global__ void bn_bwd_finalize_kernel(const double* partial, int splits, int64_t C, int64_t m,
                                       const float* gamma, const float* invstd, float* dgamma, float* dbeta,
                                       float* k1, float* mdy, float* mdyx) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= C) return;
  double sdy, sdyx;
  combine(partial, splits, C, c, sdy, sdyx);
  if (dgamma) dgamma[c] = static_cast<float>(sdyx);
  if (dbeta) dbeta[c] = static_cast<float>(sdy);
  bn_dx_coefficients(c, sdy, sdyx, static_cast<double>(m), gamma, invstd, k1, mdy, mdyx);
}

template <class T>
__global__ void colsum_finalize_kernel(const double* partial, int splits, int64_t C, T* out) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= C) return;
  double s1, s2;
  combine(partial, splits, C, c, s1, s2);
  st(out, c, static_cast<float>(s1));
}

// y = act(x*scale[c] + shift[c] (+ res)). Idx is uint32_t when the tensor is small enough, since a 64-bit
// modulo per element would make this memory-bound kernel compute-bound. V4: float4 loads and stores
// (f32, C % 4 == 0 and every pointer 16-byte aligned); bf16 takes the scalar loop.
template <class T, class Idx, bool V4>
__global__ void scale_shift_act_kernel(const T* __restrict__ x, const float* __restrict__ scale,
                                       const float* __restrict__ shift, const T* res, T* y, Idx n, Idx C,
                                       bool relu) {
  static_assert(!V4 || sizeof(T) == 4, "float4 path is f32 only");
  const Idx stride = Idx(gridDim.x) * blockDim.x;
  if constexpr (V4) {
    const Idx n4 = n / 4, c4 = C / 4;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    const float4* r4 = reinterpret_cast<const float4*>(res);
    const float4* s4 = reinterpret_cast<const float4*>(scale);
    const float4* h4 = reinterpret_cast<const float4*>(shift);
    float4* y4 = reinterpret_cast<float4*>(y);
    for (Idx i = Idx(blockIdx.x) * blockDim.x + threadIdx.x; i < n4; i += stride) {
      const Idx c = i % c4;
      const float4 v = x4[i], s = __ldg(s4 + c), h = __ldg(h4 + c);
      float4 o{v.x * s.x + h.x, v.y * s.y + h.y, v.z * s.z + h.z, v.w * s.w + h.w};
      if (res) {
        const float4 r = r4[i];
        o.x += r.x, o.y += r.y, o.z += r.z, o.w += r.w;
      }
      if (relu) {
        o.x = math::relu(o.x), o.y = math::relu(o.y);
        o.z = math::relu(o.z), o.w = math::relu(o.w);
      }
      y4[i] = o;
    }
  } else {
    for (Idx i = Idx(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
      const Idx c = i % C;
      float o = ld(x, i) * __ldg(scale + c) + __ldg(shift + c);
      if (res) o += ld(res, i);
      if (relu) o = math::relu(o);
      st(y, i, o);
    }
  }
}

template <class T, class Idx>
__global__ void bn_bwd_dx_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                 const float* __restrict__ mean, const float* __restrict__ invstd,
                                 const float* __restrict__ k1, const float* __restrict__ mdy,
                                 const float* __restrict__ mdyx, T* dx, Idx n, Idx C) {
  const Idx stride = Idx(gridDim.x) * blockDim.x;
  for (Idx i = Idx(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const Idx c = i % C;
    const float xhat = (ld(x, i) - mean[c]) * invstd[c];
    st(dx, i, k1[c] * (ld(dy, i) - mdy[c] - xhat * mdyx[c]));
  }
}

float* fp(const Tensor& t) { return t.defined() ? static_cast<float*>(t.raw()) : nullptr; }
template <class T>
T* tp(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.raw()) : nullptr;
}
bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }
unsigned grid_for(Context& ctx, int64_t n) {
  return detail::blocks_for(n, dev::kThreads, int64_t(ctx.sm_count()) * 16);
}

// How many row splits the per-channel reduction uses: enough blocks to fill the device.
int plan_splits(Context& ctx, int64_t rows, int64_t C) {
  const int64_t cblocks = (C + 31) / 32;
  int64_t splits = std::max<int64_t>(1, (int64_t(ctx.sm_count()) * 8) / cblocks);
  splits = std::min<int64_t>({splits, (rows + kRowsPerBlock - 1) / kRowsPerBlock, int64_t(1024)});
  return static_cast<int>(std::max<int64_t>(splits, 1));
}

template <class T>
void channel_reduce(Context& ctx, const T* a, const T* b, const float* mean, const float* invstd,
                    int64_t rows, int64_t C, int mode, double* partial, int splits) {
  const int64_t cblocks = (C + 31) / 32;
  cudaStream_t s = detail::stream_of(ctx);
  GEOLOC_LAUNCH(dim3(static_cast<unsigned>(cblocks), static_cast<unsigned>(splits)), dim3(32, kRowsPerBlock),
                0, s, channel_reduce_kernel<T>)
  (a, b, mean, invstd, rows, C, mode, partial);
  GEOLOC_CUDA_LAUNCH_CHECK(s, "channel_reduce_kernel");
}

// Workspace layout: partial sums (splits * 2 * C doubles), then `nvec` float vectors of C.
struct Scratch {
  double* partial;
  float* vec[3];
};
Scratch scratch(Context& ctx, int64_t C, int nvec, int splits) {
  const size_t pbytes = (size_t(splits) * 2 * C * sizeof(double) + 255) / 256 * 256;
  char* base = static_cast<char*>(ctx.workspace(pbytes + size_t(nvec) * C * sizeof(float) + 256));
  Scratch s{};
  s.partial = reinterpret_cast<double*>(base);
  for (int i = 0; i < nvec; ++i)
    s.vec[i] = reinterpret_cast<float*>(base + pbytes + size_t(i) * C * sizeof(float));
  return s;
}

void launch_scale_shift_act(Context& ctx, const bf16* x, const float* scale, const float* shift, const bf16* res,
                            bf16* y, int64_t n, int64_t C, bool relu) {
  if (n <= 0) return;
  cudaStream_t s = detail::stream_of(ctx);
  const unsigned g = grid_for(ctx, n);
  if (n < (int64_t(1) << 31))
    GEOLOC_LAUNCH(g, dev::kThreads, 0, s, scale_shift_act_kernel<bf16, uint32_t, false>)
    (x, scale, shift, res, y, uint32_t(n), uint32_t(C), relu);
  else
    GEOLOC_LAUNCH(g, dev::kThreads, 0, s, scale_shift_act_kernel<bf16, int64_t, false>)
    (x, scale, shift, res, y, n, C, relu);
  GEOLOC_CUDA_LAUNCH_CHECK(s, "scale_shift_act_kernel");
}
void launch_scale_shift_act(Context& ctx, const float* x, const float* scale, const float* shift,
                            const float* res, float* y, int64_t n, int64_t C, bool relu) {
  if (n <= 0) return;
  cudaStream_t s = detail::stream_of(ctx);
  const bool v4 = C % 4 == 0 && aligned16(x) && aligned16(y) && aligned16(scale) && aligned16(shift) &&
                  (!res || aligned16(res));
  const bool small = n < (int64_t(1) << 31);
  const unsigned g = grid_for(ctx, v4 ? n / 4 : n);
  if (small && v4)
    GEOLOC_LAUNCH(g, dev::kThreads, 0, s, scale_shift_act_kernel<float, uint32_t, true>)
    (x, scale, shift, res, y, uint32_t(n), uint32_t(C), relu);
  else if (small)
    GEOLOC_LAUNCH(g, dev::kThreads, 0, s, scale_shift_act_kernel<float, uint32_t, false>)
    (x, scale, shift, res, y, uint32_t(n), uint32_t(C), relu);
  else if (v4)
    GEOLOC_LAUNCH(g, dev::kThreads, 0, s, scale_shift_act_kernel<float, int64_t, true>)
    (x, scale, shift, res, y, n, C, relu);
  else
    GEOLOC_LAUNCH(g, dev::kThreads, 0, s, scale_shift_act_kernel<float, int64_t, false>)
    (x, scale, shift, res, y, n, C, relu);
  GEOLOC_CUDA_LAUNCH_CHECK(s, "scale_shift_act_kernel");
}

// By the dtype of the activations (f32 or bf16; the per-channel vectors are f32 either way).
void reduce_by_dtype(Context& ctx, DType t, const Tensor& a, const Tensor& b, const float* mean, const float* invstd,
                     int64_t rows, int64_t C, int mode, double* partial, int splits) {
  if (t == DType::BF16)
    channel_reduce(ctx, tp<const bf16>(a), tp<const bf16>(b), mean, invstd, rows, C, mode, partial, splits);
  else
    channel_reduce(ctx, tp<const float>(a), tp<const float>(b), mean, invstd, rows, C, mode, partial, splits);
}
void apply_by_dtype(Context& ctx, DType t, const Tensor& x, const float* scale, const float* shift, const Tensor& res,
                    const Tensor& y, bool relu) {
  if (t == DType::BF16)
    launch_scale_shift_act(ctx, tp<const bf16>(x), scale, shift, tp<const bf16>(res), tp<bf16>(y), x.numel(),
                           x.dim(-1), relu);
  else
    launch_scale_shift_act(ctx, fp(x), scale, shift, fp(res), fp(y), x.numel(), x.dim(-1), relu);
}

unsigned vec_grid(int64_t C) { return static_cast<unsigned>((C + 255) / 256); }

void check_vec(const Tensor& v, int64_t C, const char* fn, const char* what) {
  expect(v, DType::F32, fn, what);
  GEOLOC_CHECK(v.numel() == C, ShapeError, "cuda::", fn, ": ", what, " ", v.str(), " must have ", C,
               " elements");
}

// dx = k1 * (dy - mdy - xhat * mdyx) (coef = {k1, mdy, mdyx}), the last pass of both BN backwards.
void launch_bn_dx(Context& ctx, DType t, const Tensor& dy, const Tensor& x, const float* mean, const float* invstd,
                  float* const* coef, const Tensor& dx) {
  const int64_t n = x.numel(), C = x.dim(-1);
  if (n <= 0) return;
  cudaStream_t s = detail::stream_of(ctx);
  const unsigned g = grid_for(ctx, n);
  const bool small = n < (int64_t(1) << 31);
  if (t == DType::BF16 && small)
    GEOLOC_LAUNCH(g, dev::kThreads, 0, s, bn_bwd_dx_kernel<bf16, uint32_t>)
    (tp<const bf16>(dy), tp<const bf16>(x), mean, invstd, coef[0], coef[1], coef[2], tp<bf16>(dx), uint32_t(n),
     uint32_t(C));
  else if (t == DType::BF16)
    GEOLOC_LAUNCH(g, dev::kThreads, 0, s, bn_bwd_dx_kernel<bf16, int64_t>)
    (tp<const bf16>(dy), tp<const bf16>(x), mean, invstd, coef[0], coef[1], coef[2], tp<bf16>(dx), n, C);
  else if (small)
    GEOLOC_LAUNCH(g, dev::kThreads, 0, s, bn_bwd_dx_kernel<float, uint32_t>)
    (fp(dy), fp(x), mean, invstd, coef[0], coef[1], coef[2], fp(dx), uint32_t(n), uint32_t(C));
  else
    GEOLOC_LAUNCH(g, dev::kThreads, 0, s, bn_bwd_dx_kernel<float, int64_t>)
    (fp(dy), fp(x), mean, invstd, coef[0], coef[1], coef[2], fp(dx), n, C);
  GEOLOC_CUDA_LAUNCH_CHECK(s, "bn_bwd_dx_kernel");
}

// The shared body of batch_norm_forward_train and batch_norm_act_forward_train.
void bn_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
              const Tensor& running_var, float momentum, float eps, const Tensor& residual, bool relu,
              const Tensor& y, const Tensor& save_mean, const Tensor& save_invstd, const char* fn) {
  const DType t = detail::expect_fp(x, x.dtype(), fn, "x");
  detail::expect_fp(y, t, fn, "y");
  GEOLOC_CHECK(x.ndim() >= 1 && y.numel() == x.numel(), ShapeError, "cuda::", fn, ": y ", y.str(),
               " does not match x ", x.str());
  const int64_t C = x.dim(-1), rows = C ? x.numel() / C : 0;
  check_vec(gamma, C, fn, "gamma");
  check_vec(beta, C, fn, "beta");
  check_vec(running_mean, C, fn, "running_mean");
  check_vec(running_var, C, fn, "running_var");
  check_vec(save_mean, C, fn, "save_mean");
  check_vec(save_invstd, C, fn, "save_invstd");
  if (residual.defined()) {
    detail::expect_fp(residual, t, fn, "residual");
    GEOLOC_CHECK(residual.numel() == x.numel(), ShapeError, "cuda::", fn, ": residual ", residual.str(),
                 " does not match x ", x.str());
  }
  if (C == 0 || rows == 0) return;
  Context& ctx = detail::context_of(x, fn);
  cudaStream_t s = detail::stream_of(ctx);
  const int splits = plan_splits(ctx, rows, C);
  Scratch w = scratch(ctx, C, 2, splits);
  reduce_by_dtype(ctx, t, x, Tensor(), nullptr, nullptr, rows, C, kSumSq, w.partial, splits);
  GEOLOC_LAUNCH(vec_grid(C), 256, 0, s, bn_train_finalize_kernel)
  (w.partial, splits, C, rows, fp(gamma), fp(beta), momentum, eps, fp(running_mean), fp(running_var),
   fp(save_mean), fp(save_invstd), w.vec[0], w.vec[1]);
  GEOLOC_CUDA_LAUNCH_CHECK(s, "bn_train_finalize_kernel");
  apply_by_dtype(ctx, t, x, w.vec[0], w.vec[1], residual, y, relu);
}
}  // namespace

// ---------------------------------------------------------------- backend.hpp
void batch_norm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                              const Tensor& running_mean, const Tensor& running_var, float momentum,
                              float eps, const Tensor& y, const Tensor& save_mean,
                              const Tensor& save_invstd) {
  bn_train(x, gamma, beta, running_mean, running_var, momentum, eps, Tensor(), false, y, save_mean,
           save_invstd, "batch_norm_forward_train");
}

void batch_norm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                             const Tensor& running_mean, const Tensor& running_var, float eps,
                             const Tensor& y) {
  detail::batch_norm_eval_act(x, gamma, beta, running_mean, running_var, eps, Tensor(), false, y,
                              "batch_norm_forward_eval");
}

void batch_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& save_mean,
                         const Tensor& save_invstd, const Tensor& dx, const Tensor& dgamma,
                         const Tensor& dbeta) {
  const char* fn = "batch_norm_backward";
  const DType t = detail::expect_fp(dy, dy.dtype(), fn, "dy");
  detail::expect_fp(x, t, fn, "x");
  GEOLOC_CHECK(x.ndim() >= 1 && dy.numel() == x.numel(), ShapeError, "cuda::", fn, ": dy ", dy.str(),
               " does not match x ", x.str());
  const int64_t C = x.dim(-1), rows = C ? x.numel() / C : 0;
  check_vec(gamma, C, fn, "gamma");
  check_vec(save_mean, C, fn, "save_mean");
  check_vec(save_invstd, C, fn, "save_invstd");
  if (dx.defined()) {
    detail::expect_fp(dx, t, fn, "dx");
    GEOLOC_CHECK(dx.numel() == x.numel(), ShapeError, "cuda::", fn, ": dx ", dx.str(), " does not match x ",
                 x.str());
  }
  if (dgamma.defined()) check_vec(dgamma, C, fn, "dgamma");
  if (dbeta.defined()) check_vec(dbeta, C, fn, "dbeta");
  if (C == 0 || rows == 0) return;
  Context& ctx = detail::context_of(x, fn);
  cudaStream_t s = detail::stream_of(ctx);
  const int splits = plan_splits(ctx, rows, C);
  Scratch w = scratch(ctx, C, 3, splits);
  reduce_by_dtype(ctx, t, dy, x, fp(save_mean), fp(save_invstd), rows, C, kSumDyXhat, w.partial, splits);
  GEOLOC_LAUNCH(vec_grid(C), 256, 0, s, bn_bwd_finalize_kernel)
  (w.partial, splits, C, rows, fp(gamma), fp(save_invstd), fp(dgamma), fp(dbeta), w.vec[0], w.vec[1],
   w.vec[2]);
  GEOLOC_CUDA_LAUNCH_CHECK(s, "bn_bwd_finalize_kernel");
  if (dx.defined()) launch_bn_dx(ctx, t, dy, x, fp(save_mean), fp(save_invstd), w.vec, dx);
}

void batch_norm_stats(const Tensor& x, const Tensor& mean, const Tensor& var) {
  const char* fn = "batch_norm_stats";
  const DType t = detail::expect_fp(x, x.dtype(), fn, "x");
  GEOLOC_CHECK(x.ndim() >= 1, ShapeError, "cuda::", fn, ": x ", x.str(), " has no channel axis");
  const int64_t C = x.dim(-1), rows = C ? x.numel() / C : 0;
  check_vec(mean, C, fn, "mean");
  check_vec(var, C, fn, "var");
  if (C == 0) return;
  Context& ctx = detail::context_of(x, fn);
  cudaStream_t s = detail::stream_of(ctx);
  if (rows == 0) {
    GEOLOC_CUDA_CHECK(cudaMemsetAsync(mean.raw(), 0, size_t(C) * sizeof(float), s));
    GEOLOC_CUDA_CHECK(cudaMemsetAsync(var.raw(), 0, size_t(C) * sizeof(float), s));
    return;
  }
  const int splits = plan_splits(ctx, rows, C);
  Scratch w = scratch(ctx, C, 0, splits);
  reduce_by_dtype(ctx, t, x, Tensor(), nullptr, nullptr, rows, C, kSumSq, w.partial, splits);
  GEOLOC_LAUNCH(vec_grid(C), 256, 0, s, bn_stats_finalize_kernel)(w.partial, splits, C, rows, fp(mean), fp(var));
  GEOLOC_CUDA_LAUNCH_CHECK(s, "bn_stats_finalize_kernel");
}

void batch_norm_backward_dx(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                            const Tensor& invstd, const Tensor& sum_dy, const Tensor& sum_dy_xhat, double count,
                            const Tensor& dx) {
  const char* fn = "batch_norm_backward_dx";
  const DType t = detail::expect_fp(dy, dy.dtype(), fn, "dy");
  detail::expect_fp(x, t, fn, "x");
  detail::expect_fp(dx, t, fn, "dx");
  GEOLOC_CHECK(x.ndim() >= 1 && dy.numel() == x.numel() && dx.numel() == x.numel(), ShapeError, "cuda::", fn,
               ": dy ", dy.str(), " and dx ", dx.str(), " must match x ", x.str());
  const int64_t C = x.dim(-1), rows = C ? x.numel() / C : 0;
  for (auto [v, what] : {std::pair{&gamma, "gamma"}, {&mean, "mean"}, {&invstd, "invstd"}, {&sum_dy, "sum_dy"},
                         {&sum_dy_xhat, "sum_dy_xhat"}})
    check_vec(*v, C, fn, what);
  if (C == 0 || rows == 0) return;
  GEOLOC_CHECK(count > 0, ValueError, "cuda::", fn, ": count ", count, " must be > 0");
  Context& ctx = detail::context_of(x, fn);
  cudaStream_t s = detail::stream_of(ctx);
  Scratch w = scratch(ctx, C, 3, 0);
  GEOLOC_LAUNCH(vec_grid(C), 256, 0, s, bn_dx_coeff_kernel)
  (C, count, fp(gamma), fp(invstd), fp(sum_dy), fp(sum_dy_xhat), w.vec[0], w.vec[1], w.vec[2]);
  GEOLOC_CUDA_LAUNCH_CHECK(s, "bn_dx_coeff_kernel");
  launch_bn_dx(ctx, t, dy, x, fp(mean), fp(invstd), w.vec, dx);
}

void batch_norm_act_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                  const Tensor& running_mean, const Tensor& running_var, float momentum,
                                  float eps, const Tensor& residual, bool relu, const Tensor& y,
                                  const Tensor& save_mean, const Tensor& save_invstd) {
  bn_train(x, gamma, beta, running_mean, running_var, momentum, eps, residual, relu, y, save_mean, save_invstd,
           "batch_norm_act_forward_train");
}

// The ReLU mask is always y's here (the contract allows it): one pass writes the gradient through the
// ReLU (into dresidual when there is a residual), then the plain BN backward. A kernel that folds the mask
// into the BN backward's two passes would save that pass; not written yet.
void batch_norm_act_backward(const Tensor& dy, const Tensor& x, const Tensor& y, const Tensor& gamma,
                             const Tensor& beta, const Tensor& save_mean, const Tensor& save_invstd, bool relu,
                             const Tensor& dx, const Tensor& dgamma, const Tensor& dbeta, const Tensor& dresidual) {
  const char* fn = "batch_norm_act_backward";
  const DType t = detail::expect_fp(dy, dy.dtype(), fn, "dy");
  check_vec(beta, x.dim(-1), fn, "beta");
  if (dresidual.defined()) {
    detail::expect_fp(dresidual, t, fn, "dresidual");
    GEOLOC_CHECK(dresidual.numel() == dy.numel(), ShapeError, "cuda::", fn, ": dresidual ", dresidual.str(),
                 " does not match dy ", dy.str());
  }
  Tensor d = dy;
  if (relu) {
    detail::expect_fp(y, t, fn, "y (the forward output, needed for the ReLU mask)");
    // bf16: dy masked is exact in bf16, so d loses nothing against the CPU's f32 intermediate
    d = dresidual.defined() ? dresidual : Tensor::empty(dy.shape(), t, dy.device());
    relu_backward(dy, y, d);
  } else if (dresidual.defined() && dy.numel() > 0) {
    Context& ctx = detail::context_of(dy, fn);
    GEOLOC_CUDA_CHECK(cudaMemcpyAsync(dresidual.raw(), dy.raw(), dy.nbytes(), cudaMemcpyDeviceToDevice,
                                      detail::stream_of(ctx)));
  }
  batch_norm_backward(d, x, gamma, save_mean, save_invstd, dx, dgamma, dbeta);
}

// ---------------------------------------------------------------- internal.cuh
namespace detail {
void batch_norm_eval_act(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                         const Tensor& running_var, float eps, const Tensor& residual, bool relu, const Tensor& y,
                         const char* fn) {
  const DType t = detail::expect_fp(x, x.dtype(), fn, "x");
  detail::expect_fp(y, t, fn, "y");
  GEOLOC_CHECK(x.ndim() >= 1 && y.numel() == x.numel(), ShapeError, "cuda::", fn, ": y ", y.str(),
               " does not match x ", x.str());
  const int64_t C = x.dim(-1);
  check_vec(gamma, C, fn, "gamma");
  check_vec(beta, C, fn, "beta");
  check_vec(running_mean, C, fn, "running_mean");
  check_vec(running_var, C, fn, "running_var");
  if (residual.defined()) {
    detail::expect_fp(residual, t, fn, "residual");
    GEOLOC_CHECK(residual.numel() == x.numel(), ShapeError, "cuda::", fn, ": residual ", residual.str(),
                 " does not match x ", x.str());
  }
  if (C == 0 || x.numel() == 0) return;
  Context& ctx = detail::context_of(x, fn);
  cudaStream_t s = detail::stream_of(ctx);
  Scratch w = scratch(ctx, C, 2, 0);
  GEOLOC_LAUNCH(vec_grid(C), 256, 0, s, bn_eval_fold_kernel)
  (C, fp(gamma), fp(beta), fp(running_mean), fp(running_var), eps, w.vec[0], w.vec[1]);
  GEOLOC_CUDA_LAUNCH_CHECK(s, "bn_eval_fold_kernel");
  apply_by_dtype(ctx, t, x, w.vec[0], w.vec[1], residual, y, relu);
}

void column_sum(Context& ctx, DType t, const void* x, int64_t rows, int64_t cols, void* out) {
  GEOLOC_CHECK(t == DType::F32 || t == DType::BF16, CudaError, "not implemented: column_sum of ", dtype_name(t));
  if (cols <= 0) return;
  cudaStream_t s = detail::stream_of(ctx);
  if (rows <= 0) {  // all-zero bits are 0.0 in both dtypes
    GEOLOC_CUDA_CHECK(cudaMemsetAsync(out, 0, size_t(cols) * dtype_size(t), s));
    return;
  }
  const int splits = plan_splits(ctx, rows, cols);
  Scratch w = scratch(ctx, cols, 0, splits);
  if (t == DType::BF16) {
    channel_reduce(ctx, static_cast<const bf16*>(x), static_cast<const bf16*>(nullptr), nullptr, nullptr, rows, cols,
                   kSum, w.partial, splits);
    GEOLOC_LAUNCH(vec_grid(cols), 256, 0, s, colsum_finalize_kernel<bf16>)
    (w.partial, splits, cols, static_cast<bf16*>(out));
  } else {
    channel_reduce(ctx, static_cast<const float*>(x), static_cast<const float*>(nullptr), nullptr, nullptr, rows,
                   cols, kSum, w.partial, splits);
    GEOLOC_LAUNCH(vec_grid(cols), 256, 0, s, colsum_finalize_kernel<float>)
    (w.partial, splits, cols, static_cast<float*>(out));
  }
  GEOLOC_CUDA_LAUNCH_CHECK(s, "colsum_finalize_kernel");
}
}  // namespace detail

}  // namespace geoloc::cuda
