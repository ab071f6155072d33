// The op table's rows of max and global-average pooling (see tests/ops/op_table.cpp for the tolerances).
#include "rows.hpp"

namespace geoloc::optest::rows {

// ---------------------------------------------------------------- pooling
void pooling_rows(Table& t) {
  struct PoolCase {
    Shape x;
    Pool2dArgs a;
    const char* note;
    int grad;  // 0 none, 1: 3x3 s2 p1 grad case, 2: 2x2 s2 odd grad case
  };
  const PoolCase cases[] = {{{2, 7, 9, 3}, {2, 2, 0}, "2x2 s2 odd", 2},
                            {{3, 11, 10, 5}, {3, 2, 1}, "3x3 s2 p1 (-inf padding)", 1},
                            {{1, 5, 5, 64}, {3, 1, 1}, "3x3 s1 p1", 0},
                            {{2, 8, 8, 4}, {2, 3, 0}, "2x2 s3 (gaps)", 0},
                            {{8, 56, 56, 64}, {3, 2, 1}, "bench", 0}};
  for (const PoolCase& pc : cases) {
    const Shape xs = pc.x;
    const Pool2dArgs a = pc.a;
    const int64_t ho = conv_out_size(xs[1], a.kernel, a.stride, a.pad), wo = conv_out_size(xs[2], a.kernel, a.stride, a.pad);
    const Shape ys{xs[0], ho, wo, xs[3]}, gs{xs[0], xs[3]};
    const std::string lab = shape_str(xs) + " k" + std::to_string(a.kernel) + " s" + std::to_string(a.stride) + " p" +
                            std::to_string(a.pad) + " (" + pc.note + ")";
    const uint32_t sd = t.seeds(3);
    OpRow& mp = t.add(
        "max_pool2d_forward", lab, {{"y"}, {"argmax"}}, [=] { return V{randn(xs, sd)}; },
        [=](const V& in, Device d, int j) {
          Tensor x = on(in[0], d), y = J(ys, d, j), am = J(ys, d, j, DType::I32);
          return Launch{{y, am}, [=] { GEOLOC_DISPATCH(d, max_pool2d_forward, x, y, am, a); }};
        },
        numel(ys) * a.kernel * a.kernel, 4 * numel(xs) + 8 * numel(ys));
    if (pc.grad == 1)
      mp.grad = {[] {
                   std::mt19937 g(7);
                   return V{rg(spread_tensor({2, 7, 7, 3}, g))};
                 },
                 [](const V& v) { return ops::max_pool2d(v[0], 3, 2, 1); }, 1e-4f, 1e-2, 1e-3, 64};
    if (pc.grad == 2)
      mp.grad = {[] {
                   std::mt19937 g(7);
                   return V{rg(spread_tensor({1, 5, 4, 2}, g))};
                 },
                 [](const V& v) { return ops::max_pool2d(v[0], 2, 2, 0); }, 1e-4f, 1e-2, 1e-3, 64};
    t.add(
        "max_pool2d_backward", lab, {{"dx", 1e-6f, 1e-6f}},
        [=] {
          Tensor y = Tensor::empty(ys), am = Tensor::empty(ys, DType::I32);
          cpu::max_pool2d_forward(randn(xs, sd), y, am, a);
          return V{randn(ys, sd + 1), am};
        },
        [=](const V& in, Device d, int j) {
          Tensor dy = on(in[0], d), am = on(in[1], d), dx = J(xs, d, j);
          return Launch{{dx}, [=] { GEOLOC_DISPATCH(d, max_pool2d_backward, dy, am, dx); }};
        },
        numel(ys), 4 * numel(xs) + 8 * numel(ys));
    OpRow& gp = t.add(
        "global_avg_pool_forward", shape_str(xs), {{"y", 1e-5f, 1e-6f}}, [=] { return V{randn(xs, sd)}; },
        [=](const V& in, Device d, int j) {
          Tensor x = on(in[0], d), y = J(gs, d, j);
          return Launch{{y}, [=] { GEOLOC_DISPATCH(d, global_avg_pool_forward, x, y); }};
        },
        numel(xs), 4 * (numel(xs) + numel(gs)));
    if (pc.grad == 1)
      gp.grad = {[] {
                   std::mt19937 g(7);
                   return V{rg(random_tensor({2, 3, 5, 4}, g))};
                 },
                 [](const V& v) { return ops::global_avg_pool(v[0]); }};
    t.add(
        "global_avg_pool_backward", shape_str(xs), {{"dx", 1e-6f, 1e-7f}}, [=] { return V{randn(gs, sd + 2)}; },
        [=](const V& in, Device d, int j) {
          Tensor dy = on(in[0], d), dx = J(xs, d, j);
          return Launch{{dx}, [=] { GEOLOC_DISPATCH(d, global_avg_pool_backward, dy, dx); }};
        },
        numel(xs), 4 * (numel(xs) + numel(gs)));
  }
}

}  // namespace geoloc::optest::rows
