// The op table's rows of the elementwise functions, reductions, fill and dropout (see tests/ops/op_table.cpp for the tolerances).
#include "rows.hpp"

#include "geoloc/random.hpp"

namespace geoloc::optest::rows {

// ---------------------------------------------------------------- elementwise
void elementwise_rows(Table& t) {
  const Shape shapes[] = {{1}, {3, 5, 7, 9}, {1000003}};
  for (const Shape& s : shapes) {
    const std::string lab = shape_str(s) + (s.numel() > 100000 ? " (bench)" : "");
    const double n = numel(s);
    const uint32_t sd = t.seeds(3);
    const bool grad = s.ndim() == 4;
    OpRow& relu = t.add(
        "relu_forward", lab, {{"y"}}, [=] { return V{randn(s, sd)}; },
        [=](const V& in, Device d, int j) {
          Tensor x = on(in[0], d), y = J(s, d, j);
          return Launch{{y}, [=] { GEOLOC_DISPATCH(d, relu_forward, x, y); }};
        },
        n, 8 * n);
    if (grad)
      relu.grad = {[] {
                     std::mt19937 g(7);
                     return V{rg(spread_tensor({2, 3, 4, 5}, g))};
                   },
                   [](const V& v) { return ops::relu(v[0]); }, 1e-3f, 1e-2, 1e-3};
    t.add(
        "relu_backward", lab, {{"dx"}},
        [=] {
          Tensor y = randn(s, sd);
          cpu::relu_forward(y, y);
          return V{randn(s, sd + 1), y};
        },
        [=](const V& in, Device d, int j) {
          Tensor dy = on(in[0], d), y = on(in[1], d), dx = J(s, d, j);
          return Launch{{dx}, [=] { GEOLOC_DISPATCH(d, relu_backward, dy, y, dx); }};
        },
        n, 12 * n);
    OpRow& add = t.add(
        "add_forward", lab, {{"y"}}, [=] { return V{randn(s, sd), randn(s, sd + 1)}; },
        [=](const V& in, Device d, int j) {
          Tensor a = on(in[0], d), b = on(in[1], d), y = J(s, d, j);
          return Launch{{y}, [=] { GEOLOC_DISPATCH(d, add_forward, a, b, y); }};
        },
        n, 12 * n);
    if (grad)
      add.grad = {[] {
                    std::mt19937 g(7);
                    return V{rg(random_tensor({2, 3, 4}, g)), rg(random_tensor({2, 3, 4}, g))};
                  },
                  [](const V& v) { return ops::add(v[0], v[1]); }};
    OpRow& ar = t.add(
        "add_relu_forward", lab, {{"y"}}, [=] { return V{randn(s, sd), randn(s, sd + 1)}; },
        [=](const V& in, Device d, int j) {
          Tensor a = on(in[0], d), b = on(in[1], d), y = J(s, d, j);
          return Launch{{y}, [=] { GEOLOC_DISPATCH(d, add_relu_forward, a, b, y); }};
        },
        2 * n, 12 * n);
    if (grad)
      ar.grad = {[] {
                   std::mt19937 g(7);
                   return V{rg(spread_tensor({2, 3, 5}, g)), rg(spread_tensor({2, 3, 5}, g, 0.0f))};
                 },
                 [](const V& v) { return ops::add_relu(v[0], ops::scale(v[1], 0.37f)); }, 1e-3f, 1e-2, 1e-3};
    t.add(
        "axpy", lab + " alpha 0.37", {{"dst", 1e-6f, 1e-7f}}, [=] { return V{randn(s, sd), randn(s, sd + 1)}; },
        [=](const V& in, Device d, int) {
          Tensor src = on(in[0], d), dst = mut(in[1], d);
          return Launch{{dst}, [=] { GEOLOC_DISPATCH(d, axpy, 0.37f, src, dst); }};
        },
        2 * n, 12 * n)
        .reference = [](const V& in, const V& out) {
      auto a = dvec(in[0]), b = dvec(in[1]);
      for (size_t i = 0; i < a.size(); ++i) b[i] += 0.37 * a[i];
      return close(b, out[0], 1e-6, 1e-7, "dst + 0.37 src");
    };
    OpRow& sc = t.add(
        "scale", lab + " alpha -1.5", {{"y"}}, [=] { return V{randn(s, sd)}; },
        [=](const V& in, Device d, int j) {
          Tensor x = on(in[0], d), y = J(s, d, j);
          return Launch{{y}, [=] { GEOLOC_DISPATCH(d, scale, x, -1.5f, y); }};
        },
        n, 8 * n);
    if (grad)
      sc.grad = {[] {
                   std::mt19937 g(7);
                   return V{rg(random_tensor({3, 7}, g))};
                 },
                 [](const V& v) { return ops::scale(v[0], -1.7f); }};
    t.add(
        "mul_scalar", lab + " s 0.37", {{"y"}}, [=] { return V{randn(s, sd), Tensor::from_vector({1}, {0.37f})}; },
        [=](const V& in, Device d, int j) {
          Tensor x = on(in[0], d), k = on(in[1], d), y = J(s, d, j);
          return Launch{{y}, [=] { GEOLOC_DISPATCH(d, mul_scalar, x, k, y); }};
        },
        n, 8 * n)
        .reference = [](const V& in, const V& out) {
      auto a = in[0].to_vector();
      std::vector<double> r(a.size());
      for (size_t i = 0; i < a.size(); ++i) r[i] = a[i] * 0.37f;  // one float product: exact match
      return close(r, out[0], 0, 0, "x * s");
    };
    t.add(
        "reduce_sum", lab + " alpha 0.25", {{"y", 1e-6f, 1e-6f}}, [=] { return V{randn(s, sd, 1.0f, 0.3f)}; },
        [=](const V& in, Device d, int j) {
          Tensor x = on(in[0], d), y = J({1}, d, j);
          return Launch{{y}, [=] { GEOLOC_DISPATCH(d, reduce_sum, x, 0.25f, y); }};
        },
        n, 4 * n)
        .reference = [](const V& in, const V& out) {
      double sum = 0;
      for (float v : in[0].to_vector()) sum += v;
      return close({0.25 * sum}, out[0], 1e-6, 1e-6, "0.25 * sum (double)");
    };
    t.add(
        "fill", lab + " 2.25", {{"y"}}, [] { return V{}; },
        [=](const V&, Device d, int j) {
          Tensor y = J(s, d, j);
          return Launch{{y}, [=] { GEOLOC_DISPATCH(d, fill, y, 2.25f); }};
        },
        0, 4 * n)
        .reference = [s](const V&, const V& out) { return close(std::vector<double>(s.numel(), 2.25), out[0], 0, 0, "2.25"); };
    for (float p : {0.1f, 0.5f}) {
      const std::string pl = lab + " p " + (p == 0.1f ? "0.1" : "0.5");
      OpRow& df = t.add(
          "dropout_forward", pl, {{"mask"}, {"y"}}, [=] { return V{randn(s, sd)}; },
          [=](const V& in, Device d, int j) {
            Tensor x = on(in[0], d), m = J(s, d, j, DType::U8), y = J(s, d, j);
            return Launch{{m, y}, [=] { GEOLOC_DISPATCH(d, dropout_forward, x, m, y, p, 1234); }};
          },
          n, 9 * n);
      df.reference = [=](const V& in, const V& out) -> std::string {
        const uint8_t* m = out[0].data<uint8_t>();
        const auto x = in[0].to_vector();
        std::vector<double> y(x.size());
        for (size_t i = 0; i < x.size(); ++i) {
          const bool keep = random::dropout_keep(1234, i, p);
          if (m[i] != (keep ? 1 : 0)) return "mask[" + std::to_string(i) + "] is not the counter hash's";
          y[i] = keep ? x[i] / (1.0 - p) : 0.0;
        }
        return close(y, out[1], 1e-6, 0, "x * mask / (1 - p)");
      };
      if (grad && p == 0.1f)
        df.grad = {[] {
                     std::mt19937 g(7);
                     return V{rg(random_tensor({4, 9}, g))};
                   },
                   [](const V& v) { return ops::dropout(v[0], 0.3f, true, 42); }};
      t.add(
          "dropout_backward", pl, {{"dx"}},
          [=] {
            Tensor m = Tensor::empty(s, DType::U8), y = Tensor::empty(s);
            cpu::dropout_forward(randn(s, sd), m, y, p, 1234);
            return V{randn(s, sd + 2), m};
          },
          [=](const V& in, Device d, int j) {
            Tensor dy = on(in[0], d), m = on(in[1], d), dx = J(s, d, j);
            return Launch{{dx}, [=] { GEOLOC_DISPATCH(d, dropout_backward, dy, m, dx, p); }};
          },
          n, 9 * n);
    }
  }
}

}  // namespace geoloc::optest::rows
