// The library prints nothing: messages and progress go to the handlers a program sets (log.hpp), and are
// dropped while none is set. Checked by capturing the process's stderr and stdout around library calls.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "geoloc/log.hpp"
#include "geoloc/progress.hpp"

using namespace geoloc;

namespace {
// Runs fn with file descriptors 1 and 2 redirected to a temporary file; returns what was written.
template <class F>
std::string captured_output(F&& fn) {
  std::fflush(stdout);
  std::fflush(stderr);
  char path[] = "/tmp/geoloc_test_log_XXXXXX";
  const int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  const int saved_out = dup(1), saved_err = dup(2);
  dup2(fd, 1);
  dup2(fd, 2);
  fn();
  std::fflush(stdout);
  std::fflush(stderr);
  dup2(saved_out, 1);
  dup2(saved_err, 2);
  close(saved_out);
  close(saved_err);
  close(fd);
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  unlink(path);
  return ss.str();
}

void noisy_library_work() {
  log_message(LogLevel::warning, "skipping a.jpg: truncated");
  Progress p("train", 10, "img", true, 0.0);
  for (int i = 1; i <= 10; ++i) p.update(i, "loss 1.0");
  p.finish("loss 0.5");
}
}  // namespace

TEST_CASE("the library writes nothing to stdout or stderr when no handler is set") {
  const LogHandler old_log = set_log_handler({});
  const ProgressHandler old_progress = set_progress_handler({});
  CHECK(captured_output(noisy_library_work).empty());
  set_log_handler(old_log);
  set_progress_handler(old_progress);
}

TEST_CASE("messages and progress go to the handlers the program sets, and only there") {
  std::vector<std::string> logs, lines;
  bool saw_final = false;
  const LogHandler old_log = set_log_handler([&](LogLevel l, const std::string& m) {
    logs.push_back((l == LogLevel::warning ? "W " : "I ") + m);
  });
  const ProgressHandler old_progress = set_progress_handler([&](const ProgressEvent& e) {
    lines.push_back(e.line);
    if (e.final) {
      saw_final = true;
      CHECK(e.done == 10);
      CHECK(e.total == 10);
      CHECK(e.note == "loss 0.5");
    }
  });
  CHECK(captured_output(noisy_library_work).empty());
  set_log_handler(old_log);
  set_progress_handler(old_progress);
  REQUIRE(logs.size() == 1);
  CHECK(logs[0] == "W skipping a.jpg: truncated");
  CHECK(!lines.empty());
  CHECK(saw_final);
  CHECK(lines.back().find("train 10/10") == 0);
}
