// Winograd F(4x4, 3x3) convolution for inference (see winograd_conv.hpp), on the dispatched tile kernels.
//
// The algorithm (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016): each
// 4x4 block of outputs ("tile") of a 3x3 stride-1 convolution is Y = A^T [ sum_ci U(co, ci) .* V(ci) ] A,
// with V = B^T d B the transform of the 6x6 block d of input around the tile and U = G g G^T that of the
// 3x3 filter g: 36 multiplications per channel pair and tile instead of 144 (2.25 outputs per input
// element transformed). For each of the 36 positions q, the sum over ci is a GEMM
//   M[q][tile, co] = V[q][tile, ci] U[q][ci, co],
// which the tile kernels of direct_conv.hpp run unchanged: their row pointers address the transformed
// input, and U[q] is packed in the same k-major panels as the direct kernels' weights.
//
// Work is cut into blocks of tiles (and, where there are few, groups of output-channel panels); a task
// transforms its block's input into V (36 x T x ci floats), multiplies every position into M (36 x T x
// group), and transforms M back into the output, applying the epilogue (scale, shift, residual, ReLU)
// before the only store. T is chosen so that V and M stay in L2.
//
// Accuracy: the transforms' coefficients (up to 8 in A, 5 in B, 1/24 in G) cost some float rounding: against
// a double-precision reference the error is up to ~1.5e-5 of the largest output (2e-6 for the direct
// kernels), checked in tests/core/test_conv_kernels.cpp with a bound of 5e-5. Training never uses it.
#include "winograd_conv.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common.hpp"

