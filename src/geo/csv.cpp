#include "geoloc/geo/csv.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>

#include "geoloc/detail/input_file.hpp"
#include "geoloc/error.hpp"

namespace geoloc::geo {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// Splits one line into `out`, reusing its strings' storage (millions of rows per file).
// Returns false when a quote is left open.
bool split_line(std::string_view line, std::vector<std::string>& out) {
  std::size_t n = 0;
  auto next = [&]() -> std::string& {
    if (n == out.size()) out.emplace_back();
    out[n].clear();
    return out[n++];
  };
  std::size_t i = 0;
  while (true) {
    std::string& field = next();
    while (i < line.size() && line[i] == ' ') ++i;
    if (i < line.size() && line[i] == '"') {
      ++i;
      bool closed = false;
      while (i < line.size()) {
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            field += '"';
            i += 2;
            continue;
          }
          ++i;
          closed = true;
          break;
        }
        field += line[i++];
      }
      if (!closed) return false;
      while (i < line.size() && line[i] != ',') ++i;  // text after the closing quote is ignored
    } else {
      const std::size_t end = std::min(line.find(',', i), line.size());
      field.assign(trim(line.substr(i, end - i)));
      i = end;
    }
    if (i >= line.size()) break;
    ++i;  // the comma
  }
  out.resize(n);
  return true;
}

}  // namespace

void CsvRow::fail(std::string_view what) const { throw IoError(detail::cat(file, " line ", line, ": ", what)); }

double CsvRow::number(std::size_t column, std::string_view name) const {
  if (column >= fields.size())
    fail(detail::cat("has ", fields.size(), " fields, expected a ", name, " in field ", column + 1));
  const std::string_view s = trim(fields[column]);
  double v = 0;
  // from_chars does not take a leading '+', which some writers emit.
  const std::string_view digits = !s.empty() && s.front() == '+' ? s.substr(1) : s;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty() || !std::isfinite(v))
    fail(detail::cat(name, " '", fields[column], "' is not a number"));
  return v;
}

long long CsvRow::integer(std::size_t column, std::string_view name) const {
  if (column >= fields.size())
    fail(detail::cat("has ", fields.size(), " fields, expected a ", name, " in field ", column + 1));
  const std::string_view s = trim(fields[column]);
  long long v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty())
    fail(detail::cat(name, " '", fields[column], "' is not an integer"));
  return v;
}

std::string read_text_file(const std::string& path) {
  return detail::read_input_file(path, "CSV file", kMaxCsvBytes);
}

void for_each_csv_row(const std::string& path, const std::function<void(const CsvRow&)>& visit) {
  const std::string text = read_text_file(path);
  for_each_csv_row(std::string_view(text), std::string_view(path), visit);
}

void for_each_csv_row(std::string_view text, std::string_view name, const std::function<void(const CsvRow&)>& visit) {
  CsvRow row{name, 0, {}};
  std::size_t pos = 0;
  while (pos < text.size()) {
    // A line ends at \n, \r\n or a lone \r (classic Mac OS); trim() drops the \r of \r\n.
    const std::size_t eol = std::min(text.find_first_of("\r\n", pos), text.size());
    const std::string_view line(text.data() + pos, eol - pos);
    pos = eol + 1;
    if (eol < text.size() && text[eol] == '\r' && pos < text.size() && text[pos] == '\n') ++pos;
    ++row.line;
    if (trim(line).empty()) continue;
    if (!split_line(line, row.fields)) row.fail("a quoted field is not closed");
    visit(row);
  }
}

int find_column(const std::vector<std::string>& header, std::string_view name) {
  for (std::size_t i = 0; i < header.size(); ++i) {
    const std::string_view h = trim(header[i]);
    if (std::equal(h.begin(), h.end(), name.begin(), name.end(),
                   [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b)); }))
      return static_cast<int>(i);
  }
  return -1;
}

std::vector<LatLng> parse_points_csv(std::string_view text, const std::string& name) {
  std::vector<LatLng> points;
  int lat_col = -1, lng_col = -1;
  for_each_csv_row(text, name, [&](const CsvRow& row) {
    if (lat_col < 0) {  // the first non-blank line is the header
      lat_col = find_column(row.fields, "latitude");
      lng_col = find_column(row.fields, "longitude");
      if (lat_col < 0 || lng_col < 0) row.fail("the header needs 'latitude' and 'longitude' columns");
      return;
    }
    const LatLng p{row.number(lat_col, "latitude"), row.number(lng_col, "longitude")};
    if (p.lat < -90 || p.lat > 90) row.fail(detail::cat("latitude ", p.lat, " is outside [-90, 90]"));
    if (p.lng < -180 || p.lng > 180) row.fail(detail::cat("longitude ", p.lng, " is outside [-180, 180]"));
    points.push_back(p);
  });
  GEOLOC_CHECK(lat_col >= 0, IoError, name, ": the file is empty (expected a header with latitude and longitude)");
  return points;
}

std::vector<LatLng> read_points_csv(const std::string& path) { return parse_points_csv(read_text_file(path), path); }

}  // namespace geoloc::geo
