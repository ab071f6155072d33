// The CPU backend: the reference for every op. Convolutions and linear layers run on Eigen's GEMM
// over NHWC data; the rest are plain loops. Shapes were validated by ops.cpp.
//
// Threading: one level, geoloc's own pool (below), not OpenMP. Each op is cut into tasks that the
// threads take dynamically; Eigen always runs single-threaded inside a task. Idle threads block on a
// futex (std::atomic::wait) instead of spinning: libgomp's default spin-wait (and Eigen's own
// parallel GEMM, which busy-waits on its threads once per depth block) made a training step 2-4x
// slower whenever the cores were shared with other processes, and the wake-up latency of a blocked
// thread (tens of microseconds) is negligible against the milliseconds of one conv.
#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "geoloc/backend.hpp"
#include "geoloc/detail/math.hpp"
#include "cpu_direct_conv.hpp"

namespace geoloc::cpu {

namespace {
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapM = Eigen::Map<RowMat>;
using CMapM = Eigen::Map<const RowMat>;
using MapV = Eigen::Map<Eigen::VectorXf>;
using CMapV = Eigen::Map<const Eigen::VectorXf>;

constexpr int64_t kParallelMin = 1 << 15;  // below this many elements, a loop is not worth waking threads for

// ---- the thread pool
// run(n, fn) calls fn(task, thread) for every task in [0, n), spread over the caller (thread 0) and the
// workers (1..threads-1), each taking the next task from a shared counter. A call made from inside a
// task, or while another thread of the program is using the pool, runs inline on the calling thread.
class Pool {
 public:
  static Pool& get() {
    static Pool* p = new Pool();  // never destroyed: workers may outlive static destruction order
    return *p;
  }

  int threads() const { return threads_.load(); }

  void set_threads(int n) {
    std::lock_guard<std::mutex> lock(mu_);
    n = std::max(1, n);
    while (static_cast<int>(workers_.size()) < n - 1) {
      const int id = static_cast<int>(workers_.size()) + 1;
      // the generation is read here, not in the new thread: a run() that starts before the thread
      // does must still wake it
      workers_.emplace_back([this, id, seen = gen_.load()] { worker(id, seen); });
      workers_.back().detach();
    }
    threads_.store(n);
  }

