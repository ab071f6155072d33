#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
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

  const nlohmann::json j = nlohmann::json::parse(m.to_json());
  CHECK(j["n"] == 5);
  CHECK(j["acc_km"]["200"].get<double>() == doctest::Approx(0.4));
  CHECK(j["acc_km"].size() == 5);
  CHECK(j["median_km"].get<double>() == doctest::Approx(m.median_km));
  CHECK(j["country_acc"].get<double>() == doctest::Approx(0.5));

  const double other[] = {10, 100, 1000, 10000};
  const Metrics m2 = compute_metrics(pred, truth, other);
  CHECK(m2.accuracy == std::vector<double>{0.2, 0.2, 0.6, 1.0});
  CHECK_FALSE(m2.country_acc.has_value());
  CHECK_FALSE(nlohmann::json::parse(m2.to_json()).contains("country_acc"));
  CHECK(nlohmann::json::parse(m2.to_json())["acc_km"].contains("10000"));

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

TEST_CASE("accuracy at any thresholds, Sy & Day's buckets, distances in miles in the table") {
  // Errors along the equator of 0, 1, 5, 10 and 50 degrees (0, 111, 556, 1112 and 5560 km).
  const std::vector<LatLng> truth(5, LatLng{0, 0});
  const std::vector<LatLng> pred = {{0, 0}, {0, 1}, {0, 5}, {0, 10}, {0, 50}};
  const double deg = haversine_km({0, 0}, {0, 1});
  const std::vector<double> thresholds = {1, 10, 25, 100, 200, 750, 1000, 2500, 10000};
  const Metrics m = compute_metrics(pred, truth, thresholds);
  CHECK(m.accuracy == std::vector<double>{0.2, 0.2, 0.2, 0.2, 0.4, 0.6, 0.6, 0.8, 1.0});
  CHECK(compute_metrics(pred, truth, kDistanceBucketsKm).accuracy == std::vector<double>{0.2, 0.2, 0.6, 1.0});
  // A threshold equal to an error counts it (<=): 5 degrees exactly.
  const double five[] = {5 * deg};
  CHECK(compute_metrics(pred, truth, five).accuracy[0] == doctest::Approx(0.6));
  CHECK(threshold_key(10000) == "10000");
  CHECK(threshold_key(0.5) == "0.5");

  CHECK(parse_distance_unit("km") == DistanceUnit::Km);
  CHECK(parse_distance_unit("miles") == DistanceUnit::Miles);
  CHECK(parse_distance_unit("mi") == DistanceUnit::Miles);
  CHECK_THROWS_AS(parse_distance_unit("furlongs"), geoloc::ValueError);

  // median 5 degrees = 555.97 km = 345.47 mi; mean 13.2 degrees = 1467.77 km = 912.03 mi.
  const std::vector<std::pair<std::string, Metrics>> methods = {{"m", m}};
  const std::string km = format_metrics_table(methods);
  const std::string mi = format_metrics_table(methods, {.unit = DistanceUnit::Miles});
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f", 5 * deg / 1.609344);
  CHECK(std::string(buf) == "345.5");
  CHECK(mi.find("median (mi)") != std::string::npos);
  CHECK(mi.find("345.5") != std::string::npos);
  std::snprintf(buf, sizeof buf, "%.1f", 66 * deg / 5 / 1.609344);
  CHECK(mi.find(std::string("mean (mi)")) != std::string::npos);
  CHECK(mi.find(buf) != std::string::npos);
  CHECK(km.find("median (km)") != std::string::npos);
  CHECK(km.find("556.0") != std::string::npos);
  // thresholds stay in km, and every one is a row, in increasing order
  CHECK(mi.find("acc@10000 km (%)") != std::string::npos);
  CHECK(mi.find("acc@10 km (%)") < mi.find("acc@25 km (%)"));
  // rows nobody filled are not printed
  CHECK(km.find("continent") == std::string::npos);
  CHECK(km.find("centroid") == std::string::npos);
  // the JSON stays in km
  CHECK(nlohmann::json::parse(m.to_json())["median_km"].get<double>() == doctest::Approx(5 * deg));
}

