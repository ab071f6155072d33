// geoloc's AVX2/FMA convolution kernels (see direct_conv.hpp): the same implicit GEMM, epilogue and
// summation order rules as the AVX-512 kernels, for 8-wide vectors and 16 ymm registers. Built with the
// x86-64-v3 baseline and reached only through kernels_avx2() when cpuid reports AVX2 and FMA. Only
// intrinsics here: every template is in an anonymous namespace and nothing from the standard library is
// called (see direct_conv_avx512.cpp for why).
//
// Register blocking: panels of 16 output channels (2 vectors); the micro-kernel keeps a 6 x 16 block of Y
// in 12 accumulators and per k does 2 aligned loads of B, 6 broadcasts of A and 12 FMAs (15 of the 16
// registers): FMA-bound on a core with two 256-bit FMA pipes and two or three loads per cycle. The filter
// gradient: 6 output channels x 16 of k (12 accumulators) per call, 2 loads of the input run and 6
// broadcasts of dy per row.
#include <immintrin.h>

#include <cstdint>
#include <utility>

#include "direct_conv.hpp"

// Every loop over the accumulators is unrolled completely, so that the accumulator array is never indexed
// at run time: otherwise GCC 12 keeps it in memory and stores every accumulator on every k (measured: the
// AVX2 6x16 tile ran at half speed with 12 stores per k).
#define GEOLOC_UNROLL _Pragma("GCC unroll 16")

namespace geoloc::cpu::direct {
namespace {

template <int MR, int NV>
void tile(const float* const* a, const float* __restrict b, int64_t ldb, int64_t len, float* c, int64_t ldc,
          bool first, bool last, const Epilogue& e) {
  const float* ap[MR];
  GEOLOC_UNROLL
  for (int i = 0; i < MR; ++i) ap[i] = a[i];
  __m256 acc[MR][NV];
  if (first) {
    GEOLOC_UNROLL
    for (int i = 0; i < MR; ++i)
      GEOLOC_UNROLL
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_setzero_ps();
  } else {
    GEOLOC_UNROLL
    for (int i = 0; i < MR; ++i)
      GEOLOC_UNROLL
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_loadu_ps(c + i * ldc + 8 * v);
  }
  for (int64_t k = 0; k < len; ++k, b += ldb) {
    __m256 bv[NV];
    GEOLOC_UNROLL
    for (int v = 0; v < NV; ++v) bv[v] = _mm256_load_ps(b + 8 * v);
    GEOLOC_UNROLL
    for (int i = 0; i < MR; ++i) {
      const __m256 av = _mm256_broadcast_ss(ap[i] + k);
      GEOLOC_UNROLL
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_fmadd_ps(av, bv[v], acc[i][v]);
    }
  }
  if (last && (e.scale || e.shift || e.residual || e.relu)) {
    GEOLOC_UNROLL
    for (int v = 0; v < NV; ++v) {
      const __m256 sc = e.scale ? _mm256_loadu_ps(e.scale + 8 * v) : _mm256_set1_ps(1.0f);
      const __m256 sh = e.shift ? _mm256_loadu_ps(e.shift + 8 * v) : _mm256_setzero_ps();
      GEOLOC_UNROLL
      for (int i = 0; i < MR; ++i) {
        __m256 y = e.scale ? _mm256_fmadd_ps(acc[i][v], sc, sh) : _mm256_add_ps(acc[i][v], sh);
        if (e.residual) y = _mm256_add_ps(y, _mm256_loadu_ps(e.residual + i * e.ld_residual + 8 * v));
        if (e.relu)  // max(y, 0) with NaN kept (math::relu)
          y = _mm256_blendv_ps(_mm256_max_ps(y, _mm256_setzero_ps()), y, _mm256_cmp_ps(y, y, _CMP_UNORD_Q));
        acc[i][v] = y;
      }
    }
  }
  GEOLOC_UNROLL
  for (int i = 0; i < MR; ++i)
    GEOLOC_UNROLL
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(c + i * ldc + 8 * v, acc[i][v]);
}

// dst[c * ldd + r] = src[r * lds + c] for an 8 x 8 block.
void transpose8(const float* src, int64_t lds, float* dst, int64_t ldd) {
  __m256 r[8], t[8], s[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * lds);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);      // per 128-bit lane: r_i0 r_{i+1}0 r_i1 r_{i+1}1
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);  // r_i2 r_{i+1}2 r_i3 r_{i+1}3
  }
  for (int i = 0; i < 8; i += 4) {
    s[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);      // column 0 (lane 0) / 4 (lane 1) of rows i..i+3
    s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);  // column 1 / 5
    s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);  // column 2 / 6
    s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);  // column 3 / 7
  }
  for (int c = 0; c < 4; ++c) {
    _mm256_storeu_ps(dst + c * ldd, _mm256_permute2f128_ps(s[c], s[4 + c], 0x20));
    _mm256_storeu_ps(dst + (4 + c) * ldd, _mm256_permute2f128_ps(s[c], s[4 + c], 0x31));
  }
}

