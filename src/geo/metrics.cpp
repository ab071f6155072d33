#include "geoloc/geo/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "geo/metrics_json.hpp"
#include "geoloc/error.hpp"

namespace geoloc::geo {
namespace {

// ValueError unless a pair of label spans is empty or has one entry per sample on both sides.
void check_pair(std::size_t predicted, std::size_t truth, std::size_t n, const char* what) {
  GEOLOC_CHECK(predicted == truth && (predicted == 0 || predicted == n), ValueError, "metrics: ", predicted,
               " predicted and ", truth, " true ", what, " for ", n, " samples");
}

// The fraction of samples with a known truth (known(i)) whose prediction is right (right(i)).
template <class Known, class Right>
std::optional<double> label_accuracy(std::size_t n, Known known, Right right) {
  std::size_t k = 0, r = 0;
  for (std::size_t i = 0; i < n; ++i)
    if (known(i)) {
      ++k;
      r += right(i);
    }
  if (k == 0) return std::nullopt;
  return static_cast<double>(r) / static_cast<double>(k);
}

}  // namespace

DistanceUnit parse_distance_unit(std::string_view s) {
  if (s == "km") return DistanceUnit::Km;
  if (s == "miles" || s == "mi") return DistanceUnit::Miles;
  throw ValueError(detail::cat("unknown distance unit '", s, "' (expected km or miles)"));
}

std::string threshold_key(double km) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", km);
  return buf;
}

nlohmann::json to_json_object(const Metrics& m) {
  nlohmann::json acc = nlohmann::json::object();
  for (std::size_t i = 0; i < m.thresholds_km.size(); ++i) acc[threshold_key(m.thresholds_km[i])] = m.accuracy[i];
  nlohmann::json j = {{"n", m.n}, {"acc_km", acc}, {"median_km", m.median_km}, {"mean_km", m.mean_km},
                      {"geoguessr", m.geoguessr}};
  if (m.country_acc) j["country_acc"] = *m.country_acc;
  if (m.continent_acc) j["continent_acc"] = *m.continent_acc;
  if (m.mean_cell_km) j["mean_cell_km"] = *m.mean_cell_km;
  return j;
}

std::string Metrics::to_json() const { return to_json_object(*this).dump(2); }

Metrics compute_metrics(std::span<const LatLng> predicted, std::span<const LatLng> truth,
                        std::span<const double> thresholds_km, std::span<const int> predicted_country,
                        std::span<const int> true_country) {
  return compute_metrics(predicted, truth, thresholds_km,
                         MetricLabels{.predicted_country = predicted_country, .true_country = true_country});
}

Metrics compute_metrics(std::span<const LatLng> predicted, std::span<const LatLng> truth,
                        std::span<const double> thresholds_km, const MetricLabels& labels) {
  GEOLOC_CHECK(predicted.size() == truth.size(), ValueError, "metrics: ", predicted.size(), " predictions for ",
               truth.size(), " true coordinates");
  GEOLOC_CHECK(!truth.empty(), ValueError, "metrics: no samples");
  check_pair(labels.predicted_country.size(), labels.true_country.size(), truth.size(), "countries");
  check_pair(labels.predicted_continent.size(), labels.true_continent.size(), truth.size(), "continents");
  check_pair(labels.predicted_cell.size(), labels.true_cell.size(), truth.size(), "cell centroids");
  validate_all(predicted, "predictions");
  validate_all(truth, "ground truth");
  validate_all(labels.predicted_cell, "predicted cell centroids");
  validate_all(labels.true_cell, "true cell centroids");

  Metrics m;
  m.n = truth.size();
  m.thresholds_km.assign(thresholds_km.begin(), thresholds_km.end());
  std::vector<double> d(m.n);
  double sum = 0, score = 0;
  for (std::size_t i = 0; i < m.n; ++i) {
    d[i] = haversine_km(predicted[i], truth[i]);
    sum += d[i];
    score += 5000.0 * std::exp(-d[i] / 1492.7);
  }
  m.mean_km = sum / m.n;
  m.geoguessr = score / m.n;
  for (double t : m.thresholds_km)
    m.accuracy.push_back(static_cast<double>(std::count_if(d.begin(), d.end(), [t](double x) { return x <= t; })) / m.n);
  std::sort(d.begin(), d.end());
  m.median_km = m.n % 2 ? d[m.n / 2] : 0.5 * (d[m.n / 2 - 1] + d[m.n / 2]);

  if (const auto pc = labels.predicted_country, tc = labels.true_country; !tc.empty())
    m.country_acc = label_accuracy(m.n, [&](std::size_t i) { return tc[i] >= 0; },
                                   [&](std::size_t i) { return pc[i] == tc[i]; });
  if (const auto pc = labels.predicted_continent, tc = labels.true_continent; !tc.empty())
    m.continent_acc = label_accuracy(m.n, [&](std::size_t i) { return tc[i] != Continent::None; },
                                     [&](std::size_t i) { return pc[i] == tc[i]; });
  if (!labels.true_cell.empty()) {
    double cell_sum = 0;
    for (std::size_t i = 0; i < m.n; ++i) cell_sum += haversine_km(labels.predicted_cell[i], labels.true_cell[i]);
    m.mean_cell_km = cell_sum / m.n;
  }
  return m;
}

