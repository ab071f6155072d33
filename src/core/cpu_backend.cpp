// The CPU backend: the reference for every op. Convolutions and linear layers run on Eigen's
// multithreaded GEMM over NHWC data (im2col, skipped for 1x1 stride-1 convolutions); the rest are
// OpenMP loops. Shapes were validated by ops.cpp.
#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "geoloc/backend.hpp"
#include "geoloc/detail/math.hpp"

namespace geoloc::cpu {

namespace {
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapM = Eigen::Map<RowMat>;
using CMapM = Eigen::Map<const RowMat>;
using MapV = Eigen::Map<Eigen::VectorXf>;
using CMapV = Eigen::Map<const Eigen::VectorXf>;

constexpr int64_t kParallelMin = 1 << 14;  // below this, a loop is not worth waking threads for

float* f(const Tensor& t) { return t.data<float>(); }

struct ConvGeom {
  int64_t n, h, w, ci, co, kh, kw, ho, wo, k;  // k = kh*kw*ci
  int stride, pad;
  bool direct() const { return kh == 1 && kw == 1 && stride == 1 && pad == 0; }
};

ConvGeom geom(const Tensor& x, const Tensor& w, const Conv2dArgs& a) {
  ConvGeom g{};
  g.n = x.dim(0), g.h = x.dim(1), g.w = x.dim(2), g.ci = x.dim(3);
  g.co = w.dim(0), g.kh = w.dim(1), g.kw = w.dim(2);
  g.stride = a.stride, g.pad = a.pad;
  g.ho = conv_out_size(g.h, g.kh, a.stride, a.pad);
  g.wo = conv_out_size(g.w, g.kw, a.stride, a.pad);
  g.k = g.kh * g.kw * g.ci;
  return g;
}

// Images per im2col chunk, so that the column buffer stays around 32 MB.
int64_t chunk_images(const ConvGeom& g) {
  int64_t per = g.ho * g.wo * g.k * static_cast<int64_t>(sizeof(float));
  return std::clamp<int64_t>((int64_t(32) << 20) / std::max<int64_t>(per, 1), 1, g.n);
}

// The column buffer is reused across calls (one per thread that runs convolutions).
std::vector<float>& col_buffer(size_t n) {
  thread_local std::vector<float> buf;
  if (buf.size() < n) buf.resize(n);
  return buf;
}

// col[(img*ho + oh)*wo + ow, (ky*kw + kx)*ci + c] = x[n0+img, oh*s-p+ky, ow*s-p+kx, c] (0 outside)
void im2col(const float* x, float* col, const ConvGeom& g, int64_t n0, int64_t nimg) {
  const int64_t rows = nimg * g.ho * g.wo;
#pragma omp parallel for schedule(static) if (rows * g.k > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    int64_t img = r / (g.ho * g.wo), rem = r % (g.ho * g.wo), oh = rem / g.wo, ow = rem % g.wo;
    float* dst = col + r * g.k;
    const float* src = x + (n0 + img) * g.h * g.w * g.ci;
    for (int64_t ky = 0; ky < g.kh; ++ky) {
      int64_t iy = oh * g.stride - g.pad + ky;
      for (int64_t kx = 0; kx < g.kw; ++kx, dst += g.ci) {
        int64_t ix = ow * g.stride - g.pad + kx;
        if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) {
          std::memset(dst, 0, g.ci * sizeof(float));
        } else {
          std::memcpy(dst, src + (iy * g.w + ix) * g.ci, g.ci * sizeof(float));
        }
      }
    }
  }
}

