#pragma once
// Internal to src/cuda/*.cpp: the cuDNN and cuBLAS(Lt) error checks. Never included by kernels/*.cu, which
// see only the CUDA runtime (cuda_common.cuh) so that they also compile under the test emulator.
#include <cublasLt.h>
#include <cublas_api.h>
#include <cudnn.h>

#include "cuda_common.cuh"

namespace geoloc::cuda::detail {

[[noreturn]] void throw_cudnn(cudnnStatus_t s, const char* expr, const char* file, int line);
[[noreturn]] void throw_cublas(cublasStatus_t s, const char* expr, const char* file, int line);

}  // namespace geoloc::cuda::detail

#define GEOLOC_CUDNN_CHECK(call)                                                 \
  do {                                                                           \
    cudnnStatus_t geoloc_s_ = (call);                                            \
    if (geoloc_s_ != CUDNN_STATUS_SUCCESS)                                       \
      ::geoloc::cuda::detail::throw_cudnn(geoloc_s_, #call, __FILE__, __LINE__); \
  } while (0)
#define GEOLOC_CUBLAS_CHECK(call)                                                 \
  do {                                                                            \
    cublasStatus_t geoloc_s_ = (call);                                            \
    if (geoloc_s_ != CUBLAS_STATUS_SUCCESS)                                       \
      ::geoloc::cuda::detail::throw_cublas(geoloc_s_, #call, __FILE__, __LINE__); \
  } while (0)
