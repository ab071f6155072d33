// Convolutions of the CPU backend: geoloc's implicit-GEMM kernels (direct_conv.hpp: AVX-512 or AVX2,
// whichever the runtime dispatch picked) where they apply, otherwise im2col tiles multiplied by Eigen's
// GEMM; the epilogue (bias or folded BN, residual, ReLU) fused into the only store. Inference's 3x3
// stride-1 convolutions go through Winograd F(4x4, 3x3) on the same kernels (winograd_conv.hpp).
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bf16.hpp"
#include "common.hpp"
#include "direct_conv.hpp"
#include "weight_cache.hpp"
#include "winograd_conv.hpp"
namespace geoloc::cpu {
using namespace detail;

namespace {
struct ConvGeom {
  int64_t n, h, w, ci, co, kh, kw, ho, wo, k;  // k = kh*kw*ci
  int stride, pad;
  bool direct() const { return kh == 1 && kw == 1 && stride == 1 && pad == 0; }
};

ConvGeom geom(const Tensor& x, const Tensor& w, const Conv2dArgs& a) {
  ConvGeom g{};
  g.n = x.dim(0), g.h = x.dim(1), g.w = x.dim(2), g.ci = x.dim(3);
  g.co = w.dim(0), g.kh = w.dim(1), g.kw = w.dim(2);
  g.stride = a.stride, g.pad = a.pad;
  g.ho = conv_out_size(g.h, g.kh, a.stride, a.pad);
  g.wo = conv_out_size(g.w, g.kw, a.stride, a.pad);
  g.k = g.kh * g.kw * g.ci;
  return g;
}

// ---- convolution engine
// Every convolution is a GEMM over rows r = (img, oh, ow) of the output: Y[M, Co] = col[M, K] W[Co, K]^T,
// where col is the im2col matrix (K = KH*KW*Ci). The rows are cut into tiles that the threads share
// out in ONE OpenMP region; each tile is gathered (im2col) into a per-thread buffer of a few MB and
// multiplied by a single-threaded Eigen GEMM (Eigen runs sequentially inside a parallel region).
// There is no nested or back-to-back threading (Eigen's own parallel GEMM synchronises its threads
// with busy-waits once per depth block, which collapses when the cores are shared with other work),
// the column matrix is never materialised whole, and the epilogue (bias / folded BN, residual,
// ReLU) runs on a tile while it is still in cache.

// Rows of the column matrix that one tile holds: about 1 MB of it (L2-sized) but at least min_rows
// (each tile's GEMM packs the whole weight matrix again: fewer rows than that and the packing costs more
// than the multiply), and, rows permitting, 4 tiles per thread, so that a thread that the OS preempts
// (the cores may be shared) holds up the others by one tile at most. Few tiles are made a multiple of
// the thread count.
int64_t tile_rows(int64_t m, int64_t k, int nt, int64_t min_rows = 128) {
  const int64_t target = std::max<int64_t>(min_rows, (int64_t(1) << 20) / (k * int64_t(sizeof(float))));
  int64_t tiles = std::max<int64_t>(1, (m + target - 1) / target);
  if (nt > 1) {
    tiles = std::max(tiles, std::min<int64_t>(4 * nt, m / min_rows));
    if (tiles < 4 * nt) tiles = (tiles + nt - 1) / nt * nt;
  }
  return std::max<int64_t>(1, (m + tiles - 1) / tiles);
}

// Per-thread scratch buffers (slot 0: column tiles, 1: partial filter gradients, 2: folded BN, 3: packed
// weights, 4: packed column blocks). The pool's threads are persistent, so they are reused across calls:
// no allocation per step.
float* thread_buffer(int slot, size_t n) {
  thread_local std::vector<float> bufs[5];
  if (bufs[slot].size() < n) bufs[slot].resize(n);
  return bufs[slot].data();
}

struct ConvEpilogue {
  const float* scale = nullptr;  // per output channel, or null
  const float* shift = nullptr;  // per output channel (bias, BN shift), or null
  bool relu = false;
};

// col[r - r0, (ky*kw + kx)*ci + c] = x[img, oh*s-p+ky, ow*s-p+kx, c] (0 outside) for rows r0..r1.
void im2col_rows(const float* x, float* col, const ConvGeom& g, int64_t r0, int64_t r1) {
  const int64_t per_img = g.ho * g.wo, run = g.kw * g.ci;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t img = r / per_img, rem = r % per_img, oh = rem / g.wo, ow = rem % g.wo;
    float* dst = col + (r - r0) * g.k;
    const float* src = x + img * g.h * g.w * g.ci;
    const int64_t ix0 = ow * g.stride - g.pad;
    // the kx with 0 <= ix0 + kx < w form one contiguous run of (kx1 - kx0) * ci floats in x
    const int64_t kx0 = std::max<int64_t>(0, -ix0), kx1 = std::min<int64_t>(g.kw, g.w - ix0);
    for (int64_t ky = 0; ky < g.kh; ++ky, dst += run) {
      const int64_t iy = oh * g.stride - g.pad + ky;
      if (iy < 0 || iy >= g.h || kx1 <= kx0) {
        std::memset(dst, 0, run * sizeof(float));
        continue;
      }
      if (kx0 > 0) std::memset(dst, 0, kx0 * g.ci * sizeof(float));
      std::memcpy(dst + kx0 * g.ci, src + (iy * g.w + ix0 + kx0) * g.ci, (kx1 - kx0) * g.ci * sizeof(float));
      if (kx1 < g.kw) std::memset(dst + kx1 * g.ci, 0, (g.kw - kx1) * g.ci * sizeof(float));
    }
  }
}

// The adjoint of im2col_rows: dx[img, iy, ix, c] += dcol[r - r0, ...] for rows r0..r1.
void col2im_rows(const float* dcol, float* dx, const ConvGeom& g, int64_t r0, int64_t r1) {
  const int64_t per_img = g.ho * g.wo, run = g.kw * g.ci;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t img = r / per_img, rem = r % per_img, oh = rem / g.wo, ow = rem % g.wo;
    const float* src = dcol + (r - r0) * g.k;
    float* dst = dx + img * g.h * g.w * g.ci;
    const int64_t ix0 = ow * g.stride - g.pad;
    const int64_t kx0 = std::max<int64_t>(0, -ix0), kx1 = std::min<int64_t>(g.kw, g.w - ix0);
    if (kx1 <= kx0) continue;
    const int64_t len = (kx1 - kx0) * g.ci;
    for (int64_t ky = 0; ky < g.kh; ++ky, src += run) {
      const int64_t iy = oh * g.stride - g.pad + ky;
      if (iy < 0 || iy >= g.h) continue;
      float* d = dst + (iy * g.w + ix0 + kx0) * g.ci;
      const float* s = src + kx0 * g.ci;
#pragma omp simd
      for (int64_t c = 0; c < len; ++c) d[c] += s[c];
    }
  }
}

