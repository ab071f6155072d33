// Linear layers on cuBLASLt, f32 or bf16 storage with fp32 accumulation (CUBLAS_COMPUTE_32F: no TF32 for
// f32), bias fused in the forward
// GEMM's epilogue. geoloc is row-major and cuBLAS column-major: a row-major [R,C] matrix is read by
// cuBLAS as its column-major transpose [C,R], so Y = X W^T is computed as Y^T = W X^T (see gemm_rm_xwt).
#include <algorithm>
#include <cstdint>

#include "caches.cuh"
#include "cuda_common.cuh"
#include "internal.cuh"

namespace geoloc::cuda {
namespace {
using detail::expect;

constexpr size_t kLtWorkspace = size_t(32) << 20;

int64_t alignment(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  int64_t al = 256;
  while (al > 2 && (a % static_cast<uintptr_t>(al)) != 0) al /= 2;
  return al;
}

struct MatmulDesc {
  cublasLtMatmulDesc_t d = nullptr;
  MatmulDesc() { GEOLOC_CUBLAS_CHECK(cublasLtMatmulDescCreate(&d, CUBLAS_COMPUTE_32F, CUDA_R_32F)); }
  ~MatmulDesc() { cublasLtMatmulDescDestroy(d); }
  MatmulDesc(const MatmulDesc&) = delete;
  MatmulDesc& operator=(const MatmulDesc&) = delete;
};
struct Layout {
  cublasLtMatrixLayout_t d = nullptr;
  Layout(int64_t rows, int64_t cols, int64_t ld, cudaDataType_t dt) {
    GEOLOC_CUBLAS_CHECK(
        cublasLtMatrixLayoutCreate(&d, dt, static_cast<uint64_t>(rows), static_cast<uint64_t>(cols), ld));
  }
  ~Layout() { cublasLtMatrixLayoutDestroy(d); }
  Layout(const Layout&) = delete;
  Layout& operator=(const Layout&) = delete;
};
struct Preference {
  cublasLtMatmulPreference_t d = nullptr;
  Preference() { GEOLOC_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&d)); }
  ~Preference() { cublasLtMatmulPreferenceDestroy(d); }
  Preference(const Preference&) = delete;
  Preference& operator=(const Preference&) = delete;
};
}  // namespace

namespace detail {
void lt_matmul(Context& ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const void* a,
               int64_t lda, const void* b, int64_t ldb, void* c, int64_t ldc, const void* bias, float alpha,
               float beta, DType io) {
  GEOLOC_CHECK(io == DType::F32 || io == DType::BF16, CudaError, "not implemented: ", dtype_name(io),
               " GEMM");
  const cudaDataType_t dt = io == DType::BF16 ? CUDA_R_16BF : CUDA_R_32F;
  if (m <= 0 || n <= 0) return;
  GEOLOC_CHECK(k > 0, ShapeError, "cuda: GEMM with an empty inner dimension (m=", m, ", n=", n, ")");
  cublasLtHandle_t lt = ctx.cublaslt();
  MatmulDesc op;
  const cublasOperation_t ta = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  GEOLOC_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op.d, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  GEOLOC_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op.d, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  const cublasLtEpilogue_t epi = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
  GEOLOC_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op.d, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
  if (bias)
    GEOLOC_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(op.d, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  Layout la(trans_a ? k : m, trans_a ? m : k, lda, dt), lb(trans_b ? n : k, trans_b ? k : n, ldb, dt),
      lc(m, n, ldc, dt);

  const int64_t al_a = alignment(a), al_b = alignment(b), al_c = alignment(c),
                al_bias = bias ? alignment(bias) : 256;
  const LtKey key{trans_a,
                  trans_b,
                  m,
                  n,
                  k,
                  lda,
                  ldb,
                  ldc,
                  static_cast<int64_t>(epi) | (int64_t(io) << 32),
                  beta != 0.0f,
                  al_a | (al_b << 16) | (al_c << 32) | (al_bias << 48)};
  LtAlgoChoice choice;
  bool found = false;
  auto& caches = ctx.caches();
  {
    std::lock_guard<std::mutex> lock(caches.mu);
    auto it = caches.lt.find(key);
    if (it != caches.lt.end()) choice = it->second, found = true;
  }
  if (!found) {
    Preference pref;
    const uint64_t ws_max = kLtWorkspace;
    GEOLOC_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.d, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                             &ws_max, sizeof(ws_max)));
    // Views at an offset are less aligned than cudaMalloc's 256 bytes: say so, or the heuristic may pick
    // a kernel that assumes more.
    const uint32_t aa = static_cast<uint32_t>(al_a), ab = static_cast<uint32_t>(al_b),
                   ac = static_cast<uint32_t>(al_c);
    GEOLOC_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref.d, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof(aa)));
    GEOLOC_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref.d, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof(ab)));
    GEOLOC_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref.d, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ac, sizeof(ac)));
    GEOLOC_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref.d, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ac, sizeof(ac)));
    cublasLtMatmulHeuristicResult_t res{};
    int count = 0;
    GEOLOC_CUBLAS_CHECK(
        cublasLtMatmulAlgoGetHeuristic(lt, op.d, la.d, lb.d, lc.d, lc.d, pref.d, 1, &res, &count));
    GEOLOC_CHECK(count > 0, CudaError, "cuBLASLt has no algorithm for a ", m, "x", n, "x", k, " ",
                 dtype_name(io), " GEMM (transa=", trans_a, ", transb=", trans_b, ", bias=", bias != nullptr,
                 ")");
    choice.algo = res.algo;
    choice.workspace = res.workspaceSize;
    std::lock_guard<std::mutex> lock(caches.mu);
    caches.lt[key] = choice;
  }
  void* ws = choice.workspace ? ctx.workspace(choice.workspace) : nullptr;
  GEOLOC_CUBLAS_CHECK(cublasLtMatmul(lt, op.d, &alpha, a, la.d, b, lb.d, &beta, c, lc.d, c, lc.d,
                                     &choice.algo, ws, choice.workspace, detail::stream_of(ctx)));
  check_launch(detail::stream_of(ctx), "cublasLtMatmul", __FILE__, __LINE__);
}
}  // namespace detail

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
    GEOLOC_CHECK(t == DType::F32, CudaError, "not implemented: bf16 linear_backward bias gradient");
    expect(dbias, DType::F32, fn, "dbias");
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
    detail::column_sum(ctx, static_cast<const float*>(dy.raw()), n, c, static_cast<float*>(dbias.raw()));
}

}  // namespace geoloc::cuda