  void run(int64_t ntasks, const std::function<void(int64_t, int)>& fn) {
    const int nt = threads();
    if (ntasks <= 0) return;
    std::unique_lock<std::mutex> lock(mu_, std::defer_lock);
    if (ntasks == 1 || nt == 1 || in_task_ || !lock.try_lock()) {
      for (int64_t t = 0; t < ntasks; ++t) fn(t, 0);
      return;
    }
    fn_ = &fn;
    ntasks_ = ntasks;
    next_.store(0);
    error_ = nullptr;
    active_.store(nt - 1);
    participants_ = nt;
    gen_.fetch_add(1);
    gen_.notify_all();
    work(0);
    for (int a = active_.load(); a != 0; a = active_.load()) active_.wait(a);
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  Pool() {
    Eigen::setNbThreads(1);  // Eigen runs inside the tasks; its own OpenMP threading must stay off
    const unsigned hw = std::thread::hardware_concurrency();
    set_threads(hw ? static_cast<int>(hw) : 1);
  }

  void work(int id) {
    in_task_ = true;
    try {
      for (int64_t t = next_.fetch_add(1); t < ntasks_; t = next_.fetch_add(1)) (*fn_)(t, id);
    } catch (...) {
      std::lock_guard<std::mutex> lock(err_mu_);
      if (!error_) error_ = std::current_exception();
    }
    in_task_ = false;
  }

  void worker(int id, uint32_t seen) {
    while (true) {
      gen_.wait(seen);
      seen = gen_.load();
      if (id < participants_) {
        work(id);
        if (active_.fetch_sub(1) == 1) active_.notify_all();
      }
    }
  }

  std::mutex mu_, err_mu_;
  std::vector<std::thread> workers_;
  std::atomic<int> threads_{1};
  std::atomic<uint32_t> gen_{0};
  std::atomic<int> active_{0};
  std::atomic<int64_t> next_{0};
  const std::function<void(int64_t, int)>* fn_ = nullptr;
  int64_t ntasks_ = 0;
  int participants_ = 1;
  std::exception_ptr error_;
  static thread_local bool in_task_;
};
thread_local bool Pool::in_task_ = false;

int pool_threads() { return Pool::get().threads(); }

// body(begin, end) over [0, n) in about 4 chunks per thread; on the calling thread alone when the
// loop's `work` (its element count) is below kParallelMin.
template <class F>
void parallel_for(int64_t n, int64_t work, F&& body) {
  const int nt = pool_threads();
  if (work < kParallelMin || nt == 1) {
    if (n > 0) body(int64_t(0), n);
    return;
  }
  const int64_t chunks = std::min<int64_t>(n, 4 * nt), step = (n + chunks - 1) / chunks;
  Pool::get().run((n + step - 1) / step,
                  [&](int64_t c, int) { body(c * step, std::min(n, (c + 1) * step)); });
}

float* f(const Tensor& t) { return t.data<float>(); }

// GEOLOC_CPU_DIRECT_CONV=0 turns geoloc's AVX-512 convolution kernels off (the Eigen path is used), for
// comparisons.
bool direct_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("GEOLOC_CPU_DIRECT_CONV");
    return GEOLOC_DIRECT_CONV && !(v && std::string(v) == "0");
  }();
  return on;
}

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
  Pool::get().run(nib * nkb, [&](int64_t b, int) {
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

bool direct_forward(const float* x, const float* w, float* y, const ConvGeom& g, const ConvEpilogue& e,
                    const float* residual);

void conv_forward_engine(const float* x, const float* w, float* y, const ConvGeom& g, const ConvEpilogue& e,
                         const float* residual) {
  if (direct_enabled() && direct_forward(x, w, y, g, e, residual)) return;
  const int nt = pool_threads();
  const int64_t m = g.n * g.ho * g.wo;
  const int64_t tr = tile_rows(m, g.k, nt);
  const int64_t tiles = (m + tr - 1) / tr;
  const PackedWeights pw = pack_weights(w, g.co, g.k, tr);
  Pool::get().run(tiles, [&](int64_t t, int) {
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

#if GEOLOC_DIRECT_CONV
// ---- implicit-GEMM convolution with geoloc's AVX-512 kernels (cpu_direct_conv.hpp)
// No im2col: every output row reads its receptive field straight from the (zero-padded) input. The
// weights are packed once per call into k-major panels of up to 64 output channels. A task owns a block
// of output rows x channel panels; inside it, for each run of k (a slice of one ky's KW*Ci floats, sized
// so that a panel's slice stays in L1), every panel is multiplied into the rows' accumulators, MR rows
// at a time. The output block stays in L2 between runs of k; the epilogue is applied on the last run.
constexpr int64_t kPanel = 64;  // output channels per packed panel (4 AVX-512 vectors)

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
// into panels of kPanel channels: the panel of
// channels [j0, j0 + nr) is [kdim][nr] at data + j0 * kdim (nr = min(kPanel, co - j0), a multiple of
// 16). The buffer is the calling thread's slot 3 (64-byte aligned).
template <class Row>
const float* pack_panels(int64_t co, int64_t kdim, int64_t jstride, Row row) {
  float* data = aligned_buffer(3, static_cast<size_t>(co * kdim));
  const int64_t panels = (co + kPanel - 1) / kPanel, kblk = 64, kblocks = (kdim + kblk - 1) / kblk;
  Pool::get().run(panels * kblocks, [&](int64_t t, int) {
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
      for (int64_t j = 0; j < nr; j += 16) direct::transpose16(w + (j0 + j) * jstride + k, jstride, panel + k * nr + j, nr);
    for (; k < k1; ++k)
      for (int64_t j = 0; j < nr; ++j) panel[k * nr + j] = w[(j0 + j) * jstride + k];
  });
  return data;
}

// y[r, j] = epilogue(sum_k A[r, k] B[k, j]) for all rows r of the geometry; b from pack_panels.
void direct_conv(const DirectGeom& d, const float* b, float* y, const ConvEpilogue& e, const float* residual) {
  const int nt = pool_threads();
  const int64_t m = d.n * d.ho * d.wo, co = d.co, run = d.run(), kdim = d.k();
  const int nv_max = static_cast<int>(std::min<int64_t>(4, co / 16));
  const int64_t mr = direct::rows_for(nv_max), panels = (co + kPanel - 1) / kPanel;
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
  const int64_t kc = nv_max >= 4 ? 128 : 256;  // a panel's slice of k: kc x 64 floats = 32 KB at most
  Pool::get().run(row_tiles * groups, [&](int64_t t, int) {
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
          const int nv = static_cast<int>(nr / 16), rows = direct::rows_for(nv);
          const float* bp = b + j0 * kdim + kb * nr;
          for (int64_t i0 = r0; i0 < r1; i0 += rows) {
            const int n_rows = static_cast<int>(std::min<int64_t>(rows, r1 - i0));
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
            direct::tile_fn(n_rows, nv)(a, bp, nr, len, y + i0 * co + j0, co, first, last, ep);
          }
        }
      }
  });
}

// The forward convolution through direct_conv, when it applies (channels in multiples of 16).
bool direct_forward(const float* x, const float* w, float* y, const ConvGeom& g, const ConvEpilogue& e,
                    const float* residual) {
  if (g.co % 16 != 0) return false;
  Tensor storage;
  const float* src = padded_input(x, g.n, g.h, g.w, g.ci, g.pad, storage);
  const int64_t k = g.k;
  const float* b = pack_panels(g.co, k, k, [&](int64_t kk) { return w + kk; });
  direct_conv({src, g.n, g.h + 2 * g.pad, g.w + 2 * g.pad, g.ci, g.kh, g.kw, g.stride, g.ho, g.wo, g.co}, b, y,
              e, residual);
  return true;
}

// Backward-data of a stride-1 convolution through direct_conv: dx is the convolution of dy, padded by
// kh-1-pad, with the weights flipped in space and transposed in channels:
// dx[n, y, x, c] = sum_{ky, kx, o} dy_pad[n, y + ky, x + kx, o] * w[o, kh-1-ky, kw-1-kx, c].
bool direct_backward_data(const float* dy, const float* w, float* dx, const ConvGeom& g) {
  if (g.stride != 1 || g.kh != g.kw || g.pad > g.kh - 1 || g.ci % 16 != 0) return false;
  const int64_t p = g.kh - 1 - g.pad;
  Tensor storage;
  const float* src = padded_input(dy, g.n, g.ho, g.wo, g.co, p, storage);
  const int64_t kh = g.kh, kw = g.kw, co = g.co, ci = g.ci;
  const float* b = pack_panels(ci, kh * kw * co, 1, [&](int64_t k) {
    const int64_t ky = k / (kw * co), kx = k / co % kw, o = k % co;
    return w + ((o * kh + (kh - 1 - ky)) * kw + (kw - 1 - kx)) * ci;
  });
  direct_conv({src, g.n, g.ho + 2 * p, g.wo + 2 * p, co, kh, kw, 1, g.h, g.w, ci}, b, dx, ConvEpilogue{}, nullptr);
  return true;
}

// Backward-filter through the filter kernels: dw[o, k] = sum_r dy[r, o] * A[r, k], A read through the
// same row pointers as the forward. The rows are cut into `slots` fixed runs (each summed into its own
// buffer, slot 0 being dw itself; the buffers are then added in slot order, so the result does not
// depend on the scheduling), and the output channels into groups, so that a layer with few rows still
// gives every thread work. Inside a task, chunks of kRowChunk rows: for each block of 64 k (a slice of
// one window row) and 6 channels, the 24 accumulators run over the chunk's rows.
bool direct_backward_filter(const float* x, const float* dy, float* dw, const ConvGeom& g) {
  if (g.ci % 16 != 0) return false;
  constexpr int64_t kRowChunk = 128;
  const int nt = pool_threads();
  Tensor storage;
  const DirectGeom d{padded_input(x, g.n, g.h, g.w, g.ci, g.pad, storage),
                     g.n, g.h + 2 * g.pad, g.w + 2 * g.pad, g.ci, g.kh, g.kw, g.stride, g.ho, g.wo, g.co};
  const int64_t m = g.n * g.ho * g.wo, kdim = d.k(), run = d.run(), co = g.co, wsize = co * kdim;
  const int64_t slots = std::clamp<int64_t>(m / 512, 1, nt == 1 ? 1 : 2 * nt);
  const int64_t max_groups = (co + direct::kFilterRows - 1) / direct::kFilterRows;
  const int64_t groups = std::min(max_groups, (4 * nt + slots - 1) / slots);
  const int64_t per_group = (max_groups + groups - 1) / groups * direct::kFilterRows;
  Tensor scratch = slots > 1 ? Tensor::empty({(slots - 1) * wsize}) : Tensor();
  Pool::get().run(slots * groups, [&](int64_t t, int) {
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
        for (int64_t k0 = 0; k0 < run; k0 += 64) {
          const int nv = static_cast<int>(std::min<int64_t>(64, run - k0) / 16);
          const int64_t off = ky * d.wp * g.ci + k0, kidx = ky * run + k0;
          for (int64_t r = 0; r < rows; ++r) ap[r] = rowp[q0 - r0 + r] + off;
          for (int64_t c = c0; c < c1; c += direct::kFilterRows) {
            const int mc = static_cast<int>(std::min<int64_t>(direct::kFilterRows, c1 - c));
            direct::filter_fn(mc, nv)(ap.data(), dy + q0 * co + c, co, rows, acc + c * kdim + kidx, kdim, q0 == r0);
          }
        }
    }
  });
  add_slots(dw, scratch, slots, wsize);
  return true;
}
#else
bool direct_backward_filter(const float*, const float*, float*, const ConvGeom&) { return false; }
bool direct_forward(const float*, const float*, float*, const ConvGeom&, const ConvEpilogue&, const float*) {
  return false;
}
bool direct_backward_data(const float*, const float*, float*, const ConvGeom&) { return false; }
#endif

// Row blocks of a reduction over [M, C]: a fixed split (not by thread), so results do not depend on
// the scheduling. Accumulation is in double, as before the thread pool (float partial sums measurably
// worsened the ResNet-50 gradient parity).
int64_t reduction_blocks(int64_t m, int64_t c) {
  return m * c < kParallelMin ? 1 : std::min<int64_t>(4 * pool_threads(), std::max<int64_t>(1, m / 64));
}

void channel_sums(const float* x, int64_t m, int64_t c, std::vector<double>& sum,
                  std::vector<double>& sumsq) {
  const int64_t blocks = reduction_blocks(m, c), step = (m + blocks - 1) / blocks;
  std::vector<double> part(static_cast<size_t>(2 * blocks * c), 0.0);
  Pool::get().run(blocks, [&](int64_t b, int) {
    double* __restrict s = part.data() + 2 * b * c;
    double* __restrict q = s + c;
    for (int64_t r = b * step; r < std::min(m, (b + 1) * step); ++r) {
      const float* __restrict row = x + r * c;
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) {
        s[j] += row[j];
        q[j] += static_cast<double>(row[j]) * row[j];
      }
    }
  });
  sum.assign(c, 0.0);
  sumsq.assign(c, 0.0);
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t j = 0; j < c; ++j) {
      sum[j] += part[2 * b * c + j];
      sumsq[j] += part[2 * b * c + c + j];
    }
}

int64_t channels(const Tensor& x) { return x.dim(-1); }
int64_t rows(const Tensor& x) { return x.numel() / x.dim(-1); }
}  // namespace

