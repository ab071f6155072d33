// libjpeg-turbo decoding: close to stb at full size, DCT scaling close to stb + resize, the guards kept.
#include <doctest/doctest.h>

#include <turbojpeg.h>

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

namespace {
// The frame header (SOF0..SOF2) of a JPEG rewritten to claim w x h pixels.
void claim_size(std::vector<uint8_t>& jpg, int w, int h) {
  size_t p = 2;
  while (!(jpg[p] == 0xFF && jpg[p + 1] >= 0xC0 && jpg[p + 1] <= 0xC2)) p += 2 + ((jpg[p + 2] << 8) | jpg[p + 3]);
  jpg[p + 5] = static_cast<uint8_t>(h >> 8);
  jpg[p + 6] = static_cast<uint8_t>(h);
  jpg[p + 7] = static_cast<uint8_t>(w >> 8);
  jpg[p + 8] = static_cast<uint8_t>(w);
}

std::string decode_error(const std::vector<uint8_t>& b, const std::string& name, const DecodeOptions& o) {
  try {
    decode_memory(b.data(), b.size(), name, o);
  } catch (const IoError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

// Issue #16: a 1 kB JPEG whose frame header claims 2000x2000 pixels over a 32x32 scan decoded to four
// million grey pixels ("premature end of data segment" was taken as a harmless warning), and stb
// decoded it too. Every decoder path now refuses it, naming the file and libjpeg's reason.
TEST_CASE("a JPEG whose header claims far more pixels than its scan holds is refused on every path") {
  auto jpg = encode_jpeg(scene(32, 32), 80);
  claim_size(jpg, 2000, 2000);
  REQUIRE(probe_memory(jpg.data(), jpg.size()) == std::array<int, 2>{2000, 2000});
  for (const auto& o : {with(DecodeOptions::Jpeg::Turbo), with(DecodeOptions::Jpeg::Turbo, 100),
                        with(DecodeOptions::Jpeg::Stb)}) {
    const std::string msg = decode_error(jpg, "claims.jpg", o);
    CAPTURE(msg);
    CHECK(msg.find("claims.jpg") != std::string::npos);
    CHECK(msg.find("premature end of data segment") != std::string::npos);
  }
  // The same file with its true size still decodes.
  claim_size(jpg, 32, 32);
  CHECK(decode_memory(jpg.data(), jpg.size(), "true.jpg").width == 32);
}

// Issue #16 (found while writing the decoder fuzz target): a progressive JPEG that repeats one 16-byte scan
// thousands of times made libjpeg-turbo go over the whole image once per scan (57 kB at 2048x2048:
// 4.5 s) before the result was refused. Decoding now stops at the first harmful warning, and more
// than 500 scans are refused outright (TJFLAG_LIMITSCANS).
TEST_CASE("a progressive JPEG repeating a scan thousands of times is refused at once") {
  tjhandle tj = tjInitCompress();
  REQUIRE(tj != nullptr);
  const Image img = scene(256, 256);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  REQUIRE(tjCompress2(tj, img.pixels.data(), 256, 0, 256, TJPF_RGB, &buf, &size, TJSAMP_420, 50,
                      TJFLAG_PROGRESSIVE) == 0);
  const std::vector<uint8_t> prog(buf, buf + size);
  tjFree(buf);
  tjDestroy(tj);
  CHECK(decode_memory(prog.data(), prog.size(), "prog.jpg").width == 256);
  // The last scan (from its SOS marker to the end-of-image marker), repeated 3000 times.
  size_t last = 0;
  for (size_t p = 2; p + 1 < prog.size(); ++p)
    if (prog[p] == 0xFF && prog[p + 1] == 0xDA) last = p;
  REQUIRE(last > 0);
  std::vector<uint8_t> bomb(prog.begin(), prog.end() - 2);
  for (int i = 0; i < 3000; ++i) bomb.insert(bomb.end(), prog.begin() + static_cast<long>(last), prog.end() - 2);
  bomb.push_back(0xFF);
  bomb.push_back(0xD9);
  for (const auto& o : {with(DecodeOptions::Jpeg::Turbo), with(DecodeOptions::Jpeg::Stb)}) {
    const std::string msg = decode_error(bomb, "scans.jpg", o);
    CAPTURE(msg);
    CHECK(msg.find("scans.jpg") != std::string::npos);
    CHECK((msg.find("progression") != std::string::npos || msg.find("500 scans") != std::string::npos));
  }
}

// Only the warnings that leave every pixel as the encoder wrote it are accepted: here, bytes between
// the scan and the end-of-image marker ("extraneous bytes before marker 0xd9").
TEST_CASE("a JPEG with stray bytes before its end marker still decodes") {
  const auto jpg = encode_jpeg(scene(40, 24), 85);
  const Image ref = decode_memory(jpg.data(), jpg.size(), "ref.jpg");
  std::vector<uint8_t> padded(jpg.begin(), jpg.end() - 2);
  for (uint8_t b : {0x12, 0x34, 0x56}) padded.push_back(b);
  padded.push_back(0xFF);
  padded.push_back(0xD9);
  CHECK(decode_memory(padded.data(), padded.size(), "padded.jpg") == ref);
  CHECK(decode_memory(padded.data(), padded.size(), "padded.jpg", with(DecodeOptions::Jpeg::Stb)).width == 40);
}
