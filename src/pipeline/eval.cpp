#include "geoloc/pipeline/eval.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "geoloc/detail/parallel.hpp"
#include "geoloc/atomic_file.hpp"
#include "geoloc/image/transforms.hpp"
#include "geoloc/viz/chart.hpp"

#include "geo/metrics_json.hpp"
#include "pipeline/eval_json.hpp"

namespace geoloc::pipeline {

Tensor eval_batch(const GeoModel& model, const Dataset& data, size_t start, size_t count, bool five_crop) {
  GEOLOC_CHECK(start + count <= data.size(), ValueError, "rows ", start, "..", start + count, " out of range (",
               data.size(), " rows)");
  return model.preprocess.eval_batch(std::span<const image::Image>(data.images).subspan(start, count), five_crop)
      .to(model.net->device());
}

namespace {
// Concatenates per-batch probabilities into one.
void append(HeadProbabilities& all, const HeadProbabilities& part) {
  if (all.n == 0) {
    all = part;
    return;
  }
  const int64_t d = all.embedding.dim(1);
  std::vector<float> e = all.embedding.to_vector(), pe = part.embedding.to_vector();
  e.insert(e.end(), pe.begin(), pe.end());
  all.embedding = Tensor::from_vector({all.n + part.n, d}, e);
  for (auto& [name, v] : all.p) {
    const auto& pv = part.p.at(name);
    v.insert(v.end(), pv.begin(), pv.end());
  }
  all.n += part.n;
}
}  // namespace

EvalReport evaluate_strategies(const GeoModel& model, const Dataset& data, const geo::CountryIndex* countries,
                               const EvalOptions& o) {
  data.validate("evaluation set");
  GEOLOC_CHECK(data.size() > 0, ValueError, "evaluation set is empty");
  const Predictor pred(model, countries);
  EvalReport r;
  for (size_t start = 0; start < data.size(); start += static_cast<size_t>(o.batch_size)) {
    const size_t m = std::min<size_t>(static_cast<size_t>(o.batch_size), data.size() - start);
    HeadProbabilities hp = pred.probabilities(eval_batch(model, data, start, m, o.five_crop));
    if (o.five_crop) hp = Predictor::aggregate(hp, 5, o.max_crops);
    append(r.probabilities, hp);
  }
  auto& hp = r.probabilities;
  std::vector<int> scene_pred;
  if (hp.p.count("scene")) {
    size_t known = 0, right = 0;
    for (int64_t i = 0; i < hp.n; ++i) {
      if (data.scene[i] < 0) continue;
      const auto p = hp.row("scene", i);
      ++known;
      right += (std::max_element(p.begin(), p.end()) - p.begin()) == data.scene[i];
    }
    if (known) r.scene_acc = static_cast<double>(right) / static_cast<double>(known);
  }
  if (std::find(o.strategies.begin(), o.strategies.end(), Strategy::Knn) != o.strategies.end() &&
      pred.supports(Strategy::Knn))
    pred.find_neighbours(hp, o.predict);  // one batched search for the whole set
  if ((std::find(o.strategies.begin(), o.strategies.end(), Strategy::Refine) != o.strategies.end() ||
       std::find(o.strategies.begin(), o.strategies.end(), Strategy::Rank) != o.strategies.end()) &&
      pred.supports(Strategy::Refine))
    pred.find_refined(hp, o.predict);
  if (!model.partitions.empty()) {
    const GeoPartition& fine = model.finest();
    std::vector<std::pair<int, float>> top(static_cast<size_t>(hp.n));
    for (int64_t i = 0; i < hp.n; ++i) {
      const auto pr = hp.row(fine.name, i);
      const int c = static_cast<int>(std::max_element(pr.begin(), pr.end()) - pr.begin());
      top[i] = {c, pr[c]};
    }
    r.calibration = calibration(top, fine.partition->assign_all(data.coords));
  }
  const bool country_head = hp.p.count("country") && !model.country_codes.empty();
  const std::vector<geo::Continent> true_continent =
      countries ? countries->continents(data.coords) : std::vector<geo::Continent>();
  std::vector<geo::LatLng> true_cell;
  if (!model.partitions.empty()) true_cell = true_cell_centers(*model.finest().partition, data.coords);
  for (Strategy s : o.strategies) {
    if (!pred.supports(s)) continue;
    PredictOptions po = o.predict;
    po.strategy = s;
    std::vector<geo::LatLng> coords(static_cast<size_t>(hp.n));
    std::vector<int> country(static_cast<size_t>(hp.n), -1);
    std::vector<double> confidence(static_cast<size_t>(hp.n)), error(static_cast<size_t>(hp.n));
    for (int64_t i = 0; i < hp.n; ++i) {
      const Prediction p = pred.decide(hp, i, po);
      coords[i] = p.coordinate;
      country[i] = p.country;
      confidence[i] = p.confidence;
      error[i] = geo::haversine_km(p.coordinate, data.coords[i]);
    }
    r.coverage[strategy_name(s)] = accuracy_coverage(error, confidence);
    r.confidence[strategy_name(s)] = std::move(confidence);
    const bool with_country = countries || !model.country_codes.empty();
    geo::MetricLabels labels;
    if (with_country) {
      labels.predicted_country = country;
      labels.true_country = data.country;
    }
    // The continent of the predicted country where a country head predicts it, else of the coordinate.
    std::vector<geo::Continent> continent;
    if (countries) {
      if (country_head)
        for (int c : country) continent.push_back(geo::continent_of_country(c));
      else
        continent = countries->continents(coords);
      labels.predicted_continent = continent;
      labels.true_continent = true_continent;
    }
    // The predicted cell: the class picked by the cell and hierarchy strategies, else the coordinate's cell.
    std::vector<geo::LatLng> cell;
    if (!true_cell.empty()) {
      const GeoPartition& fine = model.finest();
      if (s == Strategy::CellMean || s == Strategy::Hierarchy) {
        // Their coordinate before any snapping to land is the centre of the class they picked.
        cell.resize(coords.size());
        for (int64_t i = 0; i < hp.n; ++i) cell[i] = pred.coordinate(hp, i, s, po);
      } else {
        cell = fine.partition->cell_centers_of(coords);
      }
      labels.predicted_cell = cell;
      labels.true_cell = true_cell;
    }
    r.methods.emplace_back(strategy_name(s), geo::compute_metrics(coords, data.coords, o.thresholds_km, labels));
    r.predicted[strategy_name(s)] = std::move(coords);
  }
  return r;
}

std::vector<geo::LatLng> true_cell_centers(const geo::Partition& partition, std::span<const geo::LatLng> truth) {
  return partition.cell_centers_of(truth);
}

std::string EvalReport::table(const geo::TableOptions& options) const {
  std::string t = geo::format_metrics_table(methods, options);
  if (scene_acc) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "scene accuracy: %.1f %%\n", 100.0 * *scene_acc);
    t += buf;
  }
  return t;
}