// In-place epilogue on rows [0, m) of a [m, co] tile: y = relu?(y * scale + shift + residual).
void epilogue(float* y, int64_t m, int64_t co, const ConvEpilogue& e, const float* residual) {
  if (!e.scale && !e.shift && !residual && !e.relu) return;
  for (int64_t r = 0; r < m; ++r) {
    float* row = y + r * co;
    const float* res = residual ? residual + r * co : nullptr;
    if (e.scale) {
#pragma omp simd
      for (int64_t c = 0; c < co; ++c) row[c] *= e.scale[c];
    }
    if (e.shift) {
#pragma omp simd
      for (int64_t c = 0; c < co; ++c) row[c] += e.shift[c];
    }
    if (res) {
#pragma omp simd
      for (int64_t c = 0; c < co; ++c) row[c] += res[c];
    }
    if (e.relu) {
#pragma omp simd
      for (int64_t c = 0; c < co; ++c) row[c] = math::relu(row[c]);
    }
  }
}

// ---- GEMM with the weights packed once per call
// Eigen's GEMM packs both operands on every call, so a convolution cut into row tiles re-packed the whole
// weight matrix for every tile (~12% of inference). Here the weights are packed once per convolution, in
// exactly the layout and blocking that Eigen's own sequential GEMM would give them, and every tile only
// packs its own im2col rows and calls Eigen's micro-kernel (gebp) on the shared packed blocks. For the
// tile product Y[n, co] = col[n, k] W[co, k]^T, Eigen computes Y^T = W col^T with W as the packed
// left-hand side; the same internal calls (Eigen 3.4's gemm_pack_lhs / gemm_pack_rhs / gebp_kernel, and its
// blocking heuristic) are made here, so the arithmetic is Eigen's (sums in the same depth-block order).
// (The same for backward-data, with W^T packed, measured no faster in a training step and was left out:
// there the tiles are whole images, fewer and larger, so the per-tile repacking matters less.)
namespace egi = Eigen::internal;
using EIndex = Eigen::Index;
using GemmTraits = egi::gebp_traits<float, float>;
using WLhsMapper = egi::const_blas_data_mapper<float, EIndex, Eigen::RowMajor>;  // W [co, k] row-major
using ColRhsMapper = egi::const_blas_data_mapper<float, EIndex, Eigen::ColMajor>;  // col^T: [k, n], stride k
using YResMapper = egi::blas_data_mapper<float, EIndex, Eigen::ColMajor, Eigen::Unaligned, 1>;  // Y^T, stride co

constexpr int64_t kAlignFloats = 16;  // 64 bytes: gebp loads packed blocks with aligned loads
float* aligned_buffer(int slot, size_t n) {
  float* p = thread_buffer(slot, n + kAlignFloats);
  const auto a = reinterpret_cast<uintptr_t>(p);
  return reinterpret_cast<float*>((a + 63) & ~uintptr_t(63));
}

struct PackedWeights {
  EIndex co = 0, k = 0, mc = 0, kc = 0, nc = 0;  // the packed matrix is [co, k] (co: output columns of the tile)
  std::vector<int64_t> offset;  // of block (i, kb) at [i * nkb + kb], i over co in mc steps, kb over k in kc
  float* data = nullptr;
  int64_t nkb() const { return (k + kc - 1) / kc; }
  const float* block(EIndex i2, EIndex k2) const { return data + offset[(i2 / mc) * nkb() + k2 / kc]; }
};

