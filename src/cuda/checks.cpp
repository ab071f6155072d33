// The CUDA backend's launch and argument checks (cuda_common.cuh): plain host code on the CUDA runtime only,
// shared by the real backend and the test emulator's build of kernels/ (tests/cuda_emu).
#include "cuda_common.cuh"

namespace geoloc::cuda {
namespace detail {

void throw_cuda(cudaError_t e, const char* expr, const char* file, int line) {
  throw CudaError(geoloc::detail::cat(file, ":", line, ": ", expr, " failed: ", cudaGetErrorName(e), " (",
                                      cudaGetErrorString(e), ")"));
}

void check_launch(cudaStream_t stream, const char* what, const char* file, int line) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw_cuda(e, what, file, line);
  if (sync_debug()) {
    e = cudaStreamSynchronize(stream);
    if (e != cudaSuccess) throw_cuda(e, what, file, line);
  }
}

Context& context_of(const Tensor& t, const char* fn) {
  GEOLOC_CHECK(t.defined(), ShapeError, "cuda::", fn, ": tensor is undefined");
  GEOLOC_CHECK(t.device().is_cuda(), ShapeError, "cuda::", fn, ": tensor ", t.str(),
               " is not on a CUDA device");
  Context& c = Context::get(t.device().index);
  c.make_current();
  return c;
}

void expect(const Tensor& t, DType want, const char* fn, const char* what) {
  GEOLOC_CHECK(t.defined(), ShapeError, "cuda::", fn, ": ", what, " is undefined");
  GEOLOC_CHECK(t.device().is_cuda(), ShapeError, "cuda::", fn, ": ", what, " ", t.str(),
               " is not on a CUDA device");
  if (t.dtype() == want) return;
  if (want == DType::F32 && (t.dtype() == DType::BF16 || t.dtype() == DType::F16))
    throw CudaError(geoloc::detail::cat("not implemented: ", dtype_name(t.dtype()), " tensors in cuda::", fn,
                                        " (", what, " ", t.str(),
                                        "); only f32 is implemented on CUDA so far"));
  throw ShapeError(
      geoloc::detail::cat("cuda::", fn, ": ", what, " must be ", dtype_name(want), ", got ", t.str()));
}

DType expect_fp(const Tensor& t, DType same, const char* fn, const char* what) {
  GEOLOC_CHECK(t.defined(), ShapeError, "cuda::", fn, ": ", what, " is undefined");
  GEOLOC_CHECK(t.device().is_cuda(), ShapeError, "cuda::", fn, ": ", what, " ", t.str(),
               " is not on a CUDA device");
  if (t.dtype() == DType::F16)
    throw CudaError(geoloc::detail::cat("not implemented: f16 tensors in cuda::", fn, " (", what, " ",
                                        t.str(), "); f32 and bf16 are implemented"));
  GEOLOC_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::BF16, ShapeError, "cuda::", fn, ": ", what,
               " must be f32 or bf16, got ", t.str());
  GEOLOC_CHECK(t.dtype() == same, ShapeError, "cuda::", fn, ": ", what, " ", t.str(), " must be ",
               dtype_name(same), " like the other arguments");
  return t.dtype();
}

}  // namespace detail
}  // namespace geoloc::cuda
