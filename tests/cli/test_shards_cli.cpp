// geoloc train / eval / index from shards made by tools/make_shards.py: with shuffling off, tar (key.json
// or CSV) and MessagePack shards of the manifest's images train the byte-identical model the manifest
// trains; corrupt shards give one error line and no output. Needs python3 (standard library only);
// without it the case says so and passes.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <vector>
#include <nlohmann/json.hpp>
#include <sstream>

#include "../pipeline/photos.hpp"
#include "cli_run.hpp"

namespace fs = std::filesystem;

using geoloc::test::lines;
using geoloc::test::Run;
using geoloc::test::run_command;
using geoloc::test::run_geoloc;
using geoloc::test::slurp;


TEST_CASE("shards made by tools/make_shards.py train the model the manifest trains; corrupt shards fail cleanly") {
  if (std::system("python3 -c 'import tarfile, csv, json' >/dev/null 2>&1") != 0) {
    MESSAGE("python3 not found: shard CLI test not run");
    return;
  }
  const auto set = geoloc::test::make_photos("cli_shards", 6, 21);
  const fs::path dir = set.dir;
  // Half of the photos as JPEGs, so that both decoders and the DCT-scaled path take part.
  {
    std::ifstream in(set.manifest);
    std::stringstream rewritten;
    std::string line;
    int row = 0;
    while (std::getline(in, line)) {
      if (row++ % 2 == 0 && row > 1) {
        const std::string png = line.substr(0, line.find(','));
        const std::string jpg = png.substr(0, png.size() - 4) + ".jpg";
        const auto img = geoloc::image::decode_file((dir / png).string());
        const auto bytes = geoloc::image::encode_jpeg(img, 92);
        std::ofstream(dir / jpg, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                                         static_cast<std::streamsize>(bytes.size()));
        line = jpg + line.substr(line.find(','));
      }
      rewritten << line << "\n";
    }
    std::ofstream(set.manifest) << rewritten.str();
  }
  const std::string script = std::string(GEOLOC_TEST_DIR) + "/../tools/make_shards.py";
  const std::string shards = (dir / "shards").string();
  for (const std::string variant : {"tar --labels json", "tar --labels csv", "msgpack"}) {
    const std::string out = shards + "_" + variant.substr(0, 3) + (variant.find("csv") != std::string::npos ? "csv" : "");
    const Run r = run_command("python3 " + script + " --manifest " + set.manifest + " --out " + out + " --per-shard 7 --format " + variant, dir);
    INFO(r.err);
    REQUIRE(r.status == 0);
  }
  const std::string common = " --arch resnet:basic:1-1:w8:k3s2:nopool --image-size 32 --resize 36 --cells 16,8 --tau-min 2"
                             " --scenes even,odd --steps 7 --batch 8 --seed 4 --loader-threads 2 --no-shuffle";
  Run r = run_geoloc("train --train " + set.manifest + " --stream --out " + (dir / "manifest.safetensors").string() + common, dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const std::string reference = slurp(dir / "manifest.safetensors");
  REQUIRE(!reference.empty());
  struct Variant {
    std::string name, spec, labels;
  };
  for (const Variant& v : {Variant{"tar+json", "'" + shards + "_tar/shard-{000..003}.tar'", ""},
                           Variant{"tar+csv", "'" + shards + "_tarcsv/shard-*.tar'", shards + "_tarcsv/labels.csv"},
                           Variant{"msgpack", "'" + shards + "_msg/shard-000.msg," + shards + "_msg/shard-00{1..3}.msg'",
                                   shards + "_msg/labels.csv"}}) {
    CAPTURE(v.name);
    const fs::path model = dir / (v.name + ".safetensors");
    r = run_geoloc("train --shards " + v.spec + (v.labels.empty() ? "" : " --shard-labels " + v.labels) + " --out " +
                       model.string() + common,
                   dir);
    INFO(r.err);
    REQUIRE(r.status == 0);
    CHECK(r.err.find("shards: 24 records in 4 shards") != std::string::npos);
    CHECK(slurp(model) == reference);
  }
  // Shuffled (shard order and buffer): trains too, and evaluation / indexing read shards as well.
  const std::string model = (dir / "shuffled.safetensors").string();
  r = run_geoloc("train --shards '" + shards + "_tar/shard-{000..003}.tar' --shuffle-buffer 5 --out " + model +
                     " --arch resnet:basic:1-1:w8:k3s2:nopool --image-size 32 --resize 36 --cells 16,8 --tau-min 2 --steps 4 --scenes even,odd"
                     " --batch 8",
                 dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  r = run_geoloc("eval --model " + model + " --shards '" + shards + "_msg/shard-00{0..3}.msg' --shard-labels " + shards +
                     "_msg/labels.csv --strategies cell --json " + (dir / "m.json").string(),
                 dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(nlohmann::json::parse(slurp(dir / "m.json"))["cell"]["n"] == 24);
  r = run_geoloc("index --model " + model + " --shards '" + shards + "_tar/*.tar' --out " + (dir / "knn.safetensors").string(), dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("k-NN index of 24 images") != std::string::npos);
  // predict streams shards (no labels needed, MessagePack without its CSV too) and answers each record as
  // it answers the same image given as a file.
  std::vector<nlohmann::json> by_row;  // manifest row r is the shard record with key %06d of r
  {
    std::ifstream in(set.manifest);
    std::string line, files;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      files += ' ';
      files += (dir / line.substr(0, line.find(','))).string();
    }
    r = run_geoloc("predict --model " + model + files, dir);
    INFO(r.err);
    REQUIRE(r.status == 0);
    std::stringstream ss(r.out);
    while (std::getline(ss, line)) by_row.push_back(nlohmann::json::parse(line));
  }
  REQUIRE(by_row.size() == 24);
  std::vector<std::string> specs;
  specs.push_back("'" + shards + "_tar/shard-{000..003}.tar'");
  specs.push_back("'" + shards + "_msg/shard-00{0..3}.msg'");
  for (const std::string& spec : specs) {
    CAPTURE(spec);
    r = run_geoloc("predict --model " + model + " --shards " + spec + " --batch 5", dir);
    INFO(r.err);
    REQUIRE(r.status == 0);
    CHECK(r.err.find("24 images from 4 shards") != std::string::npos);
    std::stringstream ss(r.out);
    std::string line;
    int n = 0;
    while (std::getline(ss, line)) {
      const auto j = nlohmann::json::parse(line);
      const std::string name = j["image"];  // shard:key
      const size_t row = std::stoul(name.substr(name.rfind(':') + 1));
      CAPTURE(name);
      REQUIRE(row < by_row.size());
      CHECK(j["latitude"].get<double>() == doctest::Approx(by_row[row]["latitude"].get<double>()).epsilon(1e-9));
      CHECK(j["longitude"].get<double>() == doctest::Approx(by_row[row]["longitude"].get<double>()).epsilon(1e-9));
      CHECK(j["top_cells"][0]["cell"] == by_row[row]["top_cells"][0]["cell"]);
      ++n;
    }
    CHECK(n == 24);
  }

  // Corrupt shards: one line on stderr naming the shard, status 1, no model, no curve.
  fs::create_directories(dir / "bad");
  const std::string tar = slurp(shards + "_tar/shard-001.tar"), msg = slurp(shards + "_msg/shard-002.msg");
  std::ofstream(dir / "bad/cut.tar", std::ios::binary) << tar.substr(0, tar.size() / 2 + 100);
  std::ofstream(dir / "bad/cut.msg", std::ios::binary) << msg.substr(0, msg.size() - 10);
  for (const std::string& bad : {std::string("--shards ") + shards + "_tar/shard-000.tar," + (dir / "bad/cut.tar").string(),
                                 std::string("--shards ") + (dir / "bad/cut.msg").string() + " --shard-labels " + shards +
                                     "_msg/labels.csv",
                                 std::string("--shards '") + (dir / "bad/none-{0..2}.tar").string() + "'"}) {
    CAPTURE(bad);
    const fs::path out = dir / "bad/model.safetensors";
    r = run_geoloc("train " + bad + " --out " + out.string() + common, dir);
    CHECK(r.status == 1);
    CHECK(lines(r.err) == 1);
    CHECK(r.err.find(bad.find("cut.tar") != std::string::npos ? "cut.tar"
                     : bad.find("cut.msg") != std::string::npos ? "cut.msg"
                                                                 : "none-0.tar") != std::string::npos);
    CHECK(!fs::exists(out));
    CHECK(!fs::exists(dir / "bad/model-curve.json"));
  }
  fs::remove_all(dir);
}