// Packs the [co, k] matrix that `lhs` maps for tiles of up to `tile_n` rows; the buffer is the calling
// thread's slot 3.
template <class Mapper, int Order>
PackedWeights pack_weights_impl(const Mapper& lhs, int64_t co, int64_t k, int64_t tile_n) {
  PackedWeights p;
  p.co = co, p.k = k, p.kc = k, p.mc = co, p.nc = tile_n;
  egi::computeProductBlockingSizes<float, float, 1>(p.kc, p.mc, p.nc, EIndex(1));
  const int64_t nib = (co + p.mc - 1) / p.mc, nkb = p.nkb();
  p.offset.resize(static_cast<size_t>(nib * nkb));
  int64_t total = 0;
  for (int64_t ib = 0; ib < nib; ++ib)
    for (int64_t kb = 0; kb < nkb; ++kb) {
      p.offset[ib * nkb + kb] = total;
      const int64_t amc = std::min<int64_t>(p.mc, co - ib * p.mc), akc = std::min<int64_t>(p.kc, k - kb * p.kc);
      total += (amc * akc + kAlignFloats - 1) / kAlignFloats * kAlignFloats;
    }
  p.data = aligned_buffer(3, static_cast<size_t>(total));
  pool_run(nib * nkb, [&](int64_t b, int) {
    const int64_t ib = b / nkb, kb = b % nkb, i2 = ib * p.mc, k2 = kb * p.kc;
    const int64_t amc = std::min<int64_t>(p.mc, co - i2), akc = std::min<int64_t>(p.kc, k - k2);
    egi::gemm_pack_lhs<float, EIndex, Mapper, GemmTraits::mr, GemmTraits::LhsProgress,
                       typename GemmTraits::LhsPacket4Packing, Order>
        pack;
    pack(p.data + p.offset[b], lhs.getSubMapper(i2, k2), akc, amc);
  });
  return p;
}

// w [co, k] row-major, for y[n, co] = a[n, k] w^T (the forward).
PackedWeights pack_weights(const float* w, int64_t co, int64_t k, int64_t tile_n) {
  return pack_weights_impl<WLhsMapper, Eigen::RowMajor>(WLhsMapper(w, k), co, k, tile_n);
}

// y[n, co] = a[n, k] (row-major, row stride k) * W^T with W packed by pack_weights.
void gemm_packed(const PackedWeights& p, const float* a, int64_t n, float* y) {
  std::memset(y, 0, static_cast<size_t>(n * p.co) * sizeof(float));
  const ColRhsMapper rhs(a, p.k);
  const YResMapper res(y, p.co);
  egi::gemm_pack_rhs<float, EIndex, ColRhsMapper, GemmTraits::nr, Eigen::ColMajor> pack_rhs;
  egi::gebp_kernel<float, float, EIndex, YResMapper, GemmTraits::mr, GemmTraits::nr, false, false> gebp;
  float* blockB = aligned_buffer(4, static_cast<size_t>(p.kc * std::min<int64_t>(p.nc, n)));
  for (EIndex j2 = 0; j2 < n; j2 += p.nc) {
    const EIndex anc = std::min<EIndex>(p.nc, n - j2);
    for (EIndex k2 = 0; k2 < p.k; k2 += p.kc) {
      const EIndex akc = std::min<EIndex>(p.kc, p.k - k2);
      pack_rhs(blockB, rhs.getSubMapper(k2, j2), akc, anc);
      for (EIndex i2 = 0; i2 < p.co; i2 += p.mc)
        gebp(res.getSubMapper(i2, j2), p.block(i2, k2), blockB, std::min<EIndex>(p.mc, p.co - i2), akc, anc, 1.0f);
    }
  }
}

// Rows r0..r1 of the im2col matrix of x: x itself for a direct (1x1 stride-1) convolution, else
// gathered into this thread's buffer (tiles of at most tr rows).
const float* tile_input(const float* x, const ConvGeom& g, int64_t r0, int64_t r1, int64_t tr) {
  if (g.direct()) return x + r0 * g.ci;
  float* col = thread_buffer(0, static_cast<size_t>(tr * g.k));
  im2col_rows(x, col, g, r0, r1);
  return col;
}

bool direct_forward(const direct::Kernels& K, const float* x, const Tensor& w, float* y, const ConvGeom& g,
                    const ConvEpilogue& e, const float* residual);
bool winograd_forward(const direct::Kernels& K, const float* x, const Tensor& w, float* y, const ConvGeom& g,
                      const ConvEpilogue& e, const float* residual);

void conv_forward_engine(const float* x, const Tensor& w, float* y, const ConvGeom& g, const ConvEpilogue& e,
                         const float* residual) {
  if (const direct::Kernels* K = direct::active_kernels();
      K && (winograd_forward(*K, x, w, y, g, e, residual) || direct_forward(*K, x, w, y, g, e, residual)))
    return;
  const int nt = pool_threads();
  const int64_t m = g.n * g.ho * g.wo;
  const int64_t tr = tile_rows(m, g.k, nt);
  const int64_t tiles = (m + tr - 1) / tr;
  const PackedWeights pw = pack_weights(w.cdata<float>(), g.co, g.k, tr);
  pool_run(tiles, [&](int64_t t, int) {
    const int64_t r0 = t * tr, r1 = std::min(m, r0 + tr);
    gemm_packed(pw, tile_input(x, g, r0, r1, tr), r1 - r0, y + r0 * g.co);
    epilogue(y + r0 * g.co, r1 - r0, g.co, e, residual ? residual + r0 * g.co : nullptr);
  });
}

