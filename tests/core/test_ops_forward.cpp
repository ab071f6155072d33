// Forward results on small hand-computed cases, and the errors bad input gets.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "gradcheck.hpp"

using namespace geoloc;
using doctest::Approx;

TEST_CASE("conv2d forward on a hand-computed case (NHWC, OHWI)") {
  // 1 image, 3x3, 1 channel: 1..9; kernel 2x2 of ones, stride 1, no padding -> 2x2 sums of windows
  Tensor x = Tensor::from_vector({1, 3, 3, 1}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  Tensor w = Tensor::from_vector({1, 2, 2, 1}, {1, 1, 1, 1});
  Tensor y = ops::conv2d(x, w, Tensor::from_vector({1}, {0.5f}), 1, 0);
  CHECK(y.shape() == Shape{1, 2, 2, 1});
  CHECK(y.to_vector() == std::vector<float>{12.5f, 16.5f, 24.5f, 28.5f});
  // padding 1, stride 2: windows centred on (0,0), (0,2), (2,0), (2,2) with a 3x3 kernel of ones
  Tensor w3 = Tensor::full({1, 3, 3, 1}, 1.0f);
  Tensor y2 = ops::conv2d(x, w3, {}, 2, 1);
  CHECK(y2.to_vector() == std::vector<float>{12, 16, 24, 28});
  // two input channels, two output channels: picks channel 1 and sums both
  Tensor x2 = Tensor::from_vector({1, 1, 1, 2}, {3, 5});
  Tensor w2 = Tensor::from_vector({2, 1, 1, 2}, {0, 1, 1, 1});
  CHECK(ops::conv2d(x2, w2).to_vector() == std::vector<float>{5, 8});
}

TEST_CASE("pooling, linear, batch norm and losses on hand-computed cases") {
  Tensor x = Tensor::from_vector({1, 2, 2, 2}, {1, -1, 4, -2, 3, -3, 2, -4});
  CHECK(ops::max_pool2d(x, 2, 2).to_vector() == std::vector<float>{4, -1});
  CHECK(ops::global_avg_pool(x).to_vector() == std::vector<float>{2.5f, -2.5f});

  Tensor in = Tensor::from_vector({1, 2}, {1, 2});
  Tensor w = Tensor::from_vector({3, 2}, {1, 0, 0, 1, 1, 1});
  CHECK(ops::linear(in, w, Tensor::from_vector({3}, {0, 0, 1})).to_vector() == std::vector<float>{1, 2, 4});

  // training batch norm normalises each channel to mean 0, variance 1 and updates running stats
  Tensor b = Tensor::from_vector({4, 1}, {1, 2, 3, 4});
  Tensor rm = Tensor::zeros({1}), rv = Tensor::full({1}, 1.0f);
  Tensor yb = ops::batch_norm(b, Tensor::full({1}, 1.0f), Tensor::zeros({1}), rm, rv, true, 0.1f, 0.0f);
  auto v = yb.to_vector();
  CHECK(v[0] == Approx(-1.3416408));
  CHECK(v[3] == Approx(1.3416408));
  CHECK(rm.item() == Approx(0.25));                 // 0.9*0 + 0.1*2.5
  CHECK(rv.item() == Approx(0.9 + 0.1 * 5.0 / 3));  // unbiased variance 5/3
  // eval uses the running statistics
  Tensor ye = ops::batch_norm(b, Tensor::full({1}, 2.0f), Tensor::full({1}, 1.0f), Tensor::full({1}, 1.0f),
                              Tensor::full({1}, 4.0f), false, 0.1f, 0.0f);
  CHECK(ye.to_vector() == std::vector<float>{1, 2, 3, 4});  // (x - 1) / 2 * 2 + 1

  // cross-entropy of uniform logits is log(C); ignored labels do not count
  Tensor logits = Tensor::zeros({3, 4});
  CHECK(ops::cross_entropy(logits, Tensor::from_labels({1, -1, 2})).item() == Approx(std::log(4.0)));
  CHECK(ops::cross_entropy(logits, Tensor::from_labels({-1, -1, -1})).item() == 0.0f);
  Tensor l2 = Tensor::from_vector({1, 2}, {0, std::log(3.0f)});  // softmax = (1/4, 3/4)
  CHECK(ops::cross_entropy(l2, Tensor::from_labels({1})).item() == Approx(-std::log(0.75)));
  CHECK(ops::cross_entropy_soft(l2, Tensor::from_vector({1, 2}, {0.5f, 0.5f})).item() ==
        Approx(-(0.5 * std::log(0.25) + 0.5 * std::log(0.75))));
  CHECK(ops::mse_loss(Tensor::from_vector({2}, {1, 3}), Tensor::from_vector({2}, {0, 0})).item() == Approx(5.0));
}

TEST_CASE("dropout is deterministic in its seed, keeps about 1-p, and scales by 1/(1-p)") {
  Tensor x = Tensor::full({100, 100}, 1.0f);
  auto a = ops::dropout(x, 0.25f, true, 9).to_vector();
  auto b = ops::dropout(x, 0.25f, true, 9).to_vector();
  auto c = ops::dropout(x, 0.25f, true, 10).to_vector();
  CHECK(a == b);
  CHECK(a != c);
  int kept = 0;
  for (float v : a) {
    CHECK((v == 0.0f || v == Approx(1.0f / 0.75f)));
    kept += v != 0.0f;
  }
  CHECK(kept == doctest::Approx(7500).epsilon(0.03));
  CHECK(ops::dropout(x, 0.25f, false, 9).same(x));
}

TEST_CASE("bad input gets ShapeError naming both shapes") {
  Tensor x = Tensor::zeros({2, 8, 8, 3});
  Tensor w = Tensor::zeros({4, 3, 3, 5});
  try {
    ops::conv2d(x, w);
    FAIL("conv2d accepted mismatched channels");
  } catch (const ShapeError& e) {
    std::string m = e.what();
    CHECK(m.find("[2, 8, 8, 3]") != std::string::npos);
    CHECK(m.find("[4, 3, 3, 5]") != std::string::npos);
  }
  CHECK_THROWS_AS(ops::add(Tensor::zeros({2, 3}), Tensor::zeros({3, 2})), ShapeError);
  try {
    ops::add(Tensor::zeros({2, 3}), Tensor::zeros({3, 2}));
  } catch (const ShapeError& e) {
    CHECK(std::string(e.what()).find("[2, 3]") != std::string::npos);
    CHECK(std::string(e.what()).find("[3, 2]") != std::string::npos);
  }
  CHECK_THROWS_AS(ops::linear(Tensor::zeros({2, 3}), Tensor::zeros({4, 5})), ShapeError);
  CHECK_THROWS_AS(ops::conv2d(Tensor::zeros({2, 8, 3}), w), ShapeError);            // not NHWC
  CHECK_THROWS_AS(ops::relu(Tensor::zeros({0, 3})), ShapeError);                   // empty
  CHECK_THROWS_AS(ops::conv2d(Tensor::zeros({1, 2, 2, 5}), w, {}, 1, 0), ShapeError);  // smaller than kernel
  CHECK_THROWS_AS(ops::cross_entropy(Tensor::zeros({2, 3}), Tensor::from_labels({0, 3})), ValueError);
  CHECK_THROWS_AS(ops::cross_entropy(Tensor::zeros({2, 3}), Tensor::from_labels({0})), ShapeError);
  CHECK_THROWS_AS(ops::max_pool2d(x, 3, 2, 2), ValueError);
  CHECK_THROWS_AS(Tensor::zeros({2, 3}).view({4, 2}), ShapeError);
  CHECK_THROWS_AS(Shape({1, 2, 3, 4, 5}), ShapeError);
  CHECK_THROWS_AS(Tensor().shape(), ShapeError);
  if (!cuda::available()) CHECK_THROWS_AS(Tensor::zeros({2}, DType::F32, Device::cuda()), CudaError);
  CHECK_THROWS_AS(Device::parse("gpu"), ValueError);
}
