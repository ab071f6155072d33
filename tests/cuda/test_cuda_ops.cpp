// Every function of GEOLOC_BACKEND_DECLARATIONS: cuda:: against cpu:: on random inputs, GPU outputs
// pre-filled with junk. Tolerances (|gpu - cpu| <= atol + rtol |cpu|):
//   exact (0)            : relu, add, scale, fill, dropout mask/values, max pool values/argmax, copies
//   rtol 1e-5, atol 1e-6 : other elementwise, pooling averages, optimiser steps, softmax losses
//   rtol 1e-4, atol 1e-4 : convolutions, linear layers (fp32 FMA math, no TF32; only the order of the
//                          sums differs), batch norm (double-accumulated statistics on both sides)
#include <doctest/doctest.h>

#include "cuda_test_util.hpp"
#include "geoloc/backend.hpp"

using namespace geoloc;
using namespace geoloc::test;

namespace {
struct ConvCase {
  int64_t n, h, w, ci, co, k;
  int stride, pad;
};
const ConvCase kConvCases[] = {
    {2, 7, 9, 3, 5, 3, 1, 1},   // odd sizes, padding
    {3, 8, 8, 4, 6, 3, 2, 1},   // stride 2
    {2, 5, 5, 8, 4, 1, 1, 0},   // 1x1
    {1, 9, 7, 5, 3, 5, 2, 2},   // 5x5, stride 2, pad 2
    {2, 6, 6, 16, 8, 1, 2, 0},  // strided 1x1 (ResNet downsample)
    {2, 4, 5, 3, 2, 4, 1, 0},   // even kernel
    {4, 14, 14, 32, 64, 3, 1, 1},
};
}  // namespace

TEST_CASE("cuda conv2d forward / backward data / backward filter match the CPU") {
  GEOLOC_SKIP_WITHOUT_CUDA();
  uint32_t seed = 1;
  for (const ConvCase& cc : kConvCases) {
    const Conv2dArgs a{cc.stride, cc.pad};
    const int64_t ho = conv_out_size(cc.h, cc.k, cc.stride, cc.pad),
                  wo = conv_out_size(cc.w, cc.k, cc.stride, cc.pad);
    INFO("conv n=" << cc.n << " h=" << cc.h << " w=" << cc.w << " ci=" << cc.ci << " co=" << cc.co
                   << " k=" << cc.k << " stride=" << cc.stride << " pad=" << cc.pad);
    Tensor x = randn({cc.n, cc.h, cc.w, cc.ci}, seed++), w = randn({cc.co, cc.k, cc.k, cc.ci}, seed++, 0.3f);
    Tensor b = randn({cc.co}, seed++), dy = randn({cc.n, ho, wo, cc.co}, seed++);
    for (bool with_bias : {false, true}) {
      Tensor yc = cpu_junk({cc.n, ho, wo, cc.co}), yg = junk({cc.n, ho, wo, cc.co});
      cpu::conv2d_forward(x, w, with_bias ? b : Tensor(), yc, a);
      cuda::conv2d_forward(x.to(gpu()), w.to(gpu()), with_bias ? b.to(gpu()) : Tensor(), yg, a);
      check_close(yg, yc, 1e-4f, 1e-4f, with_bias ? "conv forward + bias" : "conv forward");
    }
    Tensor dxc = cpu_junk(x.shape()), dxg = junk(x.shape());
    cpu::conv2d_backward_data(dy, w, dxc, a);
    cuda::conv2d_backward_data(dy.to(gpu()), w.to(gpu()), dxg, a);
    check_close(dxg, dxc, 1e-4f, 1e-4f, "conv backward data");
    Tensor dwc = cpu_junk(w.shape()), dwg = junk(w.shape()), dbc = cpu_junk({cc.co}), dbg = junk({cc.co});
    cpu::conv2d_backward_filter(x, dy, dwc, dbc, a);
    cuda::conv2d_backward_filter(x.to(gpu()), dy.to(gpu()), dwg, dbg, a);
    check_close(dwg, dwc, 1e-4f, 1e-4f, "conv backward filter");
    check_close(dbg, dbc, 1e-4f, 1e-4f, "conv backward bias");
    // the algorithm cache: a second call of the same shape gives the same answer
    Tensor yg2 = junk({cc.n, ho, wo, cc.co}), yc2 = cpu_junk({cc.n, ho, wo, cc.co});
    cpu::conv2d_forward(x, w, Tensor(), yc2, a);
    cuda::conv2d_forward(x.to(gpu()), w.to(gpu()), Tensor(), yg2, a);
    check_close(yg2, yc2, 1e-4f, 1e-4f, "conv forward (cached algorithm)");
  }
}

