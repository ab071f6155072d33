// The k-NN index with FAISS (issue #20; pipeline/knn.hpp, src/pipeline/faiss_index.cpp): Flat gives the
// brute-force neighbours, IVF and HNSW find most of them on a small clustered set, the restricted search of
// refine/rank scores every row of the top cells, files round-trip with their search parameters, and bad
// specs, parameters, files and a build without FAISS are clear geoloc errors. Small sets: seconds.
// Without FAISS in the build, the tests that need it say so and stop; the error paths still run.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <set>
#include <vector>

#include "geoloc/geo/kmeans.hpp"
#include "geoloc/nn/heads.hpp"
#include "geoloc/pipeline/knn.hpp"
#include "geoloc/pipeline/model.hpp"
#include "geoloc/pipeline/predict.hpp"
#include "geoloc/safetensors.hpp"

using namespace geoloc;
namespace fs = std::filesystem;

namespace {

bool need_faiss() {
  if (pipeline::faiss_available()) return true;
  MESSAGE("FAISS is not built in (libfaiss-dev missing or GEOLOC_FAISS=OFF): this FAISS test is skipped");
  std::fprintf(stderr, "skipped: FAISS not built in\n");
  return false;
}

// n unit vectors of dimension d around `clusters` random centres (spread `spread`), and their "photos'"
// coordinates (one place per cluster).
struct Synthetic {
  Tensor emb;
  std::vector<geo::LatLng> at;
};
Synthetic clustered(int64_t n, int64_t d, int clusters, float spread, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> centres(static_cast<size_t>(clusters * d));
  for (auto& c : centres) c = g(rng);
  std::vector<float> v(static_cast<size_t>(n * d));
  Synthetic s;
  for (int64_t i = 0; i < n; ++i) {
    const int c = static_cast<int>(rng() % static_cast<uint32_t>(clusters));
    for (int64_t j = 0; j < d; ++j) v[i * d + j] = centres[c * d + j] / std::sqrt(static_cast<float>(d)) + spread * g(rng);
    s.at.push_back({-60.0 + 120.0 * c / clusters, -170.0 + 340.0 * c / clusters});
  }
  s.emb = Tensor::from_vector({n, d}, v);
  return s;
}

// Rows normalised as KnnIndex::build does, for queries.
Tensor normalised(const Tensor& t) { return pipeline::KnnIndex::build(t, std::vector<geo::LatLng>(t.dim(0))).embeddings; }

double recall(const std::vector<std::vector<std::pair<int, float>>>& got,
              const std::vector<std::vector<std::pair<int, float>>>& exact) {
  double hit = 0, all = 0;
  for (size_t q = 0; q < exact.size(); ++q) {
    std::set<int> truth;
    for (const auto& [r, s] : exact[q]) truth.insert(r);
    for (const auto& [r, s] : got[q]) hit += truth.count(r);
    all += static_cast<double>(exact[q].size());
  }
  return hit / all;
}

fs::path scratch(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("geoloc_faiss_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

}  // namespace

TEST_CASE("FAISS Flat: exactly the brute-force neighbours, and the same restricted search") {
  if (!need_faiss()) return;
  const Synthetic s = clustered(1500, 24, 30, 0.3f, 1);
  const pipeline::KnnIndex exact = pipeline::KnnIndex::build(s.emb, s.at);
  pipeline::KnnIndex flat = pipeline::KnnIndex::build(s.emb, s.at);
  flat.build_faiss({"Flat", "", 0});
  CHECK(flat.has_faiss());
  CHECK(flat.faiss_spec() == "Flat");
  CHECK_FALSE(flat.embeddings.defined());  // FAISS holds the rows now
  CHECK(flat.dim() == 24);
  const Tensor q = normalised(clustered(40, 24, 30, 0.3f, 2).emb);
  const auto a = exact.search(q, 10), b = flat.search(q, 10);
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    REQUIRE(b[i].size() == a[i].size());
    for (size_t j = 0; j < a[i].size(); ++j) {
      CHECK(b[i][j].first == a[i][j].first);
      CHECK(b[i][j].second == doctest::Approx(a[i][j].second).epsilon(1e-5));
    }
  }
  // one query at a time, too
  const auto one = flat.search(q.data<float>() + 3 * 24, 24, 5);
  for (size_t j = 0; j < one.size(); ++j) CHECK(one[j].first == a[3][j].first);
  // restricted to some rows: FAISS Flat returns its rows exactly, so the scores are bit for bit the same
  std::vector<int> rows;
  for (int r = 0; r < 1500; r += 7) rows.push_back(r);
  const auto ra = exact.search_rows(q.data<float>(), 24, rows, 12), rb = flat.search_rows(q.data<float>(), 24, rows, 12);
  REQUIRE(ra.size() == 12);
  CHECK(ra == rb);
  for (const auto& [r, sc] : rb) CHECK(r % 7 == 0);
  CHECK_THROWS_AS(flat.search_rows(q.data<float>(), 24, {1500}, 3), ValueError);
  CHECK_THROWS_AS(flat.search(q.data<float>(), 23, 3), ShapeError);
}

TEST_CASE("FAISS IVF and HNSW: high recall@10 on a small clustered set, parameters that matter") {
  if (!need_faiss()) return;
  const Synthetic s = clustered(6000, 32, 40, 0.1f, 3);
  const Tensor q = normalised(clustered(100, 32, 40, 0.1f, 4).emb);
  const auto exact = pipeline::KnnIndex::build(s.emb, s.at).search(q, 10);
  struct Case {
    const char* spec;
    const char* params;
    double min_recall;
  };
  for (const Case c : {Case{"IVF32,Flat", "nprobe=12", 0.9}, Case{"IVF32,SQ8", "nprobe=12", 0.9}, Case{"HNSW32", "efSearch=256", 0.9}}) {
    INFO(c.spec);
    pipeline::KnnIndex idx = pipeline::KnnIndex::build(s.emb, s.at);
    idx.build_faiss({c.spec, c.params, 0});
    const double r = recall(idx.search(q, 10), exact);
    MESSAGE(std::string(c.spec), " (", idx.search_params(), "): recall@10 = ", r);
    CHECK(r >= c.min_recall);
  }
  // IVF: one list probed finds fewer of the true neighbours than all lists (= exhaustive)
  pipeline::KnnIndex ivf = pipeline::KnnIndex::build(s.emb, s.at);
  ivf.build_faiss({"IVF32,Flat", "", 3000});  // trained on every other row
  CHECK(ivf.search_params() == "nprobe=16");  // geoloc's default
  ivf.set_search_params("nprobe=1");
  const double r1 = recall(ivf.search(q, 10), exact);
  ivf.set_search_params("nprobe=32");
  CHECK(ivf.search_params() == "nprobe=32");
  const double rall = recall(ivf.search(q, 10), exact);
  CHECK(r1 < rall);
  CHECK(rall > 0.999);
  ivf.set_search_params("nprobe=100");  // capped at the number of lists
  CHECK(ivf.search_params() == "nprobe=32");
}

TEST_CASE("FAISS: the refine strategy's search covers every row of the top cells") {
  if (!need_faiss()) return;
  // Two far-apart places; the index's rows sit at either; refine searches the first cell only.
  pipeline::GeoModel model;
  model.partitions.push_back(
      {"cells", std::make_shared<geo::KMeansPartition>(std::vector<geo::LatLng>{{48.8, 2.3}, {35.7, 139.7}})});
  nn::GeoNetConfig cfg;
  cfg.backbone = nn::ResNetConfig::parse("resnet:basic:1-1:w8:k3s2:nopool");
  cfg.heads = {{"cells", nn::HeadKind::Partition, 2}};
  model.net = std::make_shared<nn::GeoNet>(cfg, 1);
  model.finalise();
  Synthetic s = clustered(800, 16, 8, 0.3f, 5);
  for (size_t i = 0; i < s.at.size(); ++i) s.at[i] = i % 2 ? geo::LatLng{35.7, 139.7} : geo::LatLng{48.8 + 0.001 * i, 2.3};
  pipeline::HeadProbabilities hp;
  const Tensor q = normalised(clustered(6, 16, 8, 0.3f, 6).emb);
  hp.n = 6;
  hp.embedding = q;
  hp.classes["cells"] = 2;
  for (int i = 0; i < 6; ++i) hp.p["cells"].insert(hp.p["cells"].end(), {0.9f, 0.1f});
  pipeline::PredictOptions o;
  o.strategy = pipeline::Strategy::Refine;
  o.refine_cells = 1;
  o.refine_k = 10;
  model.knn = pipeline::KnnIndex::build(s.emb, s.at);
  std::vector<std::vector<std::pair<int, float>>> brute;
  {
    const pipeline::Predictor pred(model);
    pred.find_refined(hp, o);
    brute = hp.refine;
  }
  for (const char* spec : {"Flat", "IVF8,SQ8", "HNSW8"}) {
    INFO(spec);
    model.knn = pipeline::KnnIndex::build(s.emb, s.at);
    model.knn.build_faiss({spec, std::string(spec).rfind("IVF", 0) == 0 ? "nprobe=1" : "", 0});
    const pipeline::Predictor pred(model);
    hp.refine.clear();
    pred.find_refined(hp, o);
    REQUIRE(hp.refine.size() == 6);
    for (size_t i = 0; i < 6; ++i) {
      REQUIRE(hp.refine[i].size() == 10);
      for (const auto& [row, sim] : hp.refine[i]) CHECK(row % 2 == 0);  // the first cell's rows only
    }
    if (std::string(spec) == "Flat") CHECK(hp.refine == brute);  // Flat: the same rows and bit-identical scores
    // SQ8 decodes approximately, and even with one IVF list probed every row of the cell was scored
    CHECK(recall(hp.refine, brute) >= (std::string(spec) == "HNSW8" ? 1.0 : 0.8));
    const pipeline::Prediction p = pred.decide(hp, 0, o);
    CHECK(geo::haversine_km(p.coordinate, {48.8, 2.3}) < 100.0);
  }
}

TEST_CASE("FAISS: an index file round-trips with its spec and search parameters; query-time overrides") {
  if (!need_faiss()) return;
  const fs::path dir = scratch("roundtrip");
  const Synthetic s = clustered(3000, 16, 20, 0.3f, 7);
  const Tensor q = normalised(clustered(30, 16, 20, 0.3f, 8).emb);
  for (const auto& case_ : std::vector<std::pair<std::string, std::string>>{
           {"IVF16,SQ8", "nprobe=4"}, {"HNSW16", "efSearch=40"}, {"IVF16,PQ4x4fs,Refine(Flat)", "nprobe=3,k_factor_rf=8"}}) {
    const std::string& spec = case_.first;  // not a structured binding: INFO's lambda captures it (clang 14)
    const std::string& params = case_.second;
    INFO(spec);
    pipeline::KnnIndex a = pipeline::KnnIndex::build(s.emb, s.at);
    a.build_faiss({spec, params, 0});
    const std::string path = (dir / "idx.safetensors").string();
    a.save(path);
    const auto st = safetensors::File::open(path);
    CHECK(st.metadata().at("faiss_spec") == spec);
    CHECK_FALSE(st.has("embeddings"));
    const pipeline::KnnIndex b = pipeline::KnnIndex::load(path);
    CHECK(b.faiss_spec() == spec);
    CHECK(b.search_params() == a.search_params());
    CHECK(b.coords.size() == 3000);
    CHECK(b.dim() == 16);
    const auto ra = a.search(q, 8), rb = b.search(q, 8);
    CHECK(ra == rb);
    // the restricted search works from a loaded index too (IVF: the row map comes back)
    CHECK(b.search_rows(q.data<float>(), 16, {1, 2, 3}, 2).size() == 2);
    // device copies share the FAISS index
    const pipeline::KnnIndex c = b.to(Device::cpu());
    CHECK(c.search(q, 8) == rb);
  }
  pipeline::KnnIndex b = pipeline::KnnIndex::load((dir / "idx.safetensors").string());
  b.set_search_params("nprobe=16");
  CHECK(b.search_params() == "k_factor_rf=8,nprobe=16");
  fs::remove_all(dir);
}

TEST_CASE("FAISS errors: bad specs, parameters and files are clear geoloc errors") {
  const fs::path dir = scratch("errors");
  const Synthetic s = clustered(200, 8, 4, 0.3f, 9);
  pipeline::KnnIndex brute = pipeline::KnnIndex::build(s.emb, s.at);
  // No FAISS index: FAISS parameters make no sense.
  CHECK_THROWS_AS(brute.set_search_params("nprobe=4"), ValueError);
  // A file holding bytes that are no FAISS index (or any FAISS index, without FAISS in the build).
  const std::string junk = (dir / "junk.safetensors").string();
  safetensors::WriteItem f;
  f.name = "faiss";
  f.raw_dtype = safetensors::StDType::U8;
  f.raw_bytes = {1, 2, 3, 4, 5, 6, 7, 8};
  f.raw_shape = {8};
  safetensors::write(junk, std::vector<safetensors::WriteItem>{{"latlng", Tensor::from_vector({1, 2}, {1.0f, 2.0f})}, f},
                     {{"format", "geoloc-knn/2"}, {"dim", "8"}, {"faiss_spec", "Flat"}, {"faiss_params", ""}});
  try {
    pipeline::KnnIndex::load(junk);
    FAIL("loaded a junk FAISS index");
  } catch (const IoError& e) {
    const std::string m = e.what();
    CHECK(m.find("junk.safetensors") != std::string::npos);
    if (!pipeline::faiss_available()) CHECK(m.find("without FAISS") != std::string::npos);
  }
  if (!pipeline::faiss_available()) {
    try {
      brute.build_faiss({"Flat", "", 0});
      FAIL("built a FAISS index without FAISS");
    } catch (const ValueError& e) {
      CHECK(std::string(e.what()).find("without FAISS") != std::string::npos);
    }
    need_faiss();
    fs::remove_all(dir);
    return;
  }
  const auto message = [&](const pipeline::FaissOptions& o) {
    pipeline::KnnIndex k = pipeline::KnnIndex::build(s.emb, s.at);
    try {
      k.build_faiss(o);
    } catch (const ValueError& e) {
      CHECK(k.embeddings.defined());  // nothing changed
      CHECK_FALSE(k.has_faiss());
      return std::string(e.what());
    }
    return std::string("no error");
  };
  std::string m = message({"IVF16,Bogus", "", 0});
  CHECK(m.find("IVF16,Bogus") != std::string::npos);
  CHECK(m.find("Error in") == std::string::npos);  // FAISS's C++ signature is left out
  CHECK(message({"", "", 0}).find("empty") != std::string::npos);
  CHECK(message({"PQ3", "", 0}).find("PQ3") != std::string::npos);            // 8 dimensions do not split in 3
  CHECK(message({"IVF1024,Flat", "", 0}).find("train") != std::string::npos);  // more lists than rows
  CHECK(message({"HNSW8", "nprobe=4", 0}).find("nprobe") != std::string::npos);
  CHECK(message({"IVF4,Flat", "nprobe=0", 0}).find("nprobe") != std::string::npos);
  CHECK(message({"IVF4,Flat", "nprobe", 0}).find("name=value") != std::string::npos);
  CHECK(message({"IVF4,Flat", "nprobe=x", 0}).find("number") != std::string::npos);
  pipeline::KnnIndex ok = pipeline::KnnIndex::build(s.emb, s.at);
  ok.build_faiss({"IVF4,Flat", "", 0});
  CHECK_THROWS_AS(ok.set_search_params("efSearch=10"), ValueError);
  CHECK_THROWS_AS(ok.build_faiss({"Flat", "", 0}), ValueError);  // the embeddings are gone
  // A truncated FAISS index inside a valid file: IoError naming the file.
  const std::string path = (dir / "idx.safetensors").string();
  ok.save(path);
  {
    const auto st = safetensors::File::open(path);
    const auto& e = st.entry("faiss");
    std::vector<uint8_t> cut(st.bytes(e), st.bytes(e) + (e.end - e.begin) / 2);
    safetensors::WriteItem g;
    g.name = "faiss";
    g.raw_dtype = safetensors::StDType::U8;
    g.raw_shape = {static_cast<int64_t>(cut.size())};
    g.raw_bytes = cut;
    safetensors::write((dir / "cut.safetensors").string(),
                       std::vector<safetensors::WriteItem>{{"latlng", st.tensor("latlng")}, g}, st.metadata());
  }
  CHECK_THROWS_AS(pipeline::KnnIndex::load((dir / "cut.safetensors").string()), IoError);
  fs::remove_all(dir);
}
