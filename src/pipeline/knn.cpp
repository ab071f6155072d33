#include "geoloc/pipeline/knn.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>

#include "geoloc/dispatch.hpp"
#include "geoloc/pipeline/eval.hpp"
#include "geoloc/pipeline/predict.hpp"
#include "faiss_index.hpp"
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

int64_t KnnIndex::dim() const {
  if (embeddings.defined()) return embeddings.dim(1);
  return faiss ? faiss->dim() : 0;
}

std::vector<std::vector<std::pair<int, float>>> KnnIndex::search(const Tensor& queries, int k) const {
  GEOLOC_CHECK(!empty(), ValueError, "k-NN search on an empty index");
  GEOLOC_CHECK(queries.defined() && queries.dtype() == DType::F32 && queries.ndim() == 2, ShapeError,
               "k-NN queries must be f32 [M, D], got ", queries.defined() ? queries.str() : std::string("undefined"));
  GEOLOC_CHECK(queries.dim(1) == dim(), ShapeError, "k-NN query has dimension ", queries.dim(1),
               " but the index has ", dim());
  GEOLOC_CHECK(k >= 1 && k <= kKnnMaxK, ValueError, "k-NN: k = ", k, " outside [1, ", kKnnMaxK, "]");
  const int64_t m = queries.dim(0), kk = std::min<int64_t>(k, static_cast<int64_t>(coords.size()));
  std::vector<std::vector<std::pair<int, float>>> out(static_cast<size_t>(m));
  if (faiss) {
    const Tensor q = queries.to(Device::cpu());
    std::vector<float> s(static_cast<size_t>(m * kk));
    std::vector<int64_t> idx(static_cast<size_t>(m * kk));
    faiss->search(m, q.data<float>(), static_cast<int>(kk), s.data(), idx.data());
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < kk; ++j)
        if (idx[i * kk + j] >= 0) out[i].emplace_back(static_cast<int>(idx[i * kk + j]), s[i * kk + j]);
    return out;
  }
  const Device dev = embeddings.device();
  const Tensor q = queries.to(dev);
  Tensor scores = Tensor::empty({m, kk}, DType::F32, dev), index = Tensor::empty({m, kk}, DType::I32, dev);
  GEOLOC_DISPATCH(dev, knn_topk, q, embeddings, static_cast<int>(kk), KnnMetric::InnerProduct, scores, index, 0);
  const auto s = scores.to_vector();
  const auto idx = index.to_labels();
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < kk; ++j) out[i].emplace_back(idx[i * kk + j], s[i * kk + j]);
  return out;
}

std::vector<std::pair<int, float>> KnnIndex::search(const float* query, int64_t dim, int k) const {
  GEOLOC_CHECK(!empty(), ValueError, "k-NN search on an empty index");
  GEOLOC_CHECK(dim == this->dim(), ShapeError, "k-NN query has dimension ", dim, " but the index has ", this->dim());
  return search(Tensor::from_vector({1, dim}, std::vector<float>(query, query + dim)),
                std::min<int>(std::max(k, 1), kKnnMaxK))[0];
}

void score_rows(const KnnIndex& index, const float* host, const float* q, int64_t dim, const std::vector<int>& rows,
                std::vector<std::pair<int, float>>& out) {
  const auto dot = [&](int row, const float* e) {
    float s = 0.0f;
    for (int64_t j = 0; j < dim; ++j) s += q[j] * e[j];
    out.emplace_back(row, s);
  };
  if (host) {
    for (int row : rows) dot(row, host + static_cast<int64_t>(row) * dim);
    return;
  }
  GEOLOC_CHECK(index.faiss, ValueError, "k-NN: restricted search without embeddings or a FAISS index");
  constexpr size_t kChunk = 1024;  // rows decoded at a time
  std::vector<int64_t> ids;
  std::vector<float> buf;
  for (size_t r0 = 0; r0 < rows.size(); r0 += kChunk) {
    const size_t n = std::min(kChunk, rows.size() - r0);
    ids.assign(rows.begin() + static_cast<std::ptrdiff_t>(r0), rows.begin() + static_cast<std::ptrdiff_t>(r0 + n));
    buf.resize(n * static_cast<size_t>(dim));
    index.faiss->reconstruct(ids.data(), static_cast<int64_t>(n), buf.data());
    for (size_t i = 0; i < n; ++i) dot(rows[r0 + i], buf.data() + i * static_cast<size_t>(dim));
  }
}