TEST_CASE("cuda batch norm train / eval / backward match the CPU") {
  GEOLOC_SKIP_WITHOUT_CUDA();
  const Shape shapes[] = {{4, 5, 7, 3}, {2, 8, 8, 64}, {37, 13}, {3, 3, 3, 130}};
  uint32_t seed = 100;
  for (const Shape& s : shapes) {
    INFO("shape " << s.str());
    const int64_t c = s[-1];
    Tensor x = randn(s, seed++, 2.0f, 0.5f), g = randn({c}, seed++), b = randn({c}, seed++);
    Tensor rm = randn({c}, seed++), rv = uniform({c}, seed++, 0.5f, 2.0f);
    // train
    Tensor rmc = rm.clone(), rvc = rv.clone(), rmg = rm.to(gpu()), rvg = rv.to(gpu());
    Tensor yc = cpu_junk(s), mc = cpu_junk({c}), ic = cpu_junk({c});
    Tensor yg = junk(s), mg = junk({c}), ig = junk({c});
    cpu::batch_norm_forward_train(x, g, b, rmc, rvc, 0.1f, 1e-5f, yc, mc, ic);
    cuda::batch_norm_forward_train(x.to(gpu()), g.to(gpu()), b.to(gpu()), rmg, rvg, 0.1f, 1e-5f, yg, mg, ig);
    check_close(yg, yc, 1e-4f, 1e-4f, "bn train y");
    check_close(mg, mc, 1e-5f, 1e-6f, "bn train saved mean");
    check_close(ig, ic, 1e-5f, 1e-6f, "bn train saved invstd");
    check_close(rmg, rmc, 1e-5f, 1e-6f, "bn running mean");
    check_close(rvg, rvc, 1e-5f, 1e-6f, "bn running var (unbiased)");
    // eval
    Tensor yec = cpu_junk(s), yeg = junk(s);
    cpu::batch_norm_forward_eval(x, g, b, rm, rv, 1e-5f, yec);
    cuda::batch_norm_forward_eval(x.to(gpu()), g.to(gpu()), b.to(gpu()), rm.to(gpu()), rv.to(gpu()), 1e-5f,
                                  yeg);
    check_close(yeg, yec, 1e-5f, 1e-5f, "bn eval y");
    // backward with the saved statistics, all outputs
    Tensor dy = randn(s, seed++);
    Tensor dxc = cpu_junk(s), dgc = cpu_junk({c}), dbc = cpu_junk({c});
    Tensor dxg = junk(s), dgg = junk({c}), dbg = junk({c});
    cpu::batch_norm_backward(dy, x, g, mc, ic, dxc, dgc, dbc);
    cuda::batch_norm_backward(dy.to(gpu()), x.to(gpu()), g.to(gpu()), mc.to(gpu()), ic.to(gpu()), dxg, dgg,
                              dbg);
    check_close(dxg, dxc, 1e-4f, 1e-4f, "bn backward dx");
    check_close(dgg, dgc, 1e-4f, 1e-4f, "bn backward dgamma");
    check_close(dbg, dbc, 1e-4f, 1e-4f, "bn backward dbeta");
    // backward with statistics that are not the batch's and no dx (ops.cpp's eval-mode backward)
    Tensor im = uniform({c}, seed++, 0.5f, 1.5f);
    Tensor dgc2 = cpu_junk({c}), dbc2 = cpu_junk({c}), dgg2 = junk({c}), dbg2 = junk({c});
    cpu::batch_norm_backward(dy, x, g, rm, im, Tensor(), dgc2, dbc2);
    cuda::batch_norm_backward(dy.to(gpu()), x.to(gpu()), g.to(gpu()), rm.to(gpu()), im.to(gpu()), Tensor(),
                              dgg2, dbg2);
    check_close(dgg2, dgc2, 1e-4f, 1e-4f, "bn backward dgamma (given statistics)");
    check_close(dbg2, dbc2, 1e-4f, 1e-4f, "bn backward dbeta (given statistics)");
    // only dx
    Tensor dxc3 = cpu_junk(s), dxg3 = junk(s);
    cpu::batch_norm_backward(dy, x, g, mc, ic, dxc3, Tensor(), Tensor());
    cuda::batch_norm_backward(dy.to(gpu()), x.to(gpu()), g.to(gpu()), mc.to(gpu()), ic.to(gpu()), dxg3,
                              Tensor(), Tensor());
    check_close(dxg3, dxc3, 1e-4f, 1e-4f, "bn backward dx only");
  }
}

