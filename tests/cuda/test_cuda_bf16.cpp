// The bf16 path (include/geoloc/cuda/precision.hpp) against the float32 CPU backend run on the same
// bf16-rounded inputs (the f32 <-> bf16 convert itself is a row of the op table, tests/ops). Tolerances:
// relu, add, add_relu, scale, fill exact after rounding the CPU result to bf16 (both compute in float and round once); axpy one bf16 ulp (rtol 8e-3); convolutions
// and linear layers rtol 1e-2 + atol 1e-2 (fp32 accumulation, one rounding of the output to bf16's 8-bit
// mantissa: relative error <= 2^-9, plus tensor-core summation order).
#include <doctest/doctest.h>

#include "cuda_test_util.hpp"
#include "geoloc/cuda/precision.hpp"

using namespace geoloc;
using namespace geoloc::test;

namespace {
// CPU f32 -> CPU bf16
Tensor to_bf16(const Tensor& f) {
  Tensor b = Tensor::empty(f.shape(), DType::BF16);
  cpu::convert(f, b);
  return b;
}
// any bf16 tensor -> CPU f32
Tensor to_f32(const Tensor& b) {
  Tensor h = b.to(Device::cpu()), f = Tensor::empty(b.shape());
  cpu::convert(h, f);
  return f;
}
// rounds a CPU f32 tensor to bf16 precision (stays f32)
Tensor rounded(const Tensor& f) { return to_f32(to_bf16(f)); }
Tensor junk_bf16(const Shape& s) { return junk(s, DType::BF16); }  // 0x7f7f = a huge bf16
}  // namespace

TEST_CASE("bf16 elementwise ops match the CPU on rounded values") {
  GEOLOC_SKIP_WITHOUT_CUDA();
  const Shape s{3, 5, 7, 9};
  Tensor a = rounded(randn(s, 2)), b = rounded(randn(s, 3));
  Tensor ag = to_bf16(a).to(gpu()), bg = to_bf16(b).to(gpu());
  Tensor yc = Tensor::empty(s), yg = junk_bf16(s);
  cpu::relu_forward(a, yc);
  cuda::relu_forward(ag, yg);
  check_close(to_f32(yg), rounded(yc), 0, 0, "bf16 relu");
  Tensor dxg = junk_bf16(s);
  cpu::relu_backward(b, yc, yc);
  cuda::relu_backward(bg, yg, dxg);
  check_close(to_f32(dxg), rounded(yc), 0, 0, "bf16 relu_backward");
  cpu::add_forward(a, b, yc);
  cuda::add_forward(ag, bg, yg);
  check_close(to_f32(yg), rounded(yc), 0, 0, "bf16 add");
  cpu::add_relu_forward(a, b, yc);
  cuda::add_relu_forward(ag, bg, yg);
  check_close(to_f32(yg), rounded(yc), 0, 0, "bf16 add_relu");
  cpu::scale(a, 0.3f, yc);
  cuda::scale(ag, 0.3f, yg);
  check_close(to_f32(yg), rounded(yc), 0, 0, "bf16 scale");
  cuda::fill(yg, 1.5f);
  check_close(to_f32(yg), Tensor::full(s, 1.5f), 0, 0, "bf16 fill");
  Tensor dc = b.clone();
  cpu::axpy(0.7f, a, dc);
  cuda::axpy(0.7f, ag, bg);
  check_close(to_f32(bg), rounded(dc), 8e-3f, 1e-6f, "bf16 axpy");
}

TEST_CASE("bf16 convolutions (cuDNN tensor cores) match the f32 CPU") {
  GEOLOC_SKIP_WITHOUT_CUDA();
  struct C {
    int64_t n, h, w, ci, co, k;
    int stride, pad;
  };
  for (const C& c : {C{2, 9, 7, 8, 16, 3, 1, 1}, C{2, 8, 8, 16, 32, 3, 2, 1}, C{4, 6, 6, 32, 16, 1, 1, 0}}) {
    INFO("conv n=" << c.n << " h=" << c.h << " w=" << c.w << " ci=" << c.ci << " co=" << c.co << " k=" << c.k
                   << " stride=" << c.stride);
    const Conv2dArgs a{c.stride, c.pad};
    const int64_t ho = conv_out_size(c.h, c.k, c.stride, c.pad),
                  wo = conv_out_size(c.w, c.k, c.stride, c.pad);
    Tensor x = rounded(randn({c.n, c.h, c.w, c.ci}, 5)), w = rounded(randn({c.co, c.k, c.k, c.ci}, 6, 0.2f));
    Tensor dy = rounded(randn({c.n, ho, wo, c.co}, 7));
    Tensor yc = Tensor::empty({c.n, ho, wo, c.co}), yg = junk_bf16({c.n, ho, wo, c.co});
    cpu::conv2d_forward(x, w, Tensor(), yc, a);
    cuda::conv2d_forward(to_bf16(x).to(gpu()), to_bf16(w).to(gpu()), Tensor(), yg, a);
    check_close(to_f32(yg), yc, 1e-2f, 1e-2f, "bf16 conv forward");
    Tensor dxc = Tensor::empty(x.shape()), dxg = junk_bf16(x.shape());
    cpu::conv2d_backward_data(dy, w, dxc, a);
    cuda::conv2d_backward_data(to_bf16(dy).to(gpu()), to_bf16(w).to(gpu()), dxg, a);
    check_close(to_f32(dxg), dxc, 1e-2f, 1e-2f, "bf16 conv backward data");
    Tensor dwc = Tensor::empty(w.shape()), dwg = junk_bf16(w.shape());
    cpu::conv2d_backward_filter(x, dy, dwc, Tensor(), a);
    cuda::conv2d_backward_filter(to_bf16(x).to(gpu()), to_bf16(dy).to(gpu()), dwg, Tensor(), a);
    check_close(to_f32(dwg), dwc, 1e-2f, 1e-2f, "bf16 conv backward filter");
  }
}

