// libFuzzer target for the image decoder front end (src/image/image.cpp): any byte string given to
// probe_memory / decode_memory must either decode to an image of the size its header claims (or the
// DCT-scaled size asked for) or be refused with geoloc::IoError. Each input is decoded three ways:
// libjpeg-turbo at full size, libjpeg-turbo with DCT scaling (min_size), and stb_image; PNGs take stb
// in all three. The pixel limit is lowered to 2^22 so that a claimed size costs at most 12 MB.
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "geoloc/image/image.hpp"

namespace {
[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_image: %s\n", what);
  std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace geoloc;
  using namespace geoloc::image;
  std::array<int, 2> dims{0, 0};
  try {
    dims = probe_memory(data, size, "fuzz-input");
    if (dims[0] <= 0 || dims[1] <= 0) fail("probe_memory returned a non-positive size");
  } catch (const IoError&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unexpected exception from probe_memory: %s\n", e.what());
    std::abort();
  }
  for (int mode = 0; mode < 3; ++mode) {
    DecodeOptions o;
    o.max_pixels = int64_t{1} << 22;
    o.min_size = mode == 1 ? 24 : 0;
    o.jpeg = mode == 2 ? DecodeOptions::Jpeg::Stb : DecodeOptions::Jpeg::Turbo;
    try {
      const Image img = decode_memory(data, size, "fuzz-input", o);
      if (dims[0] <= 0) fail("decoded an image that probe_memory refused");
      if (img.width <= 0 || img.height <= 0) fail("decoded an empty image");
      if (img.pixels.size() != static_cast<size_t>(img.width) * img.height * 3) fail("pixel buffer size");
      if (static_cast<int64_t>(dims[0]) * dims[1] > o.max_pixels) fail("decoded past the pixel limit");
      bool size_ok = img.width == dims[0] && img.height == dims[1];
      if (mode == 1)  // DCT scaling: 1/1, 1/2, 1/4 or 1/8, rounded up
        for (int d : {2, 4, 8}) size_ok |= img.width == (dims[0] + d - 1) / d && img.height == (dims[1] + d - 1) / d;
      if (!size_ok) fail("decoded size differs from the header's");
      unsigned sum = 0;  // every byte is read, so that a short buffer shows up under ASan
      for (uint8_t v : img.pixels) sum += v;
      volatile unsigned sink = sum;
      (void)sink;
    } catch (const IoError&) {
    } catch (const std::exception& e) {
      std::fprintf(stderr, "unexpected exception from decode_memory: %s\n", e.what());
      std::abort();
    }
  }
  return 0;
}