// dw += the partial filter gradients of slots 1..slots-1 (slot 0 is dw itself), in slot order.
void add_slots(float* dw, const Tensor& scratch, int64_t slots, int64_t wsize) {
  if (slots <= 1) return;
  const float* S = f(scratch);
  parallel_for(wsize, wsize, [&](int64_t i0, int64_t i1) {
    float* __restrict dw_ = dw;
    const float* __restrict s_ = S;
    for (int64_t p = 1; p < slots; ++p) {
      const float* part = s_ + (p - 1) * wsize;
#pragma omp simd
      for (int64_t i = i0; i < i1; ++i) dw_[i] += part[i];
    }
  });
}

// ---- implicit-GEMM convolution with geoloc's kernels (direct_conv.hpp; K = the dispatched instruction set's)
// No im2col: every output row reads its receptive field straight from the (zero-padded) input. The
// weights are packed once per call into k-major panels of K.panel output channels (64 for AVX-512, 16
// for AVX2). A task owns a block
// of output rows x channel panels; inside it, for each run of k (a slice of one ky's KW*Ci floats, sized
// so that a panel's slice stays in L1), every panel is multiplied into the rows' accumulators, MR rows
// at a time. The output block stays in L2 between runs of k; the epilogue is applied on the last run.
// The source of an implicit GEMM: activations [n, hp, wp, ci] (already padded), read by a kh x kw
// window with stride s, giving ho x wo outputs per image.
struct DirectGeom {
  const float* src;
  int64_t n, hp, wp, ci, kh, kw, s, ho, wo, co;
  int64_t run() const { return kw * ci; }  // contiguous floats of one window row
  int64_t k() const { return kh * kw * ci; }
  // where output row r (image, oh, ow) reads its window's first row
  const float* row(int64_t r) const {
    const int64_t img = r / (ho * wo), rem = r % (ho * wo);
    return src + ((img * hp + rem / wo * s) * wp + rem % wo * s) * ci;
  }
};

// x [n, h, w, c] with `pad` zeros on every side (x itself when pad == 0). The copy is recycled by the
// caching allocator.
const float* padded_input(const float* x, int64_t n, int64_t h, int64_t w, int64_t c, int64_t pad,
                          Tensor& storage) {
  if (pad == 0) return x;
  const int64_t hp = h + 2 * pad, wp = w + 2 * pad;
  storage = Tensor::empty({n * hp * wp * c});
  float* p = f(storage);
  parallel_for(n * hp, n * hp * wp * c, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t img = r / hp, y = r % hp - pad;
      float* dst = p + r * wp * c;
      if (y < 0 || y >= h) {
        std::memset(dst, 0, static_cast<size_t>(wp * c) * sizeof(float));
        continue;
      }
      std::memset(dst, 0, static_cast<size_t>(pad * c) * sizeof(float));
      std::memcpy(dst + pad * c, x + (img * h + y) * w * c, static_cast<size_t>(w * c) * sizeof(float));
      std::memset(dst + (pad + w) * c, 0, static_cast<size_t>(pad * c) * sizeof(float));
    }
  });
  return p;
}

// Packs B[k, j] = row(k)[j * jstride] (j < co, k < kdim; where jstride != 1, row(k) must be row(0) + k)
// into panels of K.panel channels: the panel of
// channels [j0, j0 + nr) is [kdim][nr] at data + j0 * kdim (nr = min(K.panel, co - j0), a multiple of
// 16), into data (co * kdim floats, 64-byte aligned).
template <class Row>
void pack_panels(const direct::Kernels& K, float* data, int64_t co, int64_t kdim, int64_t jstride, Row row) {
  const int64_t kPanel = K.panel;
  const int64_t panels = (co + kPanel - 1) / kPanel, kblk = 64, kblocks = (kdim + kblk - 1) / kblk;
  pool_run(panels * kblocks, [&](int64_t t, int) {
    const int64_t j0 = t / kblocks * kPanel, nr = std::min(kPanel, co - j0);
    const int64_t k0 = t % kblocks * kblk, k1 = std::min(kdim, k0 + kblk);
    float* panel = data + j0 * kdim;
    if (jstride == 1) {
      for (int64_t k = k0; k < k1; ++k) std::memcpy(panel + k * nr, row(k) + j0, static_cast<size_t>(nr) * 4);
      return;
    }
    // strided: row(k) == row(0) + k, i.e. B is the transpose of a [co, kdim] matrix with row stride
    // jstride; 16 x 16 blocks are transposed in registers
    const float* w = row(0);
    int64_t k = k0;
    for (; k + 16 <= k1; k += 16)
      for (int64_t j = 0; j < nr; j += 16) K.transpose16(w + (j0 + j) * jstride + k, jstride, panel + k * nr + j, nr);
    for (; k < k1; ++k)
      for (int64_t j = 0; j < nr; ++j) panel[k * nr + j] = w[(j0 + j) * jstride + k];
  });
}

