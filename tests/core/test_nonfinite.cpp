// NaN and infinity propagate as in PyTorch: relu(NaN) = NaN (not 0), max-pool keeps a NaN of its
// window, and the fused convolution epilogues of every CPU path (generic, AVX2, AVX-512: this program
// runs once per path, GEOLOC_CPU) keep a NaN the residual or the input brings. A network fed NaN
// answers NaN, never a finite, plausible-looking value.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "../test_inputs.hpp"
#include "geoloc/backend.hpp"
#include "geoloc/ops.hpp"

using namespace geoloc;

namespace {
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
}  // namespace

TEST_CASE("relu and add_relu propagate NaN, clamp -inf, keep +inf") {
  const Tensor x = Tensor::from_vector({6}, {kNaN, -kInf, kInf, -1.f, 0.f, 2.f});
  const std::vector<float> y = ops::relu(x).to_vector();
  CHECK(std::isnan(y[0]));
  CHECK(y[1] == 0.f);
  CHECK(y[2] == kInf);
  CHECK(y[3] == 0.f);
  CHECK(y[4] == 0.f);
  CHECK(y[5] == 2.f);
  const std::vector<float> z = ops::add_relu(x, Tensor::full({6}, 1.f)).to_vector();
  CHECK(std::isnan(z[0]));
  CHECK(z[1] == 0.f);
  CHECK(z[5] == 3.f);
}

TEST_CASE("max-pool keeps a NaN of its window") {
  // 1 x 2 x 2 x 2 input, one 2x2 window: channel 0 has a NaN after a larger value, channel 1 none
  const Tensor x = Tensor::from_vector({1, 2, 2, 2}, {5.f, 1.f, kNaN, 2.f, 1.f, 3.f, 7.f, 0.f});
  const std::vector<float> y = ops::max_pool2d(x, 2, 2).to_vector();
  REQUIRE(y.size() == 2);
  CHECK(std::isnan(y[0]));
  CHECK(y[1] == 3.f);
}

TEST_CASE("batch_norm_act and the fused convolution epilogues keep NaN on this CPU path") {
  std::mt19937 gen(11);
  struct Case {
    int64_t n, h, w, ci, co, k, stride, pad;
  };
  // shapes the direct AVX2 / AVX-512 kernels take (3x3, 1x1, the 7x7 stem) and a small one for Eigen
  const Case cases[] = {{1, 8, 8, 16, 32, 3, 1, 1}, {1, 8, 8, 64, 64, 3, 1, 1}, {1, 8, 8, 64, 256, 1, 1, 0},
                        {1, 16, 16, 3, 64, 7, 2, 3}, {2, 5, 5, 3, 5, 3, 1, 1}};
  for (const Case& c : cases) {
    CAPTURE(c.ci);
    CAPTURE(c.co);
    CAPTURE(c.k);
    const int64_t ho = (c.h + 2 * c.pad - c.k) / c.stride + 1, wo = (c.w + 2 * c.pad - c.k) / c.stride + 1;
    const Tensor x = test::random_tensor({c.n, c.h, c.w, c.ci}, gen);
    const Tensor w = test::random_tensor({c.co, c.k, c.k, c.ci}, gen);
    const Tensor gamma = test::random_tensor({c.co}, gen), beta = test::random_tensor({c.co}, gen);
    const Tensor mean = test::random_tensor({c.co}, gen), var = Tensor::full({c.co}, 0.5f);
    std::vector<float> rv = test::random_tensor({c.n, ho, wo, c.co}, gen).to_vector();
    // one residual entry turned into NaN: exactly that output is NaN after the ReLU
    const size_t at = rv.size() / 2 + 1;
    rv[at] = kNaN;
    const Tensor res = Tensor::from_vector({c.n, ho, wo, c.co}, rv);
    const std::vector<float> y =
        ops::conv2d_bn_act(x, w, gamma, beta, mean, var, 1e-5f, res, true, int(c.stride), int(c.pad)).to_vector();
    CHECK(std::isnan(y[at]));
    size_t nans = 0;
    for (float v : y) nans += std::isnan(v);
    CHECK(nans == 1);
    // a NaN input pixel reaches every output its window covers (and ReLU keeps it)
    std::vector<float> xv = x.to_vector();
    xv[0] = kNaN;
    const std::vector<float> y2 = ops::conv2d_bn_act(Tensor::from_vector({c.n, c.h, c.w, c.ci}, xv), w, gamma, beta,
                                                     mean, var, 1e-5f, Tensor(), true, int(c.stride), int(c.pad))
                                      .to_vector();
    CHECK(std::isnan(y2[0]));
  }
  // training-mode batch norm + ReLU: a NaN in a channel makes that channel's statistics NaN
  const Tensor xb = Tensor::from_vector({1, 2, 1, 2}, {1.f, kNaN, 3.f, 4.f});
  Tensor rm = Tensor::zeros({2}), rvar = Tensor::full({2}, 1.f);
  const std::vector<float> yb =
      ops::batch_norm_act(xb, Tensor::full({2}, 1.f), Tensor::zeros({2}), rm, rvar, 0.1f, 1e-5f, Tensor(), true)
          .to_vector();
  CHECK(std::isnan(yb[1]));
  CHECK(std::isnan(yb[3]));
  CHECK(!std::isnan(yb[0]));
}