void set_num_threads(int n) {
  const unsigned hw = std::thread::hardware_concurrency();
  Pool::get().set_threads(n > 0 ? n : (hw ? static_cast<int>(hw) : 1));
}
int num_threads() { return pool_threads(); }
void run_tasks(int64_t n, const std::function<void(int64_t)>& fn) {
  Pool::get().run(n, [&](int64_t t, int) { fn(t); });
}

// ---------------------------------------------------------------- convolution
void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y,
                    const Conv2dArgs& a) {
  ConvEpilogue e;
  if (bias.defined()) e.shift = f(bias);
  conv_forward_engine(f(x), f(w), f(y), geom(x, w, a), e, nullptr);
}

void conv2d_bn_fused_forward(const Tensor& x, const Tensor& w, const Tensor& gamma, const Tensor& beta,
                             const Tensor& running_mean, const Tensor& running_var, float eps,
                             const Tensor& residual, bool relu, const Tensor& y, const Conv2dArgs& a) {
  const int64_t co = w.dim(0);
  float* ss = thread_buffer(2, static_cast<size_t>(2 * co));
  const float *G = f(gamma), *B = f(beta), *RM = f(running_mean), *RV = f(running_var);
  for (int64_t j = 0; j < co; ++j) {  // the same folding as batch_norm_forward_eval
    ss[j] = G[j] / std::sqrt(RV[j] + eps);
    ss[co + j] = B[j] - RM[j] * ss[j];
  }
  ConvEpilogue e{ss, ss + co, relu};
  conv_forward_engine(f(x), f(w), f(y), geom(x, w, a), e, residual.defined() ? f(residual) : nullptr);
}

