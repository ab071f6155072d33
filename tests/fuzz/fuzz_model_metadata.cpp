// libFuzzer target for a model file's metadata (src/pipeline/model.cpp GeoModel::from_metadata, with the
// architecture and heads parsers of src/nn): the __metadata__ entries "arch" (first line of the input),
// "heads" (second line) and "geoloc.model" (the rest, JSON). Any input must give a model or an
// geoloc::IoError. The network may hold at most 2^20 values here (GeoModel::load passes the file's
// value count), which keeps every run small. An accepted model's metadata() must read back to itself.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "geoloc/pipeline/model.hpp"

namespace {
[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_model_metadata: %s\n", what);
  std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace geoloc;
  using namespace geoloc::pipeline;
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::map<std::string, std::string> meta;
  const size_t a = text.find('\n');
  meta["arch"] = text.substr(0, a);
  if (a != std::string::npos) {
    const size_t h = text.find('\n', a + 1);
    meta["heads"] = text.substr(a + 1, h == std::string::npos ? std::string::npos : h - a - 1);
    if (h != std::string::npos) meta["geoloc.model"] = text.substr(h + 1);
  }
  constexpr int64_t kMaxValues = int64_t{1} << 20;
  try {
    const GeoModel m = GeoModel::from_metadata(meta, "fuzz-model", kMaxValues);
    if (!m.net) fail("a model without a network");
    if (m.net->geo_config().state_size() > kMaxValues) fail("network larger than allowed");
    int64_t values = 0;
    for (const auto& [name, t] : m.net->state()) values += t.numel();
    if (values != m.net->geo_config().state_size()) fail("state_size() differs from the built network");
    for (const auto& p : m.partitions)
      for (std::size_t c = 0; c < p.partition->size(); ++c) {
        const auto q = p.partition->center(c);
        if (!(q.lat >= -90 && q.lat <= 90 && q.lng >= -180 && q.lng <= 180)) fail("invalid class centre accepted");
      }
    const auto written = m.metadata();
    const GeoModel again = GeoModel::from_metadata(written, "again", kMaxValues);
    if (again.metadata() != written) fail("metadata() does not read back to itself");
  } catch (const IoError&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unexpected exception from GeoModel::from_metadata: %s\n", e.what());
    std::abort();
  }
  return 0;
}
