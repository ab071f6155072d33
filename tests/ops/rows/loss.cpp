// The op table's rows of the softmax cross-entropies (hard, soft, multi-head) and the haversine loss (see tests/ops/op_table.cpp for the tolerances).
#include "rows.hpp"

namespace geoloc::optest::rows {

// ---------------------------------------------------------------- losses
std::vector<double> xent_hard_ref(const Tensor& logits, const Tensor& labels, float scale, std::vector<double>& dl) {
  const int64_t n = logits.dim(0), c = logits.dim(1);
  const auto x = logits.to_vector();
  const auto l = labels.to_labels();
  std::vector<double> loss(n, 0.0);
  dl.assign(x.size(), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    if (l[i] < 0) continue;
    double m = -1e300, z = 0;
    for (int64_t j = 0; j < c; ++j) m = std::max(m, double(x[i * c + j]));
    for (int64_t j = 0; j < c; ++j) z += std::exp(x[i * c + j] - m);
    loss[i] = m + std::log(z) - x[i * c + l[i]];
    for (int64_t j = 0; j < c; ++j) dl[i * c + j] = scale * (std::exp(x[i * c + j] - m) / z - (j == l[i] ? 1.0 : 0.0));
  }
  return loss;
}

void loss_rows(Table& t) {
  const int64_t dims[][2] = {{1, 1}, {5, 3}, {17, 1000}, {8, 40000}, {4, 6}};
  for (const auto& dm : dims) {
    const int64_t n = dm[0], c = dm[1];
    const bool all_ignored = n == 4;
    const std::string lab = std::to_string(n) + "x" + std::to_string(c) +
                            (all_ignored ? " every label ignored" : " (every 4th label ignored)") + (c == 40000 ? " (bench)" : "");
    const uint32_t sd = t.seeds(2);
    OpRow& h = t.add(
        "cross_entropy_hard", lab, {{"loss", 1e-5f, 1e-5f}, {"dlogits", 1e-5f, 1e-7f}},
        [=] { return V{randn({n, c}, sd, 3.0f), labels_with_ignored(n, c, all_ignored)}; },
        [=](const V& in, Device d, int j) {
          Tensor x = on(in[0], d), l = on(in[1], d), loss = J({n}, d, j), dl = J({n, c}, d, j);
          return Launch{{loss, dl}, [=] { GEOLOC_DISPATCH(d, cross_entropy_hard, x, l, loss, dl, 0.25f); }};
        },
        5.0 * n * c, 4.0 * (2 * n * c + 2 * n));
    h.reference = [](const V& in, const V& out) {
      std::vector<double> dl;
      const auto loss = xent_hard_ref(in[0], in[1], 0.25f, dl);
      std::string e = close(loss, out[0], 1e-5, 1e-5, "loss vs double logsumexp");
      return e.empty() ? close(dl, out[1], 1e-5, 1e-7, "dlogits vs 0.25 (softmax - onehot)") : e;
    };
    if (n == 5)
      h.grad = {[] {
                  std::mt19937 g(7);
                  return V{rg(random_tensor({4, 5}, g))};
                },
                [](const V& v) { return ops::cross_entropy(ops::scale(v[0], 2.0f), Tensor::from_labels({3, -1, 0, 4})); }};
    const int64_t zero_row = 1;
    OpRow& s = t.add(
        "cross_entropy_soft", std::to_string(n) + "x" + std::to_string(c) + (n > 1 ? " (row 1 all zeros)" : "") +
                                  (c == 40000 ? " (bench)" : ""),
        {{"loss", 1e-4f, 1e-4f}, {"dlogits", 1e-5f, 1e-7f}},
        [=] { return V{randn({n, c}, sd, 3.0f), soft_targets(n, c, sd + 1, zero_row)}; },
        [=](const V& in, Device d, int j) {
          Tensor x = on(in[0], d), tg = on(in[1], d), loss = J({n}, d, j), dl = J({n, c}, d, j);
          return Launch{{loss, dl}, [=] { GEOLOC_DISPATCH(d, cross_entropy_soft, x, tg, loss, dl, 0.5f); }};
        },
        6.0 * n * c, 4.0 * (3 * n * c + n));
    if (n == 5)
      s.grad = {[] {
                  std::mt19937 g(7);
                  return V{rg(random_tensor({3, 4}, g)),
                           Tensor::from_vector({3, 4}, {0.1f, 0.2f, 0.3f, 0.4f, 0, 0, 0, 0, 1, 0, 0, 0})};
                },
                [](const V& v) { return ops::cross_entropy_soft(v[0], v[1]); }};
  }

  // multi-head: hard heads (ignored labels, one head all ignored) and soft heads (a zero row), of different
  // N and C, in one call; each head must equal its own cross_entropy_hard / cross_entropy_soft
  struct HeadCase {
    int64_t n, c;
    bool soft, all_ignored;
  };
  struct MultiCase {
    std::vector<HeadCase> heads;
    const char* label;
  };
  const MultiCase multis[] = {
      {{{17, 1000, false, false}, {9, 40, true, false}, {5, 3, false, true}, {1, 1, true, false}},
       "hard 17x1000, soft 9x40, hard 5x3 all ignored, soft 1x1"},
      {{{64, 3003, false, false}, {64, 3003, true, false}, {64, 157, false, false}}, "64x3003 hard+soft, 64x157 (bench)"}};
  for (const MultiCase& mc : multis) {
    const auto heads = mc.heads;
    const uint32_t sd = t.seeds(2 * static_cast<uint32_t>(heads.size()));
    std::vector<OutSpec> outs;
    double fl = 0, by = 0;
    for (size_t i = 0; i < heads.size(); ++i) {
      outs.push_back({nth("loss", i), 1e-4f, 1e-4f});
      outs.push_back({nth("dlogits", i), 1e-5f, 1e-7f});
      fl += 6.0 * heads[i].n * heads[i].c;
      by += 4.0 * ((heads[i].soft ? 3 : 2) * heads[i].n * heads[i].c + 2 * heads[i].n);
    }
    auto scale_of = [](size_t i) { return 1.0f / static_cast<float>(i + 2); };
    OpRow& r = t.add(
        "cross_entropy_multihead", mc.label, outs,
        [=] {
          V v;
          for (size_t i = 0; i < heads.size(); ++i) {
            const HeadCase& h = heads[i];
            v.push_back(randn({h.n, h.c}, sd + 2 * i, 3.0f));
            v.push_back(h.soft ? soft_targets(h.n, h.c, sd + 2 * i + 1, h.n > 1 ? 1 : -1)
                               : labels_with_ignored(h.n, h.c, h.all_ignored));
          }
          return v;
        },
        [=](const V& in, Device d, int j) {
          std::vector<CrossEntropyHead> hs(heads.size());
          V o;
          for (size_t i = 0; i < heads.size(); ++i) {
            CrossEntropyHead& h = hs[i];
            h.logits = on(in[2 * i], d);
            (heads[i].soft ? h.targets : h.labels) = on(in[2 * i + 1], d);
            h.loss = J({heads[i].n}, d, j);
            h.dlogits = J({heads[i].n, heads[i].c}, d, j);
            h.grad_scale = scale_of(i);
            o.push_back(h.loss);
            o.push_back(h.dlogits);
          }
          return Launch{o, [=] { GEOLOC_DISPATCH(d, cross_entropy_multihead, hs); }};
        },
        fl, by);
    r.reference = [=](const V& in, const V& out) {
      for (size_t i = 0; i < heads.size(); ++i) {
        const int64_t n = heads[i].n, c = heads[i].c;
        Tensor loss = Tensor::empty({n}), dl = Tensor::empty({n, c});
        if (heads[i].soft)
          cpu::cross_entropy_soft(in[2 * i], in[2 * i + 1], loss, dl, scale_of(i));
        else
          cpu::cross_entropy_hard(in[2 * i], in[2 * i + 1], loss, dl, scale_of(i));
        const std::string h = "head " + std::to_string(i) + (heads[i].soft ? " vs cross_entropy_soft" : " vs cross_entropy_hard");
        std::string e = close(dvec(loss), out[2 * i], 1e-6, 1e-7, h + " loss");
        if (e.empty()) e = close(dvec(dl), out[2 * i + 1], 1e-6, 1e-9, h + " dlogits");
        if (!e.empty()) return e;
      }
      return std::string();
    };
    if (heads.size() == 4)
      r.grad = {[] {
                  std::mt19937 g(7);
                  return V{rg(random_tensor({4, 5}, g)), rg(random_tensor({3, 4}, g))};
                },
                [](const V& v) {
                  const Tensor soft = Tensor::from_vector({3, 4}, {0.1f, 0.2f, 0.3f, 0.4f, 0, 0, 0, 0, 1, 0, 0, 0});
                  const auto l = ops::cross_entropy_multihead({ops::scale(v[0], 2.0f), v[1]},
                                                              {{Tensor::from_labels({3, -1, 0, 4}), {}}, {{}, soft}});
                  return ops::weighted_sum(l, {1.0f, 0.5f});
                }};
  }

  // haversine: [N,3] vectors and [N,2] lat/lng, with and without dpred; edge samples at the target, at its
  // antipode, and a zero vector (gradient 0 where it does not exist)
  struct HavCase {
    int64_t n;
    int cols;
    bool dpred, edges;
    const char* note;
  };
  for (const HavCase& hc : {HavCase{37, 3, true, true, "vec3, edge samples"}, HavCase{37, 2, true, true, "lat/lng, edge samples"},
                            HavCase{5, 3, false, false, "no dpred"}, HavCase{1 << 20, 3, true, false, "bench"}}) {
    const int64_t n = hc.n;
    const int cols = hc.cols;
    const bool dpred = hc.dpred, edges = hc.edges;
    const uint32_t sd = t.seeds(2);
    std::vector<OutSpec> outs{{"loss", 1e-5f, 1e-5f}};
    if (dpred) outs.push_back({"dpred", 1e-4f, 1e-5f});
    OpRow& r = t.add(
        "haversine_loss", "pred " + std::to_string(n) + "x" + std::to_string(cols) + " (" + hc.note + ")", outs,
        [=] {
          Tensor tg = uniform({n, 2}, sd, -1.5f, 1.5f);
          float* T = tg.data<float>();
          for (int64_t i = 0; i < n; ++i) T[2 * i + 1] *= 2.0f;  // lng in [-3, 3]
          Tensor p = cols == 3 ? randn({n, 3}, sd + 1) : uniform({n, 2}, sd + 1, -1.5f, 1.5f);
          float* P = p.data<float>();
          if (edges) {
            const float lat = T[0], lng = T[1];
            if (cols == 3) {
              const float v[3] = {std::cos(lat) * std::cos(lng), std::cos(lat) * std::sin(lng), std::sin(lat)};
              for (int k = 0; k < 3; ++k) P[k] = 2.0f * v[k], P[3 + k] = -v[k], P[6 + k] = 0.0f;
              T[2] = lat, T[3] = lng;
            } else {
              P[0] = lat, P[1] = lng;                                   // at the target
              P[2] = -T[2], P[3] = T[3] > 0 ? T[3] - 3.14159265f : T[3] + 3.14159265f;  // the antipode
            }
          }
          return V{p, tg};
        },
        [=](const V& in, Device d, int j) {
          Tensor p = on(in[0], d), tg = on(in[1], d), loss = J({n}, d, j), dp = dpred ? J({n, cols}, d, j) : Tensor();
          return Launch{dpred ? V{loss, dp} : V{loss}, [=] { GEOLOC_DISPATCH(d, haversine_loss, p, tg, loss, dp, 0.5f); }};
        },
        40.0 * n, 4.0 * n * (2 + 1 + (dpred ? 2 * cols : cols)));
    if (edges)
      r.reference = [=](const V&, const V& out) -> std::string {
        const auto l = out[0].to_vector(), g = out[1].to_vector();
        if (!(std::fabs(l[0]) < 1e-3f)) return "loss at the target is " + std::to_string(l[0]);
        if (!(std::fabs(l[1] - 3.14159265f) < 1e-3f)) return "loss at the antipode is " + std::to_string(l[1]);
        if (cols == 3)
          for (int k = 0; k < 3; ++k)
            if (g[6 + k] != 0.0f || l[2] != 0.0f) return "a zero vector must give loss 0 and gradient 0";
        return "";
      };
    if (n == 37)
      r.grad = {[=] {
                  std::mt19937 rng(5);
                  std::normal_distribution<float> nd;
                  std::uniform_real_distribution<float> ulat(-1.3f, 1.3f), ulng(-3.0f, 3.0f);
                  std::vector<float> tv, pv;
                  for (int i = 0; i < 6; ++i) {
                    tv.push_back(ulat(rng));
                    tv.push_back(ulng(rng));
                    if (cols == 3)
                      for (int k = 0; k < 3; ++k) pv.push_back(nd(rng));
                    else
                      pv.push_back(ulat(rng)), pv.push_back(ulng(rng));
                  }
                  return V{rg(Tensor::from_vector({6, cols}, pv)), Tensor::from_vector({6, 2}, tv)};
                },
                [](const V& v) { return nn::haversine_loss(v[0], v[1], nn::DistanceUnit::Radians); }, 1e-3f, 2e-3, 1.5e-4};
  }
}

}  // namespace geoloc::optest::rows
