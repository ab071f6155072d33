// The CPU convolution kernels against a naive double-precision convolution, on shapes that exercise
// every code path of the backend: geoloc's AVX-512 implicit-GEMM kernels (channels in multiples of 16:
// panels of 16..64 channels, a narrower last panel, row counts that are not a multiple of the kernel's
// rows, padding, stride 2, 1x1 and 7x7 windows, runs of k longer than one depth block) and the Eigen
// path (other channel counts). Forward (with bias, and fused with eval-mode BN, residual and ReLU),
// backward-data and backward-filter are all checked, on every CPU path this machine has (generic, avx2,
// avx512: the runtime dispatch switched with set_cpu_path).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "../../src/core/cpu/direct_conv.hpp"  // active_kernels(): which kernels the dispatch picked
#include "../../src/core/cpu/weight_cache.hpp"  // weight_cache_stats(): hits, entries
#include "../../src/core/cpu/winograd_conv.hpp"  // winograd::calls(), set_enabled(): which path a case took
#include "geoloc/backend.hpp"
#include "geoloc/build_info.hpp"
#include "geoloc/optim.hpp"
#include "gradcheck.hpp"

using namespace geoloc;

namespace {
struct ConvCase {
  int64_t n, h, w, ci, co, k, stride, pad;
};

int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t p) { return (in + 2 * p - k) / s + 1; }

// y[n, oh, ow, o] = sum x[n, oh*s - p + ky, ow*s - p + kx, c] * w[o, ky, kx, c], in double
std::vector<double> ref_forward(const std::vector<float>& x, const std::vector<float>& w, const ConvCase& c) {
  const int64_t ho = out_size(c.h, c.k, c.stride, c.pad), wo = out_size(c.w, c.k, c.stride, c.pad);
  std::vector<double> y(static_cast<size_t>(c.n * ho * wo * c.co), 0.0);
  for (int64_t b = 0; b < c.n; ++b)
    for (int64_t oh = 0; oh < ho; ++oh)
      for (int64_t ow = 0; ow < wo; ++ow)
        for (int64_t o = 0; o < c.co; ++o) {
          double s = 0;
          for (int64_t ky = 0; ky < c.k; ++ky)
            for (int64_t kx = 0; kx < c.k; ++kx) {
              const int64_t iy = oh * c.stride - c.pad + ky, ix = ow * c.stride - c.pad + kx;
              if (iy < 0 || iy >= c.h || ix < 0 || ix >= c.w) continue;
              for (int64_t ch = 0; ch < c.ci; ++ch)
                s += double(x[((b * c.h + iy) * c.w + ix) * c.ci + ch]) *
                     w[((o * c.k + ky) * c.k + kx) * c.ci + ch];
            }
          y[((b * ho + oh) * wo + ow) * c.co + o] = s;
        }
  return y;
}

// max |a - b| / (1 + max |b|)
double rel_err(const std::vector<float>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0, scale = 1;
  for (double v : b) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  return worst / scale;
}

std::string name(const ConvCase& c) {
  return std::to_string(c.n) + "x" + std::to_string(c.h) + "x" + std::to_string(c.w) + "x" + std::to_string(c.ci) +
         " -> " + std::to_string(c.co) + " k" + std::to_string(c.k) + " s" + std::to_string(c.stride) + " p" +
         std::to_string(c.pad);
}

// Runs the enclosing test on one CPU path, then restores the previous one.
struct ScopedCpuPath {
  CpuPath saved = cpu_path();
  explicit ScopedCpuPath(CpuPath p) { set_cpu_path(p); }
  ~ScopedCpuPath() { set_cpu_path(saved); }
};

// Turns the Winograd forward on or off for the enclosing scope.
struct ScopedWinograd {
  bool saved = cpu::winograd::enabled();
  explicit ScopedWinograd(bool on) { cpu::winograd::set_enabled(on); }
  ~ScopedWinograd() { cpu::winograd::set_enabled(saved); }
};

