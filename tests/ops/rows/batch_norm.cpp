// The op table's rows of batch norm and the batch norm + add + ReLU training fusion (see tests/ops/op_table.cpp for the tolerances).
#include "rows.hpp"

namespace geoloc::optest::rows {

// ---------------------------------------------------------------- batch norm
void batch_norm_rows(Table& t) {
  struct BnCase {
    Shape s;
    bool grad;
    const char* note;
  };
  const BnCase cases[] = {{{4, 5, 7, 3}, true, "odd"},       {{2, 8, 8, 64}, false, "64 channels"},
                          {{37, 13}, true, "[N,C]"},        {{3, 3, 3, 130}, false, "130 channels"},
                          {{8, 28, 28, 64}, false, "bench"}};
  for (const BnCase& bc : cases) {
    const Shape s = bc.s;
    const int64_t c = s[-1];
    const std::string lab = shape_str(s) + " (" + bc.note + ")";
    const uint32_t sd = t.seeds(8);
    auto params = [=] {
      return V{randn(s, sd, 2.0f, 0.5f), randn({c}, sd + 1), randn({c}, sd + 2), randn({c}, sd + 3),
               uniform({c}, sd + 4, 0.5f, 2.0f)};
    };
    const double n = numel(s);
    OpRow& tr = t.add(
        "batch_norm_forward_train", lab,
        {{"y", 1e-4f, 1e-4f}, {"save_mean", 1e-5f, 1e-6f}, {"save_invstd", 1e-5f, 1e-6f}, {"running_mean", 1e-5f, 1e-6f},
         {"running_var", 1e-5f, 1e-6f}},
        params,
        [=](const V& in, Device d, int j) {
          Tensor x = on(in[0], d), g = on(in[1], d), b = on(in[2], d), rm = mut(in[3], d), rv = mut(in[4], d);
          Tensor y = J(s, d, j), m = J({c}, d, j), is = J({c}, d, j);
          return Launch{{y, m, is, rm, rv},
                        [=] { GEOLOC_DISPATCH(d, batch_norm_forward_train, x, g, b, rm, rv, 0.1f, 1e-5f, y, m, is); }};
        },
        8.0 * n, 4.0 * 3 * n);
    if (bc.grad)
      tr.grad = {[=] {
                   std::mt19937 g(sd);
                   return V{rg(random_tensor(s, g)), rg(random_tensor({c}, g, 0.5f, 1.5f)), rg(random_tensor({c}, g)),
                            random_tensor({c}, g, -0.2f, 0.2f), random_tensor({c}, g, 0.5f, 2.0f)};
                 },
                 [](const V& v) { return ops::batch_norm(v[0], v[1], v[2], v[3], v[4], true); }, 1e-2f, 3e-2, 3e-3};
    OpRow& ev = t.add(
        "batch_norm_forward_eval", lab, {{"y", 1e-5f, 1e-5f}}, params,
        [=](const V& in, Device d, int j) {
          V v;
          for (const Tensor& x : in) v.push_back(on(x, d));
          Tensor y = J(s, d, j);
          return Launch{{y}, [=] { GEOLOC_DISPATCH(d, batch_norm_forward_eval, v[0], v[1], v[2], v[3], v[4], 1e-5f, y); }};
        },
        2.0 * n, 4.0 * 2 * n);
    if (bc.grad)
      ev.grad = {[=] {
                   std::mt19937 g(sd + 1);
                   return V{rg(random_tensor(s, g)), rg(random_tensor({c}, g, 0.5f, 1.5f)), rg(random_tensor({c}, g)),
                            random_tensor({c}, g, -0.2f, 0.2f), random_tensor({c}, g, 0.5f, 2.0f)};
                 },
                 [](const V& v) { return ops::batch_norm(v[0], v[1], v[2], v[3], v[4], false); }, 1e-2f, 3e-2, 3e-3};
    // backward: with the batch's saved statistics (all outputs / dx only), and with given statistics and no
    // dx (ops.cpp's eval-mode backward)
    struct BwCase {
      const char* what;
      bool batch_stats, dx, dgb;
    };
    for (const BwCase& bw : {BwCase{"batch statistics, dx dgamma dbeta", true, true, true},
                             BwCase{"batch statistics, dx only", true, true, false},
                             BwCase{"given statistics, dgamma dbeta only", false, false, true}}) {
      std::vector<OutSpec> outs;
      if (bw.dx) outs.push_back({"dx", 1e-4f, 1e-4f});
      if (bw.dgb) outs.insert(outs.end(), {{"dgamma", 1e-4f, 1e-4f}, {"dbeta", 1e-4f, 1e-4f}});
      t.add(
          "batch_norm_backward", lab + " " + bw.what, outs,
          [=] {
            V p = params();
            Tensor dy = randn(s, sd + 5), mean, invstd;
            if (bw.batch_stats) {
              mean = Tensor::empty({c}), invstd = Tensor::empty({c});
              Tensor y = Tensor::empty(s), rm = p[3].clone(), rv = p[4].clone();
              cpu::batch_norm_forward_train(p[0], p[1], p[2], rm, rv, 0.1f, 1e-5f, y, mean, invstd);
            } else {
              mean = p[3], invstd = uniform({c}, sd + 6, 0.5f, 1.5f);
            }
            return V{dy, p[0], p[1], mean, invstd};
          },
          [=](const V& in, Device d, int j) {
            V v;
            for (const Tensor& x : in) v.push_back(on(x, d));
            Tensor dx = bw.dx ? J(s, d, j) : Tensor(), dg = bw.dgb ? J({c}, d, j) : Tensor(),
                   db = bw.dgb ? J({c}, d, j) : Tensor();
            V outs;
            for (const Tensor& o : {dx, dg, db})
              if (o.defined()) outs.push_back(o);
            return Launch{outs, [=] { GEOLOC_DISPATCH(d, batch_norm_backward, v[0], v[1], v[2], v[3], v[4], dx, dg, db); }};
          },
          10.0 * n, 4.0 * 3 * n);
    }
  }

  // synchronised batch norm (ops::batch_norm_sync): one process's statistics, and dx from sums over every
  // process's rows. References: a double-precision two-pass mean and variance; with this process's own sums
  // and row count, dx is batch_norm_backward's.
  struct SyncCase {
    Shape s;
    bool grad;
    const char* note;
  };
  const SyncCase syncs[] = {{{4, 5, 7, 3}, true, "odd"},
                            {{37, 13}, true, "[N,C]"},
                            {{3, 3, 3, 130}, false, "130 channels"},
                            {{8, 28, 28, 64}, false, "bench"}};
  for (const SyncCase& sc : syncs) {
    const Shape s = sc.s;
    const int64_t c = s[-1], m = s.numel() / c;
    const std::string lab = shape_str(s) + " (" + sc.note + ")";
    const uint32_t sd = t.seeds(4);
    const double n = numel(s);
    OpRow& st = t.add(
        "batch_norm_stats", lab, {{"mean", 1e-5f, 1e-6f}, {"var", 1e-5f, 1e-6f}},
        [=] { return V{randn(s, sd, 2.0f, 0.5f)}; },
        [=](const V& in, Device d, int j) {
          Tensor x = on(in[0], d), mean = J({c}, d, j), var = J({c}, d, j);
          return Launch{{mean, var}, [=] { GEOLOC_DISPATCH(d, batch_norm_stats, x, mean, var); }};
        },
        3.0 * n, 4.0 * n);
    st.reference = [=](const V& in, const V& out) {
      const std::vector<double> x = dvec(in[0]);
      std::vector<double> mean(c, 0.0), var(c, 0.0);
      for (int64_t r = 0; r < m; ++r)
        for (int64_t j = 0; j < c; ++j) mean[j] += x[r * c + j] / m;
      for (int64_t r = 0; r < m; ++r)
        for (int64_t j = 0; j < c; ++j) var[j] += (x[r * c + j] - mean[j]) * (x[r * c + j] - mean[j]) / m;
      std::string e = close(mean, out[0], 1e-6, 1e-6, "mean vs two-pass double");
      if (e.empty()) e = close(var, out[1], 1e-5, 1e-6, "var vs two-pass double");
      return e;
    };
    if (sc.grad)  // the autograd op over it, one process (the all-reduce is the identity)
      st.grad = {[=] {
                   std::mt19937 g(sd);
                   return V{rg(random_tensor(s, g)), rg(random_tensor({c}, g, 0.5f, 1.5f)), rg(random_tensor({c}, g)),
                            random_tensor({c}, g, -0.2f, 0.2f), random_tensor({c}, g, 0.5f, 2.0f)};
                 },
                 [](const V& v) {
                   const ops::CrossReplica one{[](const Tensor&) {}, 1, 0};
                   return ops::batch_norm_sync(v[0], v[1], v[2], v[3], v[4], 0.1f, 1e-5f, one);
                 },
                 1e-2f, 3e-2, 3e-3};
    OpRow& bdx = t.add(
        "batch_norm_backward_dx", lab, {{"dx", 1e-4f, 1e-4f}},
        [=] {
          // dy, x, gamma, the batch's mean and invstd, and its sums of dy and dy * xhat (dbeta and dgamma),
          // each process's sum in a real run; here one process's, scaled as if three equal processes had
          // contributed (count 3 m), so that the count matters
          const Tensor x = randn(s, sd + 1, 2.0f, 0.5f), gamma = uniform({c}, sd + 2, 0.5f, 1.5f), dy = randn(s, sd + 3);
          Tensor mean = Tensor::empty({c}), invstd = Tensor::empty({c}), rm = Tensor::zeros({c}), rv = Tensor::full({c}, 1.0f);
          cpu::batch_norm_forward_train(x, gamma, Tensor::zeros({c}), rm, rv, 0.1f, 1e-5f, Tensor::empty(s), mean, invstd);
          Tensor sdyx = Tensor::empty({c}), sdy = Tensor::empty({c});
          cpu::batch_norm_backward(dy, x, gamma, mean, invstd, Tensor(), sdyx, sdy);
          cpu::scale(sdy, 3.0f, sdy);
          cpu::scale(sdyx, 3.0f, sdyx);
          return V{dy, x, gamma, mean, invstd, sdy, sdyx};
        },
        [=](const V& in, Device d, int j) {
          V v;
          for (const Tensor& x : in) v.push_back(on(x, d));
          Tensor dx = J(s, d, j);
          return Launch{{dx}, [=] {
                          GEOLOC_DISPATCH(d, batch_norm_backward_dx, v[0], v[1], v[2], v[3], v[4], v[5], v[6], 3.0 * m, dx);
                        }};
        },
        6.0 * n, 4.0 * 3 * n);
    bdx.reference = [=](const V& in, const V& out) {
      // three equal processes' sums over 3 m rows: the one-process backward's dx
      Tensor dx = Tensor::empty(s);
      cpu::batch_norm_backward(in[0], in[1], in[2], in[3], in[4], dx, Tensor(), Tensor());
      return close(dvec(dx), out[0], 1e-5, 1e-5, "dx vs batch_norm_backward");
    };
  }

  // the fused training path of ResNet blocks: relu?(bn(x) + residual?)
  struct ActCase {
    Shape s;
    bool residual, relu, grad;
    const char* note;
  };
  const ActCase acts[] = {{{3, 5, 7, 6}, true, true, true, "odd"},    {{3, 5, 7, 6}, false, true, true, "odd"},
                          {{3, 5, 7, 6}, true, false, true, "odd"},   {{3, 5, 7, 6}, false, false, true, "odd"},
                          {{2, 8, 8, 64}, true, true, false, "64 ch"}, {{8, 28, 28, 64}, true, true, false, "bench"}};
  for (const ActCase& ac : acts) {
    const Shape s = ac.s;
    const int64_t c = s[-1];
    const bool residual = ac.residual, relu = ac.relu;
    const std::string lab = shape_str(s) + (residual ? " +residual" : "") + (relu ? " +relu" : "") + " (" + ac.note + ")";
    const uint32_t sd = t.seeds(8);
    auto params = [=] {
      return V{bf16_exact(randn(s, sd, 2.0f, 0.5f)), uniform({c}, sd + 1, 0.5f, 1.5f), randn({c}, sd + 2),
               randn({c}, sd + 3, 0.2f), uniform({c}, sd + 4, 0.5f, 2.0f), residual ? randn(s, sd + 5) : Tensor()};
    };
    const double n = numel(s);
    OpRow& fw = t.add(
        "batch_norm_act_forward_train", lab,
        {{"y", 1e-4f, 1e-4f}, {"save_mean", 1e-5f, 1e-6f}, {"save_invstd", 1e-5f, 1e-6f}, {"running_mean", 1e-5f, 1e-6f},
         {"running_var", 1e-5f, 1e-6f}},
        params,
        [=](const V& in, Device d, int j) {
          Tensor x = on(in[0], d), g = on(in[1], d), b = on(in[2], d), rm = mut(in[3], d), rv = mut(in[4], d),
                 res = on(in[5], d);
          Tensor y = J(s, d, j), m = J({c}, d, j), is = J({c}, d, j);
          return Launch{{y, m, is, rm, rv}, [=] {
                          GEOLOC_DISPATCH(d, batch_norm_act_forward_train, x, g, b, rm, rv, 0.1f, 1e-5f, res, relu, y, m,
                                          is);
                        }};
        },
        10.0 * n, 4.0 * (residual ? 4 : 3) * n);
    fw.reference = [=](const V& in, const V& out) {
      Tensor y = Tensor::empty(s), m = Tensor::empty({c}), is = Tensor::empty({c}), rm = in[3].clone(), rv = in[4].clone();
      cpu::batch_norm_forward_train(in[0], in[1], in[2], rm, rv, 0.1f, 1e-5f, y, m, is);
      if (residual) cpu::add_forward(y, in[5], y);
      if (relu) cpu::relu_forward(y, y);
      std::string e = close(dvec(y), out[0], 1e-6, 1e-6, "fused y vs batch_norm -> add -> relu");
      if (e.empty()) e = close(dvec(rm), out[3], 0, 0, "running_mean vs batch_norm_forward_train");
      if (e.empty()) e = close(dvec(rv), out[4], 0, 0, "running_var vs batch_norm_forward_train");
      return e;
    };
    if (ac.grad)
      fw.grad = {[=] {
                   std::mt19937 g(sd);
                   const Shape gs{2, 3, 3, 4};
                   return V{rg(random_tensor(gs, g)), rg(random_tensor({4}, g, 0.5f, 1.5f)), rg(random_tensor({4}, g)),
                            random_tensor({4}, g, -0.2f, 0.2f), random_tensor({4}, g, 0.5f, 2.0f),
                            residual ? rg(random_tensor(gs, g)) : Tensor()};
                 },
                 [=](const V& v) { return ops::batch_norm_act(v[0], v[1], v[2], v[3], v[4], 0.1f, 1e-5f, v[5], relu); },
                 1e-3f, 3e-2, 3e-3};
    for (bool with_dx : {true, false}) {
      if (!with_dx && !(residual && relu)) continue;
      std::vector<OutSpec> outs;
      if (with_dx) outs.push_back({"dx", 1e-4f, 1e-4f});
      outs.insert(outs.end(), {{"dgamma", 1e-4f, 1e-4f}, {"dbeta", 1e-4f, 1e-4f}});
      if (residual) outs.push_back({"dresidual", 0, 0});
      t.add(
          "batch_norm_act_backward", lab + (with_dx ? "" : " no dx"), outs,
          [=] {
            V p = params();
            Tensor y = Tensor::empty(s), m = Tensor::empty({c}), is = Tensor::empty({c}), rm = p[3].clone(),
                   rv = p[4].clone();
            cpu::batch_norm_act_forward_train(p[0], p[1], p[2], rm, rv, 0.1f, 1e-5f, p[5], relu, y, m, is);
            return V{randn(s, sd + 6), p[0], y, p[1], p[2], m, is};
          },
          [=](const V& in, Device d, int j) {
            V v;
            for (const Tensor& x : in) v.push_back(on(x, d));
            Tensor dx = with_dx ? J(s, d, j) : Tensor(), dg = J({c}, d, j), db = J({c}, d, j),
                   dr = residual ? J(s, d, j) : Tensor();
            V outs;
            for (const Tensor& o : {dx, dg, db, dr})
              if (o.defined()) outs.push_back(o);
            return Launch{outs, [=] {
                            GEOLOC_DISPATCH(d, batch_norm_act_backward, v[0], v[1], v[2], v[3], v[4], v[5], v[6], relu,
                                            dx, dg, db, dr);
                          }};
          },
          12.0 * n, 4.0 * (residual ? 5 : 4) * n);
    }
  }
}

}  // namespace geoloc::optest::rows