// The adjoint of im2col: dx[n0+img, iy, ix, c] += dcol[...]. Parallel over images and input rows, so
// each output element has exactly one writer.
void col2im(const float* dcol, float* dx, const ConvGeom& g, int64_t n0, int64_t nimg) {
#pragma omp parallel for collapse(2) schedule(static) if (nimg * g.ho * g.wo * g.k > kParallelMin)
  for (int64_t img = 0; img < nimg; ++img) {
    for (int64_t iy = 0; iy < g.h; ++iy) {
      float* dst_row = dx + ((n0 + img) * g.h + iy) * g.w * g.ci;
      for (int64_t ky = 0; ky < g.kh; ++ky) {
        int64_t t = iy + g.pad - ky;  // = oh * stride
        if (t < 0 || t % g.stride) continue;
        int64_t oh = t / g.stride;
        if (oh >= g.ho) continue;
        for (int64_t ow = 0; ow < g.wo; ++ow) {
          const float* src = dcol + ((img * g.ho + oh) * g.wo + ow) * g.k + ky * g.kw * g.ci;
          for (int64_t kx = 0; kx < g.kw; ++kx) {
            int64_t ix = ow * g.stride - g.pad + kx;
            if (ix < 0 || ix >= g.w) continue;
            float* d = dst_row + ix * g.ci;
            const float* s = src + kx * g.ci;
            for (int64_t c = 0; c < g.ci; ++c) d[c] += s[c];
          }
        }
      }
    }
  }
}

// Per-channel statistics over the rows of an [M, C] matrix, accumulated in double.
void channel_sums(const float* x, int64_t m, int64_t c, std::vector<double>& sum, std::vector<double>& sumsq) {
  sum.assign(c, 0.0);
  sumsq.assign(c, 0.0);
#pragma omp parallel if (m * c > kParallelMin)
  {
    std::vector<double> s(c, 0.0), q(c, 0.0);
#pragma omp for schedule(static) nowait
    for (int64_t r = 0; r < m; ++r) {
      const float* row = x + r * c;
      for (int64_t j = 0; j < c; ++j) {
        s[j] += row[j];
        q[j] += static_cast<double>(row[j]) * row[j];
      }
    }
#pragma omp critical
    for (int64_t j = 0; j < c; ++j) {
      sum[j] += s[j];
      sumsq[j] += q[j];
    }
  }
}

int64_t channels(const Tensor& x) { return x.dim(-1); }
int64_t rows(const Tensor& x) { return x.numel() / x.dim(-1); }
}  // namespace

void set_num_threads(int n) {
  int t = n > 0 ? n : omp_get_num_procs();
  omp_set_num_threads(t);
  Eigen::setNbThreads(t);
}
int num_threads() { return omp_get_max_threads(); }

// ---------------------------------------------------------------- convolution
void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y, const Conv2dArgs& a) {
  const ConvGeom g = geom(x, w, a);
  CMapM W(f(w), g.co, g.k);
  const int64_t per_img = g.ho * g.wo;
  if (g.direct()) {
    MapM(f(y), g.n * per_img, g.co).noalias() = CMapM(f(x), g.n * per_img, g.ci) * W.transpose();
  } else {
    const int64_t chunk = chunk_images(g);
    auto& col = col_buffer(chunk * per_img * g.k);
    for (int64_t n0 = 0; n0 < g.n; n0 += chunk) {
      int64_t nimg = std::min(chunk, g.n - n0);
      im2col(f(x), col.data(), g, n0, nimg);
      MapM(f(y) + n0 * per_img * g.co, nimg * per_img, g.co).noalias() =
          CMapM(col.data(), nimg * per_img, g.k) * W.transpose();
    }
  }
  if (bias.defined()) {
    MapM Y(f(y), g.n * per_img, g.co);
    Y.rowwise() += CMapV(f(bias), g.co).transpose();
  }
}

void conv2d_backward_data(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dArgs& a) {
  const ConvGeom g = geom(dx, w, a);
  CMapM W(f(w), g.co, g.k);
  const int64_t per_img = g.ho * g.wo;
  if (g.direct()) {
    MapM(f(dx), g.n * per_img, g.ci).noalias() = CMapM(f(dy), g.n * per_img, g.co) * W;
    return;
  }
  std::memset(f(dx), 0, dx.nbytes());
  const int64_t chunk = chunk_images(g);
  auto& col = col_buffer(chunk * per_img * g.k);
  for (int64_t n0 = 0; n0 < g.n; n0 += chunk) {
    int64_t nimg = std::min(chunk, g.n - n0);
    MapM(col.data(), nimg * per_img, g.k).noalias() = CMapM(f(dy) + n0 * per_img * g.co, nimg * per_img, g.co) * W;
    col2im(col.data(), f(dx), g, n0, nimg);
  }
}

