// The op table's rows of the linear layer (see tests/ops/op_table.cpp for the tolerances).
#include "rows.hpp"

namespace geoloc::optest::rows {

// ---------------------------------------------------------------- linear
void linear_rows(Table& t) {
  const int64_t dims[][3] = {{1, 1, 1}, {7, 13, 5}, {33, 65, 17}, {64, 512, 1000}, {256, 2048, 3}};
  for (const auto& dm : dims) {
    const int64_t n = dm[0], k = dm[1], c = dm[2];
    const std::string lab = "x " + std::to_string(n) + "x" + std::to_string(k) + " w " + std::to_string(c) + "x" +
                            std::to_string(k) + (n == 64 ? " (bench)" : "");
    const uint32_t sd = t.seeds(4);
    const double fl = 2.0 * n * k * c, by = 4.0 * (n * k + c * k + n * c);
    for (bool bias : {false, true}) {
      OpRow& r = t.add(
          "linear_forward", lab + (bias ? " +bias" : ""), {{"y", 1e-4f, 1e-4f}},
          [=] { return V{randn({n, k}, sd), randn({c, k}, sd + 1, 0.1f), bias ? randn({c}, sd + 2) : Tensor()}; },
          [=](const V& in, Device d, int j) {
            Tensor x = on(in[0], d), w = on(in[1], d), b = on(in[2], d), y = J({n, c}, d, j);
            return Launch{{y}, [=] { GEOLOC_DISPATCH(d, linear_forward, x, w, b, y); }};
          },
          fl, by);
      if (n == 7)
        r.grad = {[=] {
                    std::mt19937 g(7);
                    return V{rg(random_tensor({n, k}, g)), rg(random_tensor({c, k}, g)), bias ? rg(random_tensor({c}, g)) : Tensor()};
                  },
                  [](const V& v) { return ops::linear(v[0], v[1], v[2]); }};
    }
    struct Which {
      const char* what;
      bool dx, dw, db;
    };
    for (const Which& wh : {Which{"dx dw dbias", true, true, true}, Which{"dw only", false, true, false},
                            Which{"dx only", true, false, false}, Which{"dbias only", false, false, true}}) {
      std::vector<OutSpec> outs;
      if (wh.dx) outs.push_back({"dx", 1e-4f, 1e-4f});
      if (wh.dw) outs.push_back({"dw", 1e-4f, 1e-4f});
      if (wh.db) outs.push_back({"dbias", 1e-4f, 1e-4f});
      t.add(
          "linear_backward", lab + " " + wh.what, outs,
          [=] { return V{randn({n, c}, sd + 3), randn({n, k}, sd), randn({c, k}, sd + 1, 0.1f)}; },
          [=](const V& in, Device d, int j) {
            Tensor dy = on(in[0], d), x = on(in[1], d), w = on(in[2], d);
            Tensor dx = wh.dx ? J({n, k}, d, j) : Tensor(), dw = wh.dw ? J({c, k}, d, j) : Tensor(),
                   db = wh.db ? J({c}, d, j) : Tensor();
            V o;
            for (const Tensor& x2 : {dx, dw, db})
              if (x2.defined()) o.push_back(x2);
            return Launch{o, [=] { GEOLOC_DISPATCH(d, linear_backward, dy, x, w, dx, dw, db); }};
          },
          fl * ((wh.dx ? 1 : 0) + (wh.dw ? 1 : 0)) + (wh.db ? n * c : 0), by);
    }
  }
}

}  // namespace geoloc::optest::rows