// y[r, j] = epilogue(sum_k A[r, k] B[k, j]) for all rows r of the geometry; b from pack_panels.
void direct_conv(const direct::Kernels& K, const DirectGeom& d, const float* b, float* y, const ConvEpilogue& e,
                 const float* residual) {
  const int nt = pool_threads();
  const int64_t kPanel = K.panel;
  const int64_t m = d.n * d.ho * d.wo, co = d.co, run = d.run(), kdim = d.k();
  const int nv_max = static_cast<int>(std::min<int64_t>(kPanel, co) / K.lanes);
  const int64_t mr = K.rows[nv_max], panels = (co + kPanel - 1) / kPanel;
  // Tasks: blocks of tr rows x gp panels. Every weight a task reads is used by its tr rows (B traffic per
  // multiply-add: 1/tr), and its output block (tr x 64*gp floats) stays in L2 across the runs of k, so
  // it is kept near 256 KB. Rows first (up to 192), then channels; then, rows permitting, at least 4
  // tasks per thread (a preempted thread then holds the others up by one small task).
  int64_t gp = std::clamp<int64_t>((int64_t(256) << 10) / (192 * kPanel * 4), 1, panels);
  int64_t tr = std::clamp<int64_t>((int64_t(256) << 10) / (gp * kPanel * 4), 4 * mr, 512);
  auto tasks_for = [&](int64_t rows, int64_t g) { return (m + rows - 1) / rows * ((panels + g - 1) / g); };
  while (tasks_for(tr, gp) < 4 * nt && tr > 16 * mr) tr = std::max(16 * mr, tr / 2);
  while (tasks_for(tr, gp) < 4 * nt && gp > 1) gp = (gp + 1) / 2;
  while (tasks_for(tr, gp) < 4 * nt && tr > 4 * mr) tr = std::max(4 * mr, tr / 2);
  tr = std::min(tr, m);
  tr = (tr + mr - 1) / mr * mr;
  const int64_t row_tiles = (m + tr - 1) / tr, groups = (panels + gp - 1) / gp;
  const int64_t kc = std::min(kPanel, co) >= 64 ? 128 : 256;  // a panel's slice of k: 32 KB at most
  pool_run(row_tiles * groups, [&](int64_t t, int) {
    const int64_t r0 = t / groups * tr, r1 = std::min(m, r0 + tr);
    const int64_t c0 = t % groups * gp * kPanel, c1 = std::min(co, c0 + gp * kPanel);
    thread_local std::vector<const float*> rowp;
    rowp.resize(static_cast<size_t>(r1 - r0));
    for (int64_t r = r0; r < r1; ++r) rowp[r - r0] = d.row(r);
    for (int64_t ky = 0; ky < d.kh; ++ky)
      for (int64_t k0 = 0; k0 < run; k0 += kc) {
        const int64_t len = std::min(kc, run - k0), off = ky * d.wp * d.ci + k0, kb = ky * run + k0;
        const bool first = ky == 0 && k0 == 0, last = ky == d.kh - 1 && k0 + len == run;
        for (int64_t j0 = c0; j0 < c1; j0 += kPanel) {
          const int64_t nr = std::min(kPanel, co - j0);
          const int nv = static_cast<int>(nr / K.lanes), rows = K.rows[nv];
          const float* bp = b + j0 * kdim + kb * nr;
          // The block of B that this task reads next (the next panel at this run of k, else the first panel
          // at the next run) is prefetched into L2 while this one is multiplied, spread over the row tiles:
          // with few rows (batch 1) a block is used by only a few tiles, and a weight matrix larger than the
          // L3 (ResNet's layer4) otherwise comes from memory at the latency of its first tile.
          const float* next = nullptr;
          int64_t next_lines = 0;
          if (j0 + kPanel < c1) {
            const int64_t nr2 = std::min(kPanel, co - (j0 + kPanel));
            next = b + (j0 + kPanel) * kdim + kb * nr2;
            next_lines = len * nr2 / 16;
          } else if (!last) {
            const int64_t k0n = k0 + len < run ? k0 + len : 0, kyn = k0 + len < run ? ky : ky + 1;
            const int64_t nr2 = std::min(kPanel, co - c0);
            next = b + c0 * kdim + (kyn * run + k0n) * nr2;
            next_lines = std::min(kc, run - k0n) * nr2 / 16;
          }
          const int64_t tiles_here = (r1 - r0 + rows - 1) / rows;
          const int64_t lines_per_tile = (next_lines + tiles_here - 1) / tiles_here;
          int64_t line = 0;
          // The task's rows in tiles_here tiles of as equal a size as possible (49 rows: 4 of 6 and 5 of 5,
          // not 8 of 6 and a 1-row tile, whose few accumulators leave the FMA pipes waiting on latency).
          const int64_t tile_base = (r1 - r0) / tiles_here, tile_extra = (r1 - r0) % tiles_here;
          for (int64_t ti = 0, i0 = r0; ti < tiles_here; ++ti) {
            for (const int64_t end = std::min(next_lines, line + lines_per_tile); line < end; ++line)
              __builtin_prefetch(next + line * 16, 0, 2);
            const int n_rows = static_cast<int>(tile_base + (ti < tile_extra ? 1 : 0));
            // The output rows of the tile two ahead, on the first run of k (written), and its residual
            // rows, on the last (read): at batch 8 these blocks are far larger than the caches, and a
            // 1x1 convolution over few channels (ResNet-50's expanding 1x1 with its residual) otherwise
            // waits on memory at every tile.
            if (first || (last && residual))
              for (int64_t i = i0 + 2 * n_rows, i1 = std::min(r1, i0 + 3 * n_rows); i < i1; ++i)
                for (int64_t q = 0; q < nr; q += 16) {
                  if (first) __builtin_prefetch(y + i * co + j0 + q, 1, 3);
                  if (last && residual) __builtin_prefetch(residual + i * co + j0 + q, 0, 3);
                }
            // A 1x1 convolution reads each input row once per run of k (ResNet-50's reducing 1x1 over
            // 256-512 channels at batch 8: far larger than the caches): the same for its input rows. (A 3x3
            // convolution reads its rows kh times from the cache; prefetching them there gained nothing.)
            if (d.kh == 1 && j0 == c0)
              for (int64_t i = i0 + 2 * n_rows, i1 = std::min(r1, i0 + 3 * n_rows); i < i1; ++i)
                for (int64_t q = 0; q < len; q += 16) __builtin_prefetch(rowp[i - r0] + off + q, 0, 3);
            const float* a[direct::kMaxRows];
            for (int i = 0; i < n_rows; ++i) a[i] = rowp[i0 - r0 + i] + off;
            direct::Epilogue ep;
            if (last) {
              ep.scale = e.scale ? e.scale + j0 : nullptr;
              ep.shift = e.shift ? e.shift + j0 : nullptr;
              ep.residual = residual ? residual + i0 * co + j0 : nullptr;
              ep.ld_residual = co;
              ep.relu = e.relu;
            }
            K.tile[nv][n_rows](a, bp, nr, len, y + i0 * co + j0, co, first, last, ep);
            i0 += n_rows;
          }
        }
      }
  });
}

