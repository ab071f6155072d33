#pragma once
// The two macros through which kernels/*.cu launch kernels and declare dynamic shared memory, so that
// the same source compiles under nvcc and under the test emulator (tests/cuda_emu, selected by
// -DGEOLOC_CUDA_EMU=1 with tests/cuda_emu/include first on the path). Every launch in kernels/ goes
// through GEOLOC_LAUNCH: a raw <<<...>>> would not compile under the emulator.
//
//   GEOLOC_LAUNCH(grid, block, shmem, stream, kernel)(args...);
//       == kernel<<<grid, block, shmem, stream>>>(args...)
//     The kernel is the last macro argument so that a template kernel needs no parentheses:
//       GEOLOC_LAUNCH(g, 256, 0, s, scale_shift_act_kernel<uint32_t, true>)(x, scale, ...);
//     grid and block: a number or dim3(...) (not a braced list). Follow it with the usual launch check.
//
//   GEOLOC_DYNAMIC_SHARED(T, name);
//       == extern __shared__ T name[];   as `T* const name`, 16-byte aligned
//     Inside the kernel body. Every kernel of a file shares one byte array under nvcc, so kernels
//     with different element types can live in one .cu file.
#if defined(GEOLOC_CUDA_EMU)
#include <cuda_runtime.h>  // the emulator's

#define GEOLOC_LAUNCH(grid, block, shmem, stream, ...) \
  CUDA_EMU_LAUNCH(grid, block, shmem, stream, __VA_ARGS__)
#define GEOLOC_DYNAMIC_SHARED(T, name) CUDA_EMU_DYNAMIC_SHARED(T, name)

#else
#define GEOLOC_LAUNCH(grid, block, shmem, stream, ...) __VA_ARGS__<<<(grid), (block), (shmem), (stream)>>>
#define GEOLOC_DYNAMIC_SHARED(T, name)                                    \
  extern __shared__ __align__(16) unsigned char geoloc_dynamic_shared_[]; \
  T* const name = reinterpret_cast<T*>(geoloc_dynamic_shared_)
#endif
