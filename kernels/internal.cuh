#pragma once
// Internal host-side helpers shared between the CUDA backend's files (host code only).
#include <cstdint>

#include "cuda_common.cuh"

namespace geoloc::cuda::detail {

/// Column-major cuBLASLt GEMM with fp32 accumulation (CUBLAS_COMPUTE_32F, no TF32):
/// C[m,n] = alpha * op(A) op(B) + beta * C (+ bias[m] broadcast over columns when bias != nullptr).
/// io: the dtype of A, B, C and bias (F32 or BF16); the compute type is fp32 either way.
void lt_matmul(Context& ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const void* a,
               int64_t lda, const void* b, int64_t ldb, void* c, int64_t ldc, const void* bias, float alpha,
               float beta, DType io = DType::F32);

/// Row-major Y[M,N] = X[M,K] W[N,K]^T (+ bias[N]): the linear layer and the k-NN score tile.
inline void gemm_rm_xwt(Context& ctx, int64_t M, int64_t N, int64_t K, const void* x, int64_t ldx,
                        const void* w, int64_t ldw, void* y, int64_t ldy, const void* bias,
                        DType io = DType::F32) {
  lt_matmul(ctx, true, false, N, M, K, w, ldw, x, ldx, y, ldy, bias, 1.0f, 0.0f, io);
}

/// y = relu?(eval batch norm of x (running statistics folded into a scale and shift) + residual): the
/// backend's batch_norm_forward_eval and the epilogue of conv2d_bn_act_forward (kernels/batch_norm.cu).
/// y must not alias x or residual; fn names the caller in errors.
void batch_norm_eval_act(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                         const Tensor& running_var, float eps, const Tensor& residual, bool relu, const Tensor& y,
                         const char* fn);

/// out[c] = sum over rows r of x[r*C + c], accumulated in double, deterministic (kernels/batch_norm.cu);
/// x and out both of dtype t (F32, or BF16: loaded to float, out rounded once). The bias gradients.
void column_sum(Context& ctx, DType t, const void* x, int64_t rows, int64_t cols, void* out);

}  // namespace geoloc::cuda::detail
