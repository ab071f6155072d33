// The program's log and progress handlers (log.hpp). Calls are serialised, so a handler never runs twice
// at once, and a handler is copied out before it runs, so it may itself set another one.
#include "geoloc/log.hpp"

#include <mutex>

namespace geoloc {
namespace {
std::mutex g_set_mu, g_call_mu;
LogHandler g_log;
ProgressHandler g_progress;
}  // namespace

LogHandler set_log_handler(LogHandler handler) {
  std::lock_guard<std::mutex> lock(g_set_mu);
  std::swap(handler, g_log);
  return handler;
}

ProgressHandler set_progress_handler(ProgressHandler handler) {
  std::lock_guard<std::mutex> lock(g_set_mu);
  std::swap(handler, g_progress);
  return handler;
}

void log_message(LogLevel level, const std::string& message) {
  LogHandler h;
  {
    std::lock_guard<std::mutex> lock(g_set_mu);
    h = g_log;
  }
  if (!h) return;
  std::lock_guard<std::mutex> lock(g_call_mu);
  h(level, message);
}

void report_progress(const ProgressEvent& event) {
  ProgressHandler h;
  {
    std::lock_guard<std::mutex> lock(g_set_mu);
    h = g_progress;
  }
  if (!h) return;
  std::lock_guard<std::mutex> lock(g_call_mu);
  h(event);
}

}  // namespace geoloc
