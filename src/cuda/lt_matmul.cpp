// detail::lt_matmul (internal.cuh): the cuBLASLt GEMM under the linear layers (linear.cpp) and the k-NN score
// tiles (kernels/knn.cu), f32 or bf16 storage with fp32 accumulation (CUBLAS_COMPUTE_32F: no TF32 for f32),
// bias fused in the epilogue, heuristic choices cached per context. Kept apart from linear.cpp, which is
// plain host code, so that the test emulator (tests/cuda_emu) can run linear.cpp with a host GEMM in place
// of this file.
#include <algorithm>
#include <cstdint>

#include "caches.cuh"
#include "cuda_libs.cuh"
#include "internal.cuh"

namespace geoloc::cuda {
namespace {

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

}  // namespace geoloc::cuda
