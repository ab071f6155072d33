// geoloc's implicit-GEMM convolution kernels: the interface between the ISA-neutral driver (conv.cpp,
// built with the baseline flags) and the per-ISA kernel files (direct_conv_avx512.cpp, built with
// -mavx512f/bw/vl/dq; direct_conv_avx2.cpp, built with the x86-64-v3 baseline). Internal, not installed.
//
// This header holds only plain types and declarations: no inline functions or templates. The kernel
// files include nothing else but <immintrin.h> and <cstdint>/<utility> types, and keep their templates in
// an anonymous namespace, so no inline code compiled for AVX-512 can be merged by the linker (COMDAT)
// with a copy that an AVX2-only CPU runs. conv.cpp reaches them only through the table of function
// pointers that the runtime dispatch (cpu_path.cpp) picks from cpuid.
//
// A convolution over NHWC data is the GEMM Y[M, Co] = A[M, K] B[K, Co] with rows r = (img, oh, ow) and
// K = (ky, kx, ci). Row r of A is never copied: for one ky it is the contiguous run of KW*Ci floats that
// starts at input pixel (oh*s + ky, ow*s) of a zero-padded copy of the input (or the input itself when
// there is no padding), so the kernel broadcasts A's elements straight from the activations, through one
// pointer per row. B (the weights) is packed once per call into panels of `panel` output channels (or
// fewer, a multiple of 16, for the last), k-major ([K][nr], 64-byte aligned), which the kernel reads as
// whole vectors. One call of a tile kernel accumulates an MR x nr block of Y over a run of k in registers
// and, on the last run, applies the epilogue (per-channel scale and shift, residual, ReLU) before the
// single store.
#pragma once

#include <cstdint>

namespace geoloc::cpu::direct {

// What is applied to a block of Y on its last run of k: y = relu?(acc * scale + shift + residual).
struct Epilogue {
  const float* scale = nullptr;     // per output channel (already offset to the block's first channel)
  const float* shift = nullptr;     // per output channel
  const float* residual = nullptr;  // the block's first element in a [M, Co] tensor
  int64_t ld_residual = 0;
  bool relu = false;
};

// Y[i, 0..nr) (+)= sum_k a[i][k] * b[k*ldb + 0..nr) for i < MR, k < len (nr = NV vectors).
//   a: MR row pointers (already at the run's first k); b: packed panel at the run's first k (ldb = the
//   panel's width; 64-byte aligned); c: the block's first element, rows ldc apart.
//   first: start from zero instead of loading c; last: apply `e` before storing.
using TileFn = void (*)(const float* const* a, const float* b, int64_t ldb, int64_t len, float* c, int64_t ldc,
                        bool first, bool last, const Epilogue& e);

// The filter gradient: W[i, 0..NV vectors) (+)= sum_r dy[r][i] * a[r][0..NV vectors) for i < MC over
// `rows` rows. a: one pointer per row (already at the block's first k); dy: the rows' first
// output-gradient element (rows ldy apart, already at the block's first channel); w: the block's first
// element in the [co, K] gradient (rows ldw apart). first: start from zero instead of loading w.
using FilterFn = void (*)(const float* const* a, const float* dy, int64_t ldy, int64_t rows, float* w, int64_t ldw,
                          bool first);

// dst[c * ldd + r] = src[r * lds + c] for a 16 x 16 block (the weight packing's transpose).
using TransposeFn = void (*)(const float* src, int64_t lds, float* dst, int64_t ldd);

constexpr int kMaxRows = 8;  // rows (tile) or channels (filter) per kernel call, at most
constexpr int kMaxNv = 4;    // vectors per kernel call, at most

// One instruction set's kernels. Entries [nv][mr] are set for 1 <= nv <= panel / lanes and
// 1 <= mr <= rows[nv] (tiles), 1 <= nv <= filter_nv and 1 <= mr <= filter_rows (filter).
struct Kernels {
  const char* name;
  int lanes;                 // floats per vector
  int panel;                 // output channels per packed panel (a multiple of 16)
  int rows[kMaxNv + 1];      // rows per full tile for a panel of nv vectors
  TileFn tile[kMaxNv + 1][kMaxRows + 1];
  int filter_rows;           // output channels per filter tile
  int filter_nv;             // vectors of k per filter tile (k blocks of lanes * filter_nv)
  FilterFn filter[kMaxNv + 1][kMaxRows + 1];
  TransposeFn transpose16;
};

// Defined in the per-ISA files; call only when the CPU has the instruction set (cpu_path.cpp checks).
const Kernels* kernels_avx512();
const Kernels* kernels_avx2();

// The kernels of the CPU path in use, or null for the generic (Eigen) path (cpu_path.cpp).
const Kernels* active_kernels();

}  // namespace geoloc::cpu::direct
