#pragma once
// The CSV manifest of a photo data set: one row per image with its coordinates and optional labels.
//
//   image,latitude,longitude[,scene][,country]   (header required, any order, extra columns ignored)
//
// Fields may be quoted ("a, b.jpg", "" for a literal quote); LF, CRLF and CR-only (classic Mac OS)
// line ends and blank lines are tolerated.
#include <cstdint>
#include <istream>
#include <string>
#include <vector>

#include "geoloc/error.hpp"

namespace geoloc::image {

struct ManifestEntry {
  std::string path;        // relative paths are resolved against the manifest's folder
  double latitude = 0;     // degrees, [-90, 90]
  double longitude = 0;    // degrees, [-180, 180]
  int32_t scene = -1;      // scene label >= 0, or -1 when unknown / empty
  int32_t country = -1;    // ISO 3166-1 numeric code (1..999), or -1 when unknown / empty
  int line = 0;            // 1-based line of the row in the file, for later error messages
};

struct Manifest {
  std::string source;  // the file it was read from
  std::vector<ManifestEntry> entries;
};

/// The largest manifest read_manifest reads (1 GiB, about 15 million rows; larger sets go in shards).
inline constexpr uint64_t kMaxManifestBytes = uint64_t{1} << 30;

/// Reads and validates a manifest file. Throws IoError when it cannot be read, is not a regular file
/// (checked before reading, without blocking on a FIFO) or is over kMaxManifestBytes, and ValueError
/// for a bad header or bad rows. Bad rows give one line: the first in full, "<file> line <n>:
/// <problem>", then how many more there are and where (the first 20 line numbers), e.g.
/// "m.csv line 7: latitude 'abc' is not a number (and 2 more bad rows: lines 9, 12)".
Manifest read_manifest(const std::string& csv_path);

/// Parses manifest text; `name` labels errors, relative image paths are joined to `base_dir`
/// (empty: kept as written).
Manifest parse_manifest(std::istream& in, const std::string& name, const std::string& base_dir);

/// Splits CSV text into records of fields (RFC 4180 quoting; a quoted field may span lines).
/// Each record carries the 1-based line where it starts. ValueError for an unterminated quote.
struct CsvRecord {
  int line = 0;
  std::vector<std::string> fields;
};
std::vector<CsvRecord> parse_csv(std::istream& in, const std::string& name);

/// The same parser one record at a time, for CSV files too large to hold (geoloc predict --manifest):
/// a UTF-8 byte-order mark is skipped, unquoted fields are trimmed of blanks, blank lines are not records.
/// `in` must outlive the reader.
class CsvReader {
 public:
  CsvReader(std::istream& in, std::string name);
  /// The next record, or false at the end. ValueError naming the line for an unterminated quote or
  /// text after a closing quote.
  bool next(CsvRecord& rec);

 private:
  int get();   // the next byte (0..255) or EOF
  int peek();  // the same without consuming it
  std::streambuf* in_;
  std::string name_;
  std::string pending_;  // bytes read ahead while looking for a byte-order mark
  size_t pending_pos_ = 0;
  int line_ = 1;
};

}  // namespace geoloc::image