// The forward convolution through direct_conv, when it applies (channels in multiples of 16). The packed
// weights come from the weight cache (weight_cache.hpp) while w is unchanged, so that inference packs
// each weight once instead of on every call.
bool direct_forward(const direct::Kernels& K, const float* x, const Tensor& w, float* y, const ConvGeom& g,
                    const ConvEpilogue& e, const float* residual) {
  if (g.co % 16 != 0) return false;
  Tensor storage;
  const float* src = padded_input(x, g.n, g.h, g.w, g.ci, g.pad, storage);
  const int64_t k = g.k;
  const size_t floats = static_cast<size_t>(g.co * k);
  const float* wp = w.cdata<float>();
  const std::shared_ptr<const float> b =
      packed_weight(w, &K, k, floats, aligned_buffer(3, floats),
                    [&](float* dst) { pack_panels(K, dst, g.co, k, k, [&](int64_t kk) { return wp + kk; }); });
  direct_conv(K, {src, g.n, g.h + 2 * g.pad, g.w + 2 * g.pad, g.ci, g.kh, g.kw, g.stride, g.ho, g.wo, g.co},
              b.get(), y, e, residual);
  return true;
}

// The forward convolution through Winograd F(4x4, 3x3) (winograd_conv.hpp), when it applies: a 3x3
// stride-1 window, channels in multiples of 16, enough tiles to pay (winograd::pays), and a weight whose
// transform the weight cache keeps (a frozen one: inference). A weight being trained takes the direct
// kernels, whose sums its backward matches; transforming it again on every call would also cost more than
// it saves.
bool winograd_forward(const direct::Kernels& K, const float* x, const Tensor& w, float* y, const ConvGeom& g,
                      const ConvEpilogue& e, const float* residual) {
  if (g.kh != 3 || g.kw != 3 || g.stride != 1 || !winograd::enabled() || !winograd::supports(g.ci, g.co, g.ho, g.wo) ||
      !winograd::pays(g.n, g.ho, g.wo))
    return false;
  const size_t floats = winograd::weight_floats(g.ci, g.co);
  if (!weight_cacheable(w, floats)) return false;
  const float* wp = w.cdata<float>();
  // layout_arg -1: the Winograd transform (the direct panels use k = 9 ci, always positive)
  // no scratch buffer (a thread buffer of this size would stay allocated): the cache keeps the transform
  const std::shared_ptr<const float> u = packed_weight(w, &K, -1, floats, nullptr, [&](float* dst) {
    winograd::transform_weights(K, wp, g.ci, g.co, dst);
  });
  winograd::Problem p{x, g.n, g.h, g.w, g.ci, g.co, g.pad, y};
  p.scale = e.scale, p.shift = e.shift, p.residual = residual, p.relu = e.relu;
  winograd::forward(K, p, u.get());
  return true;
}

// Backward-data of a stride-1 convolution through direct_conv: dx is the convolution of dy, padded by
// kh-1-pad, with the weights flipped in space and transposed in channels:
// dx[n, y, x, c] = sum_{ky, kx, o} dy_pad[n, y + ky, x + kx, o] * w[o, kh-1-ky, kw-1-kx, c].
bool direct_backward_data(const direct::Kernels& K, const float* dy, const float* w, float* dx, const ConvGeom& g) {
  if (g.stride != 1 || g.kh != g.kw || g.pad > g.kh - 1 || g.ci % 16 != 0) return false;
  const int64_t p = g.kh - 1 - g.pad;
  Tensor storage;
  const float* src = padded_input(dy, g.n, g.ho, g.wo, g.co, p, storage);
  const int64_t kh = g.kh, kw = g.kw, co = g.co, ci = g.ci;
  float* b = aligned_buffer(3, static_cast<size_t>(ci * kh * kw * co));
  pack_panels(K, b, ci, kh * kw * co, 1, [&](int64_t k) {
    const int64_t ky = k / (kw * co), kx = k / co % kw, o = k % co;
    return w + ((o * kh + (kh - 1 - ky)) * kw + (kw - 1 - kx)) * ci;
  });
  direct_conv(K, {src, g.n, g.ho + 2 * p, g.wo + 2 * p, co, kh, kw, 1, g.h, g.w, ci}, b, dx, ConvEpilogue{}, nullptr);
  return true;
}

