// Models from elsewhere (issue 17): `geoloc import` of a checkpoint in the ECCV 2018 Lightning layout
// (converted by tools/convert_checkpoint.py) with its partition CSVs (CRLF, two leading lines), compared
// with a float64 PyTorch re-implementation of their prediction (tests/fixtures/eccv2018/expected.json,
// made by tools/make_import_fixtures.py); `geoloc train --partitions` on given cells.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "../pipeline/photos.hpp"
#include "geoloc/geoloc.hpp"
#include "geoloc/pipeline/import.hpp"
#include "cli_run.hpp"

namespace fs = std::filesystem;

namespace {
const fs::path kFix = fs::path(GEOLOC_TEST_DIR) / "fixtures" / "eccv2018";

using geoloc::test::Run;
using geoloc::test::run_geoloc;
using geoloc::test::slurp;

std::vector<nlohmann::json> json_lines(const std::string& s) {
  std::vector<nlohmann::json> v;
  std::istringstream in(s);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) v.push_back(nlohmann::json::parse(line));
  return v;
}

fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("geoloc_import_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string csvs() {
  return (kFix / "cells_coarse.csv").string() + "," + (kFix / "cells_middle.csv").string() + "," +
         (kFix / "cells_fine.csv").string();
}
}  // namespace

TEST_CASE("geoloc import + predict: the ECCV 2018 prediction (max over five crops, product of parents)") {
  const fs::path dir = fresh_dir("predict");
  const auto expected = nlohmann::json::parse(slurp(kFix / "expected.json"));
  const std::string model = (dir / "m.safetensors").string();
  Run r = run_geoloc("import --weights " + (kFix / "weights.safetensors").string() + " --partitions " + csvs() +
                         " --resize 64 --crop 56 --out " + model,
                     dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.err.find("hierarchy") != std::string::npos);

  // The hierarchy built from the S2 ids equals their M (parents of each finest cell's mean).
  const auto m = geoloc::pipeline::GeoModel::load(model);
  REQUIRE(m.hierarchy());
  const auto& M = expected["hierarchy"];
  REQUIRE(m.hierarchy()->size() == M.size());
  for (size_t f = 0; f < M.size(); ++f)
    for (size_t p = 0; p < 3; ++p) CHECK(m.hierarchy()->ancestor(f, p) == M[f][p].get<int>());

  std::string photos;
  for (const auto& im : expected["images"]) photos += " " + (kFix / im["file"].get<std::string>()).string();
  for (const std::string agg : {"max", "mean"}) {
    for (const std::string strategy : {"hierarchy", "cell"}) {
      INFO(agg, " ", strategy);
      r = run_geoloc("predict --model " + model + " --five-crop" + (agg == "max" ? " --max-crops" : "") +
                         " --strategy " + strategy + photos,
                     dir);
      INFO(r.err);
      REQUIRE(r.status == 0);
      const auto lines = json_lines(r.out);
      REQUIRE(lines.size() == expected["images"].size());
      for (size_t i = 0; i < lines.size(); ++i) {
        const auto& e = expected["images"][i][agg];
        const auto& top = lines[i]["top_cells"];
        REQUIRE(top.size() == 5);
        for (size_t k = 0; k < 5; ++k) {
          CHECK(top[k]["cell"].get<int>() == e["fine_top"][k].get<int>());
          CHECK(top[k]["probability"].get<double>() ==
                doctest::Approx(e["fine_top_probability"][k].get<double>()).epsilon(1e-4));
        }
        const std::string key = strategy == "hierarchy" ? "hierarchy" : "fine";
        CHECK(lines[i]["latitude"].get<double>() == doctest::Approx(e[key + "_latitude"].get<double>()).epsilon(1e-9));
        CHECK(lines[i]["longitude"].get<double>() == doctest::Approx(e[key + "_longitude"].get<double>()).epsilon(1e-9));
      }
    }
  }

  // The same through the C++ API, with max aggregation from Options.
  geoloc::Options o;
  o.five_crop = true;
  o.crop_aggregation = "max";
  const auto loc = geoloc::Locator::load(model, o);
  const auto& e0 = expected["images"][0]["max"];
  const auto res = loc.predict(geoloc::read_image((kFix / expected["images"][0]["file"].get<std::string>()).string()));
  CHECK(res.top_cells.at(0).id == e0["fine_top"][0].get<int>());
  CHECK(res.latitude == doctest::Approx(e0["hierarchy_latitude"].get<double>()));
  o.crop_aggregation = "median";
  CHECK_THROWS_AS(geoloc::Locator::load(model, o), geoloc::ValueError);
  fs::remove_all(dir);
}

