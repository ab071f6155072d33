#pragma once
// geoloc predict --manifest M.csv --out preds.jsonl (issue #20, docs/scaling.md): millions of photos in
// bounded memory, one JSON line per manifest row in manifest order, and --resume after an interruption
// without repeating or losing a line.
#include <cstdint>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "geoloc/image/image.hpp"
#include "geoloc/image/manifest.hpp"

namespace geoloc::cli {

/// The rows of a prediction manifest, read as a stream (the file is never held whole): CSV with a
/// header that has an `image` column (case-insensitive; other columns, e.g. latitude and longitude of a
/// training manifest, are ignored). Records are read by image::CsvReader, the training manifests' CSV
/// parser: RFC 4180 quoting ("a, b.jpg", "" for a quote; a quoted field may span lines), LF, CRLF and
/// CR-only line ends, blank lines, a byte-order mark. Relative paths are resolved against the manifest's
/// folder, as in training manifests.
class ManifestStream {
 public:
  /// Opens and reads the header: IoError when unreadable, ValueError without an `image` column.
  explicit ManifestStream(const std::string& path);
  struct Row {
    std::string image;     // as written in the manifest (the JSON line's "image")
    std::string resolved;  // the file to read
    int line = 0;          // 1-based line where the row starts
  };
  /// The next row, or false at the end. ValueError naming the line for a row without an image.
  bool next(Row& row);

 private:
  std::string path_, dir_;
  std::ifstream in_;
  std::unique_ptr<image::CsvReader> csv_;  // over in_
  size_t column_ = 0;
};

/// The --out file of a manifest run: JSON lines appended one batch at a time, each batch written,
/// flushed and synced (fdatasync) before the next is predicted, so an interrupted run leaves complete
/// lines plus at most one torn line at the end.
class JsonlOutput {
 public:
  /// resume = false: `path` must not exist yet (IoError otherwise: nothing is overwritten); it is
  /// created on the first write. resume = true: an existing file is continued: its complete lines are
  /// counted and cut back to a multiple of `align` (the batch: a batch is the unit that is committed,
  /// so the resumed run's batches are the uninterrupted run's), which also drops a torn last line (a
  /// run killed while writing); a missing file starts afresh.
  JsonlOutput(const std::string& path, bool resume, uint64_t align = 1);
  ~JsonlOutput();
  JsonlOutput(const JsonlOutput&) = delete;
  JsonlOutput& operator=(const JsonlOutput&) = delete;
  /// Lines kept when resuming (0 for a new file): the complete lines, rounded down to a multiple of align.
  uint64_t done() const { return done_; }
  /// Complete lines found (done() plus dropped()), and the last of them ("" for none): to check that
  /// the file continues the same manifest.
  uint64_t complete() const { return done_ + dropped_; }
  const std::string& last_line() const { return last_; }
  /// Complete lines that were dropped (those of an unfinished batch), and whether a torn line was cut off.
  uint64_t dropped() const { return dropped_; }
  bool torn() const { return torn_; }
  /// Appends the lines (each gets its '\n'), then flushes and syncs. IoError on failure.
  void write(const std::vector<std::string>& lines);

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t done_ = 0, dropped_ = 0;
  bool torn_ = false;
  std::string last_;
};

/// What predict_manifest needs from the command: the JSON lines of a batch of decoded images (one per
/// image, in order; names[i] is image i's "image" field).
using PredictBatch =
    std::function<std::vector<std::string>(std::vector<image::Image>& images, const std::vector<std::string>& names)>;

struct ManifestRun {
  std::string manifest, out;
  bool resume = false;
  int64_t batch = 64;
  int resize = 256;  // the model's resize: images are decoded (JPEG DCT scaling) and resized to it at once
};

/// The checks of a run made before the model is loaded: --batch, the output's folder, --out existing
/// without resume, the manifest's header.
void check_manifest_run(const ManifestRun& run);

/// Streams the manifest in batches of `batch` rows through `predict` into the --out file. Only one
/// batch of images is held at a time, each already reduced to the model's resize. A row whose image
/// cannot be read or decoded gets the line {"image": ..., "error": ...} (every row has its line, so the
/// line count is the resume point). With resume, after checking that the file's last complete line is
/// for the manifest's row at that place, the file is cut back to whole batches and the rows of those are
/// skipped unread: with the same --batch, the resumed file is the uninterrupted run's byte for byte. Returns the number of
/// rows answered in this run; prints a summary on stderr.
uint64_t predict_manifest(const ManifestRun& run, const PredictBatch& predict);

}  // namespace geoloc::cli
