// Batch norm of the CPU backend (channels last), plain and fused with the residual add and ReLU, and the two
// steps of synchronised batch norm (batch_norm_stats, batch_norm_backward_dx).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "bf16.hpp"
#include "common.hpp"
namespace geoloc::cpu {
using namespace detail;

namespace {
// Row blocks of a reduction over [M, C]: a fixed split (not by thread), so results do not depend on
// the scheduling. Accumulation is in double, as before the thread pool (float partial sums measurably
// worsened the ResNet-50 gradient parity).
int64_t reduction_blocks(int64_t m, int64_t c) {
  return m * c < kParallelMin ? 1 : std::min<int64_t>(4 * pool_threads(), std::max<int64_t>(1, m / 64));
}

void channel_sums(const float* x, int64_t m, int64_t c, std::vector<double>& sum,
                  std::vector<double>& sumsq) {
  const int64_t blocks = reduction_blocks(m, c), step = (m + blocks - 1) / blocks;
  std::vector<double> part(static_cast<size_t>(2 * blocks * c), 0.0);
  pool_run(blocks, [&](int64_t b, int) {
    double* __restrict s = part.data() + 2 * b * c;
    double* __restrict q = s + c;
    for (int64_t r = b * step; r < std::min(m, (b + 1) * step); ++r) {
      const float* __restrict row = x + r * c;
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) {
        s[j] += row[j];
        q[j] += static_cast<double>(row[j]) * row[j];
      }
    }
  });
  sum.assign(c, 0.0);
  sumsq.assign(c, 0.0);
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t j = 0; j < c; ++j) {
      sum[j] += part[2 * b * c + j];
      sumsq[j] += part[2 * b * c + c + j];
    }
}

}  // namespace

namespace {
// BN folded into y = x * scale + shift per channel, from the saved batch statistics. One function, so
// that the backward of the fused BN + ReLU recomputes exactly the forward's pre-activation values.
void bn_fold(const float* G, const float* B, const float* mean, const float* invstd, int64_t c, float* scale,
             float* shift) {
  for (int64_t j = 0; j < c; ++j) {
    scale[j] = invstd[j] * G[j];
    shift[j] = B[j] - mean[j] * scale[j];
  }
}

// Training BN: statistics, running statistics, then y = act(x * scale + shift (+ residual)).
template <bool Res, bool Relu>
void bn_train_impl(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                   const Tensor& running_var, float momentum, float eps, const float* RES, const Tensor& y,
                   const Tensor& save_mean, const Tensor& save_invstd) {
  const int64_t m = rows(x), c = channels(x);
  std::vector<double> sum, sumsq;
  channel_sums(f(x), m, c, sum, sumsq);
  float *mean = f(save_mean), *invstd = f(save_invstd), *rm = f(running_mean), *rv = f(running_var);
  for (int64_t j = 0; j < c; ++j) {
    double mu = sum[j] / m;
    double var = std::max(0.0, sumsq[j] / m - mu * mu);
    mean[j] = static_cast<float>(mu);
    invstd[j] = static_cast<float>(1.0 / std::sqrt(var + eps));
    double unbiased = m > 1 ? var * m / (m - 1) : var;
    rm[j] = static_cast<float>((1.0 - momentum) * rm[j] + momentum * mu);
    rv[j] = static_cast<float>((1.0 - momentum) * rv[j] + momentum * unbiased);
  }
  const float *X = f(x), *G = f(gamma), *B = f(beta);
  float* Y = f(y);
  std::vector<float> scale(c), shift(c);
  bn_fold(G, B, mean, invstd, c, scale.data(), shift.data());
  parallel_for(m, m * c, [&](int64_t r0, int64_t r1) {
    const float* __restrict x_ = X;
    const float* __restrict res_ = RES;
    float* __restrict y_ = Y;
    const float *sc = scale.data(), *sh = shift.data();
    for (int64_t r = r0; r < r1; ++r)
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) {
        float v = x_[r * c + j] * sc[j] + sh[j];
        if constexpr (Res) v += res_[r * c + j];
        if constexpr (Relu) v = math::relu(v);
        y_[r * c + j] = v;
      }
  });
}
}  // namespace

