// Haversine loss values and gradients, the multitask loss, and an end-to-end finite-difference check.
#include <doctest/doctest.h>

#include <functional>
#include <random>

#include "geoloc/detail/haversine.hpp"
#include "geoloc/geo/coords.hpp"
#include "geoloc/nn/loss.hpp"
#include "nn_test_util.hpp"

using namespace geoloc;
using namespace geoloc::nn;

namespace {
constexpr double kPi = 3.14159265358979323846;
double rad(double deg) { return deg * kPi / 180.0; }

// Central differences of a scalar float32 function of `t`'s elements, accumulated in double, against
// the autograd gradient of the same function. Checks `max_elems` elements spread over the tensor.
void fd_check(const std::string& what, Tensor& t, const std::function<Tensor()>& f, float step, double rtol,
              double atol, int max_elems = 1 << 30) {
  t.zero_grad();
  Tensor y = f();
  y.backward();
  REQUIRE(t.grad().defined());
  const auto g = t.grad().to_vector();
  std::vector<float> v = t.to_vector();
  const int64_t n = t.numel();
  const int64_t stride = std::max<int64_t>(1, n / max_elems);
  int checked = 0;
  for (int64_t i = 0; i < n; i += stride) {
    const float orig = v[i];
    auto eval = [&](float x) {
      v[i] = x;
      t.copy_(Tensor::from_vector(t.shape(), v));
      NoGradGuard ng;
      return static_cast<double>(f().item());
    };
    const double fd = (eval(orig + step) - eval(orig - step)) / (2.0 * static_cast<double>(step));
    v[i] = orig;
    t.copy_(Tensor::from_vector(t.shape(), v));
    INFO(what, " element ", i, ": autograd ", g[i], " finite difference ", fd);
    CHECK(std::fabs(g[i] - fd) <= atol + rtol * std::max(std::fabs(fd), std::fabs(static_cast<double>(g[i]))));
    ++checked;
  }
  CHECK(checked > 0);
}

Tensor latlng(const std::vector<std::pair<double, double>>& deg) {
  std::vector<float> v;
  for (auto [a, b] : deg) {
    v.push_back(static_cast<float>(rad(a)));
    v.push_back(static_cast<float>(rad(b)));
  }
  return Tensor::from_vector({static_cast<int64_t>(deg.size()), 2}, v);
}
Tensor unit(const std::vector<std::pair<double, double>>& deg, float scale = 1.0f) {
  std::vector<float> v;
  for (auto [a, b] : deg) {
    v.push_back(scale * static_cast<float>(std::cos(rad(a)) * std::cos(rad(b))));
    v.push_back(scale * static_cast<float>(std::cos(rad(a)) * std::sin(rad(b))));
    v.push_back(scale * static_cast<float>(std::sin(rad(a))));
  }
  return Tensor::from_vector({static_cast<int64_t>(deg.size()), 3}, v);
}
}  // namespace

TEST_CASE("haversine_loss: known distances in km and radians, both input forms") {
  // Paris (48.8566, 2.3522) - New York (40.7128, -74.0060): 5837 km on the mean sphere
  const Tensor target = latlng({{40.7128, -74.0060}, {0, 90}, {10, 20}});
  const Tensor p_ll = latlng({{48.8566, 2.3522}, {0, 0}, {-10, -160}});  // the last is the antipode
  const double expect_km = (5837.2 + geo::kEarthRadiusKm * kPi / 2 + geo::kEarthRadiusKm * kPi) / 3;
  CHECK(haversine_loss(p_ll, target).item() == doctest::Approx(expect_km).epsilon(2e-4));
  CHECK(haversine_loss(p_ll, target, DistanceUnit::Radians).item() ==
        doctest::Approx(expect_km / geo::kEarthRadiusKm).epsilon(2e-4));
  // 3-vectors of any length give the same distances
  const Tensor p_v = unit({{48.8566, 2.3522}, {0, 0}, {-10, -160}}, 3.7f);
  CHECK(haversine_loss(p_v, target).item() == doctest::Approx(expect_km).epsilon(2e-4));
  // zero distance, and small distances stay accurate (1 km apart)
  CHECK(haversine_loss(latlng({{10, 20}}), latlng({{10, 20}})).item() == doctest::Approx(0.0).epsilon(1e-6));
  const double one_km_deg = 1.0 / (geo::kEarthRadiusKm * kPi / 180.0);
  CHECK(haversine_loss(unit({{0, 0}}), latlng({{one_km_deg, 0}})).item() == doctest::Approx(1.0).epsilon(2e-2));
  CHECK_THROWS_AS(haversine_loss(Tensor::zeros({2, 4}), target), ShapeError);
  CHECK_THROWS_AS(haversine_loss(p_ll, Tensor::zeros({2, 2})), ShapeError);
}

