#include "geoloc/pipeline/eval.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "geoloc/detail/parallel.hpp"
#include "geoloc/atomic_file.hpp"
#include "geoloc/image/transforms.hpp"
#include "geoloc/viz/chart.hpp"
#include "geoloc/pipeline/row_source.hpp"

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
// Per-batch probabilities gathered into one (EvalOptions::keep_probabilities): appended to growing
// vectors, made a tensor once at the end (re-making the embedding tensor per batch was quadratic).
struct ProbabilityGather {
  HeadProbabilities all;
  std::vector<float> embedding;
  int64_t dim = 0;
  void add(const HeadProbabilities& part) {
    if (all.n == 0) {
      all = part;  // heads, classes, regression heads
      all.n = 0;
      all.embedding = Tensor();
      all.knn.clear();  // the neighbour lists are per batch and not kept
      all.refine.clear();
    } else {
      for (auto& [name, v] : all.p) {
        const auto& pv = part.p.at(name);
        v.insert(v.end(), pv.begin(), pv.end());
      }
    }
    dim = part.embedding.dim(1);
    const std::vector<float> e = part.embedding.to_vector();
    embedding.insert(embedding.end(), e.begin(), e.end());
    all.n += part.n;
  }
  HeadProbabilities take() {
    if (all.n > 0) all.embedding = Tensor::from_vector({all.n, dim}, embedding);
    return std::move(all);
  }
};

bool wants(const EvalOptions& o, Strategy s) {
  return std::find(o.strategies.begin(), o.strategies.end(), s) != o.strategies.end();
}
}  // namespace

EvalReport evaluate_strategies(const GeoModel& model, const Dataset& data, const geo::CountryIndex* countries,
                               const EvalOptions& o) {
  data.validate("evaluation set");
  GEOLOC_CHECK(data.size() > 0, ValueError, "evaluation set is empty");
  return evaluate_strategies(model, DatasetRows(data), countries, o);
}