void best_first(std::vector<std::pair<int, float>>& cand, size_t k) {
  k = std::min(k, cand.size());
  std::partial_sort(cand.begin(), cand.begin() + static_cast<std::ptrdiff_t>(k), cand.end(), [](const auto& a, const auto& b) {
    return a.second > b.second || (a.second == b.second && a.first < b.first);
  });
  cand.resize(k);
}

std::vector<std::pair<int, float>> KnnIndex::search_rows(const float* query, int64_t dim, const std::vector<int>& rows,
                                                         int k) const {
  GEOLOC_CHECK(!empty(), ValueError, "k-NN search on an empty index");
  GEOLOC_CHECK(dim == this->dim(), ShapeError, "k-NN query has dimension ", dim, " but the index has ", this->dim());
  GEOLOC_CHECK(k >= 1, ValueError, "k-NN: k = ", k, " must be positive");
  for (int row : rows)
    GEOLOC_CHECK(row >= 0 && static_cast<size_t>(row) < coords.size(), ValueError, "k-NN: row ", row,
                 " outside the index (", coords.size(), " rows)");
  std::vector<std::pair<int, float>> cand;
  cand.reserve(rows.size());
  if (faiss) {
    score_rows(*this, nullptr, query, dim, rows, cand);
  } else {
    const Tensor host = embeddings.to(Device::cpu());
    score_rows(*this, host.data<float>(), query, dim, rows, cand);
  }
  best_first(cand, static_cast<size_t>(k));
  return cand;
}

std::string KnnIndex::faiss_spec() const { return faiss ? faiss->spec() : std::string(); }

std::string KnnIndex::search_params() const { return faiss ? faiss->params() : std::string(); }

void KnnIndex::set_search_params(const std::string& params) {
  GEOLOC_CHECK(faiss, ValueError, "FAISS search parameters (", params,
               ") given, but this k-NN index has no FAISS index (build one with geoloc index --faiss SPEC)");
  faiss->set_params(params);
}

void KnnIndex::build_faiss(const FaissOptions& o) {
  GEOLOC_CHECK(!empty() && embeddings.defined(), ValueError, "FAISS: no embeddings to index");
  GEOLOC_CHECK(o.train_rows >= 0, ValueError, "FAISS: train_rows ", o.train_rows, " must not be negative");
  const Tensor host = embeddings.to(Device::cpu());
  const int64_t m = host.dim(0), d = host.dim(1);
  auto f = std::make_shared<FaissIndex>(o.spec, d);
  if (f->needs_training()) {
    if (o.train_rows == 0 || o.train_rows >= m) {
      f->train(m, host.data<float>());
    } else {
      std::vector<float> sample(static_cast<size_t>(o.train_rows * d));
      for (int64_t i = 0; i < o.train_rows; ++i) {
        const int64_t row = i * m / o.train_rows;  // evenly spaced: a sorted manifest is sampled everywhere
        std::memcpy(sample.data() + i * d, host.data<float>() + row * d, static_cast<size_t>(d) * sizeof(float));
      }
      f->train(o.train_rows, sample.data());
    }
  }
  f->add(m, host.data<float>());
  f->finish();
  f->set_default_params();
  if (!o.params.empty()) f->set_params(o.params);
  faiss = std::move(f);
  embeddings = Tensor();
}

KnnIndex KnnIndex::to(Device device) const {
  KnnIndex k;
  if (embeddings.defined()) k.embeddings = embeddings.to(device);
  k.coords = coords;
  k.faiss = faiss;
  return k;
}