TEST_CASE("cuda elementwise ops match the CPU") {
  GEOLOC_SKIP_WITHOUT_CUDA();
  for (const Shape& s : {Shape{1}, Shape{3, 5, 7, 9}, Shape{1000003}}) {
    INFO("shape " << s.str());
    Tensor a = randn(s, 7), b = randn(s, 8);
    Tensor ag = a.to(gpu()), bg = b.to(gpu());
    {
      Tensor yc = cpu_junk(s), yg = junk(s);
      cpu::relu_forward(a, yc);
      cuda::relu_forward(ag, yg);
      check_close(yg, yc, 0, 0, "relu_forward");
      Tensor dxc = cpu_junk(s), dxg = junk(s);
      cpu::relu_backward(b, yc, dxc);
      cuda::relu_backward(bg, yg, dxg);
      check_close(dxg, dxc, 0, 0, "relu_backward");
    }
    {
      Tensor yc = cpu_junk(s), yg = junk(s);
      cpu::add_forward(a, b, yc);
      cuda::add_forward(ag, bg, yg);
      check_close(yg, yc, 0, 0, "add_forward");
      cpu::add_relu_forward(a, b, yc);
      cuda::add_relu_forward(ag, bg, yg);
      check_close(yg, yc, 0, 0, "add_relu_forward");
    }
    {
      Tensor dc = b.clone(), dg = b.to(gpu());
      cpu::axpy(0.37f, a, dc);
      cuda::axpy(0.37f, ag, dg);
      check_close(dg, dc, 1e-6f, 1e-7f, "axpy");
      Tensor yc = cpu_junk(s), yg = junk(s);
      cpu::scale(a, -1.5f, yc);
      cuda::scale(ag, -1.5f, yg);
      check_close(yg, yc, 0, 0, "scale");
      cpu::fill(yc, 2.25f);
      cuda::fill(yg, 2.25f);
      check_close(yg, yc, 0, 0, "fill");
    }
    for (float p : {0.1f, 0.5f}) {
      Tensor mc = cpu_junk(s, DType::U8), mg = junk(s, DType::U8), yc = cpu_junk(s), yg = junk(s);
      cpu::dropout_forward(a, mc, yc, p, 1234);
      cuda::dropout_forward(ag, mg, yg, p, 1234);
      CHECK(bytes_of(mg) == bytes_of(mc));  // the same counter hash on both devices
      check_close(yg, yc, 0, 0, "dropout_forward");
      Tensor dxc = cpu_junk(s), dxg = junk(s);
      cpu::dropout_backward(b, mc, dxc, p);
      cuda::dropout_backward(bg, mg, dxg, p);
      check_close(dxg, dxc, 0, 0, "dropout_backward");
    }
  }
}