TEST_CASE("continent accuracy and the mean error between cell centroids") {
  using C = Continent;
  const std::vector<LatLng> truth(5, LatLng{0, 0});
  const std::vector<LatLng> pred = {{0, 0}, {0, 1}, {0, 5}, {0, 10}, {0, 50}};
  // The truth of sample 3 is at sea (None): not counted. Sample 4's prediction is at sea: wrong.
  const std::vector<C> true_c = {C::Europe, C::Europe, C::Africa, C::None, C::Asia};
  const std::vector<C> pred_c = {C::Europe, C::Asia, C::Africa, C::Africa, C::None};
  // Centroids: the true cell's centroid at (0, 0.5) for all; predicted cells at (0, 0.5), (0, 1.5),
  // (0, 4.5), (0, 10.5) and across the antimeridian from a true cell at (0, 179.5): (0, -179.5).
  const std::vector<LatLng> true_cell = {{0, 0.5}, {0, 0.5}, {0, 0.5}, {0, 0.5}, {0, 179.5}};
  const std::vector<LatLng> pred_cell = {{0, 0.5}, {0, 1.5}, {0, 4.5}, {0, 10.5}, {0, -179.5}};
  const double deg = haversine_km({0, 0}, {0, 1});
  MetricLabels labels;
  labels.predicted_continent = pred_c;
  labels.true_continent = true_c;
  labels.predicted_cell = pred_cell;
  labels.true_cell = true_cell;
  const Metrics m = compute_metrics(pred, truth, kDefaultThresholdsKm, labels);
  REQUIRE(m.continent_acc.has_value());
  CHECK(*m.continent_acc == doctest::Approx(2.0 / 4.0));
  CHECK_FALSE(m.country_acc.has_value());
  REQUIRE(m.mean_cell_km.has_value());
  CHECK(*m.mean_cell_km == doctest::Approx((0 + 1 + 4 + 10 + 1) * deg / 5));  // 1 degree across 180
  CHECK(m.mean_km == doctest::Approx(66 * deg / 5));                          // unchanged by the labels

  const nlohmann::json j = nlohmann::json::parse(m.to_json());
  CHECK(j["continent_acc"].get<double>() == doctest::Approx(0.5));
  CHECK(j["mean_cell_km"].get<double>() == doctest::Approx(16 * deg / 5));
  CHECK_FALSE(j.contains("country_acc"));

  // Every truth at sea: no continent accuracy at all (as for countries).
  const std::vector<C> sea(5, C::None);
  MetricLabels at_sea;
  at_sea.predicted_continent = pred_c;
  at_sea.true_continent = sea;
  CHECK_FALSE(compute_metrics(pred, truth, kDefaultThresholdsKm, at_sea).continent_acc.has_value());

  const std::vector<std::pair<std::string, Metrics>> methods = {{"with", m}, {"without", compute_metrics(pred, truth)}};
  const std::string table = format_metrics_table(methods);
  CHECK(table.find("continent acc (%)") != std::string::npos);
  CHECK(table.find("50.00") != std::string::npos);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f", 16 * deg / 5);
  CHECK(table.find("centroid mean (km)") != std::string::npos);
  CHECK(table.find(buf) != std::string::npos);
  const std::string mi = format_metrics_table(methods, {.unit = DistanceUnit::Miles});
  std::snprintf(buf, sizeof buf, "%.1f", 16 * deg / 5 / kKmPerMile);
  CHECK(mi.find("centroid mean (mi)") != std::string::npos);
  CHECK(mi.find(buf) != std::string::npos);

  // Label spans of the wrong length name what is wrong.
  MetricLabels bad;
  bad.predicted_cell = pred_cell;
  bad.true_cell = std::span<const LatLng>(true_cell).first(4);
  CHECK_THROWS_AS(compute_metrics(pred, truth, kDefaultThresholdsKm, bad), geoloc::ValueError);
  MetricLabels short_pair;
  short_pair.predicted_continent = std::span<const C>(pred_c).first(3);
  short_pair.true_continent = std::span<const C>(true_c).first(3);
  CHECK_THROWS_AS(compute_metrics(pred, truth, kDefaultThresholdsKm, short_pair), geoloc::ValueError);
}
