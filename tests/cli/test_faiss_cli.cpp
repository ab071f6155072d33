// geoloc index --faiss SPEC (issue #20): the index file with FAISS, used by predict and eval (knn, refine),
// search parameters stored and overridden at query time, and clear errors for a bad spec, a parameter
// the index lacks, or a build without FAISS.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "../pipeline/photos.hpp"
#include "cli_run.hpp"
#include "geoloc/pipeline/knn.hpp"

namespace fs = std::filesystem;
using geoloc::test::lines;
using geoloc::test::Run;
using geoloc::test::run_geoloc;

TEST_CASE("geoloc index --faiss: predict and eval search through FAISS; parameters stored and overridden") {
  const auto train = geoloc::test::make_photos("faiss_train", 10, 7), test = geoloc::test::make_photos("faiss_test", 2, 8);
  const fs::path dir = train.dir;
  const std::string model = (dir / "model.safetensors").string();
  Run r = run_geoloc("train --train " + train.manifest + " --out " + model +
                         " --arch resnet:basic:1-1:w8:k3s2:nopool --image-size 32 --resize 40 --cells 40,20 --tau-min 3"
                         " --scenes even,odd --steps 20 --batch 16 --seed 3",
                     dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const std::string exact = (dir / "exact.safetensors").string(), flat = (dir / "flat.safetensors").string(),
                    hnsw = (dir / "hnsw.safetensors").string(), data = " --data " + train.manifest;
  // options checked first, nothing written
  r = run_geoloc("index --model " + model + data + " --out " + flat + " --nprobe 4", dir);
  CHECK(r.status == 1);
  CHECK(r.err.find("--faiss") != std::string::npos);
  if (!geoloc::pipeline::faiss_available()) {
    r = run_geoloc("index --model " + model + data + " --out " + flat + " --faiss Flat", dir);
    CHECK(r.status == 1);
    CHECK(r.err.find("without FAISS") != std::string::npos);
    CHECK_FALSE(fs::exists(flat));
    MESSAGE("FAISS is not built in: the rest of this test is skipped");
    fs::remove_all(train.dir);
    fs::remove_all(test.dir);
    return;
  }
  r = run_geoloc("index --model " + model + data + " --out " + (dir / "bad.safetensors").string() + " --faiss IVF8,Bogus", dir);
  CHECK(r.status == 1);
  CHECK(r.err.find("error: FAISS cannot make an index of 'IVF8,Bogus'") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "bad.safetensors"));
  r = run_geoloc("index --model " + model + data + " --out " + (dir / "bad.safetensors").string() + " --faiss HNSW8 --nprobe 3", dir);
  CHECK(r.status == 1);
  CHECK(r.err.find("nprobe") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "bad.safetensors"));

  REQUIRE(run_geoloc("index --model " + model + data + " --out " + exact, dir).status == 0);
  r = run_geoloc("index --model " + model + data + " --out " + flat + " --faiss Flat", dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("FAISS Flat") != std::string::npos);
  r = run_geoloc("index --model " + model + data + " --out " + hnsw + " --faiss HNSW8 --ef-search 24", dir);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("efSearch=24") != std::string::npos);

  const std::string imgs = " " + (test.dir / "img/p1_0.png").string() + " " + (test.dir / "img/p2_1.png").string() + " " +
                           (test.dir / "img/p3_0.png").string();
  // The same answers through the exact index and FAISS Flat (the neighbours and their order are the same;
  // the scores agree up to rounding: the exact file's rows are normalised once more when loaded).
  const auto same = [](const std::string& x, const std::string& y, double tol) {
    REQUIRE(lines(x) == 3);
    REQUIRE(lines(y) == 3);
    size_t a = 0, b = 0;
    for (int i = 0; i < 3; ++i) {
      const size_t ea = x.find('\n', a), eb = y.find('\n', b);
      const auto jx = nlohmann::json::parse(x.substr(a, ea - a)), jy = nlohmann::json::parse(y.substr(b, eb - b));
      CHECK(jx["image"] == jy["image"]);
      CHECK(std::fabs(jx["latitude"].get<double>() - jy["latitude"].get<double>()) < tol);
      CHECK(std::fabs(jx["longitude"].get<double>() - jy["longitude"].get<double>()) < tol);
      a = ea + 1;
      b = eb + 1;
    }
  };
  for (const std::string strategy : {"knn", "refine", "rank"}) {
    INFO(strategy);
    const Run e = run_geoloc("predict --model " + model + " --knn " + exact + " --strategy " + strategy + imgs, dir);
    const Run f = run_geoloc("predict --model " + model + " --knn " + flat + " --strategy " + strategy + imgs, dir);
    INFO(f.err);
    REQUIRE(e.status == 0);
    REQUIRE(f.status == 0);
    same(e.out, f.out, 1e-5);
    // HNSW over 40 rows with efSearch 64 visits them all: the same answers too
    const Run h = run_geoloc("predict --model " + model + " --knn " + hnsw + " --strategy " + strategy + " --ef-search 64" + imgs, dir);
    INFO(h.err);
    REQUIRE(h.status == 0);
    same(e.out, h.out, 1e-5);
  }
  // a parameter the index does not have, or FAISS parameters for an exact index: one clear line
  r = run_geoloc("predict --model " + model + " --knn " + hnsw + " --strategy knn --nprobe 4" + imgs, dir);
  CHECK(r.status == 1);
  CHECK(lines(r.err) == 1);
  CHECK(r.err.find("nprobe") != std::string::npos);
  r = run_geoloc("predict --model " + model + " --knn " + exact + " --strategy knn --ef-search 64" + imgs, dir);
  CHECK(r.status == 1);
  CHECK(r.err.find("no FAISS index") != std::string::npos);
  // eval through the FAISS index
  r = run_geoloc("eval --model " + model + " --knn " + hnsw + " --data " + test.manifest +
                     " --strategies knn,refine,rank --ef-search 32",
                 dir);
  INFO(r.err);
  CHECK(r.status == 0);
  fs::remove_all(train.dir);
  fs::remove_all(test.dir);
}