void transpose16(const float* src, int64_t lds, float* dst, int64_t ldd) {
  for (int i = 0; i < 16; i += 8)
    for (int j = 0; j < 16; j += 8) transpose8(src + i * lds + j, lds, dst + j * ldd + i, ldd);
}

template <int MC, int NV>
void filter_tile(const float* const* a, const float* __restrict dy, int64_t ldy, int64_t rows, float* w, int64_t ldw,
                 bool first) {
  __m256 acc[MC][NV];
  if (first) {
    GEOLOC_UNROLL
    for (int i = 0; i < MC; ++i)
      GEOLOC_UNROLL
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_setzero_ps();
  } else {
    GEOLOC_UNROLL
    for (int i = 0; i < MC; ++i)
      GEOLOC_UNROLL
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_loadu_ps(w + i * ldw + 8 * v);
  }
  for (int64_t r = 0; r < rows; ++r, dy += ldy) {
    const float* ar = a[r];
    __m256 av[NV];
    GEOLOC_UNROLL
    for (int v = 0; v < NV; ++v) av[v] = _mm256_loadu_ps(ar + 8 * v);
    GEOLOC_UNROLL
    for (int i = 0; i < MC; ++i) {
      const __m256 g = _mm256_broadcast_ss(dy + i);
      GEOLOC_UNROLL
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_fmadd_ps(g, av[v], acc[i][v]);
    }
  }
  GEOLOC_UNROLL
  for (int i = 0; i < MC; ++i)
    GEOLOC_UNROLL
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(w + i * ldw + 8 * v, acc[i][v]);
}

constexpr int rows_for(int nv) { return nv >= 2 ? 6 : 8; }  // nv*MR accumulators of 16 registers
constexpr int kFilterRows = 6;                               // x 2 vectors of k: 12 accumulators

template <int NV, int... R>
constexpr void fill_tiles(Kernels& k, std::integer_sequence<int, R...>) {
  ((k.tile[NV][R + 1] = &tile<R + 1, NV>), ...);
}
template <int NV, int... R>
constexpr void fill_filters(Kernels& k, std::integer_sequence<int, R...>) {
  ((k.filter[NV][R + 1] = &filter_tile<R + 1, NV>), ...);
}

constexpr Kernels make() {
  Kernels k{};
  k.name = "avx2";
  k.lanes = 8;
  k.panel = 16;
  for (int nv = 1; nv <= 2; ++nv) k.rows[nv] = rows_for(nv);
  fill_tiles<1>(k, std::make_integer_sequence<int, rows_for(1)>{});
  fill_tiles<2>(k, std::make_integer_sequence<int, rows_for(2)>{});
  k.filter_rows = kFilterRows;
  k.filter_nv = 2;
  fill_filters<1>(k, std::make_integer_sequence<int, kFilterRows>{});
  fill_filters<2>(k, std::make_integer_sequence<int, kFilterRows>{});
  k.transpose16 = &transpose16;
  return k;
}

constexpr Kernels kAvx2 = make();

}  // namespace

const Kernels* kernels_avx2() { return &kAvx2; }

}  // namespace geoloc::cpu::direct