void conv2d_backward_filter(const Tensor& x, const Tensor& dy, const Tensor& dw, const Tensor& dbias,
                            const Conv2dArgs& a) {
  const ConvGeom g = geom(x, dw, a);
  MapM dW(f(dw), g.co, g.k);
  const int64_t per_img = g.ho * g.wo;
  if (g.direct()) {
    dW.noalias() = CMapM(f(dy), g.n * per_img, g.co).transpose() * CMapM(f(x), g.n * per_img, g.ci);
  } else {
    const int64_t chunk = chunk_images(g);
    auto& col = col_buffer(chunk * per_img * g.k);
    for (int64_t n0 = 0; n0 < g.n; n0 += chunk) {
      int64_t nimg = std::min(chunk, g.n - n0);
      im2col(f(x), col.data(), g, n0, nimg);
      CMapM dY(f(dy) + n0 * per_img * g.co, nimg * per_img, g.co);
      CMapM C(col.data(), nimg * per_img, g.k);
      if (n0 == 0) {
        dW.noalias() = dY.transpose() * C;
      } else {
        dW.noalias() += dY.transpose() * C;
      }
    }
  }
  if (dbias.defined()) {
    MapV(f(dbias), g.co) = CMapM(f(dy), g.n * per_img, g.co).colwise().sum().transpose();
  }
}

// ---------------------------------------------------------------- batch norm (channels last)
void batch_norm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                              const Tensor& running_var, float momentum, float eps, const Tensor& y,
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
  for (int64_t j = 0; j < c; ++j) {
    scale[j] = invstd[j] * G[j];
    shift[j] = B[j] - mean[j] * scale[j];
  }
#pragma omp parallel for schedule(static) if (m * c > kParallelMin)
  for (int64_t r = 0; r < m; ++r)
    for (int64_t j = 0; j < c; ++j) Y[r * c + j] = X[r * c + j] * scale[j] + shift[j];
}

void batch_norm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                             const Tensor& running_var, float eps, const Tensor& y) {
  const int64_t m = rows(x), c = channels(x);
  const float *X = f(x), *G = f(gamma), *B = f(beta), *rm = f(running_mean), *rv = f(running_var);
  float* Y = f(y);
  std::vector<float> scale(c), shift(c);
  for (int64_t j = 0; j < c; ++j) {
    scale[j] = G[j] / std::sqrt(rv[j] + eps);
    shift[j] = B[j] - rm[j] * scale[j];
  }
#pragma omp parallel for schedule(static) if (m * c > kParallelMin)
  for (int64_t r = 0; r < m; ++r)
    for (int64_t j = 0; j < c; ++j) Y[r * c + j] = X[r * c + j] * scale[j] + shift[j];
}