void batch_norm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                              const Tensor& running_mean, const Tensor& running_var, float momentum,
                              float eps, const Tensor& y, const Tensor& save_mean,
                              const Tensor& save_invstd) {
  if (bf16::widened("batch_norm_forward_train", {x, y}, [&](bf16::Widen& v) {
        batch_norm_forward_train(v.in(x), gamma, beta, running_mean, running_var, momentum, eps, v.out(y),
                                 save_mean, save_invstd);
      }))
    return;
  bn_train_impl<false, false>(x, gamma, beta, running_mean, running_var, momentum, eps, nullptr, y, save_mean,
                              save_invstd);
}

void batch_norm_act_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                  const Tensor& running_mean, const Tensor& running_var, float momentum,
                                  float eps, const Tensor& residual, bool relu, const Tensor& y,
                                  const Tensor& save_mean, const Tensor& save_invstd) {
  if (bf16::widened("batch_norm_act_forward_train", {x, residual, y}, [&](bf16::Widen& v) {
        batch_norm_act_forward_train(v.in(x), gamma, beta, running_mean, running_var, momentum, eps,
                                     v.in(residual), relu, v.out(y), save_mean, save_invstd);
      }))
    return;
  const float* res = residual.defined() ? f(residual) : nullptr;
  if (res && relu)
    bn_train_impl<true, true>(x, gamma, beta, running_mean, running_var, momentum, eps, res, y, save_mean,
                              save_invstd);
  else if (res)
    bn_train_impl<true, false>(x, gamma, beta, running_mean, running_var, momentum, eps, res, y, save_mean,
                               save_invstd);
  else if (relu)
    bn_train_impl<false, true>(x, gamma, beta, running_mean, running_var, momentum, eps, nullptr, y, save_mean,
                               save_invstd);
  else
    bn_train_impl<false, false>(x, gamma, beta, running_mean, running_var, momentum, eps, nullptr, y, save_mean,
                                save_invstd);
}

void batch_norm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                             const Tensor& running_mean, const Tensor& running_var, float eps,
                             const Tensor& y) {
  if (bf16::widened("batch_norm_forward_eval", {x, y}, [&](bf16::Widen& v) {
        batch_norm_forward_eval(v.in(x), gamma, beta, running_mean, running_var, eps, v.out(y));
      }))
    return;
  const int64_t m = rows(x), c = channels(x);
  const float *X = f(x), *G = f(gamma), *B = f(beta), *rm = f(running_mean), *rv = f(running_var);
  float* Y = f(y);
  std::vector<float> scale(c), shift(c);
  for (int64_t j = 0; j < c; ++j) {
    scale[j] = G[j] / std::sqrt(rv[j] + eps);
    shift[j] = B[j] - rm[j] * scale[j];
  }
  parallel_for(m, m * c, [&](int64_t r0, int64_t r1) {
    const float* __restrict x_ = X;
    float* __restrict y_ = Y;
    const float *sc = scale.data(), *sh = shift.data();
    for (int64_t r = r0; r < r1; ++r)
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) y_[r * c + j] = x_[r * c + j] * sc[j] + sh[j];
  });
}

void batch_norm_stats(const Tensor& x, const Tensor& mean, const Tensor& var) {
  if (bf16::widened("batch_norm_stats", {x}, [&](bf16::Widen& v) { batch_norm_stats(v.in(x), mean, var); }))
    return;
  const int64_t m = rows(x), c = channels(x);
  std::vector<double> sum, sumsq;
  channel_sums(f(x), m, c, sum, sumsq);
  float *M = f(mean), *V = f(var);
  for (int64_t j = 0; j < c; ++j) {  // the formulas of bn_train_impl
    const double mu = m > 0 ? sum[j] / m : 0.0;
    M[j] = static_cast<float>(mu);
    V[j] = static_cast<float>(m > 0 ? std::max(0.0, sumsq[j] / m - mu * mu) : 0.0);
  }
}