// Backward-filter through the filter kernels: dw[o, k] = sum_r dy[r, o] * A[r, k], A read through the
// same row pointers as the forward. The rows are cut into `slots` fixed runs (each summed into its own
// buffer, slot 0 being dw itself; the buffers are then added in slot order, so the result does not
// depend on the scheduling), and the output channels into groups, so that a layer with few rows still
// gives every thread work. Inside a task, chunks of kRowChunk rows: for each block of K.filter_nv vectors
// of k (a slice of one window row; 64 k for AVX-512, 16 for AVX2) and K.filter_rows channels, the
// accumulators run over the chunk's rows.
bool direct_backward_filter(const direct::Kernels& K, const float* x, const float* dy, float* dw, const ConvGeom& g) {
  if (g.ci % 16 != 0) return false;
  constexpr int64_t kRowChunk = 128;
  const int nt = pool_threads();
  Tensor storage;
  const DirectGeom d{padded_input(x, g.n, g.h, g.w, g.ci, g.pad, storage),
                     g.n, g.h + 2 * g.pad, g.w + 2 * g.pad, g.ci, g.kh, g.kw, g.stride, g.ho, g.wo, g.co};
  const int64_t m = g.n * g.ho * g.wo, kdim = d.k(), run = d.run(), co = g.co, wsize = co * kdim;
  const int64_t slots = std::clamp<int64_t>(m / 512, 1, nt == 1 ? 1 : 2 * nt);
  const int64_t frows = K.filter_rows, kblock = int64_t(K.lanes) * K.filter_nv;
  const int64_t max_groups = (co + frows - 1) / frows;
  const int64_t groups = std::min(max_groups, (4 * nt + slots - 1) / slots);
  const int64_t per_group = (max_groups + groups - 1) / groups * frows;
  Tensor scratch = slots > 1 ? Tensor::empty({(slots - 1) * wsize}) : Tensor();
  pool_run(slots * groups, [&](int64_t t, int) {
    const int64_t slot = t / groups, c0 = t % groups * per_group, c1 = std::min(co, c0 + per_group);
    if (c0 >= c1) return;
    float* acc = slot == 0 ? dw : f(scratch) + (slot - 1) * wsize;
    const int64_t r0 = m * slot / slots, r1 = m * (slot + 1) / slots;
    thread_local std::vector<const float*> rowp, ap;
    rowp.resize(static_cast<size_t>(r1 - r0));
    ap.resize(static_cast<size_t>(kRowChunk));
    for (int64_t r = r0; r < r1; ++r) rowp[r - r0] = d.row(r);
    for (int64_t q0 = r0; q0 < r1; q0 += kRowChunk) {
      const int64_t rows = std::min(kRowChunk, r1 - q0);
      for (int64_t ky = 0; ky < g.kh; ++ky)
        for (int64_t k0 = 0; k0 < run; k0 += kblock) {
          const int nv = static_cast<int>(std::min<int64_t>(kblock, run - k0) / K.lanes);
          const int64_t off = ky * d.wp * g.ci + k0, kidx = ky * run + k0;
          for (int64_t r = 0; r < rows; ++r) ap[r] = rowp[q0 - r0 + r] + off;
          for (int64_t c = c0; c < c1; c += frows) {
            const int mc = static_cast<int>(std::min<int64_t>(frows, c1 - c));
            K.filter[nv][mc](ap.data(), dy + q0 * co + c, co, rows, acc + c * kdim + kidx, kdim, q0 == r0);
          }
        }
    }
  });
  add_slots(dw, scratch, slots, wsize);
  return true;
}
}  // namespace


// ---------------------------------------------------------------- convolution
void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,
                    const Conv2dArgs& a) {
  if (bf16::widened("conv2d_forward", {x, w, bias, y},
                    [&](bf16::Widen& v) { conv2d_forward(v.in(x), v.in(w), v.in(bias), v.out(y), a); }))
    return;
  ConvEpilogue e;
  if (bias.defined()) e.shift = f(bias);
  conv_forward_engine(x.cdata<float>(), w, f(y), geom(x, w, a), e, nullptr);
}

void conv2d_bn_act_forward(const Tensor& x, const Tensor& w, const Tensor& gamma, const Tensor& beta,
                             const Tensor& running_mean, const Tensor& running_var, float eps,
                             const Tensor& residual, bool relu, const Tensor& y, const Conv2dArgs& a) {
  if (bf16::widened("conv2d_bn_act_forward", {x, w, residual, y}, [&](bf16::Widen& v) {
        conv2d_bn_act_forward(v.in(x), v.in(w), gamma, beta, running_mean, running_var, eps, v.in(residual),
                              relu, v.out(y), a);
      }))
    return;
  const int64_t co = w.dim(0);
  float* ss = thread_buffer(2, static_cast<size_t>(2 * co));
  const float *G = f(gamma), *B = f(beta), *RM = f(running_mean), *RV = f(running_var);
  for (int64_t j = 0; j < co; ++j) {  // the same folding as batch_norm_forward_eval
    ss[j] = G[j] / std::sqrt(RV[j] + eps);
    ss[co + j] = B[j] - RM[j] * ss[j];
  }
  ConvEpilogue e{ss, ss + co, relu};
  conv_forward_engine(x.cdata<float>(), w, f(y), geom(x, w, a), e,
                      residual.defined() ? residual.cdata<float>() : nullptr);
}