void batch_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& save_mean,
                         const Tensor& save_invstd, const Tensor& dx, const Tensor& dgamma, const Tensor& dbeta) {
  const int64_t m = rows(x), c = channels(x);
  const float *X = f(x), *DY = f(dy), *G = f(gamma), *mean = f(save_mean), *invstd = f(save_invstd);
  // sum(dy) and sum(dy * xhat) per channel
  std::vector<double> sdy(c, 0.0), sdyx(c, 0.0);
#pragma omp parallel if (m * c > kParallelMin)
  {
    std::vector<double> a(c, 0.0), b(c, 0.0);
#pragma omp for schedule(static) nowait
    for (int64_t r = 0; r < m; ++r)
      for (int64_t j = 0; j < c; ++j) {
        double d = DY[r * c + j];
        a[j] += d;
        b[j] += d * (X[r * c + j] - mean[j]) * invstd[j];
      }
#pragma omp critical
    for (int64_t j = 0; j < c; ++j) {
      sdy[j] += a[j];
      sdyx[j] += b[j];
    }
  }
  if (dgamma.defined())
    for (int64_t j = 0; j < c; ++j) f(dgamma)[j] = static_cast<float>(sdyx[j]);
  if (dbeta.defined())
    for (int64_t j = 0; j < c; ++j) f(dbeta)[j] = static_cast<float>(sdy[j]);
  if (!dx.defined()) return;
  std::vector<float> k1(c), mdy(c), mdyx(c);
  for (int64_t j = 0; j < c; ++j) {
    k1[j] = G[j] * invstd[j];
    mdy[j] = static_cast<float>(sdy[j] / m);
    mdyx[j] = static_cast<float>(sdyx[j] / m);
  }
  float* DX = f(dx);
#pragma omp parallel for schedule(static) if (m * c > kParallelMin)
  for (int64_t r = 0; r < m; ++r)
    for (int64_t j = 0; j < c; ++j) {
      float xhat = (X[r * c + j] - mean[j]) * invstd[j];
      DX[r * c + j] = k1[j] * (DY[r * c + j] - mdy[j] - xhat * mdyx[j]);
    }
}

// ---------------------------------------------------------------- elementwise
void relu_forward(const Tensor& x, const Tensor& y) {
  const int64_t n = x.numel();
  const float* X = f(x);
  float* Y = f(y);
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) Y[i] = math::relu(X[i]);
}

void relu_backward(const Tensor& dy, const Tensor& y, const Tensor& dx) {
  const int64_t n = y.numel();
  const float *DY = f(dy), *Y = f(y);
  float* DX = f(dx);
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) DX[i] = Y[i] > 0.0f ? DY[i] : 0.0f;
}

void add_forward(const Tensor& a, const Tensor& b, const Tensor& y) {
  const int64_t n = a.numel();
  const float *A = f(a), *B = f(b);
  float* Y = f(y);
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) Y[i] = A[i] + B[i];
}

void add_relu_forward(const Tensor& a, const Tensor& b, const Tensor& y) {
  const int64_t n = a.numel();
  const float *A = f(a), *B = f(b);
  float* Y = f(y);
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) Y[i] = math::relu(A[i] + B[i]);
}

void axpy(float alpha, const Tensor& src, const Tensor& dst) {
  const int64_t n = src.numel();
  const float* S = f(src);
  float* D = f(dst);
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) D[i] += alpha * S[i];
}

void scale(const Tensor& x, float alpha, const Tensor& y) {
  const int64_t n = x.numel();
  const float* X = f(x);
  float* Y = f(y);
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) Y[i] = alpha * X[i];
}

void fill(const Tensor& y, float value) { std::fill_n(f(y), y.numel(), value); }

// ---------------------------------------------------------------- pooling
void max_pool2d_forward(const Tensor& x, const Tensor& y, const Tensor& argmax, const Pool2dArgs& a) {
  const int64_t n = x.dim(0), h = x.dim(1), w = x.dim(2), c = x.dim(3), ho = y.dim(1), wo = y.dim(2);
  const float* X = f(x);
  float* Y = f(y);
  int32_t* I = argmax.data<int32_t>();
#pragma omp parallel for collapse(2) schedule(static) if (y.numel() > kParallelMin)
  for (int64_t b = 0; b < n; ++b)
    for (int64_t oh = 0; oh < ho; ++oh)
      for (int64_t ow = 0; ow < wo; ++ow) {
        float* yo = Y + ((b * ho + oh) * wo + ow) * c;
        int32_t* io = I + ((b * ho + oh) * wo + ow) * c;
        for (int64_t j = 0; j < c; ++j) {
          yo[j] = -std::numeric_limits<float>::infinity();
          io[j] = -1;
        }
        for (int64_t ky = 0; ky < a.kernel; ++ky) {
          int64_t iy = oh * a.stride - a.pad + ky;
          if (iy < 0 || iy >= h) continue;
          for (int64_t kx = 0; kx < a.kernel; ++kx) {
            int64_t ix = ow * a.stride - a.pad + kx;
            if (ix < 0 || ix >= w) continue;
            const float* xi = X + ((b * h + iy) * w + ix) * c;
            const int32_t flat = static_cast<int32_t>(iy * w + ix);
            for (int64_t j = 0; j < c; ++j) {
              const float v = xi[j];
              if (io[j] < 0 || v > yo[j] || std::isnan(v)) {  // NaN propagates, as in PyTorch
                yo[j] = v;
                io[j] = flat;
              }
            }
          }
        }
      }
}