namespace {
// The last pass of every BN backward, from the per-channel sums of dy' and dy' * xhat over `count` rows (this
// call's m rows, or every process's): dx = k1 * (dy' - mdy - xhat * mdyx) with k1 = gamma * invstd,
// mdy = sum_dy / count, mdyx = sum_dy_xhat / count, xhat = (x - mean) * invstd; with Relu, dy' is dy masked
// where the recomputed pre-activation x * fsc + fsh is not > 0. S: the sums' type (double or float).
template <bool Relu, class S>
void bn_dx_pass(const float* X, const float* DY, const float* G, const float* mean, const float* invstd,
                const S* sum_dy, const S* sum_dy_xhat, double count, const float* fsc, const float* fsh, float* DX,
                int64_t m, int64_t c) {
  std::vector<float> k1(c), mdy(c), mdyx(c);
  for (int64_t j = 0; j < c; ++j) {
    k1[j] = G[j] * invstd[j];
    mdy[j] = static_cast<float>(sum_dy[j] / count);
    mdyx[j] = static_cast<float>(sum_dy_xhat[j] / count);
  }
  parallel_for(m, m * c, [&](int64_t r0, int64_t r1) {
    const float* __restrict x_ = X;
    float* __restrict dx_ = DX;
    const float* __restrict dy_ = DY;
    const float *mu = mean, *is = invstd, *k = k1.data(), *a = mdy.data(), *b = mdyx.data();
    for (int64_t r = r0; r < r1; ++r)
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) {
        const float xv = x_[r * c + j];
        float dv = dy_[r * c + j];
        if constexpr (Relu) dv = xv * fsc[j] + fsh[j] > 0.0f ? dv : 0.0f;
        const float xhat = (xv - mu[j]) * is[j];
        dx_[r * c + j] = k[j] * (dv - a[j] - xhat * b[j]);
      }
  });
}
}  // namespace

namespace {
// Training BN backward. With Relu, dy is the gradient of relu(bn(x)): it is masked where the
// pre-activation x * scale + shift (recomputed with bn_fold, as in the forward) is not > 0, which is
// relu_backward folded into both passes, so the masked gradient is never written out.
template <bool Relu>
void bn_backward_impl(const Tensor& dy, const Tensor& x, const Tensor& gamma, const float* BETA,
                      const Tensor& save_mean, const Tensor& save_invstd, const Tensor& dx, const Tensor& dgamma,
                      const Tensor& dbeta) {
  const int64_t m = rows(x), c = channels(x);
  const float *X = f(x), *DY = f(dy), *G = f(gamma), *mean = f(save_mean), *invstd = f(save_invstd);
  std::vector<float> fsc, fsh;
  if constexpr (Relu) {
    fsc.resize(c);
    fsh.resize(c);
    bn_fold(G, BETA, mean, invstd, c, fsc.data(), fsh.data());
  }
  const float *psc = fsc.data(), *psh = fsh.data();
  // sum(dy) and sum(dy * xhat) per channel, with xhat = (x - mean) * invstd: invstd is applied once at the
  // end
  const int64_t blocks = reduction_blocks(m, c), step = (m + blocks - 1) / blocks;
  std::vector<double> part(static_cast<size_t>(2 * blocks * c), 0.0);
  pool_run(blocks, [&](int64_t blk, int) {
    double* __restrict a = part.data() + 2 * blk * c;
    double* __restrict b = a + c;
    std::vector<float> masked(Relu ? c : 0);  // one row of the masked dy (a select in the double loop
    float* __restrict dm = masked.data();      // below would not vectorise)
    const float* __restrict sc = psc;
    const float* __restrict sh = psh;
    for (int64_t r = blk * step; r < std::min(m, (blk + 1) * step); ++r) {
      const float* __restrict d = DY + r * c, * __restrict xr = X + r * c;
      if constexpr (Relu) {
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) dm[j] = xr[j] * sc[j] + sh[j] > 0.0f ? d[j] : 0.0f;
        d = dm;
      }
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) {
        a[j] += d[j];
        b[j] += static_cast<double>(d[j]) * (xr[j] - mean[j]);
      }
    }
  });
  std::vector<double> sdy(c, 0.0), sdyx(c, 0.0);
  for (int64_t blk = 0; blk < blocks; ++blk)
    for (int64_t j = 0; j < c; ++j) {
      sdy[j] += part[2 * blk * c + j];
      sdyx[j] += part[2 * blk * c + c + j];
    }
  for (int64_t j = 0; j < c; ++j) sdyx[j] *= invstd[j];
  if (dgamma.defined())
    for (int64_t j = 0; j < c; ++j) f(dgamma)[j] = static_cast<float>(sdyx[j]);
  if (dbeta.defined())
    for (int64_t j = 0; j < c; ++j) f(dbeta)[j] = static_cast<float>(sdy[j]);
  if (dx.defined())
    bn_dx_pass<Relu>(X, DY, G, mean, invstd, sdy.data(), sdyx.data(), static_cast<double>(m), psc, psh, f(dx), m, c);
}
}  // namespace

