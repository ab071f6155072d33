// Memory is bounded by the batch, not by the number of rows (issue 16): `geoloc eval` and `geoloc index`
// read a manifest a batch at a time, so ten times the rows must not take noticeably more memory (the
// peak RSS of the process, from wait4). Before, eval held every decoded image and every row's head
// probabilities and re-made the embedding tensor per batch (10^5 rows: 3.3 GB).
#include <doctest/doctest.h>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "../image/shard_fixtures.hpp"
#include "../pipeline/photos.hpp"
#include "cli_run.hpp"

namespace fs = std::filesystem;

namespace {
// Runs geoloc with args (output discarded); returns its peak RSS in KiB, or -1 if it failed.
long peak_rss_kib(const std::vector<std::string>& args) {
  const pid_t pid = geoloc::test::spawn_geoloc(args);
  int status = 0;
  struct rusage ru {};
  if (::wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
  return ru.ru_maxrss;
}

// A manifest of `n` rows cycling through the rows of `small` (same images, so only the count changes).
std::string repeat_manifest(const fs::path& small, size_t n, const fs::path& out) {
  std::ifstream in(small);
  std::string head, line;
  std::getline(in, head);
  std::vector<std::string> rows;
  while (std::getline(in, line))
    if (!line.empty()) rows.push_back(line);
  std::ofstream o(out);
  o << head << "\n";
  for (size_t i = 0; i < n; ++i) o << rows[i % rows.size()] << "\n";
  return out.string();
}
// A tar shard of `n` records (key.png + key.json) cycling through the rows of manifest `small`.
std::string repeat_tar(const fs::path& small, size_t n, const fs::path& out) {
  std::ifstream in(small);
  std::string line;
  std::getline(in, line);  // header: image,latitude,longitude,scene,country
  struct Row {
    geoloc::test::Bytes png;
    std::string json;
  };
  std::vector<Row> rows;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
    std::ifstream img(small.parent_path() / f[0], std::ios::binary);
    rows.push_back({geoloc::test::Bytes(std::istreambuf_iterator<char>(img), {}),
                    "{\"latitude\": " + f[1] + ", \"longitude\": " + f[2] + ", \"scene\": " + f[3] + "}"});
  }
  std::vector<std::pair<std::string, geoloc::test::Bytes>> members;
  for (size_t i = 0; i < n; ++i) {
    const std::string key = "r/" + std::to_string(100000 + i);
    members.push_back({key + ".png", rows[i % rows.size()].png});
    members.push_back({key + ".json", geoloc::test::to_bytes(rows[i % rows.size()].json)});
  }
  geoloc::test::write_bytes(out.string(), geoloc::test::make_tar(members));
  return out.string();
}
}  // namespace

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define GEOLOC_TEST_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define GEOLOC_TEST_SANITIZED 1
#endif

TEST_CASE("geoloc eval and index: peak memory does not grow with the number of rows") {
#ifdef GEOLOC_TEST_SANITIZED
  // A sanitizer's quarantine and shadow memory grow with the allocations made: RSS measures them, not geoloc.
  MESSAGE("skipped under a sanitizer: peak RSS measures its quarantine, not geoloc's memory");
  return;
#endif
  const auto set = geoloc::test::make_photos("memory_bounds", 8, 21);
  const fs::path dir = set.dir;
  const std::string model = (dir / "model.safetensors").string(), knn = (dir / "knn.safetensors").string();
  geoloc::test::Run r = geoloc::test::run_geoloc(
      "train --train " + set.manifest + " --out " + model +
          " --arch resnet:basic:1-1:w8:k3s2:nopool --image-size 32 --resize 40 --cells 40,20 --tau-min 3"
          " --scenes even,odd --steps 5 --batch 16 --seed 3",
      dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  REQUIRE(geoloc::test::run_geoloc("index --model " + model + " --data " + set.manifest + " --out " + knn, dir).status == 0);
  const std::string few = repeat_manifest(set.manifest, 600, dir / "few.csv");
  const std::string many = repeat_manifest(set.manifest, 6000, dir / "many.csv");
  auto eval = [&](const std::string& data) {
    return peak_rss_kib({"eval", "--model", model, "--knn", knn, "--data", data});
  };
  auto index = [&](const std::string& data) {
    return peak_rss_kib({"index", "--model", model, "--data", data, "--out", (dir / "big-index.safetensors").string()});
  };
  const long e_few = eval(few), e_many = eval(many), i_few = index(few), i_many = index(many);
  MESSAGE("peak RSS (KiB): eval 600 rows ", e_few, ", 6000 rows ", e_many, "; index 600 rows ", i_few, ", 6000 rows ",
          i_many);
  REQUIRE(e_few > 0);
  REQUIRE(e_many > 0);
  REQUIRE(i_few > 0);
  REQUIRE(i_many > 0);
  // 5400 more rows: the images alone would be 26 MB held at once; a few MB of per-row answers, the
  // manifest text and the index rows are allowed.
  CHECK(e_many - e_few < 8 * 1024);
  CHECK(i_many - i_few < 8 * 1024);
  // The same from tar shards (streamed too: only the shard index and a batch in memory).
  const std::string few_tar = repeat_tar(set.manifest, 600, dir / "few.tar");
  const std::string many_tar = repeat_tar(set.manifest, 6000, dir / "many.tar");
  auto eval_shards = [&](const std::string& tar) {
    return peak_rss_kib({"eval", "--model", model, "--knn", knn, "--shards", tar});
  };
  auto index_shards = [&](const std::string& tar) {
    return peak_rss_kib({"index", "--model", model, "--shards", tar, "--out", (dir / "big-index.safetensors").string()});
  };
  const long es_few = eval_shards(few_tar), es_many = eval_shards(many_tar);
  const long is_few = index_shards(few_tar), is_many = index_shards(many_tar);
  MESSAGE("peak RSS (KiB) from shards: eval 600 records ", es_few, ", 6000 records ", es_many, "; index 600 records ",
          is_few, ", 6000 records ", is_many);
  REQUIRE(es_few > 0);
  REQUIRE(es_many > 0);
  REQUIRE(is_few > 0);
  REQUIRE(is_many > 0);
  CHECK(es_many - es_few < 8 * 1024);
  CHECK(is_many - is_few < 8 * 1024);
  fs::remove_all(dir);
}
