#include "geoloc/pipeline/predict.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "geoloc/detail/parallel.hpp"
#include "geoloc/geo/predict.hpp"
#include "knn_internal.hpp"

namespace geoloc::pipeline {

const char* strategy_name(Strategy s) {
  switch (s) {
    case Strategy::CellMean: return "cell";
    case Strategy::Hierarchy: return "hierarchy";
    case Strategy::Centroid: return "centroid";
    case Strategy::Knn: return "knn";
    case Strategy::Regression: return "regression";
    case Strategy::Refine: return "refine";
    case Strategy::Hybrid: return "hybrid";
    case Strategy::Rank: return "rank";
  }
  return "?";
}

Strategy parse_strategy(const std::string& s) {
  for (Strategy k : {Strategy::CellMean, Strategy::Hierarchy, Strategy::Centroid, Strategy::Knn, Strategy::Regression,
                     Strategy::Refine, Strategy::Hybrid, Strategy::Rank})
    if (s == strategy_name(k)) return k;
  throw ValueError("unknown strategy '" + s +
                   "' (expected cell, hierarchy, centroid, knn, regression, refine, hybrid or rank)");
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
  if (!model.knn.empty() && !model.partitions.empty()) {
    const geo::Partition& fine = *model.finest().partition;
    cell_rows_.resize(fine.size());
    const std::vector<int> a = fine.assign_all(model.knn.coords);
    for (size_t r = 0; r < a.size(); ++r)
      if (a[r] >= 0) cell_rows_[static_cast<size_t>(a[r])].push_back(static_cast<int>(r));
    indexed_rows_ = a.size();
  }
}

bool Predictor::supports(Strategy s) const {
  switch (s) {
    case Strategy::CellMean:
    case Strategy::Centroid: return !model_.partitions.empty();
    case Strategy::Hierarchy: return model_.hierarchy() != nullptr;
    case Strategy::Knn: return !model_.knn.empty();
    case Strategy::Refine:
    case Strategy::Rank: return !model_.knn.empty() && !model_.partitions.empty();
    case Strategy::Hybrid: return model_.offset_head() != nullptr;
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
      return h.name == name && (h.kind == nn::HeadKind::Coordinates || h.kind == nn::HeadKind::Offset);
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
  if (s == Strategy::Refine || s == Strategy::Rank) return locate(p, i, s, o).coordinate;
  GEOLOC_CHECK(i >= 0 && i < p.n, ValueError, "sample ", i, " out of range (", p.n, " samples)");
  GEOLOC_CHECK(supports(s), ValueError, "strategy '", strategy_name(s), "' is not available for this model",
               s == Strategy::Knn || s == Strategy::Refine || s == Strategy::Rank
                   ? " (no k-NN index: build one with `geoloc index`)"
               : s == Strategy::Hybrid     ? " (it has no hybrid offset head: train with --hybrid-head)"
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
    case Strategy::Hybrid: {
      const int c = chosen_cell(p, i);
      const auto off = p.row(model_.offset_head()->name, i);
      const double scale = model_.offset_scales_km()[static_cast<size_t>(c)];
      return geo::from_tangent_offset_km(fine.partition->center(static_cast<size_t>(c)),
                                         off[2 * static_cast<size_t>(c)] * scale,
                                         off[2 * static_cast<size_t>(c) + 1] * scale);
    }
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
    case Strategy::Regression:
    case Strategy::Refine:
    case Strategy::Rank: break;  // handled above
  }
  return {};
}

int Predictor::chosen_cell(const HeadProbabilities& p, int64_t i) const {
  const GeoPartition& fine = model_.finest();
  const auto probs = p.row(fine.name, i);
  if (model_.hierarchy()) {
    std::vector<std::span<const float>> all;
    for (const auto& gp : model_.partitions) all.push_back(p.row(gp.name, i));
    return static_cast<int>(model_.hierarchy()->argmax(all));
  }
  return static_cast<int>(std::max_element(probs.begin(), probs.end()) - probs.begin());
}

Located Predictor::locate(const HeadProbabilities& p, int64_t i, Strategy s, const PredictOptions& o) const {
  Located r;
  double share = 1.0;
  if (s == Strategy::Refine || s == Strategy::Rank) {
    GEOLOC_CHECK(i >= 0 && i < p.n, ValueError, "sample ", i, " out of range (", p.n, " samples)");
    GEOLOC_CHECK(supports(s), ValueError, "strategy '", strategy_name(s), "' is not available for this model",
                 model_.knn.empty() ? " (no k-NN index: build one with `geoloc index`)" : " (it has no geo partitioning)");
    GEOLOC_CHECK(o.refine_radius_km > 0.0, ValueError, "refine: radius ", o.refine_radius_km, " km must be positive");
    std::vector<std::pair<int, float>> nb;
    if (static_cast<int64_t>(p.refine.size()) == p.n && !p.refine[i].empty()) {
      nb = p.refine[i];
    } else {
      check_knn_options(o);
      const int64_t dim = p.embedding.dim(1);
      std::vector<float> q(p.embedding.data<float>() + i * dim, p.embedding.data<float>() + (i + 1) * dim);
      normalise_query(q.data(), dim);
      // exact: the embeddings on the host; FAISS: its stored rows (host stays undefined)
      const Tensor host = model_.knn.has_faiss() ? Tensor() : model_.knn.embeddings.to(Device::cpu());
      nb = refined_row(q.data(), p.row(model_.finest().name, i), host.defined() ? host.data<float>() : nullptr, dim, o);
    }
    const GeoPartition& fine = model_.finest();
    const auto probs = p.row(fine.name, i);
    if (s == Strategy::Refine) {
      const Located l = refine_coordinate(model_.knn, nb, o.refine_radius_km, o.knn_temperature);
      r.coordinate = l.coordinate;
      share = l.confidence;
    } else {
      GEOLOC_CHECK(o.rank_cells >= 0 && o.rank_clusters >= 0 && o.rank_prior >= 0.0, ValueError,
                   "rank: cells (", o.rank_cells, "), clusters (", o.rank_clusters, ") and prior (", o.rank_prior,
                   ") must not be negative");
      // the candidates, in a fixed order (ties go to the earlier): clusters, hybrid, top cells
      std::vector<geo::LatLng> cand;
      if (o.rank_clusters > 0)
        for (const Located& c : refine_clusters(model_.knn, nb, o.refine_radius_km, o.knn_temperature, o.rank_clusters))
          cand.push_back(c.coordinate);
      if (supports(Strategy::Hybrid)) cand.push_back(coordinate(p, i, Strategy::Hybrid, o));
      std::vector<int> order(probs.size());
      std::iota(order.begin(), order.end(), 0);
      const size_t nc = std::min<size_t>(static_cast<size_t>(o.rank_cells), order.size());
      std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(nc), order.end(),
                        [&](int a, int b) { return probs[a] > probs[b] || (probs[a] == probs[b] && a < b); });
      for (size_t c = 0; c < nc; ++c) cand.push_back(fine.partition->center(static_cast<size_t>(order[c])));
      GEOLOC_CHECK(!cand.empty(), ValueError, "rank: no candidates (rank_cells and rank_clusters are 0)");
      float best_sim = nb.front().second;
      for (const auto& [row, sim] : nb) best_sim = std::max(best_sim, sim);
      std::vector<double> w(nb.size());
      double total = 0.0;
      for (size_t k = 0; k < nb.size(); ++k) total += (w[k] = std::exp((nb[k].second - best_sim) / o.knn_temperature));
      double best = -1.0;
      for (const geo::LatLng& x : cand) {
        double support = 0.0;
        for (size_t k = 0; k < nb.size(); ++k)
          if (geo::haversine_km(x, model_.knn.coords[static_cast<size_t>(nb[k].first)]) <= o.refine_radius_km)
            support += w[k];
        const double score = mass_around(*fine.partition, probs, x, o.confidence_radius_km) *
                             (o.rank_prior + (total > 0.0 ? support / total : 0.0));
        if (score > best * (1.0 + 1e-9)) {
          best = score;
          r.coordinate = x;
        }
      }
      r.confidence = best / (o.rank_prior + 1.0);
      return r;
    }
  } else {
    r.coordinate = coordinate(p, i, s, o);
  }
  if (!model_.partitions.empty()) {
    const GeoPartition& fine = model_.finest();
    r.confidence = share * mass_around(*fine.partition, p.row(fine.name, i), r.coordinate, o.confidence_radius_km);
  } else {
    r.confidence = share;
  }
  return r;
}

double mass_around(const geo::Partition& partition, std::span<const float> probs, geo::LatLng p, double radius_km) {
  GEOLOC_CHECK(probs.size() == partition.size(), ShapeError, "mass_around: ", probs.size(), " probabilities for ",
               partition.size(), " classes");
  double m = 0.0;
  for (size_t c = 0; c < probs.size(); ++c)
    if (geo::haversine_km(partition.center(c), p) <= radius_km) m += probs[c];
  return std::min(m, 1.0);
}

Located refine_coordinate(const KnnIndex& index, const std::vector<std::pair<int, float>>& nb, double radius_km,
                          float temperature) {
  return refine_clusters(index, nb, radius_km, temperature, 1).front();
}

std::vector<Located> refine_clusters(const KnnIndex& index, const std::vector<std::pair<int, float>>& nb,
                                     double radius_km, float temperature, int max_clusters) {
  GEOLOC_CHECK(!nb.empty(), ValueError, "refine: no neighbours");
  GEOLOC_CHECK(radius_km > 0.0 && temperature > 0.0f && max_clusters >= 1, ValueError, "refine: radius (", radius_km,
               " km), temperature (", temperature, ") and clusters (", max_clusters, ") must be positive");
  const size_t n = nb.size();
  float best_sim = nb.front().second;
  for (const auto& [row, sim] : nb) best_sim = std::max(best_sim, sim);
  std::vector<geo::LatLng> pts(n);
  std::vector<double> w(n);
  double total = 0.0;
  for (size_t k = 0; k < n; ++k) {
    GEOLOC_CHECK(nb[k].first >= 0 && static_cast<size_t>(nb[k].first) < index.coords.size(), ValueError,
                 "refine: neighbour row ", nb[k].first, " outside the index (", index.coords.size(), " rows)");
    pts[k] = index.coords[static_cast<size_t>(nb[k].first)];
    w[k] = std::exp((nb[k].second - best_sim) / temperature);
    total += w[k];
  }
  std::vector<char> taken(n, 0);
  std::vector<Located> out;
  while (static_cast<int>(out.size()) < max_clusters) {
    // density of each neighbour left; the densest (ties to the earlier, i.e. more similar) seeds the cluster
    size_t seed = n;
    double seed_density = -1.0;
    for (size_t j = 0; j < n; ++j) {
      if (taken[j]) continue;
      double d = 0.0;
      for (size_t l = 0; l < n; ++l)
        if (!taken[l] && geo::haversine_km(pts[j], pts[l]) <= radius_km) d += w[l];
      if (d > seed_density * (1.0 + 1e-9)) {
        seed_density = d;
        seed = j;
      }
    }
    if (seed == n) break;
    std::vector<geo::LatLng> cp;
    std::vector<double> cw;
    for (size_t l = 0; l < n; ++l)
      if (!taken[l] && geo::haversine_km(pts[seed], pts[l]) <= radius_km) {
        cp.push_back(pts[l]);
        cw.push_back(w[l]);
        taken[l] = 1;
      }
    Located r;
    try {
      r.coordinate = geo::spherical_mean(cp, cw);
    } catch (const ValueError&) {
      r.coordinate = pts[seed];  // a degenerate cluster (cannot happen within a radius < 10000 km)
    }
    r.confidence = total > 0.0 ? seed_density / total : 0.0;
    out.push_back(r);
  }
  return out;
}

geo::LatLng regression_coordinate(std::span<const float> v) {
  if (v.size() == 3) return geo::from_unit({v[0], v[1], v[2]});
  GEOLOC_CHECK(v.size() == 2, ShapeError, "a regression head has 2 or 3 outputs, got ", v.size());
  const double lat = std::clamp(static_cast<double>(v[0]) * 90.0, -90.0, 90.0);
  const double lng = std::remainder(static_cast<double>(v[1]) * 180.0, 360.0);
  return {lat, lng};
}


void Predictor::find_neighbours(HeadProbabilities& p, const PredictOptions& o) const {
  if (model_.knn.empty() || p.n == 0) return;
  check_knn_options(o);
  Tensor q = p.embedding.clone();
  const int64_t dim = q.dim(1);
  for (int64_t i = 0; i < p.n; ++i) normalise_query(q.data<float>() + i * dim, dim);
  p.knn = model_.knn.search(q, o.knn_k);
}

std::vector<std::pair<int, float>> Predictor::refined_row(const float* q, std::span<const float> probs,
                                                          const float* emb, int64_t dim,
                                                          const PredictOptions& o) const {
  GEOLOC_CHECK(indexed_rows_ == model_.knn.coords.size(), ValueError,
               "refine: the k-NN index changed after the predictor was made");
  GEOLOC_CHECK(o.refine_k >= 1 && o.refine_cells >= 1, ValueError, "refine: k (", o.refine_k, ") and cells (",
               o.refine_cells, ") must be positive");
  std::vector<int> order(probs.size());
  std::iota(order.begin(), order.end(), 0);
  const size_t nc = std::min<size_t>(static_cast<size_t>(o.refine_cells), order.size());
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(nc), order.end(),
                    [&](int a, int b) { return probs[a] > probs[b] || (probs[a] == probs[b] && a < b); });
  // Every row of the top cells is scored (with FAISS: from the rows it stores, see KnnIndex::search_rows),
  // so the restricted search misses none of them, whatever the FAISS index's own search would visit.
  std::vector<int> rows;
  for (size_t c = 0; c < nc; ++c) {
    const auto& r = cell_rows_[static_cast<size_t>(order[c])];
    rows.insert(rows.end(), r.begin(), r.end());
  }
  std::vector<std::pair<int, float>> cand;
  cand.reserve(rows.size());
  score_rows(model_.knn, emb, q, dim, rows, cand);
  if (cand.empty()) {
    // The top cells hold no indexed photo: the plain nearest neighbours instead.
    return model_.knn.search(q, dim, std::min(o.refine_k, kKnnMaxK));
  }
  best_first(cand, static_cast<size_t>(o.refine_k));
  return cand;
}

