// Training survives being killed at any moment (issue 16): a checkpointing `geoloc train` is killed
// (SIGKILL, no chance to clean up) at several points, resumed from its checkpoint each time, and the
// model it finally writes is byte for byte the model of an uninterrupted run; no temporary file of the
// killed runs survives.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../pipeline/photos.hpp"
#include "cli_run.hpp"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

using geoloc::test::spawn_geoloc;

namespace {
// Waits for pid; true if it exited with status 0.
bool wait_ok(pid_t pid, int* raw = nullptr) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (raw) *raw = status;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

std::vector<std::string> temporaries(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.find(".tmp") != std::string::npos) out.push_back(n);
  }
  return out;
}
}  // namespace

TEST_CASE("a checkpointing train killed at several points and resumed writes the uninterrupted model") {
  const auto set = geoloc::test::make_photos("kill_resume", 16, 12);
  const fs::path dir = set.dir;
  const std::vector<std::string> common = {"train", "--train", set.manifest, "--arch", "resnet:basic:1-1:w8:k3s2:nopool",
                                           "--image-size", "32", "--resize", "40", "--cells", "40,20", "--tau-min", "3", "--scenes", "even,odd",
                                           "--steps", "100", "--batch", "8", "--seed", "3", "--checkpoint-every", "1"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = common;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  const fs::path full = dir / "full.safetensors", part = dir / "part.safetensors", ck = dir / "ck.safetensors";
  const fs::path log = dir / "train.log";

  // the uninterrupted run, timed
  const auto t0 = Clock::now();
  REQUIRE(wait_ok(spawn_geoloc(with({"--out", full.string(), "--checkpoint", (dir / "ck-full.safetensors").string()}), log)));
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  INFO("uninterrupted run: ", seconds, " s; log: ", geoloc::test::slurp(log));
  REQUIRE(fs::exists(full));

  // killed at several points of its run, resumed from the checkpoint each time
  int killed_running = 0, resumed = 0;
  for (double f : {0.25, 0.25, 0.25, 0.25, 0.25}) {  // of the uninterrupted run's time, from each start
    std::vector<std::string> extra = {"--out", part.string(), "--checkpoint", ck.string()};
    if (fs::exists(ck)) {
      extra.insert(extra.end(), {"--resume", ck.string()});
      ++resumed;
    }
    const pid_t pid = spawn_geoloc(with(extra), log);
    std::this_thread::sleep_for(std::chrono::duration<double>(f * seconds));
    ::kill(pid, SIGKILL);
    int raw = 0;
    if (!wait_ok(pid, &raw)) {
      CHECK(WIFSIGNALED(raw));
      killed_running += WIFSIGNALED(raw);
      CHECK(!fs::exists(part));  // a killed run never leaves a model
    } else {
      break;  // it finished before the kill (a fast machine): the comparison below still holds
    }
  }
  MESSAGE("kill/resume: ", killed_running, " runs killed while training, ", resumed, " resumed from the checkpoint");
  CHECK(killed_running >= 1);
  // the last run, to the end
  std::vector<std::string> extra = {"--out", part.string(), "--checkpoint", ck.string()};
  if (fs::exists(ck)) {
    extra.insert(extra.end(), {"--resume", ck.string()});
    ++resumed;
  }
  if (!fs::exists(part)) REQUIRE(wait_ok(spawn_geoloc(with(extra), log)));
  CHECK(resumed >= 1);
  REQUIRE(fs::exists(part));
  CHECK(geoloc::test::slurp(part) == geoloc::test::slurp(full));
  const std::vector<std::string> tmp = temporaries(dir);
  std::string names;
  for (const auto& n : tmp) names += n + " ";
  INFO("temporaries left: ", names);
  CHECK(tmp.empty());
  fs::remove_all(dir);
}
