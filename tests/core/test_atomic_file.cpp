// write_file_atomic: the target appears whole or not at all, temporaries have short names whatever the
// target's, and temporaries a killed process left behind are removed by the next write into the folder.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "geoloc/atomic_file.hpp"

namespace fs = std::filesystem;
using namespace geoloc;

namespace {
fs::path scratch(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("geoloc_atomic_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}
std::string read(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
size_t entries(const fs::path& d) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(d)) ++n;
  return n;
}
}  // namespace

TEST_CASE("write_file_atomic: whole or nothing, no temporary left, names of any legal length") {
  const fs::path d = scratch("basic");
  const fs::path t = d / "out.json";
  write_file_atomic(t.string(), [](std::ostream& os) { os << "one"; });
  CHECK(read(t) == "one");
  // a failing writer leaves the old contents and no temporary
  CHECK_THROWS_AS(write_file_atomic(t.string(), [](std::ostream& os) {
                    os << "partial";
                    throw ValueError("writer failed");
                  }),
                  ValueError);
  CHECK(read(t) == "one");
  CHECK(entries(d) == 1);
  // a 255-byte file name (the usual NAME_MAX) is legal; its temporary must be too
  const fs::path longname = d / (std::string(250, 'x') + ".json");
  write_file_atomic(longname.string(), [](std::ostream& os) { os << "long"; });
  CHECK(read(longname) == "long");
  CHECK(entries(d) == 2);
  // a folder that does not exist: IoError naming the target, nothing created
  const fs::path missing = d / "no" / "such" / "file.json";
  CHECK_THROWS_WITH_AS(write_file_atomic(missing.string(), [](std::ostream& os) { os << "x"; }),
                       doctest::Contains(missing.string().c_str()), IoError);
  CHECK(!fs::exists(d / "no"));
  fs::remove_all(d);
}

TEST_CASE("temporaries of dead processes are removed by the next write; live ones and other files stay") {
  const fs::path d = scratch("stale");
  // a pid that is not running: a child that has exited and been reaped
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  REQUIRE(child > 0);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  const std::string dead = ".geoloc-" + std::to_string(child) + "-0.tmp";
  const std::string live = ".geoloc-" + std::to_string(::getppid()) + "-7.tmp";  // our parent runs
  for (const std::string& name : {dead, live, std::string("keep.tmp"), std::string(".geoloc-notapid.tmp")})
    std::ofstream(d / name) << "stale";
  // a reserved output and a temporary folder of the dead process (the CLI's and the demo's)
  const std::string dead_out = ".geoloc-" + std::to_string(child) + "-3.png", dead_dir = ".geoloc-" + std::to_string(child) + "-4";
  std::ofstream(d / dead_out) << "stale";
  fs::create_directories(d / dead_dir / "maps");
  CHECK(detail::temp_file_pid(dead) == child);
  CHECK(detail::temp_file_pid("keep.tmp") == -1);
  CHECK(detail::temp_file_pid(".geoloc-notapid.tmp") == -1);
  write_file_atomic((d / "model.safetensors").string(), [](std::ostream& os) { os << "m"; });
  CHECK(!fs::exists(d / dead));
  CHECK(!fs::exists(d / dead_out));
  CHECK(!fs::exists(d / dead_dir));
  CHECK(fs::exists(d / live));
  CHECK(fs::exists(d / "keep.tmp"));
  CHECK(fs::exists(d / ".geoloc-notapid.tmp"));
  CHECK(read(d / "model.safetensors") == "m");
  fs::remove_all(d);
}
