// CSV manifest parsing: column order, quoting, relative paths, and bad rows reported by line.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "geoloc/image/manifest.hpp"

using namespace geoloc;
using namespace geoloc::image;
namespace fs = std::filesystem;

namespace {

Manifest parse(const std::string& text, const std::string& base = "/data/set") {
  std::istringstream in(text);
  return parse_manifest(in, "manifest.csv", base);
}

std::string error_of(const std::string& text) {
  try {
    parse(text);
  } catch (const ValueError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("manifest columns in any order, extras ignored, quotes and CRLF tolerated") {
  const Manifest m = parse(
      "notes,Longitude, latitude ,country,image,scene\r\n"
      "\"hello, world\",2.35,48.85,250,paris/a.jpg,3\r\n"
      "\r\n"
      "x,-74.0,40.7,,\"/abs/new york \"\"b\"\".png\",\r\n"
      "y,+151.2,-33.9,036,sydney.jpg,-1\r\n");
  REQUIRE(m.entries.size() == 3);
  const auto& a = m.entries[0];
  CHECK(a.path == "/data/set/paris/a.jpg");
  CHECK(a.latitude == doctest::Approx(48.85));
  CHECK(a.longitude == doctest::Approx(2.35));
  CHECK(a.scene == 3);
  CHECK(a.country == 250);
  CHECK(a.line == 2);
  const auto& b = m.entries[1];
  CHECK(b.path == "/abs/new york \"b\".png");  // absolute paths are kept; "" is a quote
  CHECK(b.scene == -1);
  CHECK(b.country == -1);
  CHECK(b.line == 4);  // the blank line still counts
  CHECK(m.entries[2].country == 36);  // leading zeros of ISO numeric codes
  CHECK(m.entries[2].longitude == doctest::Approx(151.2));
  CHECK(m.entries[2].scene == -1);
}

TEST_CASE("manifest without optional columns, with a quoted field spanning lines") {
  const Manifest m = parse("image,latitude,longitude\n\"multi\nline.jpg\",1,2\nb.jpg,3,4");
  REQUIRE(m.entries.size() == 2);
  CHECK(m.entries[0].path == "/data/set/multi\nline.jpg");
  CHECK(m.entries[0].scene == -1);
  CHECK(m.entries[1].line == 4);  // the record after a two-line field starts on line 4
  CHECK(m.entries[1].latitude == 3);
}

TEST_CASE("bad rows are reported with their line numbers") {
  const std::string head = "image,latitude,longitude,scene,country\n";
  std::string body;
  for (int i = 0; i < 5; ++i) body += "ok" + std::to_string(i) + ".jpg,10,20,1,250\n";
  // This row is line 7 (header = 1, five good rows = 2..6).
  const std::string msg = error_of(head + body + "bad.jpg,95,0,,\n");
  CHECK(msg == "manifest.csv line 7: latitude '95' out of range [-90, 90]");

  CHECK(error_of(head + "a.jpg,nan,0\n").find("line 2: latitude 'nan' is NaN") != std::string::npos);
  CHECK(error_of(head + "a.jpg,1,abc\n").find("line 2: longitude 'abc' is not a number") != std::string::npos);
  CHECK(error_of(head + "a.jpg,1,181\n").find("longitude '181' out of range [-180, 180]") != std::string::npos);
  CHECK(error_of(head + "a.jpg,1\n").find("line 2: missing field 'longitude'") != std::string::npos);
  CHECK(error_of(head + "a.jpg,1,\n").find("line 2: longitude is empty") != std::string::npos);
  CHECK(error_of(head + ",1,2\n").find("line 2: image path is empty") != std::string::npos);
  CHECK(error_of(head + "a.jpg,1,2,x\n").find("scene 'x' is not an integer") != std::string::npos);
  CHECK(error_of(head + "a.jpg,1,2,1,1000\n").find("country '1000' out of range [1, 999]") != std::string::npos);
  CHECK(error_of(head + "a.jpg,1,2,1.5\n").find("scene '1.5' is not an integer") != std::string::npos);
  CHECK(error_of(head + "a.jpg,1e400,2\n").find("latitude '1e400' is not a number") != std::string::npos);

  // Several bad rows: one line, the first in full, then how many more and where.
  const std::string many = error_of(head + "a.jpg,91,0\nb.jpg,0,0\nc.jpg,0,-181\nd.jpg,x,0\n");
  CHECK(many == "manifest.csv line 2: latitude '91' out of range [-90, 90] (and 2 more bad rows: lines 4, 5)");
  CHECK(error_of(head + "a.jpg,91,0\nc.jpg,0,-181\n") ==
        "manifest.csv line 2: latitude '91' out of range [-90, 90] (and 1 more bad row: line 3)");
  std::string lots;
  for (int i = 0; i < 30; ++i) lots += "x.jpg,91,0\n";
  const std::string m30 = error_of(head + lots);
  CHECK(m30.find('\n') == std::string::npos);
  CHECK(m30.find("(and 29 more bad rows: lines 3, 4,") != std::string::npos);
  CHECK(m30.find("21, ...)") != std::string::npos);  // the first 20 line numbers
}

TEST_CASE("CR-only line ends (classic Mac OS) are line ends, not one long row") {
  const Manifest m = parse("image,latitude,longitude\ra.jpg,1,2\r\rb.jpg,3,4\r");
  REQUIRE(m.entries.size() == 2);
  CHECK(m.entries[0].line == 2);
  CHECK(m.entries[1].line == 4);
  CHECK(m.entries[1].longitude == 4);
  CHECK(error_of("image,latitude,longitude\ra.jpg,1,2\rb.jpg,x,4").find("manifest.csv line 3: latitude 'x'") == 0);
  // mixed: CRLF and a quoted field with a lone CR inside
  const Manifest q = parse("image,latitude,longitude\r\n\"a\rb.jpg\",1,2\r\nc.jpg,3,4\n");
  REQUIRE(q.entries.size() == 2);
  CHECK(q.entries[0].path == "/data/set/a\rb.jpg");
  CHECK(q.entries[1].line == 4);
}

TEST_CASE("bad headers and files") {
  CHECK(error_of("").find("empty manifest") != std::string::npos);
  CHECK(error_of("image,lat,lng\na.jpg,1,2\n").find("lacks column(s) 'latitude', 'longitude'") != std::string::npos);
  CHECK(error_of("image,image,latitude,longitude\n").find("appears twice") != std::string::npos);
  CHECK(error_of("image,latitude,longitude\n\"a.jpg,1,2\n").find("line 2: unterminated quoted field") !=
        std::string::npos);
  CHECK_THROWS_AS(read_manifest("/nonexistent/geoloc/manifest.csv"), IoError);
  // Not a regular file: refused before reading, with what it is (a FIFO must not block the open)
  const fs::path d = fs::temp_directory_path() / ("geoloc_manifest_kind_" + std::to_string(::getpid()));
  fs::create_directories(d);
  auto io_error = [](const std::string& path) -> std::string {
    try {
      read_manifest(path);
    } catch (const IoError& e) {
      return e.what();
    }
    return "";
  };
  CHECK(io_error(d.string()) == "manifest '" + d.string() + "' is a directory, not a regular file");
  REQUIRE(::mkfifo((d / "fifo").c_str(), 0600) == 0);
  CHECK(io_error((d / "fifo").string()).find("is a FIFO (named pipe)") != std::string::npos);
  CHECK(io_error("/dev/zero").find("is a character device") != std::string::npos);
  std::ofstream(d / "sparse.csv") << "image,latitude,longitude\n";
  fs::resize_file(d / "sparse.csv", (uint64_t{3} << 30));  // 3 GiB, sparse: refused from its size
  CHECK(io_error((d / "sparse.csv").string()).find("is 3.0 GiB, over the limit of 1.0 GiB") != std::string::npos);
  fs::remove_all(d);
  // A header alone is a valid, empty manifest.
  CHECK(parse("image,latitude,longitude\n").entries.empty());
}

TEST_CASE("read_manifest resolves relative paths against the manifest's folder") {
  const fs::path d = fs::temp_directory_path() / ("geoloc_manifest_" + std::to_string(::getpid()));
  fs::create_directories(d / "sub");
  const fs::path p = d / "sub" / "manifest.csv";
  {
    std::ofstream o(p);
    o << "image,latitude,longitude\nimg/a.jpg,1,2\n../b.png,3,4\n";
  }
  const Manifest m = read_manifest(p.string());
  REQUIRE(m.entries.size() == 2);
  CHECK(m.entries[0].path == (d / "sub" / "img" / "a.jpg").string());
  CHECK(m.entries[1].path == (d / "b.png").string());
  CHECK(m.source == p.string());
  {
    std::ofstream o(p);
    o << "image,latitude,longitude\na.jpg,1,2\nb.jpg,-91,0\n";
  }
  try {
    read_manifest(p.string());
    FAIL("expected ValueError");
  } catch (const ValueError& e) {
    CHECK(std::string(e.what()) == p.string() + " line 3: latitude '-91' out of range [-90, 90]");
  }
  fs::remove_all(d);
}
