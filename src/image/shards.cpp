// Tar (libarchive) and MessagePack (msgpack-cxx) shards; see shards.hpp for the contract.
#include "geoloc/image/shards.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <glob.h>
#include <sys/stat.h>

#include <algorithm>
#include <limits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <msgpack.hpp>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "geoloc/detail/input_file.hpp"
#include "geoloc/image/manifest.hpp"
#include "geoloc/image/transforms.hpp"

namespace geoloc::image {
namespace {

// Larger members are refused: the decoders take at most 2 GiB, and a damaged size field must not
// make the reader allocate it.
constexpr int64_t kMaxMember = int64_t{1} << 30;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// One sample as stored: its key, its encoded image (when present and asked for) and its JSON text.
struct RawSample {
  std::string key;
  bool has_image = false;
  std::vector<uint8_t> image;
  std::string json;
  bool malformed = false;  // a MessagePack record without a usable id / image
};

class RawReader {
 public:
  virtual ~RawReader() = default;
  /// The next sample in file order; false at the end. `want_image` = false may skip image bytes.
  virtual bool next(RawSample& out, bool want_image) = 0;
};

// ---- tar (WebDataset) ----

class TarReader : public RawReader {
 public:
  explicit TarReader(std::string path) : path_(std::move(path)), a_(archive_read_new()) {
    GEOLOC_CHECK(a_ != nullptr, Error, "libarchive: out of memory");
    archive_read_support_format_tar(a_);
    archive_read_support_filter_gzip(a_);
    if (archive_read_open_filename(a_, path_.c_str(), 1 << 16) != ARCHIVE_OK) {
      // The destructor does not run for a constructor that throws: free the reader here (LeakSanitizer
      // found it leaking for every missing or unreadable shard).
      const std::string what = archive_error_string(a_) ? archive_error_string(a_) : "unknown error";
      archive_read_free(a_);
      throw IoError("shard '" + path_ + "': cannot open: " + what);
    }
  }
  ~TarReader() override { archive_read_free(a_); }

  bool next(RawSample& out, bool want_image) override {
    out = RawSample{};
    if (pending_) {
      out = std::move(*pending_);
      pending_.reset();
    } else if (!read_member(out, want_image)) {
      return false;
    }
    // Members of one sample are consecutive: read until the key changes.
    for (;;) {
      RawSample m;
      if (!read_member(m, want_image)) break;
      if (m.key != out.key) {
        pending_ = std::move(m);
        break;
      }
      if (m.has_image) {
        out.has_image = true;
        out.image = std::move(m.image);
      }
      if (!m.json.empty()) out.json = std::move(m.json);
    }
    ++samples_;
    return true;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    const char* e = archive_error_string(a_);
    throw IoError("shard '" + path_ + "': " + what + " (after " + std::to_string(samples_) + " records" +
                  (last_.empty() ? std::string() : ", last member '" + last_ + "'") + "): " + (e ? e : "unknown error"));
  }

  // One regular member as a one-member sample; false at the end of the archive.
  bool read_member(RawSample& m, bool want_image) {
    if (eof_) return false;
    for (;;) {
      archive_entry* e = nullptr;
      const int r = archive_read_next_header(a_, &e);
      if (r == ARCHIVE_EOF) {
        eof_ = true;
        return false;
      }
      if (r != ARCHIVE_OK && r != ARCHIVE_WARN) fail("damaged or truncated archive");  // RETRY too: no resyncing
      const char* pn = archive_entry_pathname(e);
      const std::string path = pn ? pn : "";
      last_ = path;
      if (archive_entry_filetype(e) != AE_IFREG) continue;
      const size_t slash = path.rfind('/');
      const size_t dot = path.find('.', slash == std::string::npos ? 0 : slash + 1);
      m.key = path.substr(0, dot);
      const std::string ext = dot == std::string::npos ? "" : lower(path.substr(dot + 1));
      const bool image = ext == "jpg" || ext == "jpeg" || ext == "png";
      const bool json = ext == "json";
      const int64_t size = archive_entry_size(e);
      if (!(image || json) || (image && !want_image)) {
        m.has_image = image;
        if (const int k = archive_read_data_skip(a_); k != ARCHIVE_OK && k != ARCHIVE_WARN) fail("cannot skip member '" + path + "'");
        return true;
      }
      if (size < 0 || size > kMaxMember)
        fail("member '" + path + "' has size " + std::to_string(size) + ", over the limit of 1 GiB");
      std::vector<uint8_t> bytes(static_cast<size_t>(size));
      size_t got = 0;
      while (got < bytes.size()) {
        const la_ssize_t n = archive_read_data(a_, bytes.data() + got, bytes.size() - got);
        if (n < 0) fail("cannot read member '" + path + "'");
        if (n == 0) break;
        got += static_cast<size_t>(n);
      }
      if (got != bytes.size())
        fail("member '" + path + "' ends after " + std::to_string(got) + " of " + std::to_string(size) + " bytes");
      if (image) {
        m.has_image = true;
        m.image = std::move(bytes);
      } else {
        m.json.assign(bytes.begin(), bytes.end());
        if (m.json.empty()) m.json = " ";  // present but empty: unreadable, not absent
      }
      return true;
    }
  }