// The bound on rel_err for the direct kernels and Eigen (float sums in another order than the double
// reference), and for Winograd F(4x4, 3x3), whose transforms (coefficients up to 8, and 1/24) round more.
constexpr double kDirectTol = 2e-6;
constexpr double kWinogradTol = 5e-5;

const std::vector<ConvCase> kCases = {
    {2, 9, 11, 16, 16, 3, 1, 1},    // one 16-channel panel, 8-row tiles, 99 rows per image
    {1, 8, 8, 32, 48, 3, 1, 1},     // a 48-channel panel
    {2, 7, 7, 64, 80, 3, 1, 1},     // 64 + 16 panels, 49 rows per image (6-row tiles with a tail)
    {3, 13, 10, 8, 64, 3, 2, 1},    // stride 2, odd sizes, 8 input channels
    {1, 6, 6, 160, 128, 3, 1, 1},   // runs of k (3 * 160) longer than one depth block
    {2, 10, 10, 24, 32, 1, 1, 0},   // 1x1
    {2, 11, 9, 32, 64, 1, 2, 0},    // 1x1 stride 2 (ResNet downsample)
    {1, 21, 19, 3, 64, 7, 2, 3},    // the stem: 7x7 stride 2 pad 3 on 3 channels
    {1, 5, 6, 3, 10, 3, 1, 1},      // not a multiple of 16: the Eigen path
    {1, 4, 4, 16, 32, 3, 1, 0},     // no padding, 2x2 output
};

// conv2d_forward(x, w) checked against the reference computed from `wv`, values that the test knows
// independently of w (reading w back would bump its version and hide a missing bump).
// Returns whether it ran through Winograd.
bool check_forward(const Tensor& x, const Tensor& w, const std::vector<float>& wv, const ConvCase& c) {
  const int64_t ho = out_size(c.h, c.k, c.stride, c.pad), wo = out_size(c.w, c.k, c.stride, c.pad);
  Tensor y = Tensor::empty({c.n, ho, wo, c.co});
  const uint64_t before = cpu::winograd::calls();
  cpu::conv2d_forward(x, w, Tensor(), y, {int(c.stride), int(c.pad)});
  const bool winograd = cpu::winograd::calls() > before;
  CHECK(rel_err(y.to_vector(), ref_forward(x.to_vector(), wv, c)) < (winograd ? kWinogradTol : kDirectTol));
  return winograd;
}

// conv2d_forward with a bias, and conv2d_bn_act_forward (eval-mode BN folded into the epilogue, with a
// residual, with and without ReLU), against the double reference: rel_err below tol. Returns the largest
// rel_err seen.
double check_forward_fused(const ConvCase& c, std::mt19937& gen, double tol) {
  Tensor x = test::random_tensor({c.n, c.h, c.w, c.ci}, gen);
  Tensor w = test::random_tensor({c.co, c.k, c.k, c.ci}, gen);
  Tensor bias = test::random_tensor({c.co}, gen);
  const auto xv = x.to_vector(), wv = w.to_vector(), bv = bias.to_vector();
  const std::vector<double> ref = ref_forward(xv, wv, c);
  const int64_t ho = out_size(c.h, c.k, c.stride, c.pad), wo = out_size(c.w, c.k, c.stride, c.pad);

  Tensor y = Tensor::empty({c.n, ho, wo, c.co});
  cpu::conv2d_forward(x, w, bias, y, {int(c.stride), int(c.pad)});
  std::vector<double> with_bias = ref;
  for (size_t i = 0; i < ref.size(); ++i) with_bias[i] += bv[i % c.co];
  double worst = rel_err(y.to_vector(), with_bias);
  CHECK(worst < tol);

  Tensor gamma = test::random_tensor({c.co}, gen), beta = test::random_tensor({c.co}, gen);
  Tensor mean = test::random_tensor({c.co}, gen), var = Tensor::full({c.co}, 0.5f);
  Tensor res = test::random_tensor({c.n, ho, wo, c.co}, gen);
  const auto gv = gamma.to_vector(), btv = beta.to_vector(), mv = mean.to_vector(), rv = res.to_vector();
  for (bool relu : {false, true}) {
    Tensor yf = Tensor::empty({c.n, ho, wo, c.co});
    cpu::conv2d_bn_act_forward(x, w, gamma, beta, mean, var, 1e-5f, res, relu, yf, {int(c.stride), int(c.pad)});
    std::vector<double> expect(ref.size());
    for (size_t i = 0; i < ref.size(); ++i) {
      const size_t o = i % c.co;
      const double v = (ref[i] - mv[o]) / std::sqrt(0.5 + 1e-5) * gv[o] + btv[o] + rv[i];
      expect[i] = relu ? std::max(0.0, v) : v;
    }
    const double e = rel_err(yf.to_vector(), expect);
    CHECK(e < tol);
    worst = std::max(worst, e);
  }
  return worst;
}
}  // namespace