void Predictor::find_refined(HeadProbabilities& p, const PredictOptions& o) const {
  if (!supports(Strategy::Refine) || p.n == 0) return;
  check_knn_options(o);
  const Tensor host = model_.knn.has_faiss() ? Tensor() : model_.knn.embeddings.to(Device::cpu());
  const int64_t dim = p.embedding.dim(1);
  GEOLOC_CHECK(dim == model_.knn.dim(), ShapeError, "refine: embeddings of dimension ", dim, " but the index has ",
               model_.knn.dim());
  const std::string fine = model_.finest().name;
  p.refine.assign(static_cast<size_t>(p.n), {});
  detail::parallel_for(static_cast<size_t>(p.n), [&](size_t i) {
    std::vector<float> q(p.embedding.data<float>() + i * dim, p.embedding.data<float>() + (i + 1) * dim);
    normalise_query(q.data(), dim);
    p.refine[i] = refined_row(q.data(), p.row(fine, static_cast<int64_t>(i)), host.defined() ? host.data<float>() : nullptr,
                              dim, o);
  });
}

void Predictor::prepare(HeadProbabilities& p, const PredictOptions& o) const {
  if (o.strategy == Strategy::Knn) find_neighbours(p, o);
  if (o.strategy == Strategy::Refine || o.strategy == Strategy::Rank) find_refined(p, o);
}

Prediction Predictor::decide(const HeadProbabilities& p, int64_t i, const PredictOptions& o) const {
  Prediction r;
  Strategy s = o.strategy;
  if (s == Strategy::Hierarchy && !supports(s)) s = Strategy::CellMean;
  if (s == Strategy::CellMean && !supports(s)) s = Strategy::Regression;
  const Located l = locate(p, i, s, o);
  r.coordinate = l.coordinate;
  r.confidence = l.confidence;
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
