// AVX-512 implicit-GEMM convolution kernels of the CPU backend (internal; included by conv.cpp
// only). Compiled where the compiler targets AVX-512F (`-march=native` on an AVX-512 machine); elsewhere
// GEOLOC_DIRECT_CONV is 0 and the backend keeps its Eigen path.
//
// A convolution over NHWC data is the GEMM Y[M, Co] = A[M, K] B[K, Co] with rows r = (img, oh, ow) and
// K = (ky, kx, ci). Row r of A is never copied: for one ky it is the contiguous run of KW*Ci floats that
// starts at input pixel (oh*s + ky, ow*s) of a zero-padded copy of the input (or the input itself when
// there is no padding), so the kernel broadcasts A's elements straight from the activations, through one
// pointer per row. B (the weights) is packed once per call into panels of NR = 16..64 output channels,
// k-major ([K][NR], aligned), which the kernel reads as whole AVX-512 vectors. One call of `tile`
// accumulates an MR x NR block of Y over a run of k in registers (MR*NR/16 accumulators) and, on the
// last run, applies the epilogue (per-channel scale and shift, residual, ReLU) before the single store.
#pragma once

#include <cstdint>
#include <utility>

#if defined(__AVX512F__)
#include <immintrin.h>
#define GEOLOC_DIRECT_CONV 1
#else
#define GEOLOC_DIRECT_CONV 0
#endif

