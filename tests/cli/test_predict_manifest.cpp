// geoloc predict --manifest M.csv --out preds.jsonl (issue #20): one JSON line per row in manifest order,
// an unreadable image keeps its place with an error line, --resume continues an interrupted run (a torn
// last line, a killed process) into exactly the file of an uninterrupted run, and peak memory does not
// grow with the number of rows.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "../pipeline/photos.hpp"
#include "cli_run.hpp"

extern char** environ;

namespace fs = std::filesystem;
using geoloc::test::lines;
using geoloc::test::Run;
using geoloc::test::run_geoloc;
using geoloc::test::slurp;

namespace {

// A tiny trained model, made once for this file's tests.
struct Trained {
  geoloc::test::PhotoSet train;
  std::string model;
  Trained() : train(geoloc::test::make_photos("pm_train", 8, 7)) {
    model = (train.dir / "model.safetensors").string();
    const Run r = run_geoloc("train --train " + train.manifest + " --out " + model +
                                 " --arch resnet:basic:1-1:w8:k3s2:nopool --image-size 32 --resize 40 --cells 40,20"
                                 " --tau-min 3 --scenes even,odd --steps 20 --batch 16 --seed 3",
                             train.dir);
    INFO(r.err);
    REQUIRE(r.status == 0);
  }
  ~Trained() { fs::remove_all(train.dir); }
};
const Trained& trained() {
  static const Trained t;
  return t;
}

void write_file(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << s;
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> out;
  size_t a = 0;
  for (size_t b; (b = s.find('\n', a)) != std::string::npos; a = b + 1) out.push_back(s.substr(a, b - a));
  return out;
}

// Runs `geoloc args...` (no shell), output to `log`; returns the exit status and, in *max_rss_kb, the
// process's peak resident memory (wait4's rusage).
int spawn_wait(const std::vector<std::string>& args, const fs::path& log, long* max_rss_kb, pid_t* started = nullptr,
               const std::function<void(pid_t)>& meanwhile = {}) {
  const std::string bin = std::string(GEOLOC_BIN_DIR) + "/geoloc";
  std::vector<char*> argv{const_cast<char*>(bin.c_str())};
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, bin.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  REQUIRE(rc == 0);
  if (started) *started = pid;
  if (meanwhile) meanwhile(pid);
  int status = 0;
  struct rusage ru {};
  REQUIRE(::wait4(pid, &status, 0, &ru) == pid);
  if (max_rss_kb) *max_rss_kb = ru.ru_maxrss;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST_CASE("geoloc predict --manifest: a line per row in order, and --resume gives the uninterrupted file byte for byte") {
  const Trained& t = trained();
  const auto test = geoloc::test::make_photos("pm_test", 3, 8);
  const fs::path dir = test.dir;
  // image not the first column, extra columns, an absolute path, a quoted path, a missing file
  std::string csv = "latitude,Image,note\n";
  std::vector<std::string> images;
  for (int p = 0; p < 4; ++p)
    for (int i = 0; i < 3; ++i) images.push_back("img/p" + std::to_string(p) + "_" + std::to_string(i) + ".png");
  images[4] = (dir / images[4]).string();
  images.insert(images.begin() + 6, "img/missing.png");
  for (size_t r = 0; r < images.size(); ++r)
    csv += "1.0," + (r == 2 ? "\"" + images[r] + "\"" : images[r]) + ",\"x, y\"\n";
  write_file(dir / "m.csv", csv);
  const std::string m = (dir / "m.csv").string(), full = (dir / "full.jsonl").string();

  Run r = run_geoloc("predict --model " + t.model + " --manifest " + m + " --out " + full + " --batch 5", dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.empty());  // the lines go to --out
  const std::string whole = slurp(full);
  const auto got = split_lines(whole);
  REQUIRE(got.size() == images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    const auto j = nlohmann::json::parse(got[i]);
    CHECK(j["image"] == images[i]);
    CHECK(j.contains("error") == (i == 6));
  }
  // the same answer as predicting the file directly (up to rounding: the network's sums depend a little
  // on the batch an image is in)
  r = run_geoloc("predict --model " + t.model + " " + images[4], dir);
  REQUIRE(r.status == 0);
  const auto direct = nlohmann::json::parse(r.out), listed = nlohmann::json::parse(got[4]);
  CHECK(direct["image"] == listed["image"]);
  CHECK(direct["latitude"].get<double>() == doctest::Approx(listed["latitude"].get<double>()).epsilon(1e-9));
  CHECK(direct["longitude"].get<double>() == doctest::Approx(listed["longitude"].get<double>()).epsilon(1e-9));
  CHECK(direct["confidence"].get<double>() == doctest::Approx(listed["confidence"].get<double>()).epsilon(1e-4));

  // Interrupted runs, made by hand: complete lines, then a torn one (or nothing, or only a torn one).
  // Resumed with the same --batch: the file is cut back to whole batches, so every batch holds the rows
  // it held in the uninterrupted run and the result is that run's file byte for byte.
  const std::string part = (dir / "part.jsonl").string();
  for (const size_t keep : {size_t{0}, size_t{1}, size_t{6}, size_t{7}, images.size()}) {
    for (const bool torn : {false, true}) {
      if (keep == images.size() && torn) continue;
      INFO("complete lines kept: ", keep, ", torn line: ", torn);
      std::string s;
      for (size_t i = 0; i < keep; ++i) s += got[i] + "\n";
      if (torn) s += got[keep].substr(0, got[keep].size() / 2);
      write_file(part, s);
      r = run_geoloc("predict --model " + t.model + " --manifest " + m + " --out " + part + " --batch 5 --resume", dir);
      INFO(r.err);
      REQUIRE(r.status == 0);
      CHECK(slurp(part) == whole);
    }
  }
  // Without --resume an existing file is refused, untouched.
  write_file(part, got[0] + "\n");
  r = run_geoloc("predict --model " + t.model + " --manifest " + m + " --out " + part, dir);
  CHECK(r.status == 1);
  CHECK(r.err.find("--resume") != std::string::npos);
  CHECK(slurp(part) == got[0] + "\n");
  // A file that is not this manifest's output: its last line names another image, or it is too long.
  write_file(part, got[1] + "\n");
  r = run_geoloc("predict --model " + t.model + " --manifest " + m + " --out " + part + " --resume", dir);
  CHECK(r.status == 1);
  CHECK(r.err.find("does not continue") != std::string::npos);
  write_file(part, whole + got[0] + "\n");
  r = run_geoloc("predict --model " + t.model + " --manifest " + m + " --out " + part + " --resume", dir);
  CHECK(r.status == 1);
  CHECK(r.err.find("not the output of this manifest") != std::string::npos);
  // Option checks, before anything is read or written.
  for (const std::string& bad : std::vector<std::string>{"--manifest " + m, "--out x.jsonl " + images[0], "--resume " + images[0],
                                "--manifest " + m + " --out y.jsonl " + images[0], "--manifest " + m + " --out y.jsonl --place",
                                "--manifest " + (dir / "none.csv").string() + " --out y.jsonl"}) {
    INFO(bad);
    r = run_geoloc("predict --model " + t.model + " " + bad, dir);
    CHECK(r.status == 1);
    CHECK(lines(r.err) == 1);
    CHECK_FALSE(fs::exists(dir / "y.jsonl"));
  }
  write_file(dir / "noimage.csv", "path,latitude\na.png,1\n");
  r = run_geoloc("predict --model " + t.model + " --manifest " + (dir / "noimage.csv").string() + " --out y.jsonl", dir);
  CHECK(r.status == 1);
  CHECK(r.err.find("'image' column") != std::string::npos);
  // An empty manifest leaves an empty file.
  write_file(dir / "empty.csv", "image\n");
  r = run_geoloc("predict --model " + t.model + " --manifest " + (dir / "empty.csv").string() + " --out " +
                     (dir / "empty.jsonl").string(),
                 dir);
  CHECK(r.status == 0);
  CHECK(fs::exists(dir / "empty.jsonl"));
  CHECK(fs::file_size(dir / "empty.jsonl") == 0);

  // A real interruption: SIGKILL while it writes (one row per batch), then --resume.
  std::string many = "image\n";
  for (int i = 0; i < 300; ++i) many += "img/p" + std::to_string(i % 4) + "_" + std::to_string(i % 3) + ".png\n";
  write_file(dir / "many.csv", many);
  const std::string mm = (dir / "many.csv").string(), ref = (dir / "ref.jsonl").string(), killed = (dir / "killed.jsonl").string();
  r = run_geoloc("predict --model " + t.model + " --manifest " + mm + " --out " + ref + " --batch 3", dir);
  REQUIRE(r.status == 0);
  const int status = spawn_wait({"predict", "--model", t.model, "--manifest", mm, "--out", killed, "--batch", "3"},
                                dir / "kill.log", nullptr, nullptr, [&](pid_t pid) {
                                  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
                                  std::error_code ec;
                                  while (std::chrono::steady_clock::now() < until &&
                                         !(fs::exists(killed, ec) && fs::file_size(killed, ec) > 20000))
                                    std::this_thread::sleep_for(std::chrono::microseconds(200));
                                  ::kill(pid, SIGKILL);
                                });
  const size_t before = split_lines(slurp(killed)).size();
  MESSAGE("killed after ", before, " of 300 lines (exit ", status, ")");
  r = run_geoloc("predict --model " + t.model + " --manifest " + mm + " --out " + killed + " --batch 3 --resume", dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(slurp(killed) == slurp(ref));
  fs::remove_all(dir);
}

TEST_CASE("geoloc predict --manifest: peak memory does not grow from 100 to 1000 rows") {
  const Trained& t = trained();
  const auto photos = geoloc::test::make_photos("pm_mem", 1, 9);
  const fs::path dir = photos.dir;
  // Three larger photos (PNG: decoded at full size, 480x360), listed over and over: were the decoded images
  // (or the answers) of every row kept, 1000 rows would hold some 500 MB more than 100 rows.
  for (int k = 0; k < 3; ++k) {
    geoloc::image::Image img(480, 360);
    for (int y = 0; y < 360; ++y)
      for (int x = 0; x < 480; ++x) {
        uint8_t* px = img.at(x, y);
        px[0] = static_cast<uint8_t>(x * (k + 1));
        px[1] = static_cast<uint8_t>(y * (k + 2));
        px[2] = static_cast<uint8_t>((x + y) * 3);
      }
    geoloc::image::write_png((dir / ("big" + std::to_string(k) + ".png")).string(), img);
  }
  long rss[2] = {0, 0};
  const int rows[2] = {100, 1000};
  for (int c = 0; c < 2; ++c) {
    std::string csv = "image\n";
    for (int i = 0; i < rows[c]; ++i) csv += "big" + std::to_string(i % 3) + ".png\n";
    const fs::path m = dir / ("m" + std::to_string(rows[c]) + ".csv"), out = dir / ("o" + std::to_string(rows[c]) + ".jsonl");
    write_file(m, csv);
    const int status = spawn_wait({"predict", "--model", t.model, "--manifest", m.string(), "--out", out.string(),
                                   "--batch", "16"},
                                  dir / "log.txt", &rss[c]);
    INFO(slurp(dir / "log.txt"));
    REQUIRE(status == 0);
    CHECK(lines(slurp(out)) == rows[c]);
  }
  MESSAGE("peak RSS: ", rss[0] / 1024, " MiB for 100 rows, ", rss[1] / 1024, " MiB for 1000 rows");
  CHECK(rss[1] < rss[0] + 24 * 1024);  // KiB: the same up to allocator noise
  fs::remove_all(dir);
}
