// geoloc predict --manifest: streaming, ordered, resumable batch prediction (see predict_stream.hpp).
#include "predict_stream.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "geoloc/detail/input_file.hpp"
#include "geoloc/error.hpp"
#include "geoloc/geo/csv.hpp"
#include "geoloc/image/transforms.hpp"

namespace geoloc::cli {

namespace fs = std::filesystem;

// ---------------------------------------------------------------- the manifest, as a stream
ManifestStream::ManifestStream(const std::string& path) : path_(path) {
  // A regular file (not a folder, FIFO or device: refused without blocking); any size, it is streamed.
  { const detail::InputFile checked(path, "manifest", std::numeric_limits<uint64_t>::max()); }
  in_.open(path, std::ios::binary);
  GEOLOC_CHECK(in_.good(), IoError, "cannot read the manifest '", path, "': ", std::strerror(errno));
  dir_ = fs::path(path).parent_path().string();
  csv_ = std::make_unique<image::CsvReader>(in_, path);
  image::CsvRecord header;
  GEOLOC_CHECK(csv_->next(header), ValueError, path, ": empty manifest (a header with an 'image' column is needed)");
  const int column = geo::find_column(header.fields, "image");
  GEOLOC_CHECK(column >= 0, ValueError, path, " line ", header.line, ": the header has no 'image' column");
  column_ = static_cast<size_t>(column);
}

bool ManifestStream::next(Row& row) {
  image::CsvRecord rec;
  if (!csv_->next(rec)) return false;
  const auto& f = rec.fields;
  GEOLOC_CHECK(column_ < f.size() && !f[column_].empty(), ValueError, path_, " line ", rec.line, ": no image path");
  row.image = f[column_];
  row.resolved = fs::path(row.image).is_absolute() || dir_.empty() ? row.image : (fs::path(dir_) / row.image).string();
  row.line = rec.line;
  return true;
}

// ---------------------------------------------------------------- the output
JsonlOutput::JsonlOutput(const std::string& path, bool resume, uint64_t align) : path_(path) {
  GEOLOC_CHECK(align >= 1, ValueError, "JsonlOutput: align must be positive");
  std::error_code ec;
  const bool exists = fs::exists(path, ec);
  GEOLOC_CHECK(resume || !exists, IoError, "'", path,
               "' exists: --resume continues it (after the lines it already has); remove it to start again");
  if (!exists) return;
  fd_ = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  GEOLOC_CHECK(fd_ >= 0, IoError, "cannot open '", path, "' to resume: ", std::strerror(errno));
  // Pass 1: the complete lines and the file's length. Pass 2: where line `keep` ends, and that line.
  std::vector<char> buf(1 << 20);
  const auto scan = [&](const std::function<bool(char, uint64_t)>& visit) {  // visit(byte, offset); false stops
    GEOLOC_CHECK(::lseek(fd_, 0, SEEK_SET) == 0, IoError, "cannot seek in '", path, "'");
    uint64_t pos = 0;
    for (;;) {
      const ssize_t n = ::read(fd_, buf.data(), buf.size());
      GEOLOC_CHECK(n >= 0, IoError, "cannot read '", path, "': ", std::strerror(errno));
      if (n == 0) return pos;
      for (ssize_t i = 0; i < n; ++i, ++pos)
        if (!visit(buf[static_cast<size_t>(i)], pos)) return pos;
    }
  };
  uint64_t complete = 0, end_of_complete = 0;
  std::string current;
  const uint64_t size = scan([&](char c, uint64_t pos) {
    if (c == '\n') {
      ++complete;
      end_of_complete = pos + 1;
      last_ = std::move(current);
      current.clear();
    } else {
      current += c;
    }
    return true;
  });
  torn_ = size > end_of_complete;
  done_ = complete / align * align;
  dropped_ = complete - done_;
  uint64_t keep_end = 0, lines = 0;
  if (done_ > 0)
    scan([&](char c, uint64_t pos) {
      if (c == '\n' && ++lines == done_) {
        keep_end = pos + 1;
        return false;
      }
      return true;
    });
  if (keep_end < size) {  // an unfinished batch (and a torn line): cut off, to be answered again
    GEOLOC_CHECK(::ftruncate(fd_, static_cast<off_t>(keep_end)) == 0, IoError, "cannot cut '", path,
                 "' back to its last whole batch: ", std::strerror(errno));
    GEOLOC_CHECK(::fdatasync(fd_) == 0, IoError, "cannot sync '", path, "': ", std::strerror(errno));
  }
  GEOLOC_CHECK(::lseek(fd_, static_cast<off_t>(keep_end), SEEK_SET) >= 0, IoError, "cannot seek in '", path, "'");
}

JsonlOutput::~JsonlOutput() {
  if (fd_ >= 0) ::close(fd_);
}

void JsonlOutput::write(const std::vector<std::string>& lines) {
  if (fd_ < 0) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    GEOLOC_CHECK(fd_ >= 0, IoError, "cannot create '", path_, "': ", std::strerror(errno));
  }
  std::string chunk;
  for (const auto& l : lines) {
    chunk += l;
    chunk += '\n';
  }
  for (size_t off = 0; off < chunk.size();) {
    const ssize_t n = ::write(fd_, chunk.data() + off, chunk.size() - off);
    if (n < 0 && errno == EINTR) continue;
    GEOLOC_CHECK(n > 0, IoError, "writing '", path_, "' failed: ", std::strerror(errno));
    off += static_cast<size_t>(n);
  }
  GEOLOC_CHECK(::fdatasync(fd_) == 0 || errno == EINVAL, IoError, "cannot sync '", path_, "': ", std::strerror(errno));
}