TEST_CASE("conv2d forward (+ bias, + fused BN, residual, ReLU) matches a double-precision reference") {
  ScopedWinograd direct_kernels(false);  // the direct kernels and Eigen here; Winograd has its own case
  for (CpuPath path : available_cpu_paths()) {
    ScopedCpuPath use(path);
    CAPTURE(to_string(path));
    std::mt19937 gen(7);
    for (const ConvCase& c : kCases) {
      CAPTURE(name(c));
      check_forward_fused(c, gen, kDirectTol);
    }
  }
}

TEST_CASE("Winograd F(4x4, 3x3): frozen 3x3 convolutions match the reference, on every path with kernels") {
  ScopedWinograd on(true);
  const std::vector<ConvCase> cases = {
      {2, 9, 11, 16, 16, 3, 1, 1},    // ragged tiles (3 x 3 per image, cut by the edges), blocks of tiles
      {3, 13, 10, 32, 80, 3, 1, 1},   // a 64 + 16 panel split (AVX-512), blocks and groups of panels
      {4, 12, 12, 256, 32, 3, 1, 1},  // runs of k longer than one depth block (ci 256)
      {1, 16, 16, 64, 64, 3, 1, 1},   // 16 tiles, 64 x 64 channels: the three-pass schedule
      {8, 7, 7, 128, 96, 3, 1, 1},    // ResNet's 7x7 at batch 8: 32 tiles, 43% padding, three passes
      {2, 18, 14, 48, 48, 3, 1, 0},   // no padding
      {2, 10, 10, 16, 32, 3, 1, 2},   // pad 2 (12 x 12 outputs)
  };
  for (CpuPath path : available_cpu_paths()) {
    ScopedCpuPath use(path);
    CAPTURE(to_string(path));
    const bool kernels = cpu::direct::active_kernels() != nullptr;  // the generic path has no Winograd
    std::mt19937 gen(11);
    double worst = 0;
    for (const ConvCase& c : cases) {
      CAPTURE(name(c));
      const uint64_t before = cpu::winograd::calls();
      worst = std::max(worst, check_forward_fused(c, gen, kernels ? kWinogradTol : kDirectTol));
      CHECK(cpu::winograd::calls() - before == (kernels ? 3u : 0u));  // all three convolutions took it
    }
    MESSAGE(std::string(to_string(path)) << ": largest error of Winograd relative to the largest output: " << worst);
  }
  // What does not take it: few tiles (7x7 at batch 1), stride 2, 1x1, weights that require a gradient
  // (training), and Winograd turned off.
  std::mt19937 gen(12);
  for (CpuPath path : available_cpu_paths()) {
    ScopedCpuPath use(path);
    CAPTURE(to_string(path));
    for (const ConvCase& c : {ConvCase{1, 7, 7, 64, 64, 3, 1, 1}, ConvCase{2, 16, 16, 32, 32, 3, 2, 1},
                              ConvCase{2, 16, 16, 32, 32, 1, 1, 0}}) {
      CAPTURE(name(c));
      Tensor x = test::random_tensor({c.n, c.h, c.w, c.ci}, gen), w = test::random_tensor({c.co, c.k, c.k, c.ci}, gen);
      CHECK_FALSE(check_forward(x, w, w.to_vector(), c));
    }
    const ConvCase c{2, 16, 16, 32, 32, 3, 1, 1};
    Tensor x = test::random_tensor({c.n, c.h, c.w, c.ci}, gen), w = test::random_tensor({c.co, c.k, c.k, c.ci}, gen);
    const std::vector<float> wv = w.to_vector();
    CHECK(check_forward(x, w, wv, c) == (cpu::direct::active_kernels() != nullptr));
    w.set_requires_grad(true);
    CHECK_FALSE(check_forward(x, w, wv, c));
    w.set_requires_grad(false);
    {
      ScopedWinograd off(false);
      CHECK_FALSE(check_forward(x, w, wv, c));
    }
  }
}

