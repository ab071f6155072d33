// A kernel with an off-by-one bound (i <= n) run under the emulator: AddressSanitizer reports the
// heap-buffer-overflow on the cudaMalloc'd buffer and the emulator names the kernel, block and thread.
// Registered as the ctest cuda_emu_oob_demo, which passes when that report appears.
#include <cuda_runtime.h>

#include <cstdio>

#include "launch.cuh"

__global__ void oob_kernel(float* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i <= n) out[i] = 1.0f;  // the bug: one element past the end
}

int main() {
  const int n = 130;  // 2 full blocks of 64 and 2 threads of the third
  float* d = nullptr;
  if (cudaMalloc(&d, n * sizeof(float)) != cudaSuccess) return 2;
  GEOLOC_LAUNCH(3, 64, 0, nullptr, oob_kernel)(d, n);
  std::printf("no error was reported\n");
  cudaFree(d);
  return 0;
}