nlohmann::json to_json_object(const EvalReport& r) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, m] : r.methods) {
    auto mj = geo::to_json_object(m);
    if (r.scene_acc) mj["scene_acc"] = *r.scene_acc;
    j[name] = mj;
  }
  return j;
}

std::string EvalReport::to_json() const { return to_json_object(*this).dump(2); }

std::vector<CoveragePoint> accuracy_coverage(std::span<const double> error, std::span<const double> confidence,
                                             std::span<const double> fractions, std::span<const double> thresholds) {
  GEOLOC_CHECK(!error.empty() && error.size() == confidence.size(), ValueError, "accuracy_coverage: ", error.size(),
               " errors and ", confidence.size(), " confidences");
  std::vector<size_t> order(error.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return confidence[a] > confidence[b]; });
  std::vector<CoveragePoint> out;
  for (double f : fractions) {
    GEOLOC_CHECK(f > 0.0 && f <= 1.0, ValueError, "accuracy_coverage: coverage ", f, " outside (0, 1]");
    const size_t m = std::max<size_t>(1, static_cast<size_t>(std::ceil(f * static_cast<double>(order.size()) - 1e-9)));
    CoveragePoint pt{f, {}};
    for (double t : thresholds) {
      size_t hit = 0;
      for (size_t k = 0; k < m; ++k) hit += error[order[k]] <= t;
      pt.accuracy.push_back(static_cast<double>(hit) / static_cast<double>(m));
    }
    out.push_back(std::move(pt));
  }
  return out;
}

