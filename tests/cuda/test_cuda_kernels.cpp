// geoloc's own CUDA kernels against their CPU references (cuda::ref::), GPU outputs pre-filled with junk.
// Tolerances: multi-head loss rtol 1e-5 (same math as the backend op); haversine: loss rtol 1e-5 +
// 2 m absolute, gradient rtol 1e-3 + 1e-3 km/deg absolute (float kernel vs double reference; the
// gradient has a cancellation near the target); fused optimisers as the single-tensor backend ops;
// fusions exact to 1e-6; k-NN scores rtol 1e-4 (fp32 GEMM vs double), indices exact wherever the
// neighbouring scores are apart by more than the tolerance.
#include <doctest/doctest.h>

#include <cmath>
#include <set>

#include "cuda_test_util.hpp"
#include "geoloc/cuda/fused_optim.hpp"
#include "geoloc/cuda/fusion.hpp"
#include "geoloc/cuda/haversine.hpp"
#include "geoloc/cuda/knn.hpp"
#include "geoloc/cuda/multihead_loss.hpp"

using namespace geoloc;
using namespace geoloc::test;

TEST_CASE("fused multi-head softmax cross-entropy matches per-head CPU losses") {
  GEOLOC_SKIP_WITHOUT_CUDA();
  struct H {
    int64_t n, c;
    bool soft;
    float scale;
  };
  const H spec[] = {{32, 3000, false, 1.0f / 32},
                    {32, 20011, false, 0.5f},
                    {32, 365, true, 0.25f},
                    {7, 1, false, 1.0f},
                    {32, 97, true, 1.0f}};
  std::vector<cuda::LossHead> gh, ch;
  uint32_t seed = 1;
  for (const H& h : spec) {
    Tensor logits = randn({h.n, h.c}, seed++, 4.0f);
    cuda::LossHead c, g;
    c.logits = logits;
    g.logits = logits.to(gpu());
    if (h.soft) {
      Tensor t = uniform({h.n, h.c}, seed++, 0.0f, 1.0f);
      float* tp = t.data<float>();
      for (int64_t i = 0; i < h.n; ++i) {
        double s = 0;
        for (int64_t j = 0; j < h.c; ++j) s += tp[i * h.c + j];
        for (int64_t j = 0; j < h.c; ++j)
          tp[i * h.c + j] = i == 0 ? 0.0f : static_cast<float>(tp[i * h.c + j] / s);
      }
      c.targets = t;
      g.targets = t.to(gpu());
    } else {
      std::vector<int32_t> lab(h.n);
      for (int64_t i = 0; i < h.n; ++i) lab[i] = i % 5 == 4 ? -1 : static_cast<int32_t>((i * 104729) % h.c);
      c.labels = Tensor::from_labels(lab);
      g.labels = c.labels.to(gpu());
    }
    c.loss = cpu_junk({h.n});
    c.dlogits = cpu_junk({h.n, h.c});
    g.loss = junk({h.n});
    g.dlogits = junk({h.n, h.c});
    c.grad_scale = g.grad_scale = h.scale;
    ch.push_back(c);
    gh.push_back(g);
  }
  cuda::ref::multihead_softmax_xent(ch);
  cuda::multihead_softmax_xent(gh);
  for (size_t i = 0; i < gh.size(); ++i) {
    INFO("head " << i);
    check_close(gh[i].loss, ch[i].loss, 1e-5f, 1e-4f, "multi-head loss");
    check_close(gh[i].dlogits, ch[i].dlogits, 1e-5f, 1e-7f, "multi-head dlogits");
  }
}

TEST_CASE("haversine loss and gradient match the double-precision reference") {
  GEOLOC_SKIP_WITHOUT_CUDA();
  const int64_t n = 10007;
  Tensor tgt = Tensor::empty({n, 2}), pll = Tensor::empty({n, 2}), pv = Tensor::empty({n, 3});
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> lat(-89.0f, 89.0f), lng(-180.0f, 180.0f), off(-5.0f, 5.0f),
      u(-1.0f, 1.0f);
  for (int64_t i = 0; i < n; ++i) {
    const float tl = lat(rng), tg = lng(rng);
    tgt.data<float>()[2 * i] = tl;
    tgt.data<float>()[2 * i + 1] = tg;
    // a mix of near, far and exactly-correct predictions
    const bool exact = i % 101 == 0, near = i % 3 == 0;
    pll.data<float>()[2 * i] = exact ? tl : near ? std::clamp(tl + off(rng), -89.9f, 89.9f) : lat(rng);
    pll.data<float>()[2 * i + 1] = exact ? tg : near ? tg + off(rng) : lng(rng);
    for (int j = 0; j < 3; ++j) pv.data<float>()[3 * i + j] = u(rng) * 2.0f;
  }
  for (auto fmt : {cuda::CoordFormat::LatLngDeg, cuda::CoordFormat::UnitVector}) {
    const Tensor& p = fmt == cuda::CoordFormat::LatLngDeg ? pll : pv;
    INFO("format " << static_cast<int>(fmt));
    Tensor lc = cpu_junk({n}), gc = cpu_junk(p.shape()), lg = junk({n}), gg = junk(p.shape());
    cuda::ref::haversine_loss(p, tgt, fmt, 0.5f, lc, gc);
    cuda::haversine_loss(p.to(gpu()), tgt.to(gpu()), fmt, 0.5f, lg, gg);
    check_close(lg, lc, 1e-5f, 2e-3f, "haversine loss (km)");
    check_close(gg, gc, 1e-3f, 1e-3f, "haversine gradient");
    Tensor lg2 = junk({n});
    cuda::haversine_loss(p.to(gpu()), tgt.to(gpu()), fmt, 1.0f, lg2, Tensor());  // loss only
    check_close(lg2, lc, 1e-5f, 2e-3f, "haversine loss without gradient");
  }
}

