// geoloc's AVX-512 convolution kernels (see direct_conv.hpp). Built with -mavx512f -mavx512bw -mavx512vl
// -mavx512dq and reached only through kernels_avx512() when cpuid reports them. Only intrinsics here:
// every template is in an anonymous namespace and nothing from the standard library is called, so no
// AVX-512 copy of shared inline code can reach an AVX2-only CPU through the linker.
//
// Register blocking: the micro-kernel keeps an MR x 64 block of Y in registers (MR = 6: 24 accumulators of
// 32; 8 rows for panels of 16-48 channels) and per k does 4 aligned vector loads of B, MR broadcasts of A
// and 4*MR FMAs: FMA-bound on a core with two 512-bit FMA pipes.
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
  __m512 acc[MR][NV];
  if (first) {
    GEOLOC_UNROLL
    for (int i = 0; i < MR; ++i)
      GEOLOC_UNROLL
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  } else {
    GEOLOC_UNROLL
    for (int i = 0; i < MR; ++i)
      GEOLOC_UNROLL
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_loadu_ps(c + i * ldc + 16 * v);
  }
  for (int64_t k = 0; k < len; ++k, b += ldb) {
    __m512 bv[NV];
    GEOLOC_UNROLL
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_load_ps(b + 16 * v);
    GEOLOC_UNROLL
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(ap[i][k]);
      GEOLOC_UNROLL
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
    }
  }
  if (last && (e.scale || e.shift || e.residual || e.relu)) {
    GEOLOC_UNROLL
    for (int v = 0; v < NV; ++v) {
      const __m512 sc = e.scale ? _mm512_loadu_ps(e.scale + 16 * v) : _mm512_set1_ps(1.0f);
      const __m512 sh = e.shift ? _mm512_loadu_ps(e.shift + 16 * v) : _mm512_setzero_ps();
      GEOLOC_UNROLL
      for (int i = 0; i < MR; ++i) {
        __m512 y = e.scale ? _mm512_fmadd_ps(acc[i][v], sc, sh) : _mm512_add_ps(acc[i][v], sh);
        if (e.residual) y = _mm512_add_ps(y, _mm512_loadu_ps(e.residual + i * e.ld_residual + 16 * v));
        if (e.relu)  // max(y, 0) with NaN kept (math::relu)
          y = _mm512_mask_mov_ps(_mm512_max_ps(y, _mm512_setzero_ps()), _mm512_cmp_ps_mask(y, y, _CMP_UNORD_Q), y);
        acc[i][v] = y;
      }
    }
  }
  GEOLOC_UNROLL
  for (int i = 0; i < MR; ++i)
    GEOLOC_UNROLL
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(c + i * ldc + 16 * v, acc[i][v]);
}

// (GCC 12 warns about the undefined pass-through operand inside its own unpack intrinsics: a known false
// positive, silenced here only.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
void transpose16(const float* src, int64_t lds, float* dst, int64_t ldd) {
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

template <int MC, int NV>
void filter_tile(const float* const* a, const float* __restrict dy, int64_t ldy, int64_t rows, float* w, int64_t ldw,
                 bool first) {
  __m512 acc[MC][NV];
  if (first) {
    GEOLOC_UNROLL
    for (int i = 0; i < MC; ++i)
      GEOLOC_UNROLL
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  } else {
    GEOLOC_UNROLL
    for (int i = 0; i < MC; ++i)
      GEOLOC_UNROLL
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_loadu_ps(w + i * ldw + 16 * v);
  }
  for (int64_t r = 0; r < rows; ++r, dy += ldy) {
    const float* ar = a[r];
    __m512 av[NV];
    GEOLOC_UNROLL
    for (int v = 0; v < NV; ++v) av[v] = _mm512_loadu_ps(ar + 16 * v);
    GEOLOC_UNROLL
    for (int i = 0; i < MC; ++i) {
      const __m512 g = _mm512_set1_ps(dy[i]);
      GEOLOC_UNROLL
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(g, av[v], acc[i][v]);
    }
  }
  GEOLOC_UNROLL
  for (int i = 0; i < MC; ++i)
    GEOLOC_UNROLL
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(w + i * ldw + 16 * v, acc[i][v]);
}

constexpr int rows_for(int nv) { return nv >= 4 ? 6 : 8; }  // nv*MR accumulators of 32 registers
constexpr int kFilterRows = 6;                               // x 4 vectors of k: 24 accumulators

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
  k.name = "avx512";
  k.lanes = 16;
  k.panel = 64;
  for (int nv = 1; nv <= 4; ++nv) k.rows[nv] = rows_for(nv);
  fill_tiles<1>(k, std::make_integer_sequence<int, rows_for(1)>{});
  fill_tiles<2>(k, std::make_integer_sequence<int, rows_for(2)>{});
  fill_tiles<3>(k, std::make_integer_sequence<int, rows_for(3)>{});
  fill_tiles<4>(k, std::make_integer_sequence<int, rows_for(4)>{});
  k.filter_rows = kFilterRows;
  k.filter_nv = 4;
  fill_filters<1>(k, std::make_integer_sequence<int, kFilterRows>{});
  fill_filters<2>(k, std::make_integer_sequence<int, kFilterRows>{});
  fill_filters<3>(k, std::make_integer_sequence<int, kFilterRows>{});
  fill_filters<4>(k, std::make_integer_sequence<int, kFilterRows>{});
  k.transpose16 = &transpose16;
  return k;
}

constexpr Kernels kAvx512 = make();

}  // namespace

const Kernels* kernels_avx512() { return &kAvx512; }

}  // namespace geoloc::cpu::direct