void conv2d_backward_data(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dArgs& a) {
  const ConvGeom g = geom(dx, w, a);
  if (direct_enabled() && direct_backward_data(f(dy), f(w), f(dx), g)) return;
  CMapM W(f(w), g.co, g.k);
  const int nt = pool_threads();
  const int64_t per_img = g.ho * g.wo, m = g.n * per_img;
  const float* DY = f(dy);
  float* DX = f(dx);
  if (g.direct()) {
    const int64_t tr = tile_rows(m, g.k, nt), tiles = (m + tr - 1) / tr;
    Pool::get().run(tiles, [&](int64_t t, int) {
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
  Pool::get().run(tasks, [&](int64_t task, int) {
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
  Pool::get().run(slots, [&](int64_t slot, int) {
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
  const ConvGeom g = geom(x, dw, a);
  if (!(direct_enabled() && direct_backward_filter(f(x), f(dy), f(dw), g)))
    conv_backward_filter_eigen(f(x), f(dy), f(dw), g);
  if (dbias.defined()) MapV(f(dbias), g.co) = CMapM(f(dy), g.n * g.ho * g.wo, g.co).colwise().sum().transpose();
}

// ---------------------------------------------------------------- batch norm (channels last)
namespace {
// BN folded into y = x * scale + shift per channel, from the saved batch statistics. One function, so
// that the backward of the fused BN + ReLU recomputes exactly the forward's pre-activation values.
void bn_fold(const float* G, const float* B, const float* mean, const float* invstd, int64_t c, float* scale,
             float* shift) {
  for (int64_t j = 0; j < c; ++j) {
    scale[j] = invstd[j] * G[j];
    shift[j] = B[j] - mean[j] * scale[j];
  }
}

// Training BN: statistics, running statistics, then y = act(x * scale + shift (+ residual)).
template <bool Res, bool Relu>
void bn_train_impl(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                   const Tensor& running_var, float momentum, float eps, const float* RES, const Tensor& y,
                   const Tensor& save_mean, const Tensor& save_invstd) {
  const int64_t m = rows(x), c = channels(x);
  std::vector<double> sum, sumsq;
  channel_sums(f(x), m, c, sum, sumsq);
  float *mean = f(save_mean), *invstd = f(save_invstd), *rm = f(running_mean), *rv = f(running_var);
  for (int64_t j = 0; j < c; ++j) {
    double mu = sum[j] / m;
    double var = std::max(0.0, sumsq[j] / m - mu * mu);
    mean[j] = static_cast<float>(mu);
    invstd[j] = static_cast<float>(1.0 / std::sqrt(var + eps));
    double unbiased = m > 1 ? var * m / (m - 1) : var;
    rm[j] = static_cast<float>((1.0 - momentum) * rm[j] + momentum * mu);
    rv[j] = static_cast<float>((1.0 - momentum) * rv[j] + momentum * unbiased);
  }
  const float *X = f(x), *G = f(gamma), *B = f(beta);
  float* Y = f(y);
  std::vector<float> scale(c), shift(c);
  bn_fold(G, B, mean, invstd, c, scale.data(), shift.data());
  parallel_for(m, m * c, [&](int64_t r0, int64_t r1) {
    const float* __restrict x_ = X;
    const float* __restrict res_ = RES;
    float* __restrict y_ = Y;
    const float *sc = scale.data(), *sh = shift.data();
    for (int64_t r = r0; r < r1; ++r)
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) {
        float v = x_[r * c + j] * sc[j] + sh[j];
        if constexpr (Res) v += res_[r * c + j];
        if constexpr (Relu) v = math::relu(v);
        y_[r * c + j] = v;
      }
  });
}
}  // namespace

void batch_norm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                              const Tensor& running_mean, const Tensor& running_var, float momentum,
                              float eps, const Tensor& y, const Tensor& save_mean,
                              const Tensor& save_invstd) {
  bn_train_impl<false, false>(x, gamma, beta, running_mean, running_var, momentum, eps, nullptr, y, save_mean,
                              save_invstd);
}

void batch_norm_act_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                  const Tensor& running_mean, const Tensor& running_var, float momentum,
                                  float eps, const Tensor& residual, bool relu, const Tensor& y,
                                  const Tensor& save_mean, const Tensor& save_invstd) {
  const float* res = residual.defined() ? f(residual) : nullptr;
  if (res && relu)
    bn_train_impl<true, true>(x, gamma, beta, running_mean, running_var, momentum, eps, res, y, save_mean,
                              save_invstd);
  else if (res)
    bn_train_impl<true, false>(x, gamma, beta, running_mean, running_var, momentum, eps, res, y, save_mean,
                               save_invstd);
  else if (relu)
    bn_train_impl<false, true>(x, gamma, beta, running_mean, running_var, momentum, eps, nullptr, y, save_mean,
                               save_invstd);
  else
    bn_train_impl<false, false>(x, gamma, beta, running_mean, running_var, momentum, eps, nullptr, y, save_mean,
                                save_invstd);
}

void batch_norm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                             const Tensor& running_mean, const Tensor& running_var, float eps,
                             const Tensor& y) {
  const int64_t m = rows(x), c = channels(x);
  const float *X = f(x), *G = f(gamma), *B = f(beta), *rm = f(running_mean), *rv = f(running_var);
  float* Y = f(y);
  std::vector<float> scale(c), shift(c);
  for (int64_t j = 0; j < c; ++j) {
    scale[j] = G[j] / std::sqrt(rv[j] + eps);
    shift[j] = B[j] - rm[j] * scale[j];
  }
  parallel_for(m, m * c, [&](int64_t r0, int64_t r1) {
    const float* __restrict x_ = X;
    float* __restrict y_ = Y;
    const float *sc = scale.data(), *sh = shift.data();
    for (int64_t r = r0; r < r1; ++r)
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) y_[r * c + j] = x_[r * c + j] * sc[j] + sh[j];
  });
}

namespace {
// Training BN backward. With Relu, dy is the gradient of relu(bn(x)): it is masked where the
// pre-activation x * scale + shift (recomputed with bn_fold, as in the forward) is not > 0, which is
// relu_backward folded into both passes, so the masked gradient is never written out.
template <bool Relu>
void bn_backward_impl(const Tensor& dy, const Tensor& x, const Tensor& gamma, const float* BETA,
                      const Tensor& save_mean, const Tensor& save_invstd, const Tensor& dx, const Tensor& dgamma,
                      const Tensor& dbeta) {
  const int64_t m = rows(x), c = channels(x);
  const float *X = f(x), *DY = f(dy), *G = f(gamma), *mean = f(save_mean), *invstd = f(save_invstd);
  std::vector<float> fsc, fsh;
  if constexpr (Relu) {
    fsc.resize(c);
    fsh.resize(c);
    bn_fold(G, BETA, mean, invstd, c, fsc.data(), fsh.data());
  }
  const float *psc = fsc.data(), *psh = fsh.data();
  // sum(dy) and sum(dy * xhat) per channel, with xhat = (x - mean) * invstd: invstd is applied once at the
  // end
  const int64_t blocks = reduction_blocks(m, c), step = (m + blocks - 1) / blocks;
  std::vector<double> part(static_cast<size_t>(2 * blocks * c), 0.0);
  Pool::get().run(blocks, [&](int64_t blk, int) {
    double* __restrict a = part.data() + 2 * blk * c;
    double* __restrict b = a + c;
    std::vector<float> masked(Relu ? c : 0);  // one row of the masked dy (a select in the double loop
    float* __restrict dm = masked.data();      // below would not vectorise)
    const float* __restrict sc = psc;
    const float* __restrict sh = psh;
    for (int64_t r = blk * step; r < std::min(m, (blk + 1) * step); ++r) {
      const float* __restrict d = DY + r * c, * __restrict xr = X + r * c;
      if constexpr (Relu) {
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) dm[j] = xr[j] * sc[j] + sh[j] > 0.0f ? d[j] : 0.0f;
        d = dm;
      }
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) {
        a[j] += d[j];
        b[j] += static_cast<double>(d[j]) * (xr[j] - mean[j]);
      }
    }
  });
  std::vector<double> sdy(c, 0.0), sdyx(c, 0.0);
  for (int64_t blk = 0; blk < blocks; ++blk)
    for (int64_t j = 0; j < c; ++j) {
      sdy[j] += part[2 * blk * c + j];
      sdyx[j] += part[2 * blk * c + c + j];
    }
  for (int64_t j = 0; j < c; ++j) sdyx[j] *= invstd[j];
  if (dgamma.defined())
    for (int64_t j = 0; j < c; ++j) f(dgamma)[j] = static_cast<float>(sdyx[j]);
  if (dbeta.defined())
    for (int64_t j = 0; j < c; ++j) f(dbeta)[j] = static_cast<float>(sdy[j]);
  if (!dx.defined()) return;
  std::vector<float> k1(c), mdy(c), mdyx(c);
  for (int64_t j = 0; j < c; ++j) {
    k1[j] = G[j] * invstd[j];
    mdy[j] = static_cast<float>(sdy[j] / m);
    mdyx[j] = static_cast<float>(sdyx[j] / m);
  }
  float* DX = f(dx);
  parallel_for(m, m * c, [&](int64_t r0, int64_t r1) {
    const float* __restrict x_ = X;
    float* __restrict dx_ = DX;
    const float* __restrict dy_ = DY;
    const float *mu = mean, *is = invstd, *k = k1.data(), *a = mdy.data(), *b = mdyx.data();
    for (int64_t r = r0; r < r1; ++r)
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) {
        const float xv = x_[r * c + j];
        float dv = dy_[r * c + j];
        if constexpr (Relu) dv = xv * psc[j] + psh[j] > 0.0f ? dv : 0.0f;
        const float xhat = (xv - mu[j]) * is[j];
        dx_[r * c + j] = k[j] * (dv - a[j] - xhat * b[j]);
      }
  });
}
}  // namespace

