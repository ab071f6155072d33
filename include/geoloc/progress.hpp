#pragma once
// Progress of a long-running task: done/total, rate, ETA and a free-form note, reported to the program's
// progress handler (log.hpp; nothing is printed when none is set) at most every `min_interval` seconds
// (0.1 s when stderr is a terminal, where the geoloc program redraws the line in place), so logs stay
// short.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "geoloc/log.hpp"

namespace geoloc {

class Progress {
 public:
  /// `unit` names what is counted ("img", "views", "steps"); total 0 = unknown.
  Progress(std::string label, int64_t total, std::string unit, bool enabled = true, double min_interval = 2.0)
      : label_(std::move(label)),
        unit_(std::move(unit)),
        total_(total),
        enabled_(enabled),
        tty_(isatty(fileno(stderr)) != 0),
        min_interval_(tty_ ? 0.1 : min_interval),
        start_(clock::now()),
        last_(start_) {}

  /// Reports that `done` units are complete; `note` is appended (e.g. the current loss).
  void update(int64_t done, const std::string& note = "") {
    done_ = done;
    const auto now = clock::now();
    if (!enabled_ || seconds(last_, now) < min_interval_) return;
    last_ = now;
    print(note, false);
  }
  /// Reports the final line (always, when enabled).
  void finish(const std::string& note = "") {
    if (!enabled_) return;
    if (total_ > 0) done_ = total_;
    print(note, true);
  }
  double elapsed() const { return seconds(start_, clock::now()); }
  double rate() const {
    const double e = elapsed();
    return e > 0 ? static_cast<double>(done_) / e : 0.0;
  }

  /// "1:05" or "1:02:05".
  static std::string format_duration(double s) {
    if (!(s >= 0) || s > 360000) return "?";
    const long t = static_cast<long>(s + 0.5);
    char buf[32];
    if (t >= 3600)
      std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else
      std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
    return buf;
  }

 private:
  using clock = std::chrono::steady_clock;
  static double seconds(clock::time_point a, clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  }
  void print(const std::string& note, bool final) {
    const double r = rate();
    std::string eta = final ? "done in " + format_duration(elapsed())
                            : (total_ > 0 && r > 0 ? "ETA " + format_duration((total_ - done_) / r) : "");
    char head[160];
    if (total_ > 0)
      std::snprintf(head, sizeof head, "%s %lld/%lld (%3.0f%%) %.1f %s/s %s", label_.c_str(),
                    static_cast<long long>(done_), static_cast<long long>(total_), 100.0 * done_ / total_, r,
                    unit_.c_str(), eta.c_str());
    else
      std::snprintf(head, sizeof head, "%s %lld %.1f %s/s %s", label_.c_str(), static_cast<long long>(done_), r,
                    unit_.c_str(), eta.c_str());
    std::string line = head;
    if (!note.empty()) line += " | " + note;
    ProgressEvent ev;
    ev.label = label_, ev.unit = unit_, ev.done = done_, ev.total = total_, ev.rate = r, ev.elapsed = elapsed();
    ev.final = final, ev.note = note, ev.line = std::move(line);
    report_progress(ev);
  }

  std::string label_, unit_;
  int64_t total_, done_ = 0;
  bool enabled_, tty_;
  double min_interval_;
  clock::time_point start_, last_;
};

}  // namespace geoloc