TEST_CASE("bf16 linear layers (cuBLASLt) match the f32 CPU; unsupported bf16 calls say not implemented") {
  GEOLOC_SKIP_WITHOUT_CUDA();
  const int64_t n = 48, d = 96, c = 40;
  Tensor x = rounded(randn({n, d}, 8)), w = rounded(randn({c, d}, 9, 0.1f)), b = rounded(randn({c}, 10));
  Tensor yc = Tensor::empty({n, c}), yg = junk_bf16({n, c});
  cpu::linear_forward(x, w, b, yc);
  cuda::linear_forward(to_bf16(x).to(gpu()), to_bf16(w).to(gpu()), to_bf16(b).to(gpu()), yg);
  check_close(to_f32(yg), yc, 1e-2f, 1e-2f, "bf16 linear forward + bias");
  Tensor dy = rounded(randn({n, c}, 11));
  Tensor dxc = Tensor::empty({n, d}), dwc = Tensor::empty({c, d}), dxg = junk_bf16({n, d}),
         dwg = junk_bf16({c, d});
  cpu::linear_backward(dy, x, w, dxc, dwc, Tensor());
  cuda::linear_backward(to_bf16(dy).to(gpu()), to_bf16(x).to(gpu()), to_bf16(w).to(gpu()), dxg, dwg,
                        Tensor());
  check_close(to_f32(dxg), dxc, 1e-2f, 1e-2f, "bf16 linear backward dx");
  check_close(to_f32(dwg), dwc, 1e-2f, 1e-2f, "bf16 linear backward dw");
  // the bias gradient in bf16 (detail::column_sum, rounded once)
  Tensor dbc = Tensor::empty({c}), dbg = junk_bf16({c});
  cpu::linear_backward(dy, x, w, Tensor(), Tensor(), dbc);
  cuda::linear_backward(to_bf16(dy).to(gpu()), to_bf16(x).to(gpu()), to_bf16(w).to(gpu()), Tensor(), Tensor(), dbg);
  check_close(to_f32(dbg), dbc, 1e-2f, 1e-2f, "bf16 linear backward dbias");
  Tensor bx = to_bf16(x).to(gpu());
  // batch norm in bf16 (x, y bf16; parameters and statistics f32)
  const Tensor ones = Tensor::full({d}, 1.0f, gpu()), zeros = Tensor::zeros({d}, DType::F32, gpu());
  Tensor bnc = Tensor::empty({n, d}), bng = junk_bf16({n, d});
  cpu::batch_norm_forward_eval(x, ones.to(Device::cpu()), zeros.to(Device::cpu()), zeros.to(Device::cpu()),
                               ones.to(Device::cpu()), 1e-5f, bnc);
  cuda::batch_norm_forward_eval(bx, ones, zeros, zeros, ones, 1e-5f, bng);
  check_close(to_f32(bng), bnc, 1e-2f, 1e-2f, "bf16 batch_norm_forward_eval");
  // still f32 only: a convolution bias in bf16 (it would round twice)
  Tensor cx = to_bf16(randn({1, 4, 4, 8}, 12)).to(gpu()), cw = to_bf16(randn({8, 3, 3, 8}, 13)).to(gpu());
  CHECK_THROWS_WITH_AS(cuda::conv2d_forward(cx, cw, to_bf16(randn({8}, 14)).to(gpu()), junk_bf16({1, 2, 2, 8}),
                                            Conv2dArgs{}),
                       doctest::Contains("not implemented"), CudaError);
  // mixed dtypes are a ShapeError
  CHECK_THROWS_AS(cuda::add_forward(bx, x.to(gpu()), junk_bf16({n, d})), ShapeError);
}
