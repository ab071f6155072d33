#pragma once
// Small CSV reader shared by the partition and point files: one record per line, RFC 4180
// quoting inside a line ("a, b" and "" escapes), CRLF tolerated, blank lines skipped.
// Quoted fields spanning several lines are not supported (no geoloc file needs them).
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "geoloc/geo/coords.hpp"

namespace geoloc::geo {

/// One record and where it came from, so that every parse error can name file and line.
struct CsvRow {
  std::string_view file;
  std::size_t line = 0;  // 1-based line number in the file
  std::vector<std::string> fields;

  /// Throws IoError "<file> line <line>: <what>".
  [[noreturn]] void fail(std::string_view what) const;
  /// fields[column] as a finite number; `name` names it in the error ("latitude 'abc' is not a number").
  double number(std::size_t column, std::string_view name) const;
  /// fields[column] as an integer.
  long long integer(std::size_t column, std::string_view name) const;
};

/// The largest CSV file for_each_csv_row reads (4 GiB, read whole: about 150 million points).
inline constexpr std::uint64_t kMaxCsvBytes = std::uint64_t{4} << 30;

/// Calls visit(row) for every non-blank line of `path`, in order; LF, CRLF and CR-only line ends.
/// IoError if unreadable, not a regular file (checked before reading, without blocking on a FIFO) or
/// larger than kMaxCsvBytes.
void for_each_csv_row(const std::string& path, const std::function<void(const CsvRow&)>& visit);
/// The same over CSV text in memory; `name` labels the rows' errors (the path, for a file).
void for_each_csv_row(std::string_view text, std::string_view name, const std::function<void(const CsvRow&)>& visit);
/// The whole of a text file; IoError naming it when it cannot be opened or read.
std::string read_text_file(const std::string& path);

/// Position of `name` in a header (case-insensitive, surrounding blanks ignored), or -1.
int find_column(const std::vector<std::string>& header, std::string_view name);

/// Reads the points of a CSV file whose header has `latitude` and `longitude` columns (other
/// columns are ignored). IoError naming the line for a missing column, a non-number or a
/// coordinate out of range.
std::vector<LatLng> read_points_csv(const std::string& path);
/// The same for CSV text in memory; `name` labels errors.
std::vector<LatLng> parse_points_csv(std::string_view text, const std::string& name);

}  // namespace geoloc::geo