  std::string path_;
  archive* a_;
  std::optional<RawSample> pending_;
  size_t samples_ = 0;
  std::string last_;
  bool eof_ = false;
};

// ---- MessagePack (ECCV 2018: a sequence of maps {"id": ..., "image": <bytes>}) ----

class MsgpackReader : public RawReader {
 public:
  explicit MsgpackReader(std::string path) : path_(std::move(path)), in_(path_, std::ios::binary) {
    GEOLOC_CHECK(in_.good(), IoError, "shard '", path_, "': cannot open for reading");
  }

  bool next(RawSample& out, bool /*want_image: the format has no index to skip with*/) override {
    out = RawSample{};
    msgpack::object_handle oh;
    for (;;) {
      bool got = false;
      try {
        got = unp_.next(oh);
      } catch (const std::exception& e) {
        throw IoError("shard '" + path_ + "': malformed MessagePack after " + std::to_string(records_) +
                      " records (byte " + std::to_string(offset()) + "): " + e.what());
      }
      if (got) break;
      if (eof_) {
        GEOLOC_CHECK(unp_.nonparsed_size() == 0, IoError, "shard '", path_, "': truncated after ", records_,
                     " records (", unp_.nonparsed_size(), " bytes of an unfinished record at the end)");
        return false;
      }
      fill();
    }
    ++records_;
    const msgpack::object& o = oh.get();
    out.key = "record " + std::to_string(records_ - 1);
    if (o.type != msgpack::type::MAP) {
      out.malformed = true;
      return true;
    }
    bool has_id = false;
    for (uint32_t i = 0; i < o.via.map.size; ++i) {
      const msgpack::object& k = o.via.map.ptr[i].key;
      const msgpack::object& v = o.via.map.ptr[i].val;
      if (k.type != msgpack::type::STR) continue;
      const std::string name(k.via.str.ptr, k.via.str.size);
      if (name == "id") {
        if (v.type == msgpack::type::STR) {
          out.key.assign(v.via.str.ptr, v.via.str.size);
          has_id = true;
        } else if (v.type == msgpack::type::POSITIVE_INTEGER) {
          out.key = std::to_string(v.via.u64);
          has_id = true;
        }
      } else if (name == "image") {
        if (v.type == msgpack::type::BIN) {
          out.image.assign(v.via.bin.ptr, v.via.bin.ptr + v.via.bin.size);
          out.has_image = true;
        } else if (v.type == msgpack::type::STR) {
          out.image.assign(v.via.str.ptr, v.via.str.ptr + v.via.str.size);
          out.has_image = true;
        }
      }
    }
    if (!has_id) out.malformed = true;
    return true;
  }

 private:
  size_t offset() const { return read_ - unp_.nonparsed_size(); }
  void fill() {
    constexpr size_t kChunk = 1 << 20;
    unp_.reserve_buffer(kChunk);
    in_.read(unp_.buffer(), static_cast<std::streamsize>(kChunk));
    const auto n = static_cast<size_t>(in_.gcount());
    GEOLOC_CHECK(!in_.bad(), IoError, "shard '", path_, "': read error after ", read_, " bytes");
    unp_.buffer_consumed(n);
    read_ += n;
    if (n < kChunk) eof_ = true;
  }