// ---------------------------------------------------------------- the run
void check_manifest_run(const ManifestRun& run) {
  GEOLOC_CHECK(run.batch >= 1, ValueError, "--batch must be at least 1, got ", run.batch);
  check_output_path(run.out);
  std::error_code ec;
  GEOLOC_CHECK(run.resume || !fs::exists(run.out, ec), IoError, "'", run.out,
               "' exists: --resume continues it (after the lines it already has); remove it to start again");
  ManifestStream rows(run.manifest);  // readable, with an image column
}

uint64_t predict_manifest(const ManifestRun& run, const PredictBatch& predict) {
  GEOLOC_CHECK(run.batch >= 1, ValueError, "--batch must be at least 1, got ", run.batch);
  ManifestStream rows(run.manifest);
  JsonlOutput out(run.out, run.resume, static_cast<uint64_t>(run.batch));
  // Resuming: the file's last complete line must answer the manifest's row at that place (another
  // manifest, or the file of another run, is refused); the rows of the whole batches kept are skipped
  // unread, those of the unfinished batch that was cut off are answered again.
  ManifestStream::Row row;
  std::vector<ManifestStream::Row> again;  // rows done() .. complete()-1
  for (uint64_t i = 0; i < out.complete(); ++i) {
    GEOLOC_CHECK(rows.next(row), ValueError, "'", run.out, "' has ", out.complete(), " lines but the manifest '",
                 run.manifest, "' has only ", i, " rows: it is not the output of this manifest");
    if (i >= out.done()) again.push_back(row);
  }
  if (out.complete() > 0) {
    std::string image;
    try {
      image = nlohmann::json::parse(out.last_line()).at("image").get<std::string>();
    } catch (const nlohmann::json::exception&) {
      throw ValueError("'" + run.out + "': its last complete line is not a prediction with an \"image\"");
    }
    // The line's "image" is the manifest's text with invalid UTF-8 replaced (U+FFFD): compare it so.
    const std::string expected = nlohmann::json::parse(
        nlohmann::json(row.image).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)).get<std::string>();
    GEOLOC_CHECK(image == expected, ValueError, "'", run.out, "' does not continue the manifest '", run.manifest,
                 "': its line ", out.complete(), " is for '", image, "' but row ", out.complete(), " (line ", row.line,
                 ") is '", row.image, "'");
  }
  if (out.complete() > 0 || out.torn())
    std::fprintf(stderr, "geoloc predict: resuming '%s' after %llu lines (%llu lines of an unfinished batch%s cut off)\n",
                 run.out.c_str(), static_cast<unsigned long long>(out.done()),
                 static_cast<unsigned long long>(out.dropped()), out.torn() ? " and a torn line" : "");
  size_t replay = 0;
  const auto next_row = [&](ManifestStream::Row& r) {
    if (replay < again.size()) {
      r = again[replay++];
      return true;
    }
    return rows.next(r);
  };

  image::DecodeOptions decode;
  decode.min_size = run.resize;  // JPEGs decoded at the smallest DCT scale that still suffices
  uint64_t answered = 0, failed = 0;
  for (bool more = true; more;) {
    // One batch: rows in order; an unreadable image keeps its place with an error line.
    std::vector<std::string> names, lines;
    std::vector<image::Image> images;
    std::vector<int> slot;  // per row of the batch: index into images, or -1 with lines[j] its error line
    while (static_cast<int64_t>(slot.size()) < run.batch) {
      if (!next_row(row)) {
        more = false;
        break;
      }
      try {
        image::Image img = image::decode_file(row.resolved, decode);
        if (std::min(img.width, img.height) != run.resize) img = image::resize_shorter(img, run.resize);
        images.push_back(std::move(img));
        names.push_back(row.image);
        slot.push_back(static_cast<int>(images.size()) - 1);
        lines.emplace_back();
      } catch (const IoError& e) {
        ++failed;
        slot.push_back(-1);
        lines.push_back(nlohmann::json{{"image", row.image}, {"error", e.what()}}.dump(
            -1, ' ', false, nlohmann::json::error_handler_t::replace));  // names need not be UTF-8
      }
    }
    if (slot.empty()) break;
    if (!images.empty()) {
      std::vector<std::string> predicted = predict(images, names);
      GEOLOC_CHECK(predicted.size() == images.size(), ValueError, "predict_manifest: ", predicted.size(),
                   " answers for ", images.size(), " images");
      for (size_t j = 0; j < slot.size(); ++j)
        if (slot[j] >= 0) lines[j] = std::move(predicted[static_cast<size_t>(slot[j])]);
    }
    out.write(lines);
    answered += slot.size();
  }
  if (answered == 0) out.write({});  // an empty manifest (or nothing left) still leaves the file
  std::fprintf(stderr, "geoloc predict: %llu rows answered into '%s' (%llu before this run, %llu not readable)\n",
               static_cast<unsigned long long>(answered), run.out.c_str(), static_cast<unsigned long long>(out.done()),
               static_cast<unsigned long long>(failed));
  return answered;
}

}  // namespace geoloc::cli