std::string format_metrics_table(std::span<const std::pair<std::string, Metrics>> methods, const TableOptions& options) {
  constexpr int kLabel = 18, kColumn = 14;
  std::string out;
  // One line: a label, then cell(metrics) of every method right-aligned.
  auto line = [&](const std::string& label, auto cell) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "%-*s", kLabel, label.c_str());
    out += buf;
    for (const auto& [name, m] : methods) {
      std::snprintf(buf, sizeof buf, " %*s", kColumn - 1, cell(name, m).c_str());
      out += buf;
    }
    out += '\n';
  };
  auto fixed = [](double v, int decimals) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return std::string(buf);
  };
  line("method", [](const std::string& name, const Metrics&) { return name; });
  line("n", [](const std::string&, const Metrics& m) { return std::to_string(m.n); });
  // Rows for every threshold that any method reports, in increasing order.
  std::vector<double> thresholds;
  for (const auto& entry : methods) thresholds.insert(thresholds.end(), entry.second.thresholds_km.begin(), entry.second.thresholds_km.end());
  std::sort(thresholds.begin(), thresholds.end());
  thresholds.erase(std::unique(thresholds.begin(), thresholds.end()), thresholds.end());
  for (double t : thresholds)
    line("acc@" + threshold_key(t) + " km (%)", [&](const std::string&, const Metrics& m) {
      const auto it = std::find(m.thresholds_km.begin(), m.thresholds_km.end(), t);
      return it == m.thresholds_km.end() ? std::string("-") : fixed(100 * m.accuracy[it - m.thresholds_km.begin()], 2);
    });
  const bool miles = options.unit == DistanceUnit::Miles;
  const std::string unit = miles ? "mi" : "km";
  const double per_km = miles ? 1.0 / kKmPerMile : 1.0;
  line("median (" + unit + ")", [&](const std::string&, const Metrics& m) { return fixed(m.median_km * per_km, 1); });
  line("mean (" + unit + ")", [&](const std::string&, const Metrics& m) { return fixed(m.mean_km * per_km, 1); });
  line("geoguessr", [&](const std::string&, const Metrics& m) { return fixed(m.geoguessr, 1); });
  line("country acc (%)", [&](const std::string&, const Metrics& m) {
    return m.country_acc ? fixed(100 * *m.country_acc, 2) : std::string("-");
  });
  // Rows that only some callers fill, shown where any method has them (older tables stay as they were).
  const auto any = [&](auto has) { return std::any_of(methods.begin(), methods.end(), [&](const auto& e) { return has(e.second); }); };
  if (any([](const Metrics& m) { return m.continent_acc.has_value(); }))
    line("continent acc (%)", [&](const std::string&, const Metrics& m) {
      return m.continent_acc ? fixed(100 * *m.continent_acc, 2) : std::string("-");
    });
  if (any([](const Metrics& m) { return m.mean_cell_km.has_value(); }))
    line("centroid mean (" + unit + ")", [&](const std::string&, const Metrics& m) {
      return m.mean_cell_km ? fixed(*m.mean_cell_km * per_km, 1) : std::string("-");
    });
  return out;
}

}  // namespace geoloc::geo