void max_pool2d_backward(const Tensor& dy, const Tensor& argmax, const Tensor& dx) {
  const int64_t n = dx.dim(0), hw = dx.dim(1) * dx.dim(2), c = dx.dim(3), howo = dy.dim(1) * dy.dim(2);
  std::memset(f(dx), 0, dx.nbytes());
  const float* DY = f(dy);
  const int32_t* I = argmax.data<int32_t>();
  float* DX = f(dx);
#pragma omp parallel for schedule(static) if (dy.numel() > kParallelMin)
  for (int64_t b = 0; b < n; ++b)  // windows overlap inside an image: one thread per image
    for (int64_t o = 0; o < howo; ++o)
      for (int64_t j = 0; j < c; ++j) {
        int32_t idx = I[(b * howo + o) * c + j];
        if (idx >= 0) DX[(b * hw + idx) * c + j] += DY[(b * howo + o) * c + j];
      }
}

void global_avg_pool_forward(const Tensor& x, const Tensor& y) {
  const int64_t n = x.dim(0), hw = x.dim(1) * x.dim(2), c = x.dim(3);
  for (int64_t b = 0; b < n; ++b)
    MapV(f(y) + b * c, c) = CMapM(f(x) + b * hw * c, hw, c).colwise().mean().transpose();
}

void global_avg_pool_backward(const Tensor& dy, const Tensor& dx) {
  const int64_t n = dx.dim(0), hw = dx.dim(1) * dx.dim(2), c = dx.dim(3);
  const float inv = 1.0f / static_cast<float>(hw);
#pragma omp parallel for schedule(static) if (dx.numel() > kParallelMin)
  for (int64_t b = 0; b < n; ++b)
    for (int64_t p = 0; p < hw; ++p)
      for (int64_t j = 0; j < c; ++j) f(dx)[(b * hw + p) * c + j] = f(dy)[b * c + j] * inv;
}

// ---------------------------------------------------------------- linear
void linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y) {
  const int64_t n = x.dim(0), d = x.dim(1), c = w.dim(0);
  MapM Y(f(y), n, c);
  Y.noalias() = CMapM(f(x), n, d) * CMapM(f(w), c, d).transpose();
  if (bias.defined()) Y.rowwise() += CMapV(f(bias), c).transpose();
}

void linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& dx, const Tensor& dw,
                     const Tensor& dbias) {
  const int64_t n = x.dim(0), d = x.dim(1), c = w.dim(0);
  CMapM DY(f(dy), n, c);
  if (dx.defined()) MapM(f(dx), n, d).noalias() = DY * CMapM(f(w), c, d);
  if (dw.defined()) MapM(f(dw), c, d).noalias() = DY.transpose() * CMapM(f(x), n, d);
  if (dbias.defined()) MapV(f(dbias), c) = DY.colwise().sum().transpose();
}

// ---------------------------------------------------------------- dropout
void dropout_forward(const Tensor& x, const Tensor& mask, const Tensor& y, float p, uint64_t seed) {
  const int64_t n = x.numel();
  const float* X = f(x);
  float* Y = f(y);
  uint8_t* M = mask.data<uint8_t>();
  const float keep_scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    M[i] = math::dropout_keep(seed, static_cast<uint64_t>(i), p) ? 1 : 0;
    Y[i] = M[i] ? X[i] * keep_scale : 0.0f;
  }
}