TEST_CASE("cuda pooling matches the CPU") {
  GEOLOC_SKIP_WITHOUT_CUDA();
  struct PoolCase {
    Shape x;
    Pool2dArgs a;
  };
  const PoolCase cases[] = {{{2, 7, 9, 3}, {2, 2, 0}},
                            {{3, 11, 10, 5}, {3, 2, 1}},
                            {{1, 5, 5, 64}, {3, 1, 1}},
                            {{2, 8, 8, 4}, {2, 3, 0}}};
  uint32_t seed = 300;
  for (const PoolCase& pc : cases) {
    INFO("x " << pc.x.str());
    const int64_t ho = conv_out_size(pc.x[1], pc.a.kernel, pc.a.stride, pc.a.pad);
    const int64_t wo = conv_out_size(pc.x[2], pc.a.kernel, pc.a.stride, pc.a.pad);
    const Shape ys{pc.x[0], ho, wo, pc.x[3]};
    Tensor x = randn(pc.x, seed++);
    Tensor yc = cpu_junk(ys), ic = cpu_junk(ys, DType::I32), yg = junk(ys), ig = junk(ys, DType::I32);
    cpu::max_pool2d_forward(x, yc, ic, pc.a);
    cuda::max_pool2d_forward(x.to(gpu()), yg, ig, pc.a);
    check_close(yg, yc, 0, 0, "max_pool2d_forward");
    check_equal_i32(ig, ic, "max_pool2d argmax");
    Tensor dy = randn(ys, seed++), dxc = cpu_junk(pc.x), dxg = junk(pc.x);
    cpu::max_pool2d_backward(dy, ic, dxc);
    cuda::max_pool2d_backward(dy.to(gpu()), ig, dxg);
    check_close(dxg, dxc, 1e-6f, 1e-6f, "max_pool2d_backward");
    Tensor gc = cpu_junk({pc.x[0], pc.x[3]}), gg = junk({pc.x[0], pc.x[3]});
    cpu::global_avg_pool_forward(x, gc);
    cuda::global_avg_pool_forward(x.to(gpu()), gg);
    check_close(gg, gc, 1e-5f, 1e-6f, "global_avg_pool_forward");
    Tensor gdy = randn({pc.x[0], pc.x[3]}, seed++), gdc = cpu_junk(pc.x), gdg = junk(pc.x);
    cpu::global_avg_pool_backward(gdy, gdc);
    cuda::global_avg_pool_backward(gdy.to(gpu()), gdg);
    check_close(gdg, gdc, 1e-6f, 1e-7f, "global_avg_pool_backward");
  }
}