void batch_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& save_mean,
                         const Tensor& save_invstd, const Tensor& dx, const Tensor& dgamma,
                         const Tensor& dbeta) {
  bn_backward_impl<false>(dy, x, gamma, nullptr, save_mean, save_invstd, dx, dgamma, dbeta);
}

void batch_norm_relu_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                              const Tensor& save_mean, const Tensor& save_invstd, const Tensor& dx,
                              const Tensor& dgamma, const Tensor& dbeta) {
  bn_backward_impl<true>(dy, x, gamma, f(beta), save_mean, save_invstd, dx, dgamma, dbeta);
}

// ---------------------------------------------------------------- elementwise
void relu_forward(const Tensor& x, const Tensor& y) {
  const int64_t n = x.numel();
  const float* X = f(x);
  float* Y = f(y);
  parallel_for(n, n, [&](int64_t i0, int64_t i1) {
    const float* __restrict x_ = X;
    float* __restrict y_ = Y;
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) y_[i] = math::relu(x_[i]);
  });
}

void relu_backward(const Tensor& dy, const Tensor& y, const Tensor& dx) {
  const int64_t n = y.numel();
  const float *DY = f(dy), *Y = f(y);
  float* DX = f(dx);
  parallel_for(n, n, [&](int64_t i0, int64_t i1) {
    const float* __restrict dy_ = DY;
    float* __restrict dx_ = DX;
    const float* __restrict y_ = Y;
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) dx_[i] = y_[i] > 0.0f ? dy_[i] : 0.0f;
  });
}