void dropout_backward(const Tensor& dy, const Tensor& mask, const Tensor& dx, float p) {
  const int64_t n = dy.numel();
  const float* DY = f(dy);
  const uint8_t* M = mask.data<uint8_t>();
  float* DX = f(dx);
  const float keep_scale = 1.0f / (1.0f - p);
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) DX[i] = M[i] ? DY[i] * keep_scale : 0.0f;
}

// ---------------------------------------------------------------- losses
void softmax_xent_hard(const Tensor& logits, const Tensor& labels, const Tensor& loss, const Tensor& dlogits,
                       float grad_scale) {
  const int64_t n = logits.dim(0), c = logits.dim(1);
  const float* L = f(logits);
  const int32_t* Y = labels.data<int32_t>();
  float *LOSS = f(loss), *D = f(dlogits);
#pragma omp parallel for schedule(static) if (n * c > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float* row = L + i * c;
    float* drow = D + i * c;
    if (Y[i] < 0) {
      LOSS[i] = 0.0f;
      std::fill_n(drow, c, 0.0f);
      continue;
    }
    float mx = *std::max_element(row, row + c);
    double se = 0.0;
    for (int64_t j = 0; j < c; ++j) se += std::exp(static_cast<double>(row[j] - mx));
    const float lse = mx + static_cast<float>(std::log(se));
    LOSS[i] = lse - row[Y[i]];
    for (int64_t j = 0; j < c; ++j) drow[j] = grad_scale * std::exp(row[j] - lse);
    drow[Y[i]] -= grad_scale;
  }
}

void softmax_xent_soft(const Tensor& logits, const Tensor& targets, const Tensor& loss, const Tensor& dlogits,
                       float grad_scale) {
  const int64_t n = logits.dim(0), c = logits.dim(1);
  const float *L = f(logits), *T = f(targets);
  float *LOSS = f(loss), *D = f(dlogits);
#pragma omp parallel for schedule(static) if (n * c > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float *row = L + i * c, *t = T + i * c;
    float* drow = D + i * c;
    double tsum = 0.0;
    for (int64_t j = 0; j < c; ++j) tsum += t[j];
    float mx = *std::max_element(row, row + c);
    double se = 0.0;
    for (int64_t j = 0; j < c; ++j) se += std::exp(static_cast<double>(row[j] - mx));
    const float lse = mx + static_cast<float>(std::log(se));
    double l = 0.0;
    for (int64_t j = 0; j < c; ++j) l += static_cast<double>(t[j]) * (lse - row[j]);
    LOSS[i] = static_cast<float>(l);
    for (int64_t j = 0; j < c; ++j)
      drow[j] = grad_scale * (static_cast<float>(tsum) * std::exp(row[j] - lse) - t[j]);
  }
}

// ---------------------------------------------------------------- optimisers
void sgd_step(const Tensor& param, const Tensor& grad, const Tensor& momentum_buf, float lr, float momentum,
              float dampening, float weight_decay, bool nesterov, bool first_step) {
  const int64_t n = param.numel();
  float *P = f(param), *G = f(grad);
  float* B = momentum_buf.defined() ? f(momentum_buf) : nullptr;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    float dummy = 0.0f;
    float& b = B ? B[i] : dummy;
    P[i] = math::sgd_update(P[i], G[i], b, lr, B ? momentum : 0.0f, dampening, weight_decay, nesterov, first_step);
  }
}

void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, float lr, float beta1,
                float beta2, float eps, float weight_decay, int64_t step) {
  const int64_t n = param.numel();
  float *P = f(param), *G = f(grad), *M = f(m), *V = f(v);
  const float bc1 = 1.0f - std::pow(beta1, static_cast<float>(step));
  const float bc2 = 1.0f - std::pow(beta2, static_cast<float>(step));
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i)
    P[i] = math::adamw_update(P[i], G[i], M[i], V[i], lr, beta1, beta2, eps, weight_decay, bc1, bc2);
}

}  // namespace geoloc::cpu