TEST_CASE("cuda linear forward / backward match the CPU") {
  GEOLOC_SKIP_WITHOUT_CUDA();
  const int64_t dims[][3] = {{1, 1, 1}, {7, 13, 5}, {64, 512, 1000}, {33, 65, 17}, {256, 2048, 3}};
  uint32_t seed = 500;
  for (const auto& d : dims) {
    const int64_t n = d[0], k = d[1], c = d[2];
    INFO("n=" << n << " k=" << k << " c=" << c);
    Tensor x = randn({n, k}, seed++), w = randn({c, k}, seed++, 0.1f), b = randn({c}, seed++);
    for (bool with_bias : {false, true}) {
      Tensor yc = cpu_junk({n, c}), yg = junk({n, c});
      cpu::linear_forward(x, w, with_bias ? b : Tensor(), yc);
      cuda::linear_forward(x.to(gpu()), w.to(gpu()), with_bias ? b.to(gpu()) : Tensor(), yg);
      check_close(yg, yc, 1e-4f, 1e-4f, with_bias ? "linear forward + bias (epilogue)" : "linear forward");
    }
    Tensor dy = randn({n, c}, seed++);
    Tensor dxc = cpu_junk({n, k}), dwc = cpu_junk({c, k}), dbc = cpu_junk({c});
    Tensor dxg = junk({n, k}), dwg = junk({c, k}), dbg = junk({c});
    cpu::linear_backward(dy, x, w, dxc, dwc, dbc);
    cuda::linear_backward(dy.to(gpu()), x.to(gpu()), w.to(gpu()), dxg, dwg, dbg);
    check_close(dxg, dxc, 1e-4f, 1e-4f, "linear backward dx");
    check_close(dwg, dwc, 1e-4f, 1e-4f, "linear backward dw");
    check_close(dbg, dbc, 1e-4f, 1e-4f, "linear backward dbias");
    Tensor dwg2 = junk({c, k});
    cuda::linear_backward(dy.to(gpu()), x.to(gpu()), w.to(gpu()), Tensor(), dwg2, Tensor());
    check_close(dwg2, dwc, 1e-4f, 1e-4f, "linear backward dw only");
  }
}

TEST_CASE("cuda softmax cross-entropy hard / soft match the CPU") {
  GEOLOC_SKIP_WITHOUT_CUDA();
  const int64_t dims[][2] = {{1, 1}, {5, 3}, {17, 1000}, {8, 40000}};
  uint32_t seed = 700;
  for (const auto& d : dims) {
    const int64_t n = d[0], c = d[1];
    INFO("n=" << n << " c=" << c);
    Tensor logits = randn({n, c}, seed++, 3.0f);
    std::vector<int32_t> lab(n);
    for (int64_t i = 0; i < n; ++i) lab[i] = (i % 4 == 3) ? -1 : static_cast<int32_t>((i * 7919) % c);
    Tensor labels = Tensor::from_labels(lab);
    Tensor lc = cpu_junk({n}), dc = cpu_junk({n, c}), lg = junk({n}), dg = junk({n, c});
    cpu::cross_entropy_hard(logits, labels, lc, dc, 0.25f);
    cuda::cross_entropy_hard(logits.to(gpu()), labels.to(gpu()), lg, dg, 0.25f);
    check_close(lg, lc, 1e-5f, 1e-5f, "cross_entropy_hard loss");
    check_close(dg, dc, 1e-5f, 1e-7f, "cross_entropy_hard dlogits");
    // soft targets: random rows normalised, one all-zero row
    Tensor t = uniform({n, c}, seed++, 0.0f, 1.0f);
    float* tp = t.data<float>();
    for (int64_t i = 0; i < n; ++i) {
      double s = 0;
      for (int64_t j = 0; j < c; ++j) s += tp[i * c + j];
      for (int64_t j = 0; j < c; ++j) tp[i * c + j] = (i == 1) ? 0.0f : static_cast<float>(tp[i * c + j] / s);
    }
    Tensor lsc = cpu_junk({n}), dsc = cpu_junk({n, c}), lsg = junk({n}), dsg = junk({n, c});
    cpu::cross_entropy_soft(logits, t, lsc, dsc, 0.5f);
    cuda::cross_entropy_soft(logits.to(gpu()), t.to(gpu()), lsg, dsg, 0.5f);
    check_close(lsg, lsc, 1e-4f, 1e-4f, "cross_entropy_soft loss");
    check_close(dsg, dsc, 1e-5f, 1e-7f, "cross_entropy_soft dlogits");
  }
}

