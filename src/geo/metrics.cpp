#include "geoloc/geo/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "geoloc/error.hpp"

namespace geoloc::geo {
namespace {

// "1", "25", "0.5": thresholds as JSON keys and table labels, without trailing zeros.
std::string km_label(double km) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", km);
  return buf;
}

}  // namespace

nlohmann::json Metrics::to_json() const {
  nlohmann::json acc = nlohmann::json::object();
  for (std::size_t i = 0; i < thresholds_km.size(); ++i) acc[km_label(thresholds_km[i])] = accuracy[i];
  nlohmann::json j = {{"n", n}, {"acc_km", acc}, {"median_km", median_km}, {"mean_km", mean_km},
                      {"geoguessr", geoguessr}};
  if (country_acc) j["country_acc"] = *country_acc;
  return j;
}

Metrics compute_metrics(std::span<const LatLng> predicted, std::span<const LatLng> truth,
                        std::span<const double> thresholds_km, std::span<const int> predicted_country,
                        std::span<const int> true_country) {
  GEOLOC_CHECK(predicted.size() == truth.size(), ValueError, "metrics: ", predicted.size(), " predictions for ",
               truth.size(), " true coordinates");
  GEOLOC_CHECK(!truth.empty(), ValueError, "metrics: no samples");
  GEOLOC_CHECK(predicted_country.size() == true_country.size() &&
                   (predicted_country.empty() || predicted_country.size() == truth.size()),
               ValueError, "metrics: ", predicted_country.size(), " predicted and ", true_country.size(),
               " true countries for ", truth.size(), " samples");
  validate_all(predicted, "predictions");
  validate_all(truth, "ground truth");

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

  if (!true_country.empty()) {
    std::size_t known = 0, right = 0;
    for (std::size_t i = 0; i < m.n; ++i)
      if (true_country[i] >= 0) {
        ++known;
        right += predicted_country[i] == true_country[i];
      }
    if (known > 0) m.country_acc = static_cast<double>(right) / known;
  }
  return m;
}

std::string format_metrics_table(std::span<const std::pair<std::string, Metrics>> methods) {
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
    line("acc@" + km_label(t) + " km (%)", [&](const std::string&, const Metrics& m) {
      const auto it = std::find(m.thresholds_km.begin(), m.thresholds_km.end(), t);
      return it == m.thresholds_km.end() ? std::string("-") : fixed(100 * m.accuracy[it - m.thresholds_km.begin()], 2);
    });
  line("median (km)", [&](const std::string&, const Metrics& m) { return fixed(m.median_km, 1); });
  line("mean (km)", [&](const std::string&, const Metrics& m) { return fixed(m.mean_km, 1); });
  line("geoguessr", [&](const std::string&, const Metrics& m) { return fixed(m.geoguessr, 1); });
  line("country acc (%)", [&](const std::string&, const Metrics& m) {
    return m.country_acc ? fixed(100 * *m.country_acc, 2) : std::string("-");
  });
  return out;
}

}  // namespace geoloc::geo