void KnnIndex::save(const std::string& path) const {
  std::vector<float> ll;
  for (const auto& c : coords) {
    ll.push_back(static_cast<float>(c.lat));
    ll.push_back(static_cast<float>(c.lng));
  }
  std::vector<safetensors::WriteItem> items;
  items.push_back({"latlng", Tensor::from_vector({static_cast<int64_t>(coords.size()), 2}, ll)});
  if (embeddings.defined()) items.push_back({"embeddings", embeddings.to(Device::cpu())});
  std::map<std::string, std::string> meta{{"format", "geoloc-knn/1"}};
  if (faiss) {
    safetensors::WriteItem f;
    f.name = "faiss";
    f.raw_dtype = safetensors::StDType::U8;
    f.raw_bytes = faiss->serialize();
    f.raw_shape = {static_cast<int64_t>(f.raw_bytes.size())};
    items.push_back(std::move(f));
    meta = {{"format", "geoloc-knn/2"},
            {"dim", std::to_string(dim())},
            {"faiss_spec", faiss->spec()},
            {"faiss_params", faiss->params()}};
  }
  safetensors::write(path, items, meta);
}

KnnIndex KnnIndex::load(const std::string& path) {
  const auto f = safetensors::File::open(path);
  const Tensor ll = f.tensor("latlng");
  GEOLOC_CHECK(ll.ndim() == 2 && ll.dim(1) == 2, IoError, path, ": k-NN index needs latlng [M, 2], got ",
               ll.shape().str());
  std::vector<geo::LatLng> coords;
  const auto v = ll.to_vector();
  for (int64_t i = 0; i < ll.dim(0); ++i) {
    geo::LatLng p{v[2 * i], v[2 * i + 1]};
    geo::validate(p, path + " latlng row " + std::to_string(i));
    coords.push_back(p);
  }
  if (!f.has("faiss")) {
    const Tensor e = f.tensor("embeddings");
    GEOLOC_CHECK(e.ndim() == 2 && e.dim(0) == ll.dim(0), IoError, path,
                 ": k-NN index needs embeddings [M, D] and latlng [M, 2], got ", e.shape().str(), " and ",
                 ll.shape().str());
    return build(e, std::move(coords));
  }
  // With FAISS: its bytes are read straight from the file (not through the mapping), so loading holds
  // the index once.
  const safetensors::Entry& e = f.entry("faiss");
  GEOLOC_CHECK(e.dtype == safetensors::StDType::U8 && e.shape.size() == 1, IoError, path,
               ": tensor 'faiss' must be U8 [bytes], got ", safetensors::st_dtype_name(e.dtype), " ", e.shape_str());
  const auto& meta = f.metadata();
  const auto get = [&](const char* key) {
    auto it = meta.find(key);
    GEOLOC_CHECK(it != meta.end(), IoError, path, ": a FAISS k-NN index needs the metadata '", key, "'");
    return it->second;
  };
  const std::string spec = get("faiss_spec"), params = get("faiss_params");
  uint64_t header = 0;
  {
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> h(std::fopen(path.c_str(), "rb"), &std::fclose);
    unsigned char b[8];
    GEOLOC_CHECK(h && std::fread(b, 1, 8, h.get()) == 8, IoError, "cannot read '", path, "'");
    for (int i = 7; i >= 0; --i) header = header << 8 | b[i];
  }
  GEOLOC_CHECK(e.end > e.begin, IoError, path, ": the tensor 'faiss' is empty (no FAISS index in it)");
  KnnIndex k;
  k.faiss = FaissIndex::read_file(path, 8 + header + e.begin, e.end - e.begin, path + " (tensor 'faiss')", spec);
  GEOLOC_CHECK(k.faiss->size() == ll.dim(0), IoError, path, ": the FAISS index has ", k.faiss->size(),
               " rows but latlng has ", ll.dim(0));
  GEOLOC_CHECK(std::to_string(k.faiss->dim()) == get("dim"), IoError, path, ": the FAISS index has dimension ",
               k.faiss->dim(), " but the metadata says ", get("dim"));
  k.faiss->finish();
  try {
    k.faiss->set_params(params);
  } catch (const ValueError& err) {
    throw IoError(path + ": stored search parameters: " + err.what());
  }
  if (f.has("embeddings")) {
    const Tensor emb = f.tensor("embeddings");
    GEOLOC_CHECK(emb.ndim() == 2 && emb.dim(0) == ll.dim(0) && emb.dim(1) == k.faiss->dim(), IoError, path,
                 ": embeddings ", emb.shape().str(), " do not match the FAISS index");
    k.embeddings = build(emb, coords).embeddings;
  }
  k.coords = std::move(coords);
  return k;
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
