#pragma once
// Internal to the CUDA backend (kernels/ and src/cuda/): error checking, device guards and tensor
// argument checks. Host code only, so that the .cpp files can include it too. Only the CUDA runtime:
// kernels/*.cu must compile without the cuDNN / cuBLAS headers (they also compile as host C++ under the
// test emulator, tests/cuda_emu); the library checks are in cuda_libs.cuh, for src/cuda/*.cpp.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "geoloc/backend.hpp"
#include "geoloc/cuda/context.hpp"
#include "geoloc/error.hpp"

namespace geoloc::cuda::detail {

[[noreturn]] void throw_cuda(cudaError_t e, const char* expr, const char* file, int line);
/// After a kernel launch: the launch error, and in GEOLOC_CUDA_SYNC=1 mode the execution error.
void check_launch(cudaStream_t stream, const char* what, const char* file, int line);

inline cudaStream_t stream_of(Context& c) { return reinterpret_cast<cudaStream_t>(c.stream()); }

/// The context of a CUDA tensor's device, made current on this thread.
Context& context_of(const Tensor& t, const char* fn);

/// Checks that `t` is defined, on CUDA and of dtype `want`; bf16/f16 where f32 is wanted gets
/// "not implemented" (the bf16 path is not written yet), anything else a ShapeError.
void expect(const Tensor& t, DType want, const char* fn, const char* what);
/// For the ops that have a bf16 path: `t` must be a CUDA f32 or bf16 tensor of dtype `same` (pass
/// t.dtype() of the first argument); returns its dtype. f16 gets "not implemented".
DType expect_fp(const Tensor& t, DType same, const char* fn, const char* what);

inline unsigned blocks_for(int64_t n, int threads, int64_t max_blocks = 65535LL * 16) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  return static_cast<unsigned>(b < max_blocks ? b : max_blocks);
}

}  // namespace geoloc::cuda::detail

#define GEOLOC_CUDA_CHECK(call)                                                                             \
  do {                                                                                                      \
    cudaError_t geoloc_e_ = (call);                                                                         \
    if (geoloc_e_ != cudaSuccess) ::geoloc::cuda::detail::throw_cuda(geoloc_e_, #call, __FILE__, __LINE__); \
  } while (0)
/// Use right after every kernel launch, GEOLOC_LAUNCH(...)(...) (what = the kernel's name).
#define GEOLOC_CUDA_LAUNCH_CHECK(stream, what) \
  ::geoloc::cuda::detail::check_launch((stream), (what), __FILE__, __LINE__)