namespace geoloc::cpu::winograd {
using detail::pool_run;
using detail::pool_threads;

namespace {

constexpr int kPos = 36;  // 6 x 6 positions per tile
constexpr int kOut = 4;   // outputs per tile side
constexpr int64_t kLanes = 16;  // channels per step of the transforms (two AVX2 vectors, one AVX-512 one)

std::atomic<int> g_enabled{-1};
std::atomic<uint64_t> g_calls{0};

// Per-thread scratch, 64-byte aligned (0: V, 1: M). The pool's threads are persistent: no allocation per call.
float* scratch(int slot, size_t n) {
  thread_local std::vector<float> bufs[2];
  std::vector<float>& b = bufs[slot];
  if (b.size() < n + 16) b.resize(n + 16);
  const auto a = reinterpret_cast<uintptr_t>(b.data());
  return reinterpret_cast<float*>((a + 63) & ~uintptr_t(63));
}

// A row of ci zeros: what the input transform reads outside the image.
const float* zeros(int64_t ci) {
  thread_local std::vector<float> z;
  if (static_cast<int64_t>(z.size()) < ci) z.assign(static_cast<size_t>(ci), 0.0f);
  return z.data();
}

// v[q * ldv + c] = (B^T d B)[q / 6][q % 6] for c < ci, where the 6x6 input block d has its row of channels
// for pixel (i, j) at src[6 i + j].
void input_tile(const float* const* src, int64_t ci, float* v, int64_t ldv) {
  for (int64_t c0 = 0; c0 < ci; c0 += kLanes) {
    alignas(64) float t[6][6][kLanes];  // t = B^T d
    for (int j = 0; j < 6; ++j) {
      const float *d0 = src[j] + c0, *d1 = src[6 + j] + c0, *d2 = src[12 + j] + c0, *d3 = src[18 + j] + c0,
                  *d4 = src[24 + j] + c0, *d5 = src[30 + j] + c0;
#pragma omp simd
      for (int l = 0; l < kLanes; ++l) {
        const float s12 = d1[l] + d2[l], m12 = d1[l] - d2[l], s34 = d3[l] + d4[l], m43 = d4[l] - d3[l];
        const float m42 = d4[l] - d2[l], m31 = d3[l] - d1[l];
        t[0][j][l] = 4.0f * d0[l] - 5.0f * d2[l] + d4[l];
        t[1][j][l] = s34 - 4.0f * s12;
        t[2][j][l] = m43 + 4.0f * m12;
        t[3][j][l] = m42 + 2.0f * m31;
        t[4][j][l] = m42 - 2.0f * m31;
        t[5][j][l] = 4.0f * d1[l] - 5.0f * d3[l] + d5[l];
      }
    }
    for (int i = 0; i < 6; ++i) {  // v = t B, row i
      const float *d0 = t[i][0], *d1 = t[i][1], *d2 = t[i][2], *d3 = t[i][3], *d4 = t[i][4], *d5 = t[i][5];
      float* o = v + 6 * i * ldv + c0;
#pragma omp simd
      for (int l = 0; l < kLanes; ++l) {
        const float s12 = d1[l] + d2[l], m12 = d1[l] - d2[l], s34 = d3[l] + d4[l], m43 = d4[l] - d3[l];
        const float m42 = d4[l] - d2[l], m31 = d3[l] - d1[l];
        o[l] = 4.0f * d0[l] - 5.0f * d2[l] + d4[l];
        o[ldv + l] = s34 - 4.0f * s12;
        o[2 * ldv + l] = m43 + 4.0f * m12;
        o[3 * ldv + l] = m42 + 2.0f * m31;
        o[4 * ldv + l] = m42 - 2.0f * m31;
        o[5 * ldv + l] = 4.0f * d1[l] - 5.0f * d3[l] + d5[l];
      }
    }
  }
}

// Where one tile's outputs go, and the epilogue's per-channel data (already at the group's first channel).
struct OutTile {
  float* y;               // the tile's first output pixel, at the group's first channel
  const float* residual;  // the same place in the residual, or null
  int64_t row_stride;     // floats between output rows (wo * co)
  int64_t col_stride;     // floats between output pixels (co)
  int rows, cols;         // outputs inside the image (<= 4)
};

// The output transform A^T m A of one tile over nc channels (m[q * ldm + c]) and the epilogue.
void output_tile(const float* m, int64_t ldm, int64_t nc, const OutTile& o, const float* scale, const float* shift,
                 bool relu) {
  for (int64_t c0 = 0; c0 < nc; c0 += kLanes) {
    alignas(64) float s[kOut][6][kLanes];  // s = A^T m
    for (int j = 0; j < 6; ++j) {
      const float *m0 = m + j * ldm + c0, *m1 = m + (6 + j) * ldm + c0, *m2 = m + (12 + j) * ldm + c0,
                  *m3 = m + (18 + j) * ldm + c0, *m4 = m + (24 + j) * ldm + c0, *m5 = m + (30 + j) * ldm + c0;
#pragma omp simd
      for (int l = 0; l < kLanes; ++l) {
        const float s12 = m1[l] + m2[l], d12 = m1[l] - m2[l], s34 = m3[l] + m4[l], d34 = m3[l] - m4[l];
        s[0][j][l] = m0[l] + s12 + s34;
        s[1][j][l] = d12 + 2.0f * d34;
        s[2][j][l] = s12 + 4.0f * s34;
        s[3][j][l] = d12 + 8.0f * d34 + m5[l];
      }
    }
    for (int i = 0; i < o.rows; ++i) {
      alignas(64) float r[kOut][kLanes];  // row i of s A
      const float *m0 = s[i][0], *m1 = s[i][1], *m2 = s[i][2], *m3 = s[i][3], *m4 = s[i][4], *m5 = s[i][5];
#pragma omp simd
      for (int l = 0; l < kLanes; ++l) {
        const float s12 = m1[l] + m2[l], d12 = m1[l] - m2[l], s34 = m3[l] + m4[l], d34 = m3[l] - m4[l];
        r[0][l] = m0[l] + s12 + s34;
        r[1][l] = d12 + 2.0f * d34;
        r[2][l] = s12 + 4.0f * s34;
        r[3][l] = d12 + 8.0f * d34 + m5[l];
      }
      for (int j = 0; j < o.cols; ++j) {
        float* dst = o.y + i * o.row_stride + j * o.col_stride + c0;
        const float* res = o.residual ? o.residual + i * o.row_stride + j * o.col_stride + c0 : nullptr;
        const float* sc = scale ? scale + c0 : nullptr;
        const float* sh = shift ? shift + c0 : nullptr;
#pragma omp simd
        for (int l = 0; l < kLanes; ++l) {
          float v = r[j][l];
          if (sc) v *= sc[l];
          if (sh) v += sh[l];
          if (res) v += res[l];
          dst[l] = relu ? math::relu(v) : v;
        }
      }
    }
  }
}

}  // namespace

bool supports(int64_t ci, int64_t co, int64_t ho, int64_t wo) {
  return ci > 0 && co > 0 && ci % 16 == 0 && co % 16 == 0 && ho > 0 && wo > 0;
}

bool pays(int64_t n, int64_t ho, int64_t wo) {
  // The direct kernels read the 9 ci co weights once per task; Winograd reads 36 ci co transformed ones.
  // With few tiles (ResNet's 7x7 layer at batch 1: 4 tiles, 43% of them padding) the transformed weights
  // come from memory for a handful of tiles each, and the saving in multiplications is lost (measured:
  // ResNet-18 and -50 at batch 1 are fastest with the 14x14 layers, 16 tiles, in and the 7x7 ones out).
  return n * ((ho + kOut - 1) / kOut) * ((wo + kOut - 1) / kOut) >= 16;
}

size_t weight_floats(int64_t ci, int64_t co) { return static_cast<size_t>(kPos * ci * co); }

void transform_weights(const direct::Kernels& K, const float* w, int64_t ci, int64_t co, float* u) {
  static constexpr double G[6][3] = {{1.0 / 4, 0, 0},
                                     {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                     {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                     {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                     {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                     {0, 0, 1}};
  const int64_t panel = K.panel;
  pool_run(co, [&](int64_t o, int) {
    const int64_t j0 = o / panel * panel, nr = std::min(panel, co - j0), col = o - j0;
    for (int64_t c = 0; c < ci; ++c) {
      double g[3][3], gg[6][3];  // gg = G g
      for (int a = 0; a < 3; ++a)
        for (int b = 0; b < 3; ++b) g[a][b] = w[((o * 3 + a) * 3 + b) * ci + c];
      for (int k = 0; k < 6; ++k)
        for (int b = 0; b < 3; ++b) gg[k][b] = G[k][0] * g[0][b] + G[k][1] * g[1][b] + G[k][2] * g[2][b];
      for (int k = 0; k < 6; ++k)
        for (int j = 0; j < 6; ++j) {
          const double v = gg[k][0] * G[j][0] + gg[k][1] * G[j][1] + gg[k][2] * G[j][2];
          u[(k * 6 + j) * ci * co + j0 * ci + c * nr + col] = static_cast<float>(v);
        }
    }
  });
}

namespace {
// M[q][t][j0 - m0 ..) = V[q][t][:] U[q][:, j0..j1) for the rows t < rows of one position q: V rows ci
// apart, M rows ldm apart (m: M[q]'s first row, at channel m0), in kernel tiles of at most mr rows.
void gemm_position(const direct::Kernels& K, const float* vq, int64_t rows, int64_t ci, const float* uq, int64_t co,
                   int64_t j0, int64_t j1, float* m, int64_t ldm, int64_t m0, int64_t mr) {
  const int64_t kPanel = K.panel, kc = std::min(kPanel, co) >= 64 ? 128 : 256;  // a panel's k slice: <= 32 KB
  const int64_t tiles_here = (rows + mr - 1) / mr, base = rows / tiles_here, extra = rows % tiles_here;
  for (int64_t c = j0; c < j1; c += kPanel) {
    const int64_t nr = std::min(kPanel, co - c);
    const int nv = static_cast<int>(nr / K.lanes);
    const float* bp = uq + c * ci;
    for (int64_t k0 = 0; k0 < ci; k0 += kc) {
      const int64_t len = std::min(kc, ci - k0);
      for (int64_t ti = 0, i0 = 0; ti < tiles_here; ++ti) {
        // rows per kernel call as equal as possible (K.rows[nv] >= mr for the narrower last panel)
        const int n_rows = static_cast<int>(base + (ti < extra ? 1 : 0));
        const float* a[direct::kMaxRows];
        for (int i = 0; i < n_rows; ++i) a[i] = vq + (i0 + i) * ci + k0;
        K.tile[nv][n_rows](a, bp + k0 * nr, nr, len, m + i0 * ldm + (c - m0), ldm, k0 == 0, k0 + len == ci,
                           direct::Epilogue{});
        i0 += n_rows;
      }
    }
  }
}

// The input transform of tiles [t0, t0 + tn) into v (tile t's row at v + (t - t0) * ci, positions ldv apart).
void input_tiles(const Problem& p, int64_t t0, int64_t tn, float* v, int64_t ldv) {
  const int64_t tw = (p.wo() + kOut - 1) / kOut, per_img = (p.ho() + kOut - 1) / kOut * tw, ci = p.ci;
  const float* z = zeros(ci);
  for (int64_t t = 0; t < tn; ++t) {
    const int64_t tile = t0 + t, img = tile / per_img, r = tile % per_img;
    const int64_t iy0 = r / tw * kOut - p.pad, ix0 = r % tw * kOut - p.pad;
    const float* src[kPos];
    for (int i = 0; i < 6; ++i)
      for (int j = 0; j < 6; ++j) {
        const int64_t iy = iy0 + i, ix = ix0 + j;
        src[6 * i + j] = iy >= 0 && iy < p.h && ix >= 0 && ix < p.w ? p.x + ((img * p.h + iy) * p.w + ix) * ci : z;
      }
    input_tile(src, ci, v + t * ci, ldv);
  }
}

// The output transform of tiles [t0, t0 + tn), channels [g0, g1), from m (tile t's row at m + (t - t0) * ldr,
// positions ldm apart), with the epilogue.
void output_tiles(const Problem& p, int64_t t0, int64_t tn, int64_t g0, int64_t g1, const float* m, int64_t ldr,
                  int64_t ldm) {
  const int64_t ho = p.ho(), wo = p.wo(), co = p.co, tw = (wo + kOut - 1) / kOut, per_img = (ho + kOut - 1) / kOut * tw;
  for (int64_t t = 0; t < tn; ++t) {
    const int64_t tile = t0 + t, img = tile / per_img, r = tile % per_img;
    const int64_t oy = r / tw * kOut, ox = r % tw * kOut;
    const int64_t at = ((img * ho + oy) * wo + ox) * co + g0;
    const OutTile o{p.y + at, p.residual ? p.residual + at : nullptr, wo * co, co,
                    static_cast<int>(std::min<int64_t>(kOut, ho - oy)), static_cast<int>(std::min<int64_t>(kOut, wo - ox))};
    output_tile(m + t * ldr, ldm, g1 - g0, o, p.scale ? p.scale + g0 : nullptr, p.shift ? p.shift + g0 : nullptr,
                p.relu);
  }
}
}  // namespace

void forward(const direct::Kernels& K, const Problem& p, const float* u) {
  g_calls.fetch_add(1, std::memory_order_relaxed);
  const int nt = pool_threads();
  const int64_t ci = p.ci, co = p.co, tiles = p.n * ((p.ho() + kOut - 1) / kOut) * ((p.wo() + kOut - 1) / kOut);
  const int64_t kPanel = K.panel, panels = (co + kPanel - 1) / kPanel;
  const int64_t mr = K.rows[std::min<int64_t>(kPanel, co) / K.lanes];
  if (ci * co > tiles * (ci + co)) {
    // The transformed weights outweigh the transformed input and products of all tiles (few tiles, many
    // channels: ResNet's 14x14 and 7x7 layers): three passes, so that every part of U is read once, by
    // the one task that multiplies it into all the tiles.
    Tensor vbuf = Tensor::empty({kPos * tiles * ci}), mbuf = Tensor::empty({kPos * tiles * co});
    float *V = vbuf.data<float>(), *M = mbuf.data<float>();
    const int64_t chunk = std::max<int64_t>(1, tiles / (4 * nt));
    const int64_t chunks = (tiles + chunk - 1) / chunk;
    pool_run(chunks, [&](int64_t c, int) {
      const int64_t t0 = c * chunk;
      input_tiles(p, t0, std::min(chunk, tiles - t0), V + t0 * ci, tiles * ci);
    });
    pool_run(kPos * panels, [&](int64_t task, int) {
      const int64_t q = task / panels, j0 = task % panels * kPanel;
      gemm_position(K, V + q * tiles * ci, tiles, ci, u + q * ci * co, co, j0, std::min(co, j0 + kPanel),
                    M + q * tiles * co, co, 0, mr);
    });
    pool_run(chunks, [&](int64_t c, int) {
      const int64_t t0 = c * chunk;
      output_tiles(p, t0, std::min(chunk, tiles - t0), 0, co, M + t0 * co, co, tiles * co);
    });
    return;
  }
  // Blocks of T tiles: V and M (36 x T x (ci + co) floats) within ~640 KB of L2, at least 2 kernel tiles of
  // rows; then, for parallelism, at least 4 tasks per thread where the tiles allow (down to mr rows), then
  // groups of panels (each task of a block transforms its input again: cheap beside the GEMMs).
  int64_t T = std::clamp<int64_t>((int64_t(640) << 10) / (4 * kPos * (ci + co)), 2 * mr, 96);
  int64_t groups = 1;
  auto tasks = [&] { return (tiles + T - 1) / T * groups; };
  while (tasks() < 4 * nt && T > mr) T = std::max(mr, T / 2);
  while (tasks() < 4 * nt && groups < panels) ++groups;
  T = std::min(T, tiles);
  const int64_t blocks = (tiles + T - 1) / T, per_group = (panels + groups - 1) / groups * kPanel;
  groups = (co + per_group - 1) / per_group;
  pool_run(blocks * groups, [&](int64_t task, int) {
    const int64_t t0 = task / groups * T, tn = std::min(T, tiles - t0);
    const int64_t g0 = task % groups * per_group, g1 = std::min(co, g0 + per_group), gw = g1 - g0;
    float* V = scratch(0, static_cast<size_t>(kPos * T * ci));
    float* M = scratch(1, static_cast<size_t>(kPos * T * gw));
    input_tiles(p, t0, tn, V, T * ci);
    for (int q = 0; q < kPos; ++q)
      gemm_position(K, V + q * T * ci, tn, ci, u + q * ci * co, co, g0, g1, M + q * T * gw, gw, g0, mr);
    output_tiles(p, t0, tn, g0, g1, M, gw, T * gw);
  });
}

bool enabled() {
  int v = g_enabled.load(std::memory_order_relaxed);
  if (v < 0) {
    const char* e = std::getenv("GEOLOC_CPU_WINOGRAD");
    v = e && std::strcmp(e, "0") == 0 ? 0 : 1;
    g_enabled.store(v, std::memory_order_relaxed);
  }
  return v == 1;
}

uint64_t calls() { return g_calls.load(std::memory_order_relaxed); }

void set_enabled(bool on) { g_enabled.store(on ? 1 : 0, std::memory_order_relaxed); }

}  // namespace geoloc::cpu::winograd