TEST_CASE("conv2d backward-data and backward-filter match the adjoint of the reference") {
  for (CpuPath path : available_cpu_paths()) {
    ScopedCpuPath use(path);
    CAPTURE(to_string(path));
    // With y = conv(x, w): dx = d<dy, y>/dx and dw = d<dy, y>/dw. Both are linear, so each entry of the
    // reference is read off the reference forward with a one-hot input (x or w), in double.
    std::mt19937 gen(11);
    for (const ConvCase& c : kCases) {
      CAPTURE(name(c));
      const int64_t ho = out_size(c.h, c.k, c.stride, c.pad), wo = out_size(c.w, c.k, c.stride, c.pad);
      Tensor x = test::random_tensor({c.n, c.h, c.w, c.ci}, gen);
      Tensor w = test::random_tensor({c.co, c.k, c.k, c.ci}, gen);
      Tensor dy = test::random_tensor({c.n, ho, wo, c.co}, gen);
      const auto xv = x.to_vector(), wv = w.to_vector(), dyv = dy.to_vector();

      // dx[i] = sum_o dy[o] * d y[o] / d x[i]: accumulate dy * w over every window (the reference adjoint)
      std::vector<double> dx_ref(xv.size(), 0.0), dw_ref(wv.size(), 0.0);
      for (int64_t b = 0; b < c.n; ++b)
        for (int64_t oh = 0; oh < ho; ++oh)
          for (int64_t ow = 0; ow < wo; ++ow)
            for (int64_t ky = 0; ky < c.k; ++ky)
              for (int64_t kx = 0; kx < c.k; ++kx) {
                const int64_t iy = oh * c.stride - c.pad + ky, ix = ow * c.stride - c.pad + kx;
                if (iy < 0 || iy >= c.h || ix < 0 || ix >= c.w) continue;
                for (int64_t o = 0; o < c.co; ++o) {
                  const double g = dyv[((b * ho + oh) * wo + ow) * c.co + o];
                  for (int64_t ch = 0; ch < c.ci; ++ch) {
                    const size_t xi = ((b * c.h + iy) * c.w + ix) * c.ci + ch;
                    const size_t wi = ((o * c.k + ky) * c.k + kx) * c.ci + ch;
                    dx_ref[xi] += g * wv[wi];
                    dw_ref[wi] += g * xv[xi];
                  }
                }
              }
      Tensor dx = Tensor::empty(x.shape()), dw = Tensor::empty(w.shape()), db = Tensor::empty({c.co});
      cpu::conv2d_backward_data(dy, w, dx, {int(c.stride), int(c.pad)});
      cpu::conv2d_backward_filter(x, dy, dw, db, {int(c.stride), int(c.pad)});
      CHECK(rel_err(dx.to_vector(), dx_ref) < 2e-6);
      CHECK(rel_err(dw.to_vector(), dw_ref) < 2e-6);
      std::vector<double> db_ref(static_cast<size_t>(c.co), 0.0);
      for (size_t i = 0; i < dyv.size(); ++i) db_ref[i % c.co] += dyv[i];
      CHECK(rel_err(db.to_vector(), db_ref) < 2e-6);
    }
  }
}