TEST_CASE("haversine_loss: gradients match central finite differences") {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  std::uniform_real_distribution<float> ulat(-1.3f, 1.3f), ulng(-3.0f, 3.0f);
  std::vector<float> tv, pv, lv;
  for (int i = 0; i < 6; ++i) {
    tv.push_back(ulat(rng));
    tv.push_back(ulng(rng));
    for (int k = 0; k < 3; ++k) pv.push_back(nd(rng));
    lv.push_back(ulat(rng));
    lv.push_back(ulng(rng));
  }
  const Tensor target = Tensor::from_vector({6, 2}, tv);
  Tensor pred = Tensor::from_vector({6, 3}, pv);
  pred.set_requires_grad(true);
  // The loss is a float: one ulp of it over the 2e-3 of a central difference is the noise floor of the
  // finite difference (~0.25 km at a few thousand km, ~6e-5 at an angle of one radian), hence atol.
  fd_check("vec3 (km)", pred, [&] { return haversine_loss(pred, target); }, 1e-3f, 2e-3, 1.0);
  fd_check("vec3 (rad)", pred, [&] { return haversine_loss(pred, target, DistanceUnit::Radians); }, 1e-3f, 2e-3, 1.5e-4);
  Tensor pll = Tensor::from_vector({6, 2}, lv);
  pll.set_requires_grad(true);
  fd_check("lat/lng (rad)", pll, [&] { return haversine_loss(pll, target, DistanceUnit::Radians); }, 1e-3f, 2e-3, 1.5e-4);
  // the per-element function alone, against double-precision differences of its own value
  float g[3];
  const float v[3] = {0.3f, -0.5f, 0.8f};
  math::sphere_angle_vec3(v, 0.2f, 1.1f, g);
  for (int k = 0; k < 3; ++k) {
    float vp[3] = {v[0], v[1], v[2]}, vm[3] = {v[0], v[1], v[2]}, dummy[3];
    vp[k] += 1e-3f;
    vm[k] -= 1e-3f;
    const double fd = (static_cast<double>(math::sphere_angle_vec3(vp, 0.2f, 1.1f, dummy)) -
                       math::sphere_angle_vec3(vm, 0.2f, 1.1f, dummy)) / 2e-3;
    CHECK(g[k] == doctest::Approx(fd).epsilon(2e-3));
  }
}

namespace {
GeoNetConfig tiny_config() {
  GeoNetConfig cfg;
  cfg.backbone = ResNetConfig::parse("resnet:basic:1-1:w4:k3s1:nopool");
  cfg.heads = {{"cells_a", HeadKind::Partition, 5},
               {"cells_b", HeadKind::Partition, 4},
               {"scene", HeadKind::Scene, 3},
               {"country", HeadKind::Country, 6},
               {"coords", HeadKind::Coordinates, 3}};
  return cfg;
}
}  // namespace