TEST_CASE("cuda sgd_step and adamw_step match the CPU") {
  GEOLOC_SKIP_WITHOUT_CUDA();
  const int64_t n = 100003;
  Tensor p = randn({n}, 1), g = randn({n}, 2), buf = randn({n}, 3);
  struct SgdCase {
    float momentum, dampening, wd;
    bool nesterov, first, with_buf;
  };
  for (const SgdCase& sc :
       {SgdCase{0.9f, 0.0f, 1e-4f, false, true, true}, SgdCase{0.9f, 0.1f, 1e-4f, false, false, true},
        SgdCase{0.9f, 0.0f, 5e-4f, true, false, true}, SgdCase{0.0f, 0.0f, 0.0f, false, false, false}}) {
    INFO("momentum=" << sc.momentum << " nesterov=" << sc.nesterov << " first=" << sc.first);
    Tensor pc = p.clone(), bc = buf.clone(), pg = p.to(gpu()), bg = buf.to(gpu());
    cpu::sgd_step({OptimSlot{pc, g, sc.with_buf ? bc : Tensor(), Tensor(), sc.wd}}, 0.05f, sc.momentum,
                  sc.dampening, sc.nesterov, sc.first);
    cuda::sgd_step({OptimSlot{pg, g.to(gpu()), sc.with_buf ? bg : Tensor(), Tensor(), sc.wd}}, 0.05f, sc.momentum,
                   sc.dampening, sc.nesterov, sc.first);
    check_close(pg, pc, 1e-6f, 1e-6f, "sgd param");
    if (sc.with_buf) check_close(bg, bc, 1e-6f, 1e-6f, "sgd momentum buffer");
  }
  Tensor m = randn({n}, 4, 0.1f), v = uniform({n}, 5, 0.0f, 0.1f);
  for (int64_t step : {1, 2, 100}) {
    Tensor pc = p.clone(), mc = m.clone(), vc = v.clone(), pg = p.to(gpu()), mg = m.to(gpu()),
           vg = v.to(gpu());
    cpu::adamw_step({OptimSlot{pc, g, mc, vc, 0.01f}}, 1e-3f, 0.9f, 0.999f, 1e-8f, step);
    cuda::adamw_step({OptimSlot{pg, g.to(gpu()), mg, vg, 0.01f}}, 1e-3f, 0.9f, 0.999f, 1e-8f, step);
    check_close(pg, pc, 1e-5f, 1e-6f, "adamw param");
    check_close(mg, mc, 1e-6f, 1e-7f, "adamw m");
    check_close(vg, vc, 1e-6f, 1e-7f, "adamw v");
  }
}

TEST_CASE("cuda copies, the caching allocator and argument errors") {
  GEOLOC_SKIP_WITHOUT_CUDA();
  MESSAGE("device: " << cuda::Context::get(0).description());
  Tensor h = randn({3, 1000}, 9);
  Tensor d = h.to(gpu()), d2 = d.clone(), back = d2.to(Device::cpu());
  CHECK(back.to_vector() == h.to_vector());  // H2D, D2D, D2H are exact
  Allocator& a = cuda::allocator(0);
  { Tensor t = Tensor::empty({12345}, DType::F32, gpu()); }
  const auto before = a.stats();
  for (int i = 0; i < 10; ++i) Tensor t = Tensor::empty({12345}, DType::F32, gpu());
  const auto after = a.stats();
  CHECK(after.system_allocs == before.system_allocs);  // steady state: no cudaMalloc
  CHECK(after.requests == before.requests + 10);
  a.empty_cache();
  CHECK(a.stats().bytes_cached == 0);
  cuda::synchronize();
  // a bf16 tensor where only f32 is implemented: CudaError "not implemented"
  Tensor bf = Tensor::empty({4}, DType::BF16, gpu()), y = junk({4});
  CHECK_THROWS_WITH_AS(cuda::relu_forward(bf, y), doctest::Contains("not implemented"), CudaError);
  // a CPU tensor given to a CUDA op
  CHECK_THROWS_AS(cuda::relu_forward(h, y), ShapeError);
  CHECK_THROWS_WITH_AS(cuda::Context::get(1000), doctest::Contains("cuda:1000"), CudaError);
}