void add_forward(const Tensor& a, const Tensor& b, const Tensor& y) {
  const int64_t n = a.numel();
  const float *A = f(a), *B = f(b);
  float* Y = f(y);
  parallel_for(n, n, [&](int64_t i0, int64_t i1) {
    const float* __restrict a_ = A;
    float* __restrict y_ = Y;
    const float* __restrict b_ = B;
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) y_[i] = a_[i] + b_[i];
  });
}

void add_relu_forward(const Tensor& a, const Tensor& b, const Tensor& y) {
  const int64_t n = a.numel();
  const float *A = f(a), *B = f(b);
  float* Y = f(y);
  parallel_for(n, n, [&](int64_t i0, int64_t i1) {
    const float* __restrict a_ = A;
    float* __restrict y_ = Y;
    const float* __restrict b_ = B;
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) y_[i] = math::relu(a_[i] + b_[i]);
  });
}

void axpy(float alpha, const Tensor& src, const Tensor& dst) {
  const int64_t n = src.numel();
  const float* S = f(src);
  float* D = f(dst);
  parallel_for(n, n, [&](int64_t i0, int64_t i1) {
    const float* __restrict s_ = S;
    float* __restrict d_ = D;
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) d_[i] += alpha * s_[i];
  });
}

void scale(const Tensor& x, float alpha, const Tensor& y) {
  const int64_t n = x.numel();
  const float* X = f(x);
  float* Y = f(y);
  parallel_for(n, n, [&](int64_t i0, int64_t i1) {
    const float* __restrict x_ = X;
    float* __restrict y_ = Y;
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) y_[i] = alpha * x_[i];
  });
}

void fill(const Tensor& y, float value) { std::fill_n(f(y), y.numel(), value); }