Calibration calibration(std::span<const std::pair<int, float>> top, std::span<const int> truth, int bins) {
  GEOLOC_CHECK(!top.empty() && top.size() == truth.size() && bins >= 1, ValueError, "calibration: ", top.size(),
               " predictions, ", truth.size(), " labels, ", bins, " bins");
  Calibration c;
  c.bin_confidence.assign(static_cast<size_t>(bins), 0.0);
  c.bin_accuracy.assign(static_cast<size_t>(bins), 0.0);
  c.bin_count.assign(static_cast<size_t>(bins), 0);
  for (size_t i = 0; i < top.size(); ++i) {
    const double p = std::clamp(static_cast<double>(top[i].second), 0.0, 1.0);
    const size_t b = std::min<size_t>(static_cast<size_t>(p * bins), static_cast<size_t>(bins - 1));
    c.bin_confidence[b] += p;
    c.bin_accuracy[b] += top[i].first == truth[i] && truth[i] >= 0 ? 1.0 : 0.0;
    ++c.bin_count[b];
  }
  for (size_t b = 0; b < c.bin_count.size(); ++b) {
    if (!c.bin_count[b]) continue;
    const double n = static_cast<double>(c.bin_count[b]);
    c.bin_confidence[b] /= n;
    c.bin_accuracy[b] /= n;
    c.ece += n / static_cast<double>(top.size()) * std::abs(c.bin_accuracy[b] - c.bin_confidence[b]);
  }
  return c;
}

nlohmann::json to_json_object(const Calibration& c) {
  return {{"ece", c.ece},
          {"bins", {{"confidence", c.bin_confidence}, {"accuracy", c.bin_accuracy}, {"count", c.bin_count}}}};
}

std::string Calibration::to_json() const { return to_json_object(*this).dump(2); }

namespace {
std::string pct_key(double f) { return std::to_string(static_cast<int>(std::lround(100.0 * f))); }
}  // namespace

nlohmann::json calibration_json_object(const EvalReport& r) {
  nlohmann::json j = nlohmann::json::object();
  if (r.calibration) j = to_json_object(*r.calibration);
  auto& cj = j["coverage"] = nlohmann::json::object();
  for (const auto& [name, m] : r.methods) {
    auto it = r.coverage.find(name);
    if (it == r.coverage.end()) continue;
    for (const auto& pt : it->second)
      for (size_t t = 0; t < pt.accuracy.size(); ++t)
        cj[name][pct_key(pt.coverage)][geo::threshold_key(kCoverageThresholdsKm[t])] = pt.accuracy[t];
  }
  return j;
}

std::string EvalReport::calibration_json() const { return calibration_json_object(*this).dump(2); }

std::string EvalReport::calibration_table() const {
  std::string t;
  char buf[256];
  if (calibration) {
    std::snprintf(buf, sizeof buf, "expected calibration error of the finest cells' probabilities: %.3f\n",
                  calibration->ece);
    t += buf;
  }
  t += "accuracy (%) within 25 / 200 / 750 km when answering the most confident 25 / 50 / 75 / 100 % of images\n";
  for (const auto& [name, m] : methods) {
    auto it = coverage.find(name);
    if (it == coverage.end()) continue;
    std::snprintf(buf, sizeof buf, "  %-10s", name.c_str());
    t += buf;
    for (const auto& pt : it->second) {
      std::snprintf(buf, sizeof buf, " | %3.0f%%: %4.1f %4.1f %4.1f", 100.0 * pt.coverage, 100.0 * pt.accuracy[0],
                    100.0 * pt.accuracy[1], 100.0 * pt.accuracy[2]);
      t += buf;
    }
    t += "\n";
  }
  return t;
}

void EvalReport::write_calibration(const std::string& stem, const std::string& title) const {
  const std::string j = calibration_json();
  write_file_atomic(stem + ".json", [&](std::ostream& os) { os << j << "\n"; }, false);
  viz::ChartSpec spec;
  char buf[160];
  if (calibration)
    std::snprintf(buf, sizeof buf, "%s%sacc@750 km vs coverage; cell ECE %.3f", title.c_str(), title.empty() ? "" : ": ",
                  calibration->ece);
  else
    std::snprintf(buf, sizeof buf, "%s%sacc@750 km vs coverage", title.c_str(), title.empty() ? "" : ": ");
  spec.title = buf;
  spec.width = 1000;
  spec.x_label = "answered (most confident first), %";
  spec.y_label = "accuracy within 750 km, %";
  spec.x_min = 0.0;
  spec.x_max = 100.0;
  spec.y_min = 0.0;
  for (const auto& [name, m] : methods) {
    auto it = coverage.find(name);
    if (it == coverage.end()) continue;
    viz::Series se;
    se.name = name;
    for (const auto& pt : it->second) {
      se.x.push_back(100.0 * pt.coverage);
      se.y.push_back(100.0 * pt.accuracy[2]);
    }
    spec.series.push_back(std::move(se));
  }
  viz::write_line_chart(stem + ".png", spec);
}
}  // namespace geoloc::pipeline
