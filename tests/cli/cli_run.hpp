#pragma once
// Running the `geoloc` program from the CLI tests: status, stdout and stderr captured through files in
// the test's folder.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

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

/// Starts `geoloc args...` without a shell (stdout and stderr appended to `log`, or discarded when empty);
/// returns its pid, for tests that signal or time the process.
inline pid_t spawn_geoloc(const std::vector<std::string>& args, const std::filesystem::path& log = {}) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(log.empty() ? "/dev/null" : log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    const std::string bin = std::string(GEOLOC_BIN_DIR) + "/geoloc";
    std::vector<char*> argv{const_cast<char*>(bin.c_str())};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(bin.c_str(), argv.data());
    ::_exit(127);
  }
  return pid;
}

inline int lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

}  // namespace geoloc::test