// ---------------------------------------------------------------- pooling
void max_pool2d_forward(const Tensor& x, const Tensor& y, const Tensor& argmax, const Pool2dArgs& a) {
  const int64_t n = x.dim(0), h = x.dim(1), w = x.dim(2), c = x.dim(3), ho = y.dim(1), wo = y.dim(2);
  const float* X = f(x);
  float* Y = f(y);
  int32_t* I = argmax.data<int32_t>();
  parallel_for(n * ho, y.numel(), [&](int64_t q0, int64_t q1) {
    const float* __restrict x_ = X;
    float* __restrict y_ = Y;
    int32_t* __restrict i_ = I;
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t b = q / ho, oh = q % ho;
      for (int64_t ow = 0; ow < wo; ++ow) {
        float* yo = y_ + ((b * ho + oh) * wo + ow) * c;
        int32_t* io = i_ + ((b * ho + oh) * wo + ow) * c;
        for (int64_t j = 0; j < c; ++j) {
          yo[j] = -std::numeric_limits<float>::infinity();
          io[j] = -1;
        }
        for (int64_t ky = 0; ky < a.kernel; ++ky) {
          int64_t iy = oh * a.stride - a.pad + ky;
          if (iy < 0 || iy >= h) continue;
          for (int64_t kx = 0; kx < a.kernel; ++kx) {
            int64_t ix = ow * a.stride - a.pad + kx;
            if (ix < 0 || ix >= w) continue;
            const float* xi = x_ + ((b * h + iy) * w + ix) * c;
            const int32_t flat = static_cast<int32_t>(iy * w + ix);
            for (int64_t j = 0; j < c; ++j) {
              const float v = xi[j];
              if (io[j] < 0 || v > yo[j] || std::isnan(v)) {  // NaN propagates, as in PyTorch
                yo[j] = v;
                io[j] = flat;
              }
            }
          }
        }
      }
    }
  });
}

void max_pool2d_backward(const Tensor& dy, const Tensor& argmax, const Tensor& dx) {
  const int64_t n = dx.dim(0), hw = dx.dim(1) * dx.dim(2), c = dx.dim(3), howo = dy.dim(1) * dy.dim(2);
  std::memset(f(dx), 0, dx.nbytes());
  const float* DY = f(dy);
  const int32_t* I = argmax.data<int32_t>();
  float* DX = f(dx);
  parallel_for(n, dy.numel(), [&](int64_t b0, int64_t b1) {
    const float* __restrict dy_ = DY;
    const int32_t* __restrict i_ = I;
    float* __restrict dx_ = DX;
    for (int64_t b = b0; b < b1; ++b)  // windows overlap inside an image: one thread per image
      for (int64_t o = 0; o < howo; ++o)
        for (int64_t j = 0; j < c; ++j) {
          int32_t idx = i_[(b * howo + o) * c + j];
          if (idx >= 0) dx_[(b * hw + idx) * c + j] += dy_[(b * howo + o) * c + j];
        }
  });
}

void global_avg_pool_forward(const Tensor& x, const Tensor& y) {
  const int64_t n = x.dim(0), hw = x.dim(1) * x.dim(2), c = x.dim(3);
  for (int64_t b = 0; b < n; ++b)
    MapV(f(y) + b * c, c) = CMapM(f(x) + b * hw * c, hw, c).colwise().mean().transpose();
}

void global_avg_pool_backward(const Tensor& dy, const Tensor& dx) {
  const int64_t n = dx.dim(0), hw = dx.dim(1) * dx.dim(2), c = dx.dim(3);
  const float inv = 1.0f / static_cast<float>(hw);
  parallel_for(n, dx.numel(), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      for (int64_t p = 0; p < hw; ++p)
        for (int64_t j = 0; j < c; ++j) f(dx)[(b * hw + p) * c + j] = f(dy)[b * c + j] * inv;
  });
}

// ---------------------------------------------------------------- linear
void linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y) {
  const int64_t n = x.dim(0), d = x.dim(1), c = w.dim(0);
  MapM Y(f(y), n, c);
  Y.noalias() = CMapM(f(x), n, d) * CMapM(f(w), c, d).transpose();
  if (bias.defined()) Y.rowwise() += CMapV(f(bias), c).transpose();
}

void linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& dx, const Tensor& dw,
                     const Tensor& dbias) {
  const int64_t n = x.dim(0), d = x.dim(1), c = w.dim(0);
  CMapM DY(f(dy), n, c);
  if (dx.defined()) MapM(f(dx), n, d).noalias() = DY * CMapM(f(w), c, d);
  if (dw.defined()) MapM(f(dw), c, d).noalias() = DY.transpose() * CMapM(f(x), n, d);
  if (dbias.defined()) MapV(f(dbias), c) = DY.colwise().sum().transpose();
}

// ---------------------------------------------------------------- dropout
void dropout_forward(const Tensor& x, const Tensor& mask, const Tensor& y, float p, uint64_t seed) {
  const int64_t n = x.numel();
  const float* X = f(x);
  float* Y = f(y);
  uint8_t* M = mask.data<uint8_t>();
  const float keep_scale = 1.0f / (1.0f - p);
  parallel_for(n, n, [&](int64_t i0, int64_t i1) {
    const float* __restrict x_ = X;
    float* __restrict y_ = Y;
    uint8_t* __restrict m_ = M;
    for (int64_t i = i0; i < i1; ++i) {
      m_[i] = math::dropout_keep(seed, static_cast<uint64_t>(i), p) ? 1 : 0;
      y_[i] = m_[i] ? x_[i] * keep_scale : 0.0f;
    }
  });
}