TEST_CASE("fused SGD / AdamW over many tensors match per-tensor CPU steps") {
  GEOLOC_SKIP_WITHOUT_CUDA();
  // 200 tensors (more than one launch's table), sizes from 1 to beyond a chunk
  std::vector<cuda::ParamSlot> cs, gs;
  uint32_t seed = 10;
  for (int i = 0; i < 200; ++i) {
    const int64_t len = i % 7 == 0 ? 5000 + i * 13 : 1 + (i * 37) % 300;
    Tensor p = randn({len}, seed++), g = randn({len}, seed++), s1 = randn({len}, seed++, 0.1f);
    Tensor s2 = uniform({len}, seed++, 0.0f, 0.01f);
    const float wd = i % 2 ? 0.01f : 0.0f;
    cs.push_back({p, g, s1, s2, wd});
    gs.push_back({p.to(gpu()), g.to(gpu()), s1.to(gpu()), s2.to(gpu()), wd});
  }
  auto compare = [&](const char* what) {
    for (size_t i = 0; i < cs.size(); ++i) {
      INFO(what << " tensor " << i);
      check_close(gs[i].param, cs[i].param, 1e-5f, 1e-6f, "param");
      check_close(gs[i].state1, cs[i].state1, 1e-5f, 1e-6f, "state1");
    }
  };
  for (int step = 0; step < 2; ++step) {
    cuda::ref::fused_sgd_step(cs, 0.1f, 0.9f, 0.0f, step == 1, step == 0);
    cuda::fused_sgd_step(gs, 0.1f, 0.9f, 0.0f, step == 1, step == 0);
  }
  compare("sgd");
  for (int64_t step = 1; step <= 3; ++step) {
    cuda::ref::fused_adamw_step(cs, 1e-3f, 0.9f, 0.999f, 1e-8f, step);
    cuda::fused_adamw_step(gs, 1e-3f, 0.9f, 0.999f, 1e-8f, step);
  }
  compare("adamw");
  for (size_t i = 0; i < cs.size(); ++i) check_close(gs[i].state2, cs[i].state2, 1e-5f, 1e-7f, "adamw v");
}

TEST_CASE("BN-apply / residual / ReLU fusions match the CPU") {
  GEOLOC_SKIP_WITHOUT_CUDA();
  for (const Shape& s : {Shape{2, 5, 5, 3}, Shape{4, 7, 7, 64}, Shape{3, 130}}) {
    INFO("shape " << s.str());
    const int64_t c = s[-1];
    Tensor x = randn(s, 1), r = randn(s, 2), sc = randn({c}, 3), sh = randn({c}, 4);
    for (bool relu : {false, true})
      for (bool res : {false, true}) {
        INFO("relu " << relu << " residual " << res);
        Tensor yc = cpu_junk(s), yg = junk(s);
        cuda::ref::scale_shift_act(x, sc, sh, res ? r : Tensor(), relu, yc);
        cuda::scale_shift_act(x.to(gpu()), sc.to(gpu()), sh.to(gpu()), res ? r.to(gpu()) : Tensor(), relu,
                              yg);
        check_close(yg, yc, 1e-6f, 1e-6f, "scale_shift_act");
      }
    Tensor g = randn({c}, 5), b = randn({c}, 6), m = randn({c}, 7), is = uniform({c}, 8, 0.5f, 2.0f);
    Tensor scc = cpu_junk({c}), shc = cpu_junk({c}), scg = junk({c}), shg = junk({c});
    cuda::ref::bn_fold(g, b, m, is, scc, shc);
    cuda::bn_fold(g.to(gpu()), b.to(gpu()), m.to(gpu()), is.to(gpu()), scg, shg);
    check_close(scg, scc, 1e-6f, 1e-7f, "bn_fold scale");
    check_close(shg, shc, 1e-6f, 1e-6f, "bn_fold shift");
    Tensor rmc = randn({c}, 9), rvc = uniform({c}, 10, 0.5f, 1.5f), rmg = rmc.to(gpu()), rvg = rvc.to(gpu());
    Tensor yc = cpu_junk(s), mc = cpu_junk({c}), ic = cpu_junk({c}), yg = junk(s), mg = junk({c}),
           ig = junk({c});
    cuda::ref::batch_norm_train_add_relu(x, g, b, rmc, rvc, 0.1f, 1e-5f, r, yc, mc, ic);
    cuda::batch_norm_train_add_relu(x.to(gpu()), g.to(gpu()), b.to(gpu()), rmg, rvg, 0.1f, 1e-5f, r.to(gpu()),
                                    yg, mg, ig);
    check_close(yg, yc, 1e-4f, 1e-4f, "bn + add + relu");
    check_close(mg, mc, 1e-5f, 1e-6f, "bn + add + relu saved mean");
    check_close(ig, ic, 1e-5f, 1e-6f, "bn + add + relu saved invstd");
    check_close(rvg, rvc, 1e-5f, 1e-6f, "bn + add + relu running var");
  }
}