void conv2d_backward_data(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dArgs& a) {
  if (bf16::widened("conv2d_backward_data", {dy, w, dx},
                    [&](bf16::Widen& v) { conv2d_backward_data(v.in(dy), v.in(w), v.out(dx), a); }))
    return;
  const ConvGeom g = geom(dx, w, a);
  if (const direct::Kernels* K = direct::active_kernels(); K && direct_backward_data(*K, f(dy), w.cdata<float>(), f(dx), g))
    return;
  CMapM W(w.cdata<float>(), g.co, g.k);
  const int nt = pool_threads();
  const int64_t per_img = g.ho * g.wo, m = g.n * per_img;
  const float* DY = f(dy);
  float* DX = f(dx);
  if (g.direct()) {
    const int64_t tr = tile_rows(m, g.k, nt), tiles = (m + tr - 1) / tr;
    pool_run(tiles, [&](int64_t t, int) {
      const int64_t r0 = t * tr, r1 = std::min(m, r0 + tr);
      MapM(DX + r0 * g.ci, r1 - r0, g.ci).noalias() = CMapM(DY + r0 * g.co, r1 - r0, g.co) * W;
    });
    return;
  }
  // A task owns a run of whole images (the scatter of an image's rows writes only into that image),
  // as many as tile_rows asks for; within the task, tiles of rows as tile_rows cuts them.
  const int64_t tr = tile_rows(m, g.k, nt);
  const int64_t imgs = std::max<int64_t>(1, std::min(g.n, tr / per_img)), tasks = (g.n + imgs - 1) / imgs;
  const int64_t tr_in = tile_rows(imgs * per_img, g.k, 1);
  pool_run(tasks, [&](int64_t task, int) {
    const int64_t i0 = task * imgs, i1 = std::min(g.n, i0 + imgs);
    std::memset(DX + i0 * g.h * g.w * g.ci, 0,
                static_cast<size_t>((i1 - i0) * g.h * g.w * g.ci) * sizeof(float));
    float* col = thread_buffer(0, static_cast<size_t>(tr_in * g.k));
    for (int64_t r0 = i0 * per_img; r0 < i1 * per_img; r0 += tr_in) {
      const int64_t r1 = std::min(i1 * per_img, r0 + tr_in);
      MapM(col, r1 - r0, g.k).noalias() = CMapM(DY + r0 * g.co, r1 - r0, g.co) * W;
      col2im_rows(col, DX, g, r0, r1);
    }
  });
}

namespace {
// The filter gradient on Eigen's GEMM over im2col tiles (where the AVX-512 kernels do not apply).
void conv_backward_filter_eigen(const float* X, const float* DY, float* DW, const ConvGeom& g) {
  const int nt = pool_threads();
  const int64_t m = g.n * g.ho * g.wo, wsize = g.co * g.k;
  // Tiles of at least 256 rows: the depth of the dW GEMM; too short a depth wastes its packing.
  const int64_t tr = tile_rows(m, g.k, nt, 256), tiles = (m + tr - 1) / tr;
  // The tiles are cut into `slots` fixed runs, each summed into its own dW buffer (slot 0: dw itself),
  // then the buffers are added in slot order: the result does not depend on the scheduling.
  const int64_t slots = std::min<int64_t>(tiles, nt == 1 ? 1 : 2 * nt);
  Tensor scratch = slots > 1 ? Tensor::empty({(slots - 1) * wsize}) : Tensor();  // recycled by the allocator
  pool_run(slots, [&](int64_t slot, int) {
    MapM ACC(slot == 0 ? DW : f(scratch) + (slot - 1) * wsize, g.co, g.k);
    const int64_t t0 = slot * tiles / slots, t1 = (slot + 1) * tiles / slots;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t r0 = t * tr, r1 = std::min(m, r0 + tr);
      CMapM dY(DY + r0 * g.co, r1 - r0, g.co);
      CMapM B(tile_input(X, g, r0, r1, tr), r1 - r0, g.k);
      if (t == t0) {
        ACC.noalias() = dY.transpose() * B;
      } else {
        ACC.noalias() += dY.transpose() * B;
      }
    }
  });
  add_slots(DW, scratch, slots, wsize);
}
}  // namespace

void conv2d_backward_filter(const Tensor& x, const Tensor& dy, const Tensor& dw, const Tensor& dbias,
                            const Conv2dArgs& a) {
  if (bf16::widened("conv2d_backward_filter", {x, dy, dw, dbias}, [&](bf16::Widen& v) {
        conv2d_backward_filter(v.in(x), v.in(dy), v.out(dw), v.out(dbias), a);
      }))
    return;
  const ConvGeom g = geom(x, dw, a);
  const direct::Kernels* K = direct::active_kernels();
  if (!(K && direct_backward_filter(*K, f(x), f(dy), f(dw), g)))
    conv_backward_filter_eigen(f(x), f(dy), f(dw), g);
  if (dbias.defined()) MapV(f(dbias), g.co) = CMapM(f(dy), g.n * g.ho * g.wo, g.co).colwise().sum().transpose();
}

}  // namespace geoloc::cpu