TEST_CASE("the CPU path: every available one is dispatched to its own kernels; the others are refused") {
  const std::vector<CpuPath> avail = available_cpu_paths();
  REQUIRE(!avail.empty());
  CHECK(avail.front() == CpuPath::generic);
  const char* env = std::getenv("GEOLOC_CPU");
  if (env && *env) {
    CHECK(std::string(to_string(cpu_path())) == env);
  } else {
    CHECK(cpu_path() == avail.back());  // the best the CPU has
  }
  for (CpuPath p : {CpuPath::generic, CpuPath::avx2, CpuPath::avx512}) {
    CAPTURE(to_string(p));
    if (std::find(avail.begin(), avail.end(), p) == avail.end()) {
      CHECK_THROWS_AS(set_cpu_path(p), ValueError);
      continue;
    }
    ScopedCpuPath use(p);
    const cpu::direct::Kernels* k = cpu::direct::active_kernels();
    if (p == CpuPath::generic) {
      CHECK(k == nullptr);
    } else {
      REQUIRE(k != nullptr);
      CHECK(std::string(k->name) == to_string(p));
    }
  }
  MESSAGE(build_info());
}

TEST_CASE("the packed-weight cache never serves stale weights, and serves unchanged ones") {
  cpu::detail::weight_cache_reset();
  const bool caching = cpu::detail::weight_cache_stats().limit > 0;  // GEOLOC_CPU_WEIGHT_CACHE_MB=0: off
  for (CpuPath path : available_cpu_paths()) {
    ScopedCpuPath use(path);
    CAPTURE(to_string(path));
    // the generic path packs per call (Eigen's blocking), the direct kernels through the cache
    const bool direct = cpu::direct::active_kernels() != nullptr && caching;
    std::mt19937 gen(23);
    for (const ConvCase& c : {ConvCase{2, 9, 11, 16, 16, 3, 1, 1}, ConvCase{2, 7, 7, 64, 80, 3, 1, 1},
                              ConvCase{2, 11, 9, 32, 64, 1, 2, 0}}) {
      CAPTURE(name(c));
      Tensor x = test::random_tensor({c.n, c.h, c.w, c.ci}, gen);
      Tensor w = test::random_tensor({c.co, c.k, c.k, c.ci}, gen);
      std::vector<float> wv = w.to_vector();
      check_forward(x, w, wv, c);

      // unchanged: served from the cache
      const auto before = cpu::detail::weight_cache_stats();
      check_forward(x, w, wv, c);
      const auto after = cpu::detail::weight_cache_stats();
      if (direct) {
        CHECK(after.hits == before.hits + 1);
        CHECK(after.misses == before.misses);
      }

      // a direct write through data()
      float* p = w.data<float>();
      for (size_t i = 0; i < wv.size(); i += 3) p[i] = wv[i] = -2.0f * wv[i] + 0.5f;
      check_forward(x, w, wv, c);

      // an optimizer step (plain SGD: w -= lr * grad)
      w.set_requires_grad(true);
      Tensor g = test::random_tensor(w.shape(), gen);
      const std::vector<float> gv = g.to_vector();
      w.impl().grad = g.impl_ptr();
      optim::SgdOptions o;
      o.lr = 0.25f;
      o.momentum = 0.0f;
      optim::Sgd sgd({{"w", w}}, o);
      sgd.step();
      w.set_requires_grad(false);  // frozen again: cached again
      for (size_t i = 0; i < wv.size(); ++i) wv[i] -= 0.25f * gv[i];
      check_forward(x, w, wv, c);

      // loading weights (copy_) and fill_
      Tensor src = test::random_tensor(w.shape(), gen);
      wv = src.to_vector();
      w.copy_(src);
      check_forward(x, w, wv, c);
      w.fill_(0.125f);
      std::fill(wv.begin(), wv.end(), 0.125f);
      check_forward(x, w, wv, c);

      // a write through another view of the same storage
      Tensor flat = w.view({w.numel()});
      flat.data<float>()[0] = wv[0] = 3.0f;
      check_forward(x, w, wv, c);

      // the same memory under another tensor of the same shape (a clone) is another entry
      Tensor w2 = w.clone();
      w2.data<float>()[1] = 7.0f;
      std::vector<float> wv2 = wv;
      wv2[1] = 7.0f;
      check_forward(x, w2, wv2, c);
      check_forward(x, w, wv, c);

      // a weight that requires a gradient is not cached: written through a pointer held across forwards
      // (as a finite-difference check does), every forward sees the current values
      w.set_requires_grad(true);
      const size_t entries = cpu::detail::weight_cache_stats().entries;
      float* held = w.data<float>();
      for (int round = 0; round < 3; ++round) {
        held[5] = wv[5] = 0.5f * static_cast<float>(round) - 1.0f;
        check_forward(x, w, wv, c);
      }
      CHECK(cpu::detail::weight_cache_stats().entries <= entries);
      w.set_requires_grad(false);
    }
  }
}