void dropout_backward(const Tensor& dy, const Tensor& mask, const Tensor& dx, float p) {
  const int64_t n = dy.numel();
  const float* DY = f(dy);
  const uint8_t* M = mask.data<uint8_t>();
  float* DX = f(dx);
  const float keep_scale = 1.0f / (1.0f - p);
  parallel_for(n, n, [&](int64_t i0, int64_t i1) {
    const float* __restrict dy_ = DY;
    const uint8_t* __restrict m_ = M;
    float* __restrict dx_ = DX;
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) dx_[i] = m_[i] ? dy_[i] * keep_scale : 0.0f;
  });
}

// ---------------------------------------------------------------- losses
void softmax_xent_hard(const Tensor& logits, const Tensor& labels, const Tensor& loss, const Tensor& dlogits,
                       float grad_scale) {
  const int64_t n = logits.dim(0), c = logits.dim(1);
  const float* L = f(logits);
  const int32_t* Y = labels.data<int32_t>();
  float *LOSS = f(loss), *D = f(dlogits);
  parallel_for(n, n * c, [&](int64_t i0, int64_t i1) {
    const float* __restrict l_ = L;
    const int32_t* __restrict y_ = Y;
    float* __restrict loss_ = LOSS;
    float* __restrict d_ = D;
    for (int64_t i = i0; i < i1; ++i) {
      const float* row = l_ + i * c;
      float* drow = d_ + i * c;
      if (y_[i] < 0) {
        loss_[i] = 0.0f;
        std::fill_n(drow, c, 0.0f);
        continue;
      }
      float mx = *std::max_element(row, row + c);
      double se = 0.0;
      for (int64_t j = 0; j < c; ++j) se += std::exp(static_cast<double>(row[j] - mx));
      const float lse = mx + static_cast<float>(std::log(se));
      loss_[i] = lse - row[y_[i]];
      for (int64_t j = 0; j < c; ++j) drow[j] = grad_scale * std::exp(row[j] - lse);
      drow[y_[i]] -= grad_scale;
    }
  });
}

void softmax_xent_soft(const Tensor& logits, const Tensor& targets, const Tensor& loss, const Tensor& dlogits,
                       float grad_scale) {
  const int64_t n = logits.dim(0), c = logits.dim(1);
  const float *L = f(logits), *T = f(targets);
  float *LOSS = f(loss), *D = f(dlogits);
  parallel_for(n, n * c, [&](int64_t i0, int64_t i1) {
    const float* __restrict l_ = L;
    float* __restrict loss_ = LOSS;
    const float* __restrict t_ = T;
    float* __restrict d_ = D;
    for (int64_t i = i0; i < i1; ++i) {
      const float *row = l_ + i * c, *t = t_ + i * c;
      float* drow = d_ + i * c;
      double tsum = 0.0;
      for (int64_t j = 0; j < c; ++j) tsum += t[j];
      float mx = *std::max_element(row, row + c);
      double se = 0.0;
      for (int64_t j = 0; j < c; ++j) se += std::exp(static_cast<double>(row[j] - mx));
      const float lse = mx + static_cast<float>(std::log(se));
      double l = 0.0;
      for (int64_t j = 0; j < c; ++j) l += static_cast<double>(t[j]) * (lse - row[j]);
      loss_[i] = static_cast<float>(l);
      for (int64_t j = 0; j < c; ++j)
        drow[j] = grad_scale * (static_cast<float>(tsum) * std::exp(row[j] - lse) - t[j]);
    }
  });
}

// ---------------------------------------------------------------- optimisers
void sgd_step(const Tensor& param, const Tensor& grad, const Tensor& momentum_buf, float lr, float momentum,
              float dampening, float weight_decay, bool nesterov, bool first_step) {
  const int64_t n = param.numel();
  float *P = f(param), *G = f(grad);
  float* B = momentum_buf.defined() ? f(momentum_buf) : nullptr;
  parallel_for(n, n, [&](int64_t i0, int64_t i1) {
    float* __restrict p_ = P;
    float* __restrict b_ = B;
    float* __restrict g_ = G;
    for (int64_t i = i0; i < i1; ++i) {
      float dummy = 0.0f;
      float& b = b_ ? b_[i] : dummy;
      p_[i] = math::sgd_update(p_[i], g_[i], b, lr, b_ ? momentum : 0.0f, dampening, weight_decay, nesterov,
                               first_step);
    }
  });
}

void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, float lr,
                float beta1, float beta2, float eps, float weight_decay, int64_t step) {
  const int64_t n = param.numel();
  float *P = f(param), *G = f(grad), *M = f(m), *V = f(v);
  const float bc1 = 1.0f - std::pow(beta1, static_cast<float>(step));
  const float bc2 = 1.0f - std::pow(beta2, static_cast<float>(step));
  parallel_for(n, n, [&](int64_t i0, int64_t i1) {
    float* __restrict p_ = P;
    float* __restrict g_ = G;
    float* __restrict m_ = M;
    float* __restrict v_ = V;
    for (int64_t i = i0; i < i1; ++i)
      p_[i] = math::adamw_update(p_[i], g_[i], m_[i], v_[i], lr, beta1, beta2, eps, weight_decay, bc1, bc2);
  });
}

}  // namespace geoloc::cpu
