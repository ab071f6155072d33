#include "geoloc/image/manifest.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include "geoloc/detail/input_file.hpp"

namespace geoloc::image {

namespace {

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) --e;
  return s.substr(b, e - b);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

CsvReader::CsvReader(std::istream& in, std::string name) : in_(in.rdbuf()), name_(std::move(name)) {
  GEOLOC_CHECK(in_ != nullptr, ValueError, name_, ": no stream to read");
  if (in_->sgetc() == 0xEF) {  // a UTF-8 byte-order mark written by spreadsheet programs?
    for (int k = 0; k < 3; ++k) {
      const int c = in_->sbumpc();
      if (c == EOF) break;
      pending_ += static_cast<char>(c);
    }
    if (pending_ == "\xEF\xBB\xBF") pending_.clear();
  }
}

int CsvReader::get() {
  if (pending_pos_ < pending_.size()) return static_cast<unsigned char>(pending_[pending_pos_++]);
  return in_->sbumpc();
}

int CsvReader::peek() {
  if (pending_pos_ < pending_.size()) return static_cast<unsigned char>(pending_[pending_pos_]);
  return in_->sgetc();
}

bool CsvReader::next(CsvRecord& rec) {
  rec = CsvRecord{};
  rec.line = line_;
  std::string field;
  bool quoted = false;       // inside quotes
  bool was_quoted = false;   // current field was quoted (keep its spaces)
  bool any = false;          // current record has content
  int quote_line = 0;
  auto end_field = [&] {
    rec.fields.push_back(was_quoted ? field : trim(field));
    field.clear();
    was_quoted = false;
  };
  for (int ci = get(); ci != EOF; ci = get()) {
    const char c = static_cast<char>(ci);
    if (quoted) {
      if (c == '"') {
        if (peek() == '"') {
          field += '"';
          get();
        } else {
          quoted = false;
        }
      } else {
        // A line break inside quotes is part of the field; it still counts for the line numbers.
        if (c == '\n' || (c == '\r' && peek() != '\n')) ++line_;
        field += c;
      }
      continue;
    }
    if (c == '"' && trim(field).empty()) {
      quoted = true;
      was_quoted = true;
      any = true;
      quote_line = line_;
      field.clear();
    } else if (c == ',') {
      any = true;
      end_field();
    } else if (c == '\r' && peek() == '\n') {
      // CRLF: the \n ends the record
    } else if (c == '\n' || c == '\r') {
      // \n, or a lone \r (classic Mac OS line ends, which some spreadsheet exports still write)
      ++line_;
      if (any) {
        end_field();
        return true;
      }
      rec = CsvRecord{};  // a blank line (one empty field) is not a record
      rec.line = line_;
      field.clear();
      was_quoted = false;
    } else {
      if (c != ' ' && c != '\t' && c != '\r') any = true;
      if (was_quoted) {
        // Text after a closing quote: tolerated only as whitespace.
        GEOLOC_CHECK(c == ' ' || c == '\t' || c == '\r', ValueError, name_, " line ", line_,
                     ": unexpected character '", c, "' after a closing quote");
        continue;
      }
      field += c;
    }
  }
  GEOLOC_CHECK(!quoted, ValueError, name_, " line ", quote_line, ": unterminated quoted field");
  if (!any) return false;
  end_field();
  return true;
}

std::vector<CsvRecord> parse_csv(std::istream& in, const std::string& name) {
  CsvReader reader(in, name);
  std::vector<CsvRecord> out;
  for (CsvRecord rec; reader.next(rec);) out.push_back(std::move(rec));
  return out;
}

namespace {

std::optional<double> parse_double(const std::string& s) {
  double v = 0;
  const char* b = s.data();
  const char* e = s.data() + s.size();
  if (b != e && *b == '+') ++b;  // from_chars rejects a leading '+'
  const auto r = std::from_chars(b, e, v);
  if (r.ec != std::errc() || r.ptr != e || b == e) return std::nullopt;
  return v;
}

std::optional<long long> parse_int(const std::string& s) {
  long long v = 0;
  const char* b = s.data();
  const char* e = s.data() + s.size();
  if (b != e && *b == '+') ++b;
  const auto r = std::from_chars(b, e, v);
  if (r.ec != std::errc() || r.ptr != e || b == e) return std::nullopt;
  return v;
}

}  // namespace

Manifest parse_manifest(std::istream& in, const std::string& name, const std::string& base_dir) {
  const std::vector<CsvRecord> recs = parse_csv(in, name);
  GEOLOC_CHECK(!recs.empty(), ValueError, name, ": empty manifest (a header 'image,latitude,longitude' is required)");

  // Header: column name -> index.
  std::map<std::string, size_t> col;
  const CsvRecord& hdr = recs[0];
  for (size_t i = 0; i < hdr.fields.size(); ++i) {
    const std::string key = lower(trim(hdr.fields[i]));
    if (key.empty()) continue;
    GEOLOC_CHECK(!col.count(key), ValueError, name, " line ", hdr.line, ": column '", key, "' appears twice in the header");
    col[key] = i;
  }
  std::string missing;
  for (const char* req : {"image", "latitude", "longitude"})
    if (!col.count(req)) missing += std::string(missing.empty() ? "" : ", ") + "'" + req + "'";
  GEOLOC_CHECK(missing.empty(), ValueError, name, " line ", hdr.line, ": header lacks column(s) ", missing,
               " (required: image, latitude, longitude; optional: scene, country)");
  const size_t c_img = col["image"], c_lat = col["latitude"], c_lng = col["longitude"];
  const std::optional<size_t> c_scene = col.count("scene") ? std::optional<size_t>(col["scene"]) : std::nullopt;
  const std::optional<size_t> c_country = col.count("country") ? std::optional<size_t>(col["country"]) : std::nullopt;

  Manifest m;
  m.source = name;
  m.entries.reserve(recs.size() - 1);
  std::vector<std::string> errors;
  std::vector<int> bad_lines;  // the first kMaxErrors bad rows' lines
  constexpr size_t kMaxErrors = 20;
  size_t n_bad = 0;
  const std::filesystem::path base(base_dir);

  for (size_t r = 1; r < recs.size(); ++r) {
    const CsvRecord& rec = recs[r];
    try {
      auto field = [&](size_t c, const char* what) -> const std::string& {
        GEOLOC_CHECK(c < rec.fields.size(), ValueError, "missing field '", what, "' (row has ", rec.fields.size(),
                     " fields, header has ", hdr.fields.size(), ")");
        return rec.fields[c];
      };
      auto coord = [&](size_t c, const char* what, double lim) {
        const std::string& s = field(c, what);
        GEOLOC_CHECK(!s.empty(), ValueError, what, " is empty");
        const auto v = parse_double(s);
        GEOLOC_CHECK(v.has_value(), ValueError, what, " '", s, "' is not a number");
        GEOLOC_CHECK(!std::isnan(*v), ValueError, what, " '", s, "' is NaN");
        GEOLOC_CHECK(*v >= -lim && *v <= lim, ValueError, what, " '", s, "' out of range [", -lim, ", ", lim, "]");
        return *v;
      };
      auto label = [&](const std::optional<size_t>& c, const char* what, long long lo, long long hi) -> int32_t {
        // A short row that stops before an optional column means "unknown", like an empty field.
        if (!c || *c >= rec.fields.size() || rec.fields[*c].empty()) return -1;
        const std::string& s = rec.fields[*c];
        const auto v = parse_int(s);
        GEOLOC_CHECK(v.has_value(), ValueError, what, " '", s, "' is not an integer");
        if (*v == -1) return -1;  // explicit "unknown"
        GEOLOC_CHECK(*v >= lo && *v <= hi, ValueError, what, " '", s, "' out of range [", lo, ", ", hi,
                     "] (or empty / -1 for unknown)");
        return static_cast<int32_t>(*v);
      };
      ManifestEntry e;
      e.line = rec.line;
      const std::string& p = field(c_img, "image");
      GEOLOC_CHECK(!p.empty(), ValueError, "image path is empty");
      e.latitude = coord(c_lat, "latitude", 90.0);
      e.longitude = coord(c_lng, "longitude", 180.0);
      e.scene = label(c_scene, "scene", 0, INT32_MAX);
      e.country = label(c_country, "country", 1, 999);
      const std::filesystem::path fp(p);
      e.path = (fp.is_absolute() || base_dir.empty()) ? p : (base / fp).lexically_normal().string();
      m.entries.push_back(std::move(e));
    } catch (const ValueError& err) {
      ++n_bad;
      if (errors.empty()) errors.push_back(name + " line " + std::to_string(rec.line) + ": " + err.what());
      if (bad_lines.size() < kMaxErrors) bad_lines.push_back(rec.line);
    }
  }
  if (n_bad > 0) {
    // One line, as every error of the program: the first bad row in full, then where the others are.
    std::string msg = errors.front();
    if (n_bad > 1) {
      msg += " (and " + std::to_string(n_bad - 1) + " more bad row" + (n_bad > 2 ? "s" : "") + ": line";
      msg += n_bad > 2 ? "s " : " ";
      for (size_t k = 1; k < bad_lines.size(); ++k) msg += (k > 1 ? ", " : "") + std::to_string(bad_lines[k]);
      if (n_bad > bad_lines.size()) msg += ", ...";
      msg += ")";
    }
    throw ValueError(msg);
  }
  return m;
}

Manifest read_manifest(const std::string& csv_path) {
  std::istringstream in(detail::read_input_file(csv_path, "manifest", kMaxManifestBytes));
  const std::string base = std::filesystem::path(csv_path).parent_path().string();
  return parse_manifest(in, csv_path, base);
}

}  // namespace geoloc::image
