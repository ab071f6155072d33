#pragma once
// Running the `geoloc` program from the CLI tests: status, stdout and stderr captured through files in
// the test's folder.
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace geoloc::test {

struct Run {
  int status = -1;
  std::string out, err;
};

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

/// Runs a shell command with stdout and stderr captured (in dir/stdout.txt and dir/stderr.txt).
inline Run run_command(const std::string& cmd, const std::filesystem::path& dir) {
  const std::filesystem::path out = dir / "stdout.txt", err = dir / "stderr.txt";
  const int raw = std::system((cmd + " >" + out.string() + " 2>" + err.string()).c_str());
  Run r;
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

/// Runs `geoloc <args>` from the build's bin folder.
inline Run run_geoloc(const std::string& args, const std::filesystem::path& dir) {
  return run_command(std::string(GEOLOC_BIN_DIR) + "/geoloc " + args, dir);
}

inline int lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

}  // namespace geoloc::test