TEST_CASE("multitask_loss: weighted sum of the heads' terms; unknown scenes contribute nothing") {
  GeoNet net(tiny_config(), 11);
  net.train();
  std::vector<float> xv(3 * 8 * 8 * 3);
  std::mt19937 rng(2);
  std::normal_distribution<float> nd;
  for (float& v : xv) v = nd(rng);
  auto out = net.forward(Tensor::from_vector({3, 8, 8, 3}, xv));
  MultitaskTargets tg;
  tg.labels["cells_a"] = Tensor::from_labels({0, 4, 2});
  tg.labels["cells_b"] = Tensor::from_labels({3, 1, 1});
  tg.labels["scene"] = Tensor::from_labels({-1, 2, 0});
  tg.labels["country"] = Tensor::from_labels({5, 5, 0});
  tg.latlng = latlng({{10, 10}, {-30, 100}, {60, -120}});
  MultitaskWeights w;
  w.country = 0.5f;
  w.coords = 2.0f;
  const auto l = multitask_loss(net, out, tg, w);
  const float ce_a = ops::cross_entropy(out.at("cells_a"), tg.labels["cells_a"]).item();
  const float ce_b = ops::cross_entropy(out.at("cells_b"), tg.labels["cells_b"]).item();
  const float ce_s = ops::cross_entropy(out.at("scene"), tg.labels["scene"]).item();
  const float ce_c = ops::cross_entropy(out.at("country"), tg.labels["country"]).item();
  const float hv = haversine_loss(out.at("coords"), tg.latlng, DistanceUnit::Radians).item();
  CHECK(l.total.item() == doctest::Approx(ce_a + ce_b + ce_s + 0.5f * ce_c + 2.0f * hv).epsilon(1e-6));
  CHECK(l.per_head.at("scene").item() == doctest::Approx(ce_s));
  // the scene term is the mean over the two labelled samples only
  const auto s = out.at("scene").to_vector();
  auto ce_row = [&](int r, int label) {
    double m = std::max({s[r * 3], s[r * 3 + 1], s[r * 3 + 2]}), z = 0;
    for (int c = 0; c < 3; ++c) z += std::exp(s[r * 3 + c] - m);
    return m + std::log(z) - s[r * 3 + label];
  };
  CHECK(ce_s == doctest::Approx((ce_row(1, 2) + ce_row(2, 0)) / 2).epsilon(1e-5));
  // soft targets take precedence over labels for a head
  std::vector<float> soft(3 * 5, 0.0f);
  soft[0] = 1.0f;
  soft[5 + 4] = 0.5f;
  soft[5 + 3] = 0.5f;
  soft[10 + 2] = 1.0f;
  tg.soft["cells_a"] = Tensor::from_vector({3, 5}, soft);
  const auto l2 = multitask_loss(net, out, tg, w);
  CHECK(l2.per_head.at("cells_a").item() ==
        doctest::Approx(ops::cross_entropy_soft(out.at("cells_a"), tg.soft["cells_a"]).item()));
  CHECK(l2.per_head.at("cells_a").item() != doctest::Approx(ce_a));
  tg.labels.erase("country");
  CHECK_THROWS_WITH_AS(multitask_loss(net, out, tg, w), doctest::Contains("'country'"), ValueError);
  w.country = 0.0f;  // a head with weight 0 needs no targets
  CHECK_NOTHROW(multitask_loss(net, out, tg, w));
}

TEST_CASE("GeoNet end to end: every parameter's gradient matches central finite differences") {
  GeoNet net(tiny_config(), 21);
  net.train();
  std::vector<float> xv(2 * 6 * 6 * 3);
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  for (float& v : xv) v = nd(rng);
  const Tensor x = Tensor::from_vector({2, 6, 6, 3}, xv);
  MultitaskTargets tg;
  tg.labels["cells_a"] = Tensor::from_labels({0, 4});
  tg.labels["cells_b"] = Tensor::from_labels({3, 1});
  tg.labels["scene"] = Tensor::from_labels({-1, 2});
  tg.labels["country"] = Tensor::from_labels({5, 0});
  tg.latlng = latlng({{10, 10}, {-30, 100}});
  auto loss = [&] { return multitask_loss(net, net.forward(x), tg).total; };
  for (auto& [name, p] : net.named_parameters()) {
    Tensor t = p;
    fd_check(name, t, loss, 1e-3f, 3e-2, 3e-3, 6);
  }
}

TEST_CASE("a 2-output coordinate head is trained with MSE on (lat/90, lng/180)") {
  GeoNetConfig cfg{ResNetConfig::parse("resnet:basic:1:w4:k3s2:nopool"), {{"latlng", HeadKind::Coordinates, 2}}};
  GeoNet net(cfg, 3);
  net.train();
  const Tensor x = Tensor::full({2, 16, 16, 3}, 0.5f);
  const GeoOutput out = net.forward(x);
  MultitaskTargets t;
  const float pi = 3.14159265f;
  t.latlng = Tensor::from_vector({2, 2}, {pi / 4, pi / 2, -pi / 4, -pi});  // (45, 90), (-45, -180) degrees
  const MultitaskLoss l = multitask_loss(net, out, t);
  const auto y = out.at("latlng").to_vector();
  const double expect = ((y[0] - 0.5) * (y[0] - 0.5) + (y[1] - 0.5) * (y[1] - 0.5) + (y[2] + 0.5) * (y[2] + 0.5) +
                         (y[3] + 1.0) * (y[3] + 1.0)) / 4.0;
  CHECK(l.total.item() == doctest::Approx(expect).epsilon(1e-5));
}