namespace {
// Scores close; indices equal except where a score ties its neighbour within tolerance.
void check_knn(const Tensor& sg, const Tensor& ig, const Tensor& sc, const Tensor& ic, float rtol) {
  check_close(sg, sc, rtol, rtol, "knn scores");
  const auto a = ig.to_labels(), b = ic.to_labels();
  const auto s = sc.to_vector();
  const int64_t k = sc.dim(1);
  size_t bad = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] == b[i]) continue;
    const int64_t j = static_cast<int64_t>(i) % k;
    const float tol = rtol * (1.0f + std::fabs(s[i]));
    const bool near_prev = j > 0 && std::fabs(s[i] - s[i - 1]) <= tol;
    const bool near_next = j + 1 < k && std::fabs(s[i] - s[i + 1]) <= tol;
    const bool at_end = j + 1 == k;  // the k-th place may tie with the (k+1)-th, which we cannot see
    if (!(near_prev || near_next || at_end)) ++bad;
  }
  INFO("index mismatches not explained by near-ties: " << bad);
  CHECK(bad == 0);
}
}  // namespace

TEST_CASE("k-NN top-k matches a full CPU sort") {
  GEOLOC_SKIP_WITHOUT_CUDA();
  struct Case {
    int64_t m, r, d;
    int k;
    int64_t chunk;
  };
  const Case cases[] = {{5, 1, 8, 1, 0},        {33, 1000, 16, 10, 0}, {17, 5000, 64, 100, 700},
                        {9, 3000, 32, 1024, 0}, {4, 50, 8, 64, 0},     {64, 20000, 128, 5, 1536}};
  uint32_t seed = 50;
  for (const Case& c : cases) {
    INFO("m=" << c.m << " r=" << c.r << " d=" << c.d << " k=" << c.k << " chunk=" << c.chunk);
    Tensor q = randn({c.m, c.d}, seed++), r = randn({c.r, c.d}, seed++);
    for (auto metric : {cuda::KnnMetric::InnerProduct, cuda::KnnMetric::L2}) {
      INFO("metric " << static_cast<int>(metric));
      Tensor sc = cpu_junk({c.m, c.k}), ic = cpu_junk({c.m, c.k}, DType::I32);
      Tensor sg = junk({c.m, c.k}), ig = junk({c.m, c.k}, DType::I32);
      cuda::ref::knn_topk(q, r, c.k, metric, sc, ic);
      cuda::knn_topk(q.to(gpu()), r.to(gpu()), c.k, metric, sg, ig, c.chunk);
      check_knn(sg, ig, sc, ic, 1e-4f);
    }
  }
  // exact ties (duplicated references): the smaller index wins, across chunk boundaries too
  Tensor base = randn({10, 8}, 99);
  std::vector<float> dup;
  for (int rep = 0; rep < 30; ++rep) {
    auto v = base.to_vector();
    dup.insert(dup.end(), v.begin(), v.end());
  }
  Tensor r = Tensor::from_vector({300, 8}, dup), q = randn({3, 8}, 98);
  Tensor sc = cpu_junk({3, 40}), ic = cpu_junk({3, 40}, DType::I32), sg = junk({3, 40}),
         ig = junk({3, 40}, DType::I32);
  cuda::ref::knn_topk(q, r, 40, cuda::KnnMetric::InnerProduct, sc, ic);
  cuda::knn_topk(q.to(gpu()), r.to(gpu()), 40, cuda::KnnMetric::InnerProduct, sg, ig, 64);
  check_close(sg, sc, 1e-4f, 1e-4f, "knn tie scores");
  check_equal_i32(ig, ic, "knn tie order");
}