TEST_CASE("the packed-weight cache frees an entry when its weight dies, and stays within its limit") {
  cpu::detail::weight_cache_reset();
  const size_t saved_limit = cpu::detail::weight_cache_stats().limit;
  const std::vector<CpuPath> avail = available_cpu_paths();
  if (avail.back() == CpuPath::generic) return;  // no packed kernels on this CPU: nothing is cached
  if (saved_limit == 0) cpu::detail::weight_cache_reset(size_t(512) << 20);
  ScopedCpuPath use(avail.back());
  std::mt19937 gen(29);
  const ConvCase c{1, 6, 6, 32, 64, 3, 1, 1};
  Tensor x = test::random_tensor({c.n, c.h, c.w, c.ci}, gen);
  {
    Tensor w = test::random_tensor({c.co, c.k, c.k, c.ci}, gen);
    check_forward(x, w, w.to_vector(), c);
    CHECK(cpu::detail::weight_cache_stats().entries == 1);
    CHECK(cpu::detail::weight_cache_stats().bytes == size_t(c.co * c.k * c.k * c.ci) * sizeof(float));
  }
  CHECK(cpu::detail::weight_cache_stats().entries == 0);
  CHECK(cpu::detail::weight_cache_stats().bytes == 0);

  // room for two such weights: the least recently used one goes, results stay right
  const size_t one = size_t(c.co * c.k * c.k * c.ci) * sizeof(float);
  cpu::detail::weight_cache_reset(2 * one + one / 2);
  std::vector<Tensor> ws;
  for (int i = 0; i < 3; ++i) ws.push_back(test::random_tensor({c.co, c.k, c.k, c.ci}, gen));
  for (int round = 0; round < 2; ++round)
    for (const Tensor& w : ws) {
      check_forward(x, w, w.to_vector(), c);
      CHECK(cpu::detail::weight_cache_stats().bytes <= 2 * one + one / 2);
    }
  CHECK(cpu::detail::weight_cache_stats().entries == 2);

  // limit 0: nothing is cached, results stay right
  cpu::detail::weight_cache_reset(0);
  check_forward(x, ws[0], ws[0].to_vector(), c);
  CHECK(cpu::detail::weight_cache_stats().entries == 0);
  cpu::detail::weight_cache_reset(saved_limit);
}