TEST_CASE("geoloc import: wrong class counts, pickles and bad coordinates are one clear line, no output") {
  const fs::path dir = fresh_dir("bad");
  const std::string out = (dir / "m.safetensors").string();
  const std::string w = (kFix / "weights.safetensors").string();
  {  // a CSV with a latitude out of range (CRLF, like the fixtures)
    std::ifstream in(kFix / "cells_fine.csv", std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    const size_t row = text.find("\r\n0,");
    const size_t lat = text.find(',', text.find(',', text.find(',', row + 2) + 1) + 1);
    text.replace(lat + 1, text.find(',', lat + 1) - lat - 1, "91.5");
    std::ofstream(dir / "badlat.csv", std::ios::binary) << text;
  }
  std::ofstream(dir / "model.ckpt", std::ios::binary) << "PK\x03\x04 not really a zip";
  const std::string c = (kFix / "cells_coarse.csv").string(), mid = (kFix / "cells_middle.csv").string(),
                    f = (kFix / "cells_fine.csv").string();
  struct Case {
    std::string args, expect;
  };
  const Case cases[] = {
      {"--weights " + w + " --partitions " + c + "," + mid + "," + c, "cells_coarse.csv' has"},
      {"--weights " + w + " --partitions " + c + "," + mid, "3 partition heads"},
      {"--weights " + w + " --partitions " + c + "," + mid + "," + (dir / "badlat.csv").string(), "line 4"},
      {"--weights " + (dir / "model.ckpt").string() + " --partitions " + csvs(), "convert_checkpoint.py"},
      {"--weights " + w + " --partitions " + csvs() + " --scenes a,b", "no scene head"},
      {"--weights " + w + " --partitions " + csvs() + " --crop 300", "crop 300"},
  };
  for (const auto& k : cases) {
    INFO("geoloc import ", k.args);
    const Run r = run_geoloc("import " + k.args + " --out " + out, dir);
    CHECK(r.status == 1);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK(r.err.find(k.expect) != std::string::npos);
    CHECK_FALSE(fs::exists(out));
  }
  fs::remove_all(dir);
}

TEST_CASE("geoloc train --partitions: given cells, images outside them counted; fine-tuning an imported model") {
  const auto set = geoloc::test::make_photos("import_train", 6, 21, 64);
  const fs::path dir = set.dir;
  // Without scenes (the imported model has no scene head), plus a point far from every fixture cell
  // (the South Pacific), outside all partitionings.
  {
    std::istringstream in(slurp(set.manifest));
    std::ostringstream out;
    for (std::string line; std::getline(in, line);) {
      const size_t third = line.find(',', line.find(',', line.find(',') + 1) + 1);
      out << line.substr(0, third) << "\n";
    }
    out << "img/p0_0.png,-45.0,-130.0\n";
    std::ofstream(set.manifest) << out.str();
  }
  const std::string model = (dir / "t.safetensors").string();
  Run r = run_geoloc("train --train " + set.manifest + " --out " + model + " --partitions " + csvs() +
                         " --arch resnet:basic:1-1:w8:k3s2:nopool --image-size 32 --resize 40 --steps 4 --batch 8 --seed 2",
                     dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.err.find("1 of 25 training images lie outside every partitioning: skipped") != std::string::npos);
  const auto expected = nlohmann::json::parse(slurp(kFix / "expected.json"));
  const auto m = geoloc::pipeline::GeoModel::load(model);
  REQUIRE(m.partitions.size() == 3);
  for (size_t p = 0; p < 3; ++p) CHECK(m.partitions[p].partition->size() == expected["classes"][p].get<size_t>());

  // Fine-tune the imported model on the same cells: every layer starts from its weights.
  const std::string imported = (dir / "imported.safetensors").string(), tuned = (dir / "tuned.safetensors").string();
  r = run_geoloc("import --weights " + (kFix / "weights.safetensors").string() + " --partitions " + csvs() +
                     " --resize 64 --crop 56 --out " + imported,
                 dir);
  REQUIRE(r.status == 0);
  r = run_geoloc("train --train " + set.manifest + " --out " + tuned + " --partitions " + csvs() + " --pretrained " +
                     imported + " --image-size 56 --resize 64 --steps 2 --batch 8 --lr 0.001 --outside nearest",
                 dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.err.find("fine-tuning every layer") != std::string::npos);
  CHECK(r.err.find("outside every partitioning") == std::string::npos);  // --outside nearest keeps them
  fs::remove_all(dir);
}
