#include "geoloc/pipeline/knn.hpp"

#include <algorithm>
#include <cmath>

#include "geoloc/dispatch.hpp"
#include "geoloc/pipeline/eval.hpp"
#include "geoloc/pipeline/predict.hpp"
#include "geoloc/safetensors.hpp"
#include "knn_internal.hpp"

namespace geoloc::pipeline {

// ---------------------------------------------------------------- the index
KnnIndex KnnIndex::build(const Tensor& embeddings, std::vector<geo::LatLng> coords) {
  check_ndim(embeddings, 2, "k-NN embeddings");
  GEOLOC_CHECK(embeddings.dim(0) == static_cast<int64_t>(coords.size()), ShapeError, "k-NN index: ",
               embeddings.dim(0), " embeddings but ", coords.size(), " coordinates");
  KnnIndex k;
  k.embeddings = embeddings.to(Device::cpu()).clone();
  const int64_t m = k.embeddings.dim(0), d = k.embeddings.dim(1);
  float* e = k.embeddings.data<float>();
  for (int64_t i = 0; i < m; ++i) {
    double s = 0.0;
    for (int64_t j = 0; j < d; ++j) s += static_cast<double>(e[i * d + j]) * e[i * d + j];
    const float inv = s > 0.0 ? static_cast<float>(1.0 / std::sqrt(s)) : 0.0f;
    for (int64_t j = 0; j < d; ++j) e[i * d + j] *= inv;
  }
  k.coords = std::move(coords);
  return k;
}

std::vector<std::vector<std::pair<int, float>>> KnnIndex::search(const Tensor& queries, int k) const {
  GEOLOC_CHECK(!empty(), ValueError, "k-NN search on an empty index");
  GEOLOC_CHECK(queries.defined() && queries.dtype() == DType::F32 && queries.ndim() == 2, ShapeError,
               "k-NN queries must be f32 [M, D], got ", queries.defined() ? queries.str() : std::string("undefined"));
  GEOLOC_CHECK(queries.dim(1) == embeddings.dim(1), ShapeError, "k-NN query has dimension ", queries.dim(1),
               " but the index has ", embeddings.dim(1));
  GEOLOC_CHECK(k >= 1 && k <= kKnnMaxK, ValueError, "k-NN: k = ", k, " outside [1, ", kKnnMaxK, "]");
  const int64_t m = queries.dim(0), kk = std::min<int64_t>(k, embeddings.dim(0));
  const Device dev = embeddings.device();
  const Tensor q = queries.to(dev);
  Tensor scores = Tensor::empty({m, kk}, DType::F32, dev), index = Tensor::empty({m, kk}, DType::I32, dev);
  GEOLOC_DISPATCH(dev, knn_topk, q, embeddings, static_cast<int>(kk), KnnMetric::InnerProduct, scores, index, 0);
  const auto s = scores.to_vector();
  const auto idx = index.to_labels();
  std::vector<std::vector<std::pair<int, float>>> out(static_cast<size_t>(m));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < kk; ++j) out[i].emplace_back(idx[i * kk + j], s[i * kk + j]);
  return out;
}

std::vector<std::pair<int, float>> KnnIndex::search(const float* query, int64_t dim, int k) const {
  GEOLOC_CHECK(!empty(), ValueError, "k-NN search on an empty index");
  GEOLOC_CHECK(dim == embeddings.dim(1), ShapeError, "k-NN query has dimension ", dim, " but the index has ",
               embeddings.dim(1));
  return search(Tensor::from_vector({1, dim}, std::vector<float>(query, query + dim)),
                std::min<int>(std::max(k, 1), kKnnMaxK))[0];
}

KnnIndex KnnIndex::to(Device device) const {
  KnnIndex k;
  k.embeddings = embeddings.to(device);
  k.coords = coords;
  return k;
}

void KnnIndex::save(const std::string& path) const {
  std::vector<float> ll;
  for (const auto& c : coords) {
    ll.push_back(static_cast<float>(c.lat));
    ll.push_back(static_cast<float>(c.lng));
  }
  safetensors::write(path,
                     std::vector<std::pair<std::string, Tensor>>{
                         {"embeddings", embeddings.to(Device::cpu())},
                         {"latlng", Tensor::from_vector({static_cast<int64_t>(coords.size()), 2}, ll)}},
                     {{"format", "geoloc-knn/1"}});
}

KnnIndex KnnIndex::load(const std::string& path) {
  const auto f = safetensors::File::open(path);
  const Tensor e = f.tensor("embeddings"), ll = f.tensor("latlng");
  GEOLOC_CHECK(e.ndim() == 2 && ll.ndim() == 2 && ll.dim(1) == 2 && ll.dim(0) == e.dim(0), IoError, path,
               ": k-NN index needs embeddings [M, D] and latlng [M, 2], got ", e.shape().str(), " and ",
               ll.shape().str());
  std::vector<geo::LatLng> coords;
  const auto v = ll.to_vector();
  for (int64_t i = 0; i < ll.dim(0); ++i) {
    geo::LatLng p{v[2 * i], v[2 * i + 1]};
    geo::validate(p, path + " latlng row " + std::to_string(i));
    coords.push_back(p);
  }
  return build(e, std::move(coords));
}

// ---------------------------------------------------------------- building it from a model
KnnIndex build_knn_index(const GeoModel& model, const Dataset& data, int batch_size) {
  data.validate("k-NN data");
  GEOLOC_CHECK(data.size() > 0, ValueError, "cannot index an empty data set");
  return build_knn_index(model, DatasetRows(data), batch_size);
}

KnnIndex build_knn_index(const GeoModel& model, const RowSource& rows, int batch_size) {
  GEOLOC_CHECK(rows.size() > 0, ValueError, "cannot index an empty data set");
  GEOLOC_CHECK(batch_size >= 1, ValueError, "k-NN index: batch size must be positive, got ", batch_size);
  const Predictor pred(model);
  std::vector<float> emb;  // the index itself: the only memory that grows with the rows
  std::vector<geo::LatLng> coords;
  int64_t d = 0;
  for (size_t start = 0; start < rows.size(); start += static_cast<size_t>(batch_size)) {
    const size_t m = std::min<size_t>(static_cast<size_t>(batch_size), rows.size() - start);
    const Dataset batch = rows.rows(start, m);
    if (batch.size() == 0) continue;
    batch.validate("k-NN rows " + std::to_string(start) + ".." + std::to_string(start + m));
    const HeadProbabilities hp = pred.probabilities(model.preprocess.eval_batch(batch.images).to(model.net->device()));
    d = hp.embedding.dim(1);
    const auto v = hp.embedding.to_vector();
    emb.insert(emb.end(), v.begin(), v.end());
    coords.insert(coords.end(), batch.coords.begin(), batch.coords.end());
  }
  GEOLOC_CHECK(!coords.empty(), IoError, "k-NN data: none of its ", rows.size(), " images could be read",
               rows.first_skip().empty() ? std::string() : " (first: " + rows.first_skip() + ")");
  const Tensor embeddings = Tensor::from_vector({static_cast<int64_t>(coords.size()), d}, emb);
  return KnnIndex::build(embeddings, std::move(coords));
}

KnnMode parse_knn_mode(const std::string& s) {
  if (s == "mean") return KnnMode::WeightedMean;
  if (s == "mean-shift") return KnnMode::MeanShift;
  throw ValueError("unknown k-NN mode '" + s + "' (expected mean or mean-shift)");
}

// ---------------------------------------------------------------- shared with the Predictor (knn_internal.hpp)
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

// ---------------------------------------------------------------- the k-NN coordinate
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

}  // namespace geoloc::pipeline
