#pragma once
// Where geoloc's messages go. The library never writes to stdout or stderr: its warnings (a skipped
// unreadable image), stage lines (the demo) and progress lines (decoding, training) go to the handlers
// the program sets here, and are dropped while none is set (the default). The geoloc command-line
// program installs handlers that print to stderr.
#include <cstdint>
#include <functional>
#include <string>

namespace geoloc {

enum class LogLevel { info, warning };

/// Receives one message (no trailing newline). May be called from any of the library's threads, one
/// call at a time.
using LogHandler = std::function<void(LogLevel level, const std::string& message)>;

/// One progress report of a long-running task.
struct ProgressEvent {
  std::string label;  // "train", "decode <path>", ...
  std::string unit;   // what is counted: "img", "%", ...
  int64_t done = 0;
  int64_t total = 0;  // 0 = unknown
  double rate = 0;    // units per second
  double elapsed = 0; // seconds
  bool final = false; // the task's last report
  std::string note;   // e.g. the current loss
  std::string line;   // all of the above as one human-readable line
};
using ProgressHandler = std::function<void(const ProgressEvent& event)>;

/// Sets the handler (an empty one drops the messages); returns the previous handler.
LogHandler set_log_handler(LogHandler handler);
ProgressHandler set_progress_handler(ProgressHandler handler);

/// Sends a message / a progress report to the handler, if one is set (used by the library itself).
void log_message(LogLevel level, const std::string& message);
void report_progress(const ProgressEvent& event);

}  // namespace geoloc
