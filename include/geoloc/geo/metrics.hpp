#pragma once
// Geolocation metrics: accuracy within distance thresholds, median/mean error, GeoGuessr score
// (the same formula as OSV-5M's GeoScore), country and continent accuracy, mean error between the
// centroids of the predicted and the true cell; printable as a table (km or miles) and as JSON (km).
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "geoloc/geo/continents.hpp"
#include "geoloc/geo/coords.hpp"

namespace geoloc::geo {

/// The thresholds of Im2GPS / YFCC evaluations: street, city, region, country, continent (km).
inline const std::vector<double> kDefaultThresholdsKm = {1, 25, 200, 750, 2500};
/// The distance buckets of Sy & Day (km).
inline const std::vector<double> kDistanceBucketsKm = {10, 100, 1000, 10000};

/// The unit of distances in printed tables; metrics and JSON are always in km.
enum class DistanceUnit { Km, Miles };
/// The international mile, exactly.
inline constexpr double kKmPerMile = 1.609344;
/// "km" or "miles" (also "mi"); ValueError otherwise.
DistanceUnit parse_distance_unit(std::string_view s);

/// "1", "25", "0.5": a threshold as a JSON key of "acc_km" and in table labels (%g, no trailing zeros).
std::string threshold_key(double km);

struct Metrics {
  std::size_t n = 0;
  std::vector<double> thresholds_km;
  std::vector<double> accuracy;       // fraction of errors <= thresholds_km[i]
  double median_km = 0, mean_km = 0;
  double geoguessr = 0;               // mean of 5000 exp(-d / 1492.7 km) (= OSV-5M's GeoScore)
  std::optional<double> country_acc;  // when country codes were given
  std::optional<double> continent_acc;  // when continents were given
  /// Mean distance between the centroid of the predicted cell and that of the true cell, when given.
  std::optional<double> mean_cell_km;

  /// JSON text, indented by 2: {"n", "acc_km": {"1": f, ...}, "median_km", "mean_km", "geoguessr"
  /// [, "country_acc"][, "continent_acc"][, "mean_cell_km"]}.
  std::string to_json() const;
};

/// Optional per-sample labels next to the coordinates. Each pair is empty or has one entry per sample.
struct MetricLabels {
  /// ISO 3166-1 numeric codes; -1 unknown (at sea, or a territory without a code).
  std::span<const int> predicted_country, true_country;
  std::span<const Continent> predicted_continent, true_continent;
  /// Centroids of the predicted and of the true cell of one partitioning (see docs/geography.md).
  std::span<const LatLng> predicted_cell, true_cell;
};

/// Metrics of predictions against ground truth (same length, ValueError otherwise or when empty).
/// Country (continent) accuracy counts the samples whose true code is known (>= 0, not None); a
/// prediction of -1 (None) is wrong. mean_cell_km averages over every sample.
Metrics compute_metrics(std::span<const LatLng> predicted, std::span<const LatLng> truth,
                        std::span<const double> thresholds_km, const MetricLabels& labels);
/// The same with country codes only.
Metrics compute_metrics(std::span<const LatLng> predicted, std::span<const LatLng> truth,
                        std::span<const double> thresholds_km = kDefaultThresholdsKm,
                        std::span<const int> predicted_country = {}, std::span<const int> true_country = {});

struct TableOptions {
  DistanceUnit unit = DistanceUnit::Km;  // of the median, mean and centroid rows; thresholds stay in km
};

/// A fixed-width table, one column per named method, one row per metric (accuracies in %): one
/// accuracy row per threshold any method has (increasing), median, mean, GeoGuessr, country accuracy,
/// then continent accuracy and the centroid mean error where some method has them.
std::string format_metrics_table(std::span<const std::pair<std::string, Metrics>> methods,
                                 const TableOptions& options = {});

}  // namespace geoloc::geo
