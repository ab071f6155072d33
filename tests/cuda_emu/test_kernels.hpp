#pragma once
// Host entry points of test_kernels.cu (kernels shaped like the project's own, built through
// geoloc_add_emulated_cuda as a .cu file).
#include <cstdint>

namespace cuda_emu_test {
/// y[i] = a * x[i] + b, a functor through one grid-stride template kernel (elementwise.cu's map_kernel).
void affine(const float* x, float* y, int64_t n, float a, float b, unsigned grid, unsigned block);
/// y = x * scale[c] + shift[c] (+ relu), C channels last; V4 = the float4 path (batchnorm.cu's shape).
void scale_shift(const float* x, const float* scale, const float* shift, float* y, uint32_t n, uint32_t C,
                 bool relu, bool v4);
/// out[c] = sum over rows of x[r*C + c] in double; blockDim (32, 8), grid (C/32, splits) (batchnorm.cu's shape).
void column_sum(const float* x, int64_t rows, int64_t C, double* partial, int splits, double* out);
/// out[row] = sum of x[row, :] with the block_sum of device.cuh (warp shuffles + shared scratch).
void row_sum(const float* x, int rows, int cols, int threads, float* out);
}  // namespace cuda_emu_test
