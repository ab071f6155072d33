#include "geoloc/pipeline/eval.hpp"

#include <algorithm>

#include "geoloc/detail/parallel.hpp"
#include "geoloc/image/transforms.hpp"

namespace geoloc::pipeline {

Tensor network_input(const Preprocess& pp, std::span<const image::Image> images, bool five_crop, Device device) {
  GEOLOC_CHECK(!images.empty(), ValueError, "no images to prepare");
  pp.validate();
  const image::Normalization norm = pp.normalization();
  const size_t per = five_crop ? 5 : 1;
  Tensor batch = Tensor::empty({static_cast<int64_t>(images.size() * per), pp.crop, pp.crop, 3});
  const size_t stride = static_cast<size_t>(pp.crop) * pp.crop * 3;
  detail::parallel_for(images.size(), [&](size_t j) {
    const image::Image scaled = image::resize_shorter(images[j], pp.resize);
    if (five_crop) {
      const auto crops = image::five_crop(scaled, pp.crop, pp.crop);
      for (size_t k = 0; k < 5; ++k) image::normalize_into(crops[k], norm, batch.data<float>() + (j * 5 + k) * stride);
    } else {
      image::normalize_into(image::center_crop(scaled, pp.crop, pp.crop), norm, batch.data<float>() + j * stride);
    }
  });
  return batch.to(device);
}

Tensor eval_batch(const GeoModel& model, const Dataset& data, size_t start, size_t count, bool five_crop) {
  GEOLOC_CHECK(start + count <= data.size(), ValueError, "rows ", start, "..", start + count, " out of range (",
               data.size(), " rows)");
  return network_input(model.preprocess, std::span<const image::Image>(data.images).subspan(start, count), five_crop,
                       model.net->device());
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
    for (int64_t i = 0; i < hp.n; ++i) {
      const Prediction p = pred.decide(hp, i, po);
      coords[i] = p.coordinate;
      country[i] = p.country;
    }
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

nlohmann::json EvalReport::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, m] : methods) {
    auto mj = m.to_json();
    if (scene_acc) mj["scene_acc"] = *scene_acc;
    j[name] = mj;
  }
  return j;
}

KnnIndex build_knn_index(const GeoModel& model, const Dataset& data, int batch_size) {
  data.validate("k-NN data");
  GEOLOC_CHECK(data.size() > 0, ValueError, "cannot index an empty data set");
  const Predictor pred(model);
  std::vector<float> emb;
  int64_t d = 0;
  for (size_t start = 0; start < data.size(); start += static_cast<size_t>(batch_size)) {
    const size_t m = std::min<size_t>(static_cast<size_t>(batch_size), data.size() - start);
    const HeadProbabilities hp = pred.probabilities(eval_batch(model, data, start, m));
    d = hp.embedding.dim(1);
    const auto v = hp.embedding.to_vector();
    emb.insert(emb.end(), v.begin(), v.end());
  }
  return KnnIndex::build(Tensor::from_vector({static_cast<int64_t>(data.size()), d}, emb), data.coords);
}

}  // namespace geoloc::pipeline
