// Linear layers on the cuBLASLt GEMM (detail::lt_matmul, lt_matmul.cpp), f32 or bf16 storage with fp32
// accumulation, bias fused in the forward GEMM's epilogue. geoloc is row-major and cuBLAS column-major: a
// row-major [R,C] matrix is read by cuBLAS as its column-major transpose [C,R], so Y = X W^T is computed as
// Y^T = W X^T (see gemm_rm_xwt). Host code only, without the cuBLAS headers (see lt_matmul.cpp).
#include <cstdint>

#include "cuda_common.cuh"
#include "internal.cuh"

namespace geoloc::cuda {
namespace {
using detail::expect;
}  // namespace

void linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y) {
  const char* fn = "linear_forward";
  const DType t = detail::expect_fp(x, x.dtype(), fn, "x");
  detail::expect_fp(w, t, fn, "w");
  detail::expect_fp(y, t, fn, "y");
  GEOLOC_CHECK(x.ndim() == 2 && w.ndim() == 2 && y.ndim() == 2 && w.dim(1) == x.dim(1) &&
                   y.dim(0) == x.dim(0) && y.dim(1) == w.dim(0),
               ShapeError, "cuda::", fn, ": x ", x.str(), ", w ", w.str(), ", y ", y.str(), " do not match");
  if (bias.defined()) {
    detail::expect_fp(bias, t, fn, "bias");
    GEOLOC_CHECK(bias.numel() == w.dim(0), ShapeError, "cuda::", fn, ": bias ", bias.str(), " must have ",
                 w.dim(0), " elements");
  }
  const int64_t n = x.dim(0), d = x.dim(1), c = w.dim(0);
  if (n == 0 || c == 0) return;
  Context& ctx = detail::context_of(x, fn);
  detail::gemm_rm_xwt(ctx, n, c, d, x.raw(), d, w.raw(), d, y.raw(), c, bias.defined() ? bias.raw() : nullptr,
                      t);
}

void linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& dx, const Tensor& dw,
                     const Tensor& dbias) {
  const char* fn = "linear_backward";
  const DType t = detail::expect_fp(dy, dy.dtype(), fn, "dy");
  detail::expect_fp(x, t, fn, "x");
  detail::expect_fp(w, t, fn, "w");
  GEOLOC_CHECK(x.ndim() == 2 && w.ndim() == 2 && dy.ndim() == 2 && w.dim(1) == x.dim(1) &&
                   dy.dim(0) == x.dim(0) && dy.dim(1) == w.dim(0),
               ShapeError, "cuda::", fn, ": dy ", dy.str(), ", x ", x.str(), ", w ", w.str(),
               " do not match");
  const int64_t n = x.dim(0), d = x.dim(1), c = w.dim(0);
  if (dx.defined()) {
    detail::expect_fp(dx, t, fn, "dx");
    GEOLOC_CHECK(dx.shape() == x.shape(), ShapeError, "cuda::", fn, ": dx ", dx.str(), " must match x ",
                 x.str());
  }
  if (dw.defined()) {
    detail::expect_fp(dw, t, fn, "dw");
    GEOLOC_CHECK(dw.shape() == w.shape(), ShapeError, "cuda::", fn, ": dw ", dw.str(), " must match w ",
                 w.str());
  }
  if (dbias.defined()) {
    detail::expect_fp(dbias, t, fn, "dbias");
    GEOLOC_CHECK(dbias.numel() == c, ShapeError, "cuda::", fn, ": dbias ", dbias.str(), " must have ", c,
                 " elements");
  }
  Context& ctx = detail::context_of(dy, fn);
  cudaStream_t s = detail::stream_of(ctx);
  if (dx.defined() && dx.numel()) {
    if (c == 0) GEOLOC_CUDA_CHECK(cudaMemsetAsync(dx.raw(), 0, dx.nbytes(), s));
    // dx[N,D] = dy[N,C] w[C,D]  ->  column-major dx^T[D,N] = w^T[D,C] dy^T[C,N]
    else
      detail::lt_matmul(ctx, false, false, d, n, c, w.raw(), d, dy.raw(), c, dx.raw(), d, nullptr, 1.0f, 0.0f,
                        t);
  }
  if (dw.defined() && dw.numel()) {
    if (n == 0) GEOLOC_CUDA_CHECK(cudaMemsetAsync(dw.raw(), 0, dw.nbytes(), s));
    // dw[C,D] = dy^T[C,N] x[N,D]  ->  column-major dw^T[D,C] = x^T[D,N] (dy^T[C,N])^T
    else
      detail::lt_matmul(ctx, false, true, d, c, n, x.raw(), d, dy.raw(), c, dw.raw(), d, nullptr, 1.0f, 0.0f,
                        t);
  }
  if (dbias.defined() && c > 0)
    detail::column_sum(ctx, t, dy.raw(), n, c, dbias.raw());
}

}  // namespace geoloc::cuda