namespace geoloc::cpu::direct {

// What is applied to a block of Y on its last run of k: y = relu?(acc * scale + shift + residual).
struct Epilogue {
  const float* scale = nullptr;     // per output channel (already offset to the block's first channel)
  const float* shift = nullptr;     // per output channel
  const float* residual = nullptr;  // the block's first element in a [M, Co] tensor
  int64_t ld_residual = 0;
  bool relu = false;
};

#if GEOLOC_DIRECT_CONV
// Y[i, 0..16*NV) (+)= sum_k a[i][k] * b[k*ldb + 0..16*NV) for i < MR, k < len.
//   a: MR row pointers (already at the run's first k); b: packed panel at the run's first k (ldb = the
//   panel's width, a multiple of 16; 64-byte aligned); c: the block's first element, rows ldc apart.
//   first: start from zero instead of loading c; last: apply `e` before storing.
template <int MR, int NV>
inline void tile(const float* const* a, const float* __restrict b, int64_t ldb, int64_t len, float* c,
                 int64_t ldc, bool first, bool last, const Epilogue& e) {
  const float* ap[MR];
  for (int i = 0; i < MR; ++i) ap[i] = a[i];
  __m512 acc[MR][NV];
  if (first) {
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  } else {
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_loadu_ps(c + i * ldc + 16 * v);
  }
  for (int64_t k = 0; k < len; ++k, b += ldb) {
    __m512 bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_load_ps(b + 16 * v);
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(ap[i][k]);
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
    }
  }
  if (last && (e.scale || e.shift || e.residual || e.relu)) {
    for (int v = 0; v < NV; ++v) {
      const __m512 sc = e.scale ? _mm512_loadu_ps(e.scale + 16 * v) : _mm512_set1_ps(1.0f);
      const __m512 sh = e.shift ? _mm512_loadu_ps(e.shift + 16 * v) : _mm512_setzero_ps();
      for (int i = 0; i < MR; ++i) {
        __m512 y = e.scale ? _mm512_fmadd_ps(acc[i][v], sc, sh) : _mm512_add_ps(acc[i][v], sh);
        if (e.residual) y = _mm512_add_ps(y, _mm512_loadu_ps(e.residual + i * e.ld_residual + 16 * v));
        if (e.relu) y = _mm512_max_ps(y, _mm512_setzero_ps());
        acc[i][v] = y;
      }
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(c + i * ldc + 16 * v, acc[i][v]);
}

// dst[c * ldd + r] = src[r * lds + c] for a 16 x 16 block (the weight packing's transpose).
// (GCC 12 warns about the undefined pass-through operand inside its own unpack intrinsics: a known false
// positive, silenced here only.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
inline void transpose16(const float* src, int64_t lds, float* dst, int64_t ldd) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * lds);
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4)
    for (int j = 0; j < 2; ++j) {
      r[i + j] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + j]), _mm512_castps_pd(t[i + j + 2])));
      r[i + j + 2] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + j]), _mm512_castps_pd(t[i + j + 2])));
    }
  // r[4q + p] holds, per 128-bit lane L, the rows 4q..4q+3 of column 4L + col[p], col = {0, 2, 1, 3}
  for (int q = 0; q < 4; q += 2)
    for (int p = 0; p < 4; ++p) {
      t[4 * q + p] = _mm512_shuffle_f32x4(r[4 * q + p], r[4 * q + 4 + p], 0x88);      // lanes 0, 2 | 0, 2
      t[4 * q + 4 + p] = _mm512_shuffle_f32x4(r[4 * q + p], r[4 * q + 4 + p], 0xdd);  // lanes 1, 3 | 1, 3
    }
  // t[4q + p] (q = 0, 2): lanes L0,L2 of rows 4q.., then L0,L2 of rows 4q+4..; t[4q+4+p]: lanes L1,L3
  constexpr int col[4] = {0, 2, 1, 3};
  for (int p = 0; p < 4; ++p) {
    const __m512 a = _mm512_shuffle_f32x4(t[p], t[8 + p], 0x88);       // column col[p]: rows 0-15
    const __m512 b = _mm512_shuffle_f32x4(t[4 + p], t[12 + p], 0x88);  // column 4 + col[p]
    const __m512 c = _mm512_shuffle_f32x4(t[p], t[8 + p], 0xdd);       // column 8 + col[p]
    const __m512 d = _mm512_shuffle_f32x4(t[4 + p], t[12 + p], 0xdd);  // column 12 + col[p]
    _mm512_storeu_ps(dst + col[p] * ldd, a);
    _mm512_storeu_ps(dst + (4 + col[p]) * ldd, b);
    _mm512_storeu_ps(dst + (8 + col[p]) * ldd, c);
    _mm512_storeu_ps(dst + (12 + col[p]) * ldd, d);
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

using TileFn = void (*)(const float* const*, const float*, int64_t, int64_t, float*, int64_t, bool, bool,
                        const Epilogue&);

// Rows per full tile for a panel of nv vectors: nv*MR accumulators (of 32 registers), and few enough row
// pointers to stay in general-purpose registers.
constexpr int kMaxRows = 8;
constexpr int rows_for(int nv) { return nv >= 4 ? 6 : 8; }

namespace detail {
template <int NV, int... R>
constexpr TileFn pick(int mr, std::integer_sequence<int, R...>) {
  TileFn fns[] = {&tile<R + 1, NV>...};
  return fns[mr - 1];
}
}  // namespace detail

// The kernel for mr rows (1..rows_for(nv)) and nv vectors (1..4).
inline TileFn tile_fn(int mr, int nv) {
  switch (nv) {
    case 1: return detail::pick<1>(mr, std::make_integer_sequence<int, rows_for(1)>{});
    case 2: return detail::pick<2>(mr, std::make_integer_sequence<int, rows_for(2)>{});
    case 3: return detail::pick<3>(mr, std::make_integer_sequence<int, rows_for(3)>{});
    default: return detail::pick<4>(mr, std::make_integer_sequence<int, rows_for(4)>{});
  }
}

// The filter gradient: W[i, 0..16*NV) (+)= sum_r dy[r][i] * a[r][0..16*NV) for i < MC over `rows` rows.
//   a: one pointer per row (already at the block's first k); dy: the rows' first output-gradient
//   element (rows ldy apart, already at the block's first channel); w: the block's first element in the
//   [co, K] gradient (rows ldw apart). first: start from zero instead of loading w.
template <int MC, int NV>
inline void filter_tile(const float* const* a, const float* __restrict dy, int64_t ldy, int64_t rows, float* w,
                        int64_t ldw, bool first) {
  __m512 acc[MC][NV];
  if (first) {
    for (int i = 0; i < MC; ++i)
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  } else {
    for (int i = 0; i < MC; ++i)
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_loadu_ps(w + i * ldw + 16 * v);
  }
  for (int64_t r = 0; r < rows; ++r, dy += ldy) {
    const float* ar = a[r];
    __m512 av[NV];
    for (int v = 0; v < NV; ++v) av[v] = _mm512_loadu_ps(ar + 16 * v);
    for (int i = 0; i < MC; ++i) {
      const __m512 g = _mm512_set1_ps(dy[i]);
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(g, av[v], acc[i][v]);
    }
  }
  for (int i = 0; i < MC; ++i)
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(w + i * ldw + 16 * v, acc[i][v]);
}

using FilterFn = void (*)(const float* const*, const float*, int64_t, int64_t, float*, int64_t, bool);
constexpr int kFilterRows = 6;  // output channels per filter tile (x 4 vectors of k: 24 accumulators)

namespace detail {
template <int NV, int... R>
constexpr FilterFn pick_filter(int mc, std::integer_sequence<int, R...>) {
  FilterFn fns[] = {&filter_tile<R + 1, NV>...};
  return fns[mc - 1];
}
}  // namespace detail

// The filter kernel for mc output channels (1..kFilterRows) and nv vectors of k (1..4).
inline FilterFn filter_fn(int mc, int nv) {
  switch (nv) {
    case 1: return detail::pick_filter<1>(mc, std::make_integer_sequence<int, kFilterRows>{});
    case 2: return detail::pick_filter<2>(mc, std::make_integer_sequence<int, kFilterRows>{});
    case 3: return detail::pick_filter<3>(mc, std::make_integer_sequence<int, kFilterRows>{});
    default: return detail::pick_filter<4>(mc, std::make_integer_sequence<int, kFilterRows>{});
  }
}
#endif

}  // namespace geoloc::cpu::direct
