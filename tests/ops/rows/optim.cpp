// The op table's rows of the SGD and AdamW steps (see tests/ops/op_table.cpp for the tolerances).
#include "rows.hpp"

namespace geoloc::optest::rows {

// ---------------------------------------------------------------- optimisers
void optim_rows(Table& t) {
  // slot 0 large, slot 1 small with no weight decay, slot 2 without a gradient (skipped: unchanged)
  const int64_t sizes[] = {100003, 37, 11};
  struct SgdCase {
    float momentum, dampening, wd;
    bool nesterov, first;
    const char* note;
  };
  for (const SgdCase& sc : {SgdCase{0.9f, 0.0f, 1e-4f, false, true, "momentum, first step"},
                            SgdCase{0.9f, 0.1f, 1e-4f, false, false, "momentum, dampening"},
                            SgdCase{0.9f, 0.0f, 5e-4f, true, false, "nesterov"},
                            SgdCase{0.0f, 0.0f, 0.0f, false, false, "plain (no buffer)"}}) {
    const bool buf = sc.momentum != 0.0f;
    const uint32_t sd = t.seeds(9);
    std::vector<OutSpec> outs;
    for (int i = 0; i < 3; ++i) {
      outs.push_back({nth("param", i), 1e-6f, 1e-6f});
      if (buf) outs.push_back({nth("momentum", i), 1e-6f, 1e-6f});
    }
    const float lr = 0.05f;
    auto wd_of = [sc](int i) { return i == 1 ? 0.0f : sc.wd; };
    t.add(
         "sgd_step", std::string(sc.note) + ", 3 slots (100003, 37, 11 without grad)", outs,
         [=] {
           V v;
           for (int i = 0; i < 3; ++i) {
             const Shape s{sizes[i]};
             v.push_back(randn(s, sd + 3 * i));
             v.push_back(i == 2 ? Tensor() : randn(s, sd + 3 * i + 1));
             v.push_back(buf ? randn(s, sd + 3 * i + 2) : Tensor());
           }
           return v;
         },
         [=](const V& in, Device d, int) {
           std::vector<OptimSlot> slots;
           V o;
           for (int i = 0; i < 3; ++i) {
             slots.push_back({mut(in[3 * i], d), on(in[3 * i + 1], d), mut(in[3 * i + 2], d), Tensor(), wd_of(i)});
             o.push_back(slots.back().param);
             if (buf) o.push_back(slots.back().state1);
           }
           return Launch{o, [=] { GEOLOC_DISPATCH(d, sgd_step, slots, lr, sc.momentum, sc.dampening, sc.nesterov, sc.first); }};
         },
         5.0 * (sizes[0] + sizes[1]), 4.0 * (buf ? 5 : 3) * (sizes[0] + sizes[1]))
        .reference = [=](const V& in, const V& out) {
      size_t k = 0;
      for (int i = 0; i < 3; ++i) {
        auto p = dvec(in[3 * i]);
        std::vector<double> b = buf ? dvec(in[3 * i + 2]) : std::vector<double>();
        if (i != 2) {
          const auto g = dvec(in[3 * i + 1]);
          const double m = sc.momentum, damp = sc.dampening, wd = wd_of(i);
          for (size_t e = 0; e < p.size(); ++e) {
            double dd = g[e] + wd * p[e];
            if (buf) {
              b[e] = sc.first ? dd : m * b[e] + (1.0 - damp) * dd;
              dd = sc.nesterov ? dd + m * b[e] : b[e];
            }
            p[e] -= double(lr) * dd;
          }
        }
        const double tol = i == 2 ? 0.0 : 1e-6;  // a slot without a gradient is left exactly as it was
        std::string e = close(p, out[k++], tol, tol, nth("param", i) + " vs the SGD formula in double");
        if (e.empty() && buf) e = close(b, out[k++], tol, tol, nth("momentum", i) + " vs the formula");
        if (!e.empty()) return e;
      }
      return std::string();
    };
  }
  for (int64_t step : {1, 2, 100}) {
    const uint32_t sd = t.seeds(8);
    std::vector<OutSpec> outs;
    for (int i = 0; i < 2; ++i)
      outs.insert(outs.end(), {{nth("param", i), 1e-5f, 1e-6f},
                               {nth("m", i), 1e-6f, 1e-7f},
                               {nth("v", i), 1e-6f, 1e-7f}});
    const float lr = 1e-3f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    t.add(
         "adamw_step", "step " + std::to_string(step) + ", 2 slots (100003 wd 0.01, 37 wd 0)", outs,
         [=] {
           V v;
           for (int i = 0; i < 2; ++i) {
             const Shape s{sizes[i]};
             v.push_back(randn(s, sd + 4 * i));
             v.push_back(randn(s, sd + 4 * i + 1));
             v.push_back(randn(s, sd + 4 * i + 2, 0.1f));
             v.push_back(uniform(s, sd + 4 * i + 3, 0.0f, 0.1f));
           }
           return v;
         },
         [=](const V& in, Device d, int) {
           std::vector<OptimSlot> slots;
           V o;
           for (int i = 0; i < 2; ++i) {
             slots.push_back({mut(in[4 * i], d), on(in[4 * i + 1], d), mut(in[4 * i + 2], d), mut(in[4 * i + 3], d),
                              i == 0 ? 0.01f : 0.0f});
             o.insert(o.end(), {slots.back().param, slots.back().state1, slots.back().state2});
           }
           return Launch{o, [=] { GEOLOC_DISPATCH(d, adamw_step, slots, lr, b1, b2, eps, step); }};
         },
         12.0 * (sizes[0] + sizes[1]), 4.0 * 7 * (sizes[0] + sizes[1]))
        .reference = [=](const V& in, const V& out) {
      for (int i = 0; i < 2; ++i) {
        auto p = dvec(in[4 * i]), m = dvec(in[4 * i + 2]), v = dvec(in[4 * i + 3]);
        const auto g = dvec(in[4 * i + 1]);
        const double wd = i == 0 ? 0.01 : 0.0, bc1 = 1.0 - std::pow(double(b1), double(step)),
                     bc2 = 1.0 - std::pow(double(b2), double(step));
        for (size_t e = 0; e < p.size(); ++e) {
          p[e] *= 1.0 - double(lr) * wd;
          m[e] = double(b1) * m[e] + (1.0 - double(b1)) * g[e];
          v[e] = double(b2) * v[e] + (1.0 - double(b2)) * g[e] * g[e];
          p[e] -= double(lr) * (m[e] / bc1) / (std::sqrt(v[e] / bc2) + double(eps));
        }
        const std::string s = std::to_string(i);
        std::string e = close(p, out[3 * i], 1e-5, 1e-6, "param" + s + " vs the AdamW formula in double");
        if (e.empty()) e = close(m, out[3 * i + 1], 1e-5, 1e-7, "m" + s + " vs the formula");
        if (e.empty()) e = close(v, out[3 * i + 2], 1e-5, 1e-7, "v" + s + " vs the formula");
        if (!e.empty()) return e;
      }
      return std::string();
    };
  }
}

}  // namespace geoloc::optest::rows
