#include <doctest/doctest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "geoloc/error.hpp"
#include "geoloc/geo/metrics.hpp"

using namespace geoloc::geo;

TEST_CASE("metrics on hand-computed errors") {
  // Errors along the equator: 1 degree = 111.195 km, so errors are 0, 111, 556, 1112 and 5560 km.
  const std::vector<LatLng> truth(5, LatLng{0, 0});
  const std::vector<LatLng> pred = {{0, 0}, {0, 1}, {0, 5}, {0, 10}, {0, 50}};
  const double deg = haversine_km({0, 0}, {0, 1});
  const std::vector<int> true_c = {1, 1, 2, -1, 3}, pred_c = {1, 2, 2, 5, -1};
  const Metrics m = compute_metrics(pred, truth, kDefaultThresholdsKm, pred_c, true_c);
  CHECK(m.n == 5);
  REQUIRE(m.accuracy.size() == 5);
  CHECK(m.accuracy[0] == doctest::Approx(0.2));  // 1 km
  CHECK(m.accuracy[1] == doctest::Approx(0.2));  // 25 km
  CHECK(m.accuracy[2] == doctest::Approx(0.4));  // 200 km
  CHECK(m.accuracy[3] == doctest::Approx(0.6));  // 750 km
  CHECK(m.accuracy[4] == doctest::Approx(0.8));  // 2500 km
  CHECK(m.median_km == doctest::Approx(5 * deg));
  CHECK(m.mean_km == doctest::Approx(66 * deg / 5));
  double g = 0;
  for (double d : {0.0, 1.0, 5.0, 10.0, 50.0}) g += 5000 * std::exp(-d * deg / 1492.7);
  CHECK(m.geoguessr == doctest::Approx(g / 5));
  REQUIRE(m.country_acc.has_value());
  CHECK(*m.country_acc == doctest::Approx(2.0 / 4.0));  // the unknown truth (-1) is not counted

  const nlohmann::json j = m.to_json();
  CHECK(j["n"] == 5);
  CHECK(j["acc_km"]["200"].get<double>() == doctest::Approx(0.4));
  CHECK(j["acc_km"].size() == 5);
  CHECK(j["median_km"].get<double>() == doctest::Approx(m.median_km));
  CHECK(j["country_acc"].get<double>() == doctest::Approx(0.5));

  const double other[] = {10, 100, 1000, 10000};
  const Metrics m2 = compute_metrics(pred, truth, other);
  CHECK(m2.accuracy == std::vector<double>{0.2, 0.2, 0.6, 1.0});
  CHECK_FALSE(m2.country_acc.has_value());
  CHECK_FALSE(m2.to_json().contains("country_acc"));
  CHECK(m2.to_json()["acc_km"].contains("10000"));

  const std::vector<std::pair<std::string, Metrics>> methods = {{"argmax", m}, {"top-5", m2}};
  const std::string table = format_metrics_table(methods);
  CHECK(table.find("argmax") != std::string::npos);
  CHECK(table.find("acc@200 km (%)") != std::string::npos);
  CHECK(table.find("40.00") != std::string::npos);
  CHECK(table.find("acc@10000 km (%)") != std::string::npos);

  const std::vector<LatLng> even_truth(4, LatLng{0, 0});
  const std::vector<LatLng> even_pred = {{0, 1}, {0, 2}, {0, 3}, {0, 4}};
  CHECK(compute_metrics(even_pred, even_truth).median_km == doctest::Approx(2.5 * deg));
  CHECK_THROWS_AS(compute_metrics(pred, even_truth), geoloc::ValueError);
  CHECK_THROWS_AS(compute_metrics({}, {}), geoloc::ValueError);
}
