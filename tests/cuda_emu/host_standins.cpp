// STAND-INS (tests only): the parts of the CUDA backend that call cuDNN or cuBLASLt, which the emulator
// cannot run, computed on the host instead so that the own kernels around them still run emulated:
//
//   cuda::conv2d_forward / conv2d_backward_data / conv2d_backward_filter  (src/cuda/conv.cpp, cuDNN)
//       -> the cpu:: twin on host views of the same (emulated device) memory; the bias gradient of
//          conv2d_backward_filter as in conv.cpp: the real detail::column_sum (emulated kernels);
//   cuda::conv2d_bn_act_forward (src/cuda/conv.cpp)
//       -> the same composition as the real one: the conv stand-in into a scratch tensor, then the real
//          detail::batch_norm_eval_act (kernels/batch_norm.cu, emulated: fold + scale_shift_act kernels);
//   detail::lt_matmul (src/cuda/lt_matmul.cpp, cuBLASLt)
//       -> a naive column-major GEMM with the same arguments (fp32 accumulation over f32 or bf16 storage,
//          bias over rows, alpha/beta), so that the real src/cuda/linear.cpp (its argument checks, its
//          transposes and leading dimensions, column_sum for dbias) and kernels/knn.cu's top-k merge run on
//          top of it.
//
// What these stand-ins leave unverified (until a GPU run, tools/run_gpu_checks.sh): the cuDNN descriptors,
// algorithm search and workspace sizes of conv.cpp, the cuBLASLt layouts, epilogue and heuristics of
// lt_matmul.cpp, and the real conv2d_bn_act_forward's three lines (mirrored here, not compiled).
#include <vector>

#include "cuda_common.cuh"
#include "geoloc/detail/math.hpp"
#include "internal.cuh"

namespace geoloc::cuda {
namespace {

// A CPU tensor over the same memory (the emulator's device memory is host memory).
Tensor host_view(const Tensor& t) {
  if (!t.defined()) return Tensor();
  GEOLOC_CHECK(t.device().is_cuda(), ShapeError, "cuda stand-in: ", t.str(), " is not on a CUDA device");
  return Tensor::borrow(t.raw(), t.shape(), t.dtype(), Device::cpu(), nullptr);
}

}  // namespace

void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y, const Conv2dArgs& a) {
  detail::context_of(x, "conv2d_forward");
  cpu::conv2d_forward(host_view(x), host_view(w), host_view(bias), host_view(y), a);
}

void conv2d_backward_data(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dArgs& a) {
  detail::context_of(dx, "conv2d_backward_data");
  cpu::conv2d_backward_data(host_view(dy), host_view(w), host_view(dx), a);
}

void conv2d_backward_filter(const Tensor& x, const Tensor& dy, const Tensor& dw, const Tensor& dbias,
                            const Conv2dArgs& a) {
  Context& ctx = detail::context_of(x, "conv2d_backward_filter");
  cpu::conv2d_backward_filter(host_view(x), host_view(dy), host_view(dw), Tensor(), a);
  if (dbias.defined() && dbias.numel() > 0)  // as src/cuda/conv.cpp
    detail::column_sum(ctx, dy.dtype(), dy.raw(), dy.numel() / dbias.numel(), dbias.numel(), dbias.raw());
}

// Mirrors src/cuda/conv.cpp's conv2d_bn_act_forward.
void conv2d_bn_act_forward(const Tensor& x, const Tensor& w, const Tensor& gamma, const Tensor& beta,
                           const Tensor& running_mean, const Tensor& running_var, float eps, const Tensor& residual,
                           bool relu, const Tensor& y, const Conv2dArgs& a) {
  Tensor conv = Tensor::empty(y.shape(), y.dtype(), y.device());
  conv2d_forward(x, w, Tensor(), conv, a);
  detail::batch_norm_eval_act(conv, gamma, beta, running_mean, running_var, eps, residual, relu, y,
                              "conv2d_bn_act_forward");
}

namespace detail {
// cuBLAS semantics, column-major: op(A) is m x k, op(B) is k x n, C is m x n with leading dimension ldc;
// A is stored lda-major as (trans_a ? k x m : m x k), likewise B.
void lt_matmul(Context& ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const void* a,
               int64_t lda, const void* b, int64_t ldb, void* c, int64_t ldc, const void* bias, float alpha,
               float beta, DType io) {
  GEOLOC_CHECK(io == DType::F32 || io == DType::BF16, CudaError, "not implemented: ", dtype_name(io), " GEMM");
  if (m <= 0 || n <= 0) return;
  GEOLOC_CHECK(k > 0, ShapeError, "cuda: GEMM with an empty inner dimension (m=", m, ", n=", n, ")");
  const bool bf = io == DType::BF16;
  auto ld = [bf](const void* p, int64_t i) {
    return bf ? math::bf16_to_f32(static_cast<const uint16_t*>(p)[i]) : static_cast<const float*>(p)[i];
  };
  for (int64_t j = 0; j < n; ++j)
    for (int64_t i = 0; i < m; ++i) {
      float acc = 0.0f;
      for (int64_t p = 0; p < k; ++p) {
        const float av = ld(a, trans_a ? p + i * lda : i + p * lda);
        const float bv = ld(b, trans_b ? j + p * ldb : p + j * ldb);
        acc += av * bv;
      }
      float v = alpha * acc;
      if (beta != 0.0f) v += beta * ld(c, i + j * ldc);
      if (bias) v += ld(bias, i);
      if (bf)
        static_cast<uint16_t*>(c)[i + j * ldc] = math::f32_to_bf16(v);
      else
        static_cast<float*>(c)[i + j * ldc] = v;
    }
  (void)ctx;
}
}  // namespace detail

}  // namespace geoloc::cuda
