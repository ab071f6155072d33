// libFuzzer target for the manifest reader (src/image/manifest.cpp): parse_csv and parse_manifest (what
// read_manifest runs on a file's contents) must accept any byte string or refuse it with
// geoloc::ValueError, and every accepted row must satisfy the documented ranges.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>

#include "geoloc/image/manifest.hpp"

namespace {
[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_manifest: %s\n", what);
  std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace geoloc;
  using namespace geoloc::image;
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    std::istringstream in(text);
    const auto recs = parse_csv(in, "fuzz.csv");
    int last = 0;
    for (const auto& r : recs) {
      if (r.line <= last) fail("CSV records out of line order");
      if (r.fields.empty()) fail("a CSV record without fields");
      last = r.line;
    }
  } catch (const ValueError&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unexpected exception from parse_csv: %s\n", e.what());
    std::abort();
  }
  for (const char* base : {"", "/data/set"}) {
    try {
      std::istringstream in(text);
      const Manifest m = parse_manifest(in, "fuzz.csv", base);
      int last = 1;
      for (const auto& e : m.entries) {
        if (e.path.empty()) fail("empty image path accepted");
        if (!(e.latitude >= -90 && e.latitude <= 90) || !(e.longitude >= -180 && e.longitude <= 180))
          fail("coordinate out of range accepted");
        if (e.scene < -1) fail("scene label below -1 accepted");
        if (e.country != -1 && (e.country < 1 || e.country > 999)) fail("country code out of range accepted");
        if (e.line <= last) fail("manifest rows out of line order");
        last = e.line;
      }
    } catch (const ValueError&) {
    } catch (const std::exception& e) {
      std::fprintf(stderr, "unexpected exception from parse_manifest: %s\n", e.what());
      std::abort();
    }
  }
  return 0;
}