EvalReport evaluate_strategies(const GeoModel& model, const RowSource& rows, const geo::CountryIndex* countries,
                               const EvalOptions& o) {
  GEOLOC_CHECK(rows.size() > 0, ValueError, "evaluation set is empty");
  GEOLOC_CHECK(o.batch_size >= 1, ValueError, "evaluation batch size must be positive, got ", o.batch_size);
  const Predictor pred(model, countries);
  EvalReport r;
  // One batch at a time: decode, forward, the neighbour searches, every strategy's decisions; only the
  // per-row answers (a few numbers each) are kept, so memory is bounded by the batch.
  Dataset truth;  // labels of the rows read (no images)
  std::vector<std::pair<int, float>> top;  // finest-partition class and probability, for the calibration
  size_t scene_known = 0, scene_right = 0;
  struct Answers {
    std::vector<geo::LatLng> coords, cell;
    std::vector<int> country;
    std::vector<double> confidence;
  };
  std::map<Strategy, Answers> answers;
  ProbabilityGather gathered;
  bool has_country_head = false;
  const bool knn = wants(o, Strategy::Knn) && pred.supports(Strategy::Knn);
  const bool refine = (wants(o, Strategy::Refine) || wants(o, Strategy::Rank)) && pred.supports(Strategy::Refine);
  for (size_t start = 0; start < rows.size(); start += static_cast<size_t>(o.batch_size)) {
    const size_t m = std::min<size_t>(static_cast<size_t>(o.batch_size), rows.size() - start);
    const Dataset batch = rows.rows(start, m);
    if (batch.size() == 0) continue;  // every image of the batch unreadable
    batch.validate("evaluation rows " + std::to_string(start) + ".." + std::to_string(start + m));
    HeadProbabilities hp = pred.probabilities(
        model.preprocess.eval_batch(batch.images, o.five_crop).to(model.net->device()));
    if (o.five_crop) hp = Predictor::aggregate(hp, 5, o.max_crops);
    has_country_head = hp.p.count("country") > 0;
    if (hp.p.count("scene"))
      for (int64_t i = 0; i < hp.n; ++i) {
        if (batch.scene[i] < 0) continue;
        const auto p = hp.row("scene", i);
        ++scene_known;
        scene_right += (std::max_element(p.begin(), p.end()) - p.begin()) == batch.scene[i];
      }
    if (knn) pred.find_neighbours(hp, o.predict);  // one batched search per batch
    if (refine) pred.find_refined(hp, o.predict);
    if (!model.partitions.empty()) {
      const GeoPartition& fine = model.finest();
      for (int64_t i = 0; i < hp.n; ++i) {
        const auto pr = hp.row(fine.name, i);
        const int c = static_cast<int>(std::max_element(pr.begin(), pr.end()) - pr.begin());
        top.emplace_back(c, pr[c]);
      }
    }
    for (Strategy s : o.strategies) {
      if (!pred.supports(s)) continue;
      PredictOptions po = o.predict;
      po.strategy = s;
      Answers& a = answers[s];
      for (int64_t i = 0; i < hp.n; ++i) {
        const Prediction p = pred.decide(hp, i, po);
        a.coords.push_back(p.coordinate);
        a.country.push_back(p.country);
        a.confidence.push_back(p.confidence);
        // The predicted cell of the cell and hierarchy strategies: the centre of the class they picked
        // (their coordinate before any snapping to land).
        if (!model.partitions.empty() && (s == Strategy::CellMean || s == Strategy::Hierarchy))
          a.cell.push_back(pred.coordinate(hp, i, s, po));
      }
    }
    if (o.keep_probabilities) gathered.add(hp);
    truth.coords.insert(truth.coords.end(), batch.coords.begin(), batch.coords.end());
    truth.scene.insert(truth.scene.end(), batch.scene.begin(), batch.scene.end());
    truth.country.insert(truth.country.end(), batch.country.begin(), batch.country.end());
  }
  GEOLOC_CHECK(!truth.coords.empty(), IoError, "evaluation set: none of its ", rows.size(), " images could be read",
               rows.first_skip().empty() ? std::string() : " (first: " + rows.first_skip() + ")");
  r.probabilities = gathered.take();
  const Dataset& data = truth;
  const int64_t n = static_cast<int64_t>(data.coords.size());
  if (scene_known) r.scene_acc = static_cast<double>(scene_right) / static_cast<double>(scene_known);
  if (!model.partitions.empty()) r.calibration = calibration(top, model.finest().partition->assign_all(data.coords));
  const bool country_head = has_country_head && !model.country_codes.empty();
  const std::vector<geo::Continent> true_continent =
      countries ? countries->continents(data.coords) : std::vector<geo::Continent>();
  std::vector<geo::LatLng> true_cell;
  if (!model.partitions.empty()) true_cell = true_cell_centers(*model.finest().partition, data.coords);
  for (Strategy s : o.strategies) {
    if (!pred.supports(s)) continue;
    Answers& a = answers[s];
    std::vector<geo::LatLng>& coords = a.coords;
    std::vector<double> error(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) error[i] = geo::haversine_km(coords[i], data.coords[i]);
    r.coverage[strategy_name(s)] = accuracy_coverage(error, a.confidence);
    r.confidence[strategy_name(s)] = std::move(a.confidence);
    const bool with_country = countries || !model.country_codes.empty();
    geo::MetricLabels labels;
    if (with_country) {
      labels.predicted_country = a.country;
      labels.true_country = data.country;
    }
    // The continent of the predicted country where a country head predicts it, else of the coordinate.
    std::vector<geo::Continent> continent;
    if (countries) {
      if (country_head)
        for (int c : a.country) continent.push_back(geo::continent_of_country(c));
      else
        continent = countries->continents(coords);
      labels.predicted_continent = continent;
      labels.true_continent = true_continent;
    }
    // The predicted cell: the class picked by the cell and hierarchy strategies, else the coordinate's cell.
    std::vector<geo::LatLng> cell;
    if (!true_cell.empty()) {
      cell = (s == Strategy::CellMean || s == Strategy::Hierarchy) ? std::move(a.cell)
                                                                    : model.finest().partition->cell_centers_of(coords);
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