  std::string path_;
  std::ifstream in_;
  msgpack::unpacker unp_;
  size_t records_ = 0, read_ = 0;
  bool eof_ = false;
};

bool is_tar(const std::string& p) {
  const std::string l = lower(p);
  return ends_with(l, ".tar") || ends_with(l, ".tar.gz") || ends_with(l, ".tgz");
}
bool is_msgpack(const std::string& p) {
  const std::string l = lower(p);
  return ends_with(l, ".msg") || ends_with(l, ".msgpack");
}

std::unique_ptr<RawReader> open_reader(const std::string& path) {
  if (is_tar(path)) return std::make_unique<TarReader>(path);
  return std::make_unique<MsgpackReader>(path);
}

// A number field of a JSON object under one of `names`; nullopt when absent or not a number.
std::optional<double> json_number(const nlohmann::json& j, std::initializer_list<const char*> names) {
  for (const char* n : names) {
    auto it = j.find(n);
    if (it != j.end() && it->is_number()) return it->get<double>();
  }
  return std::nullopt;
}

bool valid_coords(double lat, double lon) {
  return std::isfinite(lat) && std::isfinite(lon) && lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180;
}

std::string shard_name(const std::string& path) { return std::filesystem::path(path).filename().string(); }

void expand_braces(const std::string& s, std::vector<std::string>& out) {
  const size_t open = s.find('{');
  if (open == std::string::npos) {
    out.push_back(s);
    return;
  }
  const size_t close = s.find('}', open);
  GEOLOC_CHECK(close != std::string::npos, ValueError, "shard pattern '", s, "': '{' without '}'");
  const std::string inner = s.substr(open + 1, close - open - 1);
  const size_t dots = inner.find("..");
  GEOLOC_CHECK(dots != std::string::npos, ValueError, "shard pattern '", s, "': expected {first..last}, got {", inner, "}");
  const std::string a = inner.substr(0, dots), b = inner.substr(dots + 2);
  auto number = [&](const std::string& t) {
    GEOLOC_CHECK(!t.empty() && t.size() <= 9 && std::all_of(t.begin(), t.end(), ::isdigit), ValueError,
                 "shard pattern '", s, "': '", t, "' in {", inner, "} is not a number");
    return std::stol(t);
  };
  const long lo = number(a), hi = number(b);
  GEOLOC_CHECK(lo <= hi && hi - lo < 1000000, ValueError, "shard pattern '", s, "': empty or huge range {", inner, "}");
  for (long v = lo; v <= hi; ++v) {
    std::string n = std::to_string(v);
    if (n.size() < a.size()) n.insert(0, a.size() - n.size(), '0');
    expand_braces(s.substr(0, open) + n + s.substr(close + 1), out);
  }
}

}  // namespace

std::vector<std::string> expand_shard_pattern(const std::string& spec) {
  std::vector<std::string> out;
  std::vector<std::string> items;
  // Commas inside braces are not separators (there are none in {a..b}, but keep the split honest).
  std::string cur;
  int depth = 0;
  for (char c : spec) {
    if (c == '{') ++depth;
    if (c == '}') --depth;
    if (c == ',' && depth == 0) {
      items.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  items.push_back(cur);
  for (const auto& item : items) {
    if (item.empty()) continue;
    std::vector<std::string> expanded;
    expand_braces(item, expanded);
    for (const auto& p : expanded) {
      if (p.find_first_of("*?[") != std::string::npos) {
        glob_t g{};
        const int r = glob(p.c_str(), 0, nullptr, &g);  // glob sorts its matches
        std::vector<std::string> found;
        if (r == 0)
          for (size_t i = 0; i < g.gl_pathc; ++i) found.push_back(g.gl_pathv[i]);
        globfree(&g);
        GEOLOC_CHECK(!found.empty(), ValueError, "shard pattern '", p, "' matches no file");
        out.insert(out.end(), found.begin(), found.end());
      } else {
        struct stat st {};
        GEOLOC_CHECK(::stat(p.c_str(), &st) == 0, ValueError, "shard '", p, "' does not exist");
        out.push_back(p);  // (a directory or a FIFO is refused by ShardSet, saying what it is)
      }
    }
  }
  GEOLOC_CHECK(!out.empty(), ValueError, "no shard given ('", spec, "')");
  return out;
}

struct ShardSet::Csv {
  std::unordered_map<std::string, ShardLabel> by_key;
};

namespace {

std::unordered_map<std::string, ShardLabel> read_labels_csv(const std::string& path);

}  // namespace

ShardSet::ShardSet(std::vector<std::string> paths, const std::string& labels_csv, bool require_labels)
    : paths_(std::move(paths)), labels_csv_(require_labels ? labels_csv : std::string()) {
  GEOLOC_CHECK(!paths_.empty(), ValueError, "no shard given");
  for (const auto& p : paths_) {
    // Checked before any reader opens it: opening a FIFO would wait for a writer.
    struct stat st {};
    GEOLOC_CHECK(::stat(p.c_str(), &st) == 0, IoError, "cannot open shard '", p, "': ", std::strerror(errno));
    GEOLOC_CHECK(S_ISREG(st.st_mode), IoError, "shard '", p, "' is ", detail::file_kind(st.st_mode),
                 ", not a regular file");
    GEOLOC_CHECK(is_tar(p) || is_msgpack(p), ValueError, "shard '", p,
                 "': unknown format (expected .tar, .tar.gz, .tgz, .msg or .msgpack)");
    GEOLOC_CHECK(is_tar(p) || !labels_csv_.empty() || !require_labels, ValueError, "shard '", p,
                 "': MessagePack shards hold no coordinates; give the CSV to join them with (--shard-labels)");
  }
  if (!labels_csv_.empty()) {
    csv_ = std::make_unique<Csv>();
    csv_->by_key = read_labels_csv(labels_csv_);
  }
  usable_.resize(paths_.size());
  for (size_t s = 0; s < paths_.size(); ++s) {
    auto reader = open_reader(paths_[s]);
    RawSample r;
    while (reader->next(r, false)) {
      int64_t pos = -1;
      if (r.malformed) {
        ++corrupt_;
      } else if (!r.has_image) {
        ++without_image_;
      } else {
        std::optional<ShardLabel> label;
        bool bad = false;
        if (!require_labels) {
          const double nan = std::numeric_limits<double>::quiet_NaN();
          label = ShardLabel{nan, nan, -1, -1};
        } else if (csv_) {
          if (auto it = csv_->by_key.find(r.key); it != csv_->by_key.end()) label = it->second;
        } else if (!r.json.empty()) {
          try {
            const auto j = nlohmann::json::parse(r.json);
            const auto lat = json_number(j, {"latitude", "lat"});
            const auto lon = json_number(j, {"longitude", "lon", "lng"});
            if (lat && lon && valid_coords(*lat, *lon)) {
              ShardLabel l{*lat, *lon, -1, -1};
              if (auto sc = json_number(j, {"scene"}); sc && *sc >= 0) l.scene = static_cast<int32_t>(*sc);
              if (auto c = json_number(j, {"country"}); c && *c >= 1 && *c <= 999) l.country = static_cast<int32_t>(*c);
              label = l;
            }
          } catch (const nlohmann::json::exception&) {
            bad = true;
          }
        }
        if (bad) {
          ++corrupt_;
        } else if (!label) {
          ++without_label_;
        } else {
          pos = static_cast<int64_t>(labels_.size());
          labels_.push_back(*label);
        }
      }
      usable_[s].push_back(pos);
    }
  }
  GEOLOC_CHECK(!labels_.empty(), ValueError, "the ", paths_.size(), " shard(s) hold no usable record (",
               without_image_, " without an image, ", without_label_, " without coordinates",
               labels_csv_.empty() ? "" : " in " + labels_csv_, ", ", corrupt_, " unreadable)");
}

ShardSet::~ShardSet() = default;

void ShardSet::drop(const std::vector<size_t>& rows) {
  std::vector<char> gone(labels_.size(), 0);
  for (size_t r : rows) {
    GEOLOC_CHECK(r < labels_.size(), ValueError, "ShardSet::drop: row ", r, " >= ", labels_.size());
    gone[r] = 1;
  }
  std::vector<int64_t> remap(labels_.size(), -1);
  std::vector<ShardLabel> kept;
  for (size_t i = 0; i < labels_.size(); ++i)
    if (!gone[i]) {
      remap[i] = static_cast<int64_t>(kept.size());
      kept.push_back(labels_[i]);
    }
  for (auto& shard : usable_)
    for (auto& p : shard)
      if (p >= 0) p = remap[static_cast<size_t>(p)];
  labels_ = std::move(kept);
}

// ---- the stream ----

struct ShardStream::Impl {
  const ShardSet* set = nullptr;
  std::vector<size_t> order;  // shard indices in visiting order
  size_t next_shard = 0;
  size_t shard = 0, raw = 0;  // current shard and raw record position in it
  std::unique_ptr<RawReader> reader;
  bool shuffle = false;
  size_t capacity = 0;
  std::vector<ShardRecord> buffer;
  random::Rng rng{0};

  // The next usable record in shard-visiting order, ignoring the buffer.
  std::optional<ShardRecord> pull() {
    for (;;) {
      if (!reader) {
        if (next_shard >= order.size()) return std::nullopt;
        shard = order[next_shard++];
        raw = 0;
        reader = open_reader(set->paths_[shard]);
      }
      const auto& usable = set->usable_[shard];
      const std::string& path = set->paths_[shard];
      RawSample r;
      if (!reader->next(r, true)) {
        GEOLOC_CHECK(raw == usable.size(), IoError, "shard '", path, "' now holds ", raw, " records but ", usable.size(),
                     " when it was indexed (changed while in use?)");
        reader.reset();
        continue;
      }
      GEOLOC_CHECK(raw < usable.size(), IoError, "shard '", path, "' now holds more than the ", usable.size(),
                   " records it held when it was indexed (changed while in use?)");
      const int64_t pos = usable[raw++];
      if (pos < 0) continue;
      GEOLOC_CHECK(r.has_image && !r.malformed, IoError, "shard '", path, "' record ", raw - 1, " ('", r.key,
                   "') changed since it was indexed");
      const ShardLabel& l = set->labels_[static_cast<size_t>(pos)];
      ShardRecord out;
      out.name = shard_name(path) + ":" + r.key;
      out.bytes = std::move(r.image);
      out.latitude = l.latitude;
      out.longitude = l.longitude;
      out.scene = l.scene;
      out.country = l.country;
      return out;
    }
  }
};

std::unique_ptr<ShardStream> ShardSet::stream(bool shuffle, uint64_t seed, size_t buffer) const {
  auto impl = std::make_unique<ShardStream::Impl>();
  impl->set = this;
  impl->order.resize(paths_.size());
  for (size_t i = 0; i < impl->order.size(); ++i) impl->order[i] = i;
  impl->shuffle = shuffle;
  if (shuffle) {
    // Two independent streams of draws: the shard order, then the buffer's picks.
    random::Rng order_rng(random::mix_seed(seed, 0x5348415244ull));  // "SHARD"
    for (size_t i = impl->order.size(); i > 1; --i) std::swap(impl->order[i - 1], impl->order[random::below(order_rng, i)]);
    impl->rng = random::Rng(random::mix_seed(seed, 0x425546ull));  // "BUF"
    impl->capacity = buffer;
  }
  return std::unique_ptr<ShardStream>(new ShardStream(std::move(impl)));
}

ShardStream::ShardStream(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ShardStream::~ShardStream() = default;

std::optional<ShardRecord> ShardStream::next() {
  Impl& s = *impl_;
  if (!s.shuffle || s.capacity <= 1) return s.pull();
  while (s.buffer.size() < s.capacity) {
    auto r = s.pull();
    if (!r) break;
    s.buffer.push_back(std::move(*r));
  }
  if (s.buffer.empty()) return std::nullopt;
  const size_t j = static_cast<size_t>(random::below(s.rng, s.buffer.size()));
  std::swap(s.buffer[j], s.buffer.back());
  ShardRecord out = std::move(s.buffer.back());
  s.buffer.pop_back();
  return out;
}

namespace {

std::unordered_map<std::string, ShardLabel> read_labels_csv(const std::string& path) {
  std::istringstream in(detail::read_input_file(path, "shard labels file", kMaxManifestBytes));
  const auto rows = parse_csv(in, path);
  GEOLOC_CHECK(!rows.empty(), ValueError, path, ": empty (a header with key, latitude, longitude is needed)");
  int key = -1, lat = -1, lon = -1, scene = -1, country = -1;
  const auto& h = rows[0].fields;
  for (size_t i = 0; i < h.size(); ++i) {
    std::string n = lower(h[i]);
    n.erase(0, n.find_first_not_of(" \t\xEF\xBB\xBF"));
    while (!n.empty() && (n.back() == ' ' || n.back() == '\t' || n.back() == '\r')) n.pop_back();
    const int c = static_cast<int>(i);
    if (n == "key" || n == "id" || n == "img_id" || n == "image_id") key = c;
    else if (n == "latitude" || n == "lat") lat = c;
    else if (n == "longitude" || n == "lon" || n == "lng") lon = c;
    else if (n == "scene") scene = c;
    else if (n == "country") country = c;
  }
  GEOLOC_CHECK(key >= 0 && lat >= 0 && lon >= 0, ValueError, path,
               " line 1: the header needs a key (key, id, img_id or image_id), latitude (or lat) and longitude (or lon, "
               "lng) column");
  std::unordered_map<std::string, ShardLabel> csv;
  auto number = [&](const CsvRecord& r, int col, const char* what) {
    GEOLOC_CHECK(col < static_cast<int>(r.fields.size()), ValueError, path, " line ", r.line, ": missing field '", what, "'");
    const std::string& t = r.fields[static_cast<size_t>(col)];
    char* end = nullptr;
    const double v = std::strtod(t.c_str(), &end);
    GEOLOC_CHECK(!t.empty() && end && *end == 0 && std::isfinite(v), ValueError, path, " line ", r.line, ": ", what, " '", t,
                 "' is not a number");
    return v;
  };
  auto optional_int = [&](const CsvRecord& r, int col, int lo, int hi, const char* what) -> int32_t {
    if (col < 0 || col >= static_cast<int>(r.fields.size()) || r.fields[static_cast<size_t>(col)].empty()) return -1;
    const double v = number(r, col, what);
    if (v == -1) return -1;
    GEOLOC_CHECK(v == std::floor(v) && v >= lo && v <= hi, ValueError, path, " line ", r.line, ": ", what, " '",
                 r.fields[static_cast<size_t>(col)], "' is not an integer in [", lo, ", ", hi, "]");
    return static_cast<int32_t>(v);
  };
  for (size_t i = 1; i < rows.size(); ++i) {
    const CsvRecord& r = rows[i];
    if (r.fields.size() == 1 && r.fields[0].empty()) continue;  // blank line
    GEOLOC_CHECK(key < static_cast<int>(r.fields.size()) && !r.fields[static_cast<size_t>(key)].empty(), ValueError, path,
                 " line ", r.line, ": empty key");
    ShardLabel l;
    l.latitude = number(r, lat, "latitude");
    l.longitude = number(r, lon, "longitude");
    GEOLOC_CHECK(valid_coords(l.latitude, l.longitude), ValueError, path, " line ", r.line, ": coordinates ", l.latitude,
                 ", ", l.longitude, " out of range");
    l.scene = optional_int(r, scene, 0, 1 << 30, "scene");
    l.country = optional_int(r, country, 1, 999, "country");
    const std::string& k = r.fields[static_cast<size_t>(key)];
    GEOLOC_CHECK(csv.emplace(k, l).second, ValueError, path, " line ", r.line, ": key '", k, "' appears twice");
  }
  return csv;
}

}  // namespace

}  // namespace geoloc::image
