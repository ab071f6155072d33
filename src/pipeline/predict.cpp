#include "geoloc/pipeline/predict.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "geoloc/geo/predict.hpp"

namespace geoloc::pipeline {

const char* strategy_name(Strategy s) {
  switch (s) {
    case Strategy::CellMean: return "cell";
    case Strategy::Hierarchy: return "hierarchy";
    case Strategy::Centroid: return "centroid";
    case Strategy::Knn: return "knn";
    case Strategy::Regression: return "regression";
  }
  return "?";
}

Strategy parse_strategy(const std::string& s) {
  for (Strategy k : {Strategy::CellMean, Strategy::Hierarchy, Strategy::Centroid, Strategy::Knn, Strategy::Regression})
    if (s == strategy_name(k)) return k;
  throw ValueError("unknown strategy '" + s + "' (expected cell, hierarchy, centroid, knn or regression)");
}

KnnMode parse_knn_mode(const std::string& s) {
  if (s == "mean") return KnnMode::WeightedMean;
  if (s == "mean-shift") return KnnMode::MeanShift;
  throw ValueError("unknown k-NN mode '" + s + "' (expected mean or mean-shift)");
}

std::span<const float> HeadProbabilities::row(const std::string& name, int64_t i) const {
  auto it = p.find(name);
  GEOLOC_CHECK(it != p.end(), ValueError, "no head '", name, "' in the model's outputs");
  GEOLOC_CHECK(i >= 0 && i < n, ValueError, "sample ", i, " out of range (", n, " samples)");
  const int64_t c = classes.at(name);
  return {it->second.data() + i * c, static_cast<size_t>(c)};
}

Predictor::Predictor(const GeoModel& model, const geo::CountryIndex* countries)
    : model_(model), countries_(countries) {
  GEOLOC_CHECK(model.net, ValueError, "predictor: the model has no network");
}

bool Predictor::supports(Strategy s) const {
  switch (s) {
    case Strategy::CellMean:
    case Strategy::Centroid: return !model_.partitions.empty();
    case Strategy::Hierarchy: return model_.hierarchy() != nullptr;
    case Strategy::Knn: return !model_.knn.empty();
    case Strategy::Regression: {
      const auto& heads = model_.net->geo_config().heads;
      return std::any_of(heads.begin(), heads.end(), [](const auto& h) { return h.kind == nn::HeadKind::Coordinates; });
    }
  }
  return false;
}

HeadProbabilities Predictor::probabilities(const Tensor& batch) const {
  NoGradGuard ng;
  model_.net->eval();
  const nn::GeoOutput out = model_.net->forward(batch);
  HeadProbabilities hp;
  hp.n = batch.dim(0);
  hp.embedding = out.embedding.to(Device::cpu());
  const auto& heads = model_.net->geo_config().heads;
  for (const auto& [name, logits] : out.logits) {
    const int64_t c = logits.dim(1);
    std::vector<float> v = logits.to_vector();
    const bool regression = std::any_of(heads.begin(), heads.end(), [&, &name = name](const auto& h) {
      return h.name == name && h.kind == nn::HeadKind::Coordinates;
    });
    for (int64_t i = 0; i < hp.n && !regression; ++i) {
      float* row = v.data() + i * c;
      const float mx = *std::max_element(row, row + c);
      double s = 0.0;
      for (int64_t j = 0; j < c; ++j) s += (row[j] = std::exp(row[j] - mx));
      for (int64_t j = 0; j < c; ++j) row[j] = static_cast<float>(row[j] / s);
    }
    hp.p[name] = std::move(v);
    hp.classes[name] = c;
    if (regression) hp.regression.insert(name);
  }
  return hp;
}

HeadProbabilities Predictor::aggregate(const HeadProbabilities& p, int64_t group, bool use_max) {
  GEOLOC_CHECK(group >= 1 && p.n % group == 0, ValueError, "cannot aggregate ", p.n, " rows in groups of ", group);
  HeadProbabilities out;
  out.n = p.n / group;
  out.classes = p.classes;
  out.regression = p.regression;
  const int64_t d = p.embedding.dim(1);
  std::vector<float> emb(static_cast<size_t>(out.n * d), 0.0f);
  const float* e = p.embedding.data<float>();
  for (int64_t i = 0; i < p.n; ++i)
    for (int64_t j = 0; j < d; ++j) emb[(i / group) * d + j] += e[i * d + j] / static_cast<float>(group);
  out.embedding = Tensor::from_vector({out.n, d}, emb);
  for (const auto& [name, v] : p.p) {
    const int64_t c = p.classes.at(name);
    if (p.regression.count(name) && c == 2) {
      // (lat/90, lng/180) rows are averaged as directions on the sphere: 179 and -179 degrees of
      // longitude average to 180, not 0.
      std::vector<float> agg(static_cast<size_t>(out.n * 2));
      for (int64_t g = 0; g < out.n; ++g) {
        std::vector<geo::LatLng> pts;
        for (int64_t k = 0; k < group; ++k)
          pts.push_back(regression_coordinate({v.data() + (g * group + k) * 2, 2}));
        const geo::LatLng m = geo::spherical_mean(pts);
        agg[2 * g] = static_cast<float>(m.lat / 90.0);
        agg[2 * g + 1] = static_cast<float>(m.lng / 180.0);
      }
      out.p[name] = std::move(agg);
      continue;
    }
    const bool max = use_max && !p.regression.count(name);
    std::vector<float> agg(static_cast<size_t>(out.n * c), 0.0f);
    for (int64_t i = 0; i < p.n; ++i)
      for (int64_t j = 0; j < c; ++j) {
        float& a = agg[(i / group) * c + j];
        a = max ? std::max(a, v[i * c + j]) : a + v[i * c + j] / static_cast<float>(group);
      }
    if (max)
      for (int64_t i = 0; i < out.n; ++i) {
        double s = 0.0;
        for (int64_t j = 0; j < c; ++j) s += agg[i * c + j];
        for (int64_t j = 0; j < c; ++j) agg[i * c + j] = static_cast<float>(agg[i * c + j] / s);
      }
    out.p[name] = std::move(agg);
  }
  return out;
}

geo::LatLng Predictor::coordinate(const HeadProbabilities& p, int64_t i, Strategy s, const PredictOptions& o) const {
  GEOLOC_CHECK(i >= 0 && i < p.n, ValueError, "sample ", i, " out of range (", p.n, " samples)");
  GEOLOC_CHECK(supports(s), ValueError, "strategy '", strategy_name(s), "' is not available for this model",
               s == Strategy::Knn          ? " (no k-NN index: build one with `geoloc index`)"
               : s == Strategy::Regression ? " (it has no coordinate-regression head)"
               : s == Strategy::Hierarchy  ? " (it needs at least two S2 partitionings)"
                                           : " (it has no geo partitioning)");
  if (s == Strategy::Regression) {
    // The raw head output (no softmax is applied to regression heads).
    const auto& heads = model_.net->geo_config().heads;
    const auto h = std::find_if(heads.begin(), heads.end(), [](const auto& x) { return x.kind == nn::HeadKind::Coordinates; });
    return regression_coordinate(p.row(h->name, i));
  }
  const GeoPartition& fine = model_.finest();
  switch (s) {
    case Strategy::CellMean: return geo::predict_argmax(*fine.partition, p.row(fine.name, i));
    case Strategy::Centroid: return geo::predict_top_k(*fine.partition, p.row(fine.name, i), o.centroid_k);
    case Strategy::Hierarchy: {
      std::vector<std::span<const float>> probs;
      for (const auto& gp : model_.partitions) probs.push_back(p.row(gp.name, i));
      return geo::predict_hierarchy(*model_.hierarchy(), *fine.cells(), probs);
    }
    case Strategy::Knn:
      if (static_cast<int64_t>(p.knn.size()) == p.n && !p.knn[i].empty() &&
          static_cast<int>(p.knn[i].size()) == std::min<int>(o.knn_k, static_cast<int>(model_.knn.coords.size())))
        return knn_coordinate(model_.knn, p.knn[i], o);
      return knn_coordinate(model_.knn, p.embedding.data<float>() + i * p.embedding.dim(1), p.embedding.dim(1), o);
    case Strategy::Regression: break;  // handled above
  }
  return {};
}

geo::LatLng regression_coordinate(std::span<const float> v) {
  if (v.size() == 3) return geo::from_unit({v[0], v[1], v[2]});
  GEOLOC_CHECK(v.size() == 2, ShapeError, "a regression head has 2 or 3 outputs, got ", v.size());
  const double lat = std::clamp(static_cast<double>(v[0]) * 90.0, -90.0, 90.0);
  const double lng = std::remainder(static_cast<double>(v[1]) * 180.0, 360.0);
  return {lat, lng};
}

namespace {
void check_knn_options(const PredictOptions& o) {
  GEOLOC_CHECK(o.knn_k >= 1 && o.knn_temperature > 0.0f, ValueError, "k-NN: k (", o.knn_k,
               ") and temperature (", o.knn_temperature, ") must be positive");
  GEOLOC_CHECK(o.knn_mode != KnnMode::MeanShift || o.mean_shift_bandwidth_km > 0.0, ValueError,
               "k-NN mean shift: bandwidth ", o.mean_shift_bandwidth_km, " km must be positive");
}
// q / |q| (the index rows are unit length, so inner products are cosines)
void normalise_query(float* q, int64_t dim) {
  double norm = 0.0;
  for (int64_t j = 0; j < dim; ++j) norm += static_cast<double>(q[j]) * q[j];
  for (int64_t j = 0; j < dim; ++j) q[j] = static_cast<float>(q[j] / std::max(std::sqrt(norm), 1e-12));
}
}  // namespace

void Predictor::find_neighbours(HeadProbabilities& p, const PredictOptions& o) const {
  if (model_.knn.empty() || p.n == 0) return;
  check_knn_options(o);
  Tensor q = p.embedding.clone();
  const int64_t dim = q.dim(1);
  for (int64_t i = 0; i < p.n; ++i) normalise_query(q.data<float>() + i * dim, dim);
  p.knn = model_.knn.search(q, o.knn_k);
}

geo::LatLng knn_coordinate(const KnnIndex& index, const float* query, int64_t dim, const PredictOptions& o) {
  check_knn_options(o);
  std::vector<float> q(query, query + dim);
  normalise_query(q.data(), dim);
  return knn_coordinate(index, index.search(q.data(), dim, o.knn_k), o);
}

geo::LatLng knn_coordinate(const KnnIndex& index, const std::vector<std::pair<int, float>>& nbrs,
                           const PredictOptions& o) {
  check_knn_options(o);
  GEOLOC_CHECK(!nbrs.empty(), ValueError, "k-NN: no neighbours");
  std::vector<geo::LatLng> pts;
  std::vector<double> w;
  for (const auto& [row, sim] : nbrs) {
    pts.push_back(index.coords[row]);
    w.push_back(std::exp((sim - nbrs.front().second) / o.knn_temperature));
  }
  geo::LatLng x = geo::spherical_mean(pts, w);
  if (o.knn_mode == KnnMode::MeanShift) {
    // Mean shift on the sphere with a Gaussian kernel: moves towards the densest group of neighbours,
    // which a plain mean of two distant clusters would miss.
    for (int it = 0; it < 20; ++it) {
      std::vector<double> wk(pts.size());
      for (size_t k = 0; k < pts.size(); ++k) {
        const double dk = geo::haversine_km(x, pts[k]) / o.mean_shift_bandwidth_km;
        wk[k] = w[k] * std::exp(-0.5 * dk * dk) + 1e-300;
      }
      const geo::LatLng nx = geo::spherical_mean(pts, wk);
      const double moved = geo::haversine_km(nx, x);
      x = nx;
      if (moved < 0.1) break;
    }
  }
  return x;
}


Prediction Predictor::decide(const HeadProbabilities& p, int64_t i, const PredictOptions& o) const {
  Prediction r;
  Strategy s = o.strategy;
  if (s == Strategy::Hierarchy && !supports(s)) s = Strategy::CellMean;
  if (s == Strategy::CellMean && !supports(s)) s = Strategy::Regression;
  r.coordinate = coordinate(p, i, s, o);
  r.strategy = s;
  if (!model_.partitions.empty()) {
    const GeoPartition& fine = model_.finest();
    const auto probs = p.row(fine.name, i);
    std::vector<int> order(probs.size());
    std::iota(order.begin(), order.end(), 0);
    const size_t k = std::min<size_t>(static_cast<size_t>(std::max(o.top_cells, 1)), order.size());
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int a, int b) { return probs[a] > probs[b]; });
    for (size_t j = 0; j < k; ++j)
      r.top_cells.push_back({order[j], probs[order[j]], fine.partition->center(static_cast<size_t>(order[j]))});
  }
  if (p.p.count("scene")) {
    const auto sp = p.row("scene", i);
    r.scene = static_cast<int>(std::max_element(sp.begin(), sp.end()) - sp.begin());
    r.scene_probability = sp[r.scene];
  }
  if (o.snap_to_land) {
    GEOLOC_CHECK(countries_, ValueError, "snap to land needs the Natural Earth polygons (a CountryIndex)");
    r.coordinate = countries_->nearest_land(r.coordinate).point;
  }
  if (p.p.count("country") && !model_.country_codes.empty()) {
    const auto cp = p.row("country", i);
    r.country = model_.country_codes[std::max_element(cp.begin(), cp.end()) - cp.begin()];
  } else if (countries_) {
    r.country = countries_->country_code(r.coordinate);
  }
  return r;
}

}  // namespace geoloc::pipeline