void batch_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& save_mean,
                         const Tensor& save_invstd, const Tensor& dx, const Tensor& dgamma,
                         const Tensor& dbeta) {
  if (bf16::widened("batch_norm_backward", {dy, x, dx}, [&](bf16::Widen& v) {
        batch_norm_backward(v.in(dy), v.in(x), gamma, save_mean, save_invstd, v.out(dx), dgamma, dbeta);
      }))
    return;
  bn_backward_impl<false>(dy, x, gamma, nullptr, save_mean, save_invstd, dx, dgamma, dbeta);
}

void batch_norm_backward_dx(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                            const Tensor& invstd, const Tensor& sum_dy, const Tensor& sum_dy_xhat, double count,
                            const Tensor& dx) {
  if (bf16::widened("batch_norm_backward_dx", {dy, x, dx}, [&](bf16::Widen& v) {
        batch_norm_backward_dx(v.in(dy), v.in(x), gamma, mean, invstd, sum_dy, sum_dy_xhat, count, v.out(dx));
      }))
    return;
  const int64_t m = rows(x), c = channels(x);
  if (m == 0 || c == 0) return;
  GEOLOC_CHECK(count > 0, ValueError, "cpu::batch_norm_backward_dx: count ", count, " must be > 0");
  bn_dx_pass<false>(f(x), f(dy), f(gamma), f(mean), f(invstd), f(sum_dy), f(sum_dy_xhat), count, nullptr, nullptr,
                    f(dx), m, c);
}

void batch_norm_act_backward(const Tensor& dy, const Tensor& x, const Tensor& y, const Tensor& gamma,
                             const Tensor& beta, const Tensor& save_mean, const Tensor& save_invstd, bool relu,
                             const Tensor& dx, const Tensor& dgamma, const Tensor& dbeta, const Tensor& dresidual) {
  if (bf16::widened("batch_norm_act_backward", {dy, x, y, dx, dresidual}, [&](bf16::Widen& v) {
        batch_norm_act_backward(v.in(dy), v.in(x), v.in(y), gamma, beta, save_mean, save_invstd, relu,
                                v.out(dx), dgamma, dbeta, v.out(dresidual));
      }))
    return;
  if (!dresidual.defined()) {
    // no residual: ReLU's mask recomputed from x inside the BN backward's passes (y is not read)
    if (relu)
      bn_backward_impl<true>(dy, x, gamma, f(beta), save_mean, save_invstd, dx, dgamma, dbeta);
    else
      bn_backward_impl<false>(dy, x, gamma, nullptr, save_mean, save_invstd, dx, dgamma, dbeta);
    return;
  }
  // with a residual the mask is y's; the gradient through the ReLU is also the residual's
  if (relu)
    relu_backward(dy, y, dresidual);
  else
    std::copy_n(f(dy), dy.numel(), f(dresidual));
  bn_backward_impl<false>(dresidual, x, gamma, nullptr, save_mean, save_invstd, dx, dgamma, dbeta);
}

}  // namespace geoloc::cpu
