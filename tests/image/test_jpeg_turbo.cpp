// libjpeg-turbo decoding: close to stb at full size, DCT scaling close to stb + resize, the guards kept.
#include <doctest/doctest.h>

#include <cmath>

#include "geoloc/image/image.hpp"
#include "geoloc/image/transforms.hpp"

using namespace geoloc;
using namespace geoloc::image;

namespace {

// A photo-like image: smooth gradients plus some texture (flat images would hide decoder differences).
Image scene(int w, int h) {
  Image img(w, h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = img.at(x, y);
      p[0] = static_cast<uint8_t>(255.0 * x / w);
      p[1] = static_cast<uint8_t>(127.5 + 80 * std::sin(x * 0.05) * std::cos(y * 0.07));
      p[2] = static_cast<uint8_t>(255.0 * y / h * 0.5 + 60 * ((x / 16 + y / 16) % 2));
    }
  return img;
}

double mean_abs_diff(const Image& a, const Image& b) {
  REQUIRE(a.width == b.width);
  REQUIRE(a.height == b.height);
  double s = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) s += std::abs(int(a.pixels[i]) - int(b.pixels[i]));
  return s / static_cast<double>(a.pixels.size());
}

DecodeOptions with(DecodeOptions::Jpeg j, int min_size = 0) {
  DecodeOptions o;
  o.jpeg = j;
  o.min_size = min_size;
  return o;
}

}  // namespace

TEST_CASE("libjpeg-turbo at full size decodes within about one level of stb") {
  const auto jpg = encode_jpeg(scene(320, 240), 90);
  const Image turbo = decode_memory(jpg.data(), jpg.size(), "t.jpg", with(DecodeOptions::Jpeg::Turbo));
  const Image stb = decode_memory(jpg.data(), jpg.size(), "t.jpg", with(DecodeOptions::Jpeg::Stb));
  CHECK(turbo.width == 320);
  CHECK(turbo.height == 240);
  const double d = mean_abs_diff(turbo, stb);
  MESSAGE("mean |turbo - stb| at scale 1: " << d);
  CHECK(d < 1.0);
}

TEST_CASE("DCT scaling picks the smallest scale that still covers min_size, close to stb + resize") {
  const auto jpg = encode_jpeg(scene(640, 480), 90);
  struct Case { int min_size, w, h; };
  for (const Case c : {Case{0, 640, 480}, Case{240, 320, 240}, Case{241, 640, 480}, Case{100, 160, 120},
                       Case{60, 80, 60}, Case{1, 80, 60}}) {
    const Image t = decode_memory(jpg.data(), jpg.size(), "t.jpg", with(DecodeOptions::Jpeg::Turbo, c.min_size));
    CHECK(t.width == c.w);
    CHECK(t.height == c.h);
  }
  // What training does with it: shorter side to 64. Compared with a full stb decode resized the same way.
  const Image stb = resize_shorter(decode_memory(jpg.data(), jpg.size(), "t.jpg", with(DecodeOptions::Jpeg::Stb)), 64);
  for (int min_size : {64, 120, 240}) {
    const Image t =
        resize_shorter(decode_memory(jpg.data(), jpg.size(), "t.jpg", with(DecodeOptions::Jpeg::Turbo, min_size)), 64);
    const double d = mean_abs_diff(t, stb);
    MESSAGE("mean |turbo(min_size " << min_size << ") - stb|, both resized to 64: " << d);
    CHECK(d < 2.5);
  }
  // stb ignores min_size (it has no DCT scaling); PNGs are always full size.
  CHECK(decode_memory(jpg.data(), jpg.size(), "t.jpg", with(DecodeOptions::Jpeg::Stb, 60)).width == 640);
  const auto png = encode_png(scene(64, 48));
  CHECK(decode_memory(png.data(), png.size(), "t.png", with(DecodeOptions::Jpeg::Turbo, 8)).width == 64);
}

TEST_CASE("the turbo path keeps the guards: truncation, the pixel limit (on the full size), garbage") {
  const auto jpg = encode_jpeg(scene(200, 100), 90);
  const auto cut = std::vector<uint8_t>(jpg.begin(), jpg.begin() + static_cast<long>(jpg.size() / 2));
  CHECK_THROWS_AS(decode_memory(cut.data(), cut.size(), "cut.jpg", with(DecodeOptions::Jpeg::Turbo)), IoError);
  try {
    decode_memory(cut.data(), cut.size(), "cut.jpg", with(DecodeOptions::Jpeg::Turbo));
  } catch (const IoError& e) {
    CHECK(std::string(e.what()).find("truncated") != std::string::npos);
  }
  DecodeOptions small = with(DecodeOptions::Jpeg::Turbo, 10);
  small.max_pixels = 200 * 100 - 1;  // the 1/8 decode would be small, but the photo is not
  CHECK_THROWS_AS(decode_memory(jpg.data(), jpg.size(), "big.jpg", small), IoError);
  // Scan data replaced by garbage (end marker kept): an error from the decoder, never a crash.
  auto junk = jpg;
  for (size_t i = junk.size() / 3; i < junk.size() - 2; ++i) junk[i] = static_cast<uint8_t>(i * 7919 % 251);
  try {
    const Image img = decode_memory(junk.data(), junk.size(), "junk.jpg", with(DecodeOptions::Jpeg::Turbo));
    CHECK(img.width == 200);  // libjpeg may recover with a warning; the image then has its full size
  } catch (const IoError& e) {
    CHECK(std::string(e.what()).find("junk.jpg") != std::string::npos);
  }
}
