// Decoding/encoding: exact PNG round trips, JPEG closeness, and the guards (truncation, bombs,
// unknown formats, missing files, atomic writes).
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stb_image.h>
#include <stb_image_write.h>
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "geoloc/image/image.hpp"

using namespace geoloc;
using namespace geoloc::image;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("geoloc_image_io_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

Image pattern(int w, int h) {
  Image img(w, h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = img.at(x, y);
      p[0] = static_cast<uint8_t>(x * 7 + y * 3);
      p[1] = static_cast<uint8_t>(x * y + 11);
      p[2] = static_cast<uint8_t>(255 - x * 5);
    }
  return img;
}

// Smooth content, which JPEG represents well (the closeness test should not depend on noise).
Image smooth(int w, int h) {
  Image img(w, h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = img.at(x, y);
      p[0] = static_cast<uint8_t>(128 + 100 * std::sin(x * 0.05));
      p[1] = static_cast<uint8_t>(128 + 100 * std::cos(y * 0.07));
      p[2] = static_cast<uint8_t>((x + y) % 256);
    }
  return img;
}

Image noise(int w, int h, uint32_t seed) {
  std::mt19937 g(seed);
  Image img(w, h);
  for (auto& v : img.pixels) v = static_cast<uint8_t>(g() & 0xFF);
  return img;
}

void write_bytes(const fs::path& p, const std::vector<uint8_t>& b, size_t n) {
  std::ofstream o(p, std::ios::binary);
  o.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(n));
}

uint32_t crc32(const uint8_t* d, size_t n) {
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) {
    c ^= d[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return ~c;
}

void put_be32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("PNG round trip through a file is exact") {
  const fs::path d = temp_dir("png");
  const Image img = pattern(37, 23);
  const std::string path = (d / "a.png").string();
  write_png(path, img);
  const Image back = decode_file(path);
  CHECK(back.width == 37);
  CHECK(back.height == 23);
  CHECK(back == img);
  // In memory too.
  const auto bytes = encode_png(img);
  CHECK(decode_memory(bytes.data(), bytes.size()) == img);
  // Only the target remains: write_file_atomic's temporary was renamed away.
  size_t files = 0;
  for (auto& e : fs::directory_iterator(d)) files += e.is_regular_file();
  CHECK(files == 1);
  fs::remove_all(d);
}

TEST_CASE("greyscale PNG decodes to RGB with equal channels") {
  std::vector<uint8_t> grey(8 * 4);
  for (size_t i = 0; i < grey.size(); ++i) grey[i] = static_cast<uint8_t>(i * 8);
  std::vector<uint8_t> png;
  stbi_write_png_to_func(
      [](void* ctx, void* data, int n) {
        auto* v = static_cast<std::vector<uint8_t>*>(ctx);
        v->insert(v->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + n);
      },
      &png, 8, 4, 1, grey.data(), 8);
  const Image img = decode_memory(png.data(), png.size());
  REQUIRE(img.width == 8);
  for (size_t i = 0; i < grey.size(); ++i) {
    CHECK(img.pixels[3 * i] == grey[i]);
    CHECK(img.pixels[3 * i + 1] == grey[i]);
    CHECK(img.pixels[3 * i + 2] == grey[i]);
  }
}

TEST_CASE("JPEG encoded by stb decodes close to the original") {
  const Image img = smooth(96, 64);
  const auto jpg = encode_jpeg(img, 95);
  const Image back = decode_memory(jpg.data(), jpg.size(), "smooth.jpg");
  REQUIRE(back.width == 96);
  REQUIRE(back.height == 64);
  double sum = 0;
  int worst = 0;
  for (size_t i = 0; i < img.pixels.size(); ++i) {
    const int d = std::abs(int(img.pixels[i]) - int(back.pixels[i]));
    sum += d;
    worst = std::max(worst, d);
  }
  CHECK(sum / img.pixels.size() < 2.5);
  CHECK(worst < 40);
  // Bytes after the end-of-image marker (padding, appended metadata) are tolerated.
  auto padded = jpg;
  padded.insert(padded.end(), {0x00, 0x00, 0x12, 0x34});
  CHECK(decode_memory(padded.data(), padded.size()) == back);
}

TEST_CASE("truncated PNG files are rejected with IoError naming the file") {
  const fs::path d = temp_dir("trunc_png");
  const auto png = encode_png(noise(64, 48, 1));
  for (double frac : {0.1, 0.5, 0.9}) {
    const fs::path p = d / ("cut" + std::to_string(int(frac * 100)) + ".png");
    write_bytes(p, png, static_cast<size_t>(png.size() * frac));
    CAPTURE(frac);
    CHECK_THROWS_AS(decode_file(p.string()), IoError);
    const std::string msg = error_of([&] { decode_file(p.string()); });
    CHECK(msg.find(p.string()) != std::string::npos);
  }
  // Only the 8-byte signature: the header cannot be read.
  write_bytes(d / "sig.png", png, 8);
  CHECK(error_of([&] { decode_file((d / "sig.png").string()); }).find("header") != std::string::npos);
  fs::remove_all(d);
}

TEST_CASE("truncated JPEG files are rejected although stb would decode them") {
  const fs::path d = temp_dir("trunc_jpg");
  const auto jpg = encode_jpeg(noise(64, 64, 2), 90);
  const size_t cut = jpg.size() * 6 / 10;
  // The reason for the end-of-image check: stb fills the missing blocks with grey and succeeds.
  int w = 0, h = 0, c = 0;
  uint8_t* raw = stbi_load_from_memory(jpg.data(), static_cast<int>(cut), &w, &h, &c, 3);
  const std::string stb_alone = raw ? "decoded (silently wrong)" : "failed";
  MESSAGE("stb alone on the truncated JPEG: " << stb_alone);
  stbi_image_free(raw);
  const fs::path p = d / "cut.jpg";
  write_bytes(p, jpg, cut);
  const std::string msg = error_of([&] { decode_file(p.string()); });
  CHECK(msg.find(p.string()) != std::string::npos);
  CHECK(msg.find("truncated") != std::string::npos);
  CHECK_THROWS_AS(decode_file(p.string()), IoError);
  // Cut right before the final FF D9, and inside the header.
  write_bytes(p, jpg, jpg.size() - 2);
  CHECK_THROWS_AS(decode_file(p.string()), IoError);
  write_bytes(p, jpg, 40);
  CHECK_THROWS_AS(decode_file(p.string()), IoError);
  // The intact file decodes.
  write_bytes(p, jpg, jpg.size());
  CHECK(decode_file(p.string()).width == 64);
  fs::remove_all(d);
}

TEST_CASE("a JPEG whose header claims far more pixels than its scan holds is truncated, on both decoders") {
  // A 16x16 JPEG whose frame header is patched to 2000x2000: the scan still ends in FF D9, so the
  // end-of-image check passes; libjpeg then runs out of data ("premature end of data segment") and
  // would fill the rest with grey.
  auto jpg = encode_jpeg(noise(16, 16, 3), 90);
  size_t sof = 2;
  while (!(jpg[sof] == 0xFF && jpg[sof + 1] == 0xC0)) sof += 2 + ((jpg[sof + 2] << 8) | jpg[sof + 3]);
  jpg[sof + 5] = 2000 >> 8, jpg[sof + 6] = 2000 & 0xFF, jpg[sof + 7] = 2000 >> 8, jpg[sof + 8] = 2000 & 0xFF;
  for (const auto decoder : {DecodeOptions::Jpeg::Turbo, DecodeOptions::Jpeg::Stb}) {
    for (const int min_size : {0, 64}) {  // full size and DCT-scaled (1/8)
      CAPTURE(min_size);
      DecodeOptions o;
      o.jpeg = decoder;
      o.min_size = min_size;
      const std::string msg = error_of([&] { decode_memory(jpg.data(), jpg.size(), "liar.jpg", o); });
      CHECK(msg.find("'liar.jpg': truncated JPEG: the header declares 2000x2000 pixels") == 0);
    }
  }
  // The genuine file decodes on both.
  const auto ok = encode_jpeg(noise(16, 16, 3), 90);
  DecodeOptions stb;
  stb.jpeg = DecodeOptions::Jpeg::Stb;
  CHECK(decode_memory(ok.data(), ok.size(), "ok.jpg").width == 16);
  CHECK(decode_memory(ok.data(), ok.size(), "ok.jpg", stb).width == 16);
  // A harmless warning still decodes: stray bytes before the end-of-image marker (libjpeg: "Corrupt JPEG
  // data: 2 extraneous bytes before marker 0xd9"), which some cameras write.
  std::vector<uint8_t> stray(ok.begin(), ok.end() - 2);
  stray.insert(stray.end(), {0x12, 0x34, 0xFF, 0xD9});
  CHECK(decode_memory(stray.data(), stray.size(), "stray.jpg").width == 16);
  CHECK(decode_memory(stray.data(), stray.size(), "stray.jpg", stb).width == 16);
}

TEST_CASE("a path that is not a regular file, or too large to be an image, is refused before reading") {
  const fs::path d = temp_dir("kinds");
  CHECK(error_of([&] { decode_file(d.string()); }) == "image '" + d.string() + "' is a directory, not a regular file");
  REQUIRE(::mkfifo((d / "fifo").c_str(), 0600) == 0);  // must not block waiting for a writer
  CHECK(error_of([&] { decode_file((d / "fifo").string()); }).find("is a FIFO (named pipe), not a regular file") !=
        std::string::npos);
  CHECK(error_of([&] { decode_file("/dev/zero"); }).find("is a character device") != std::string::npos);
  CHECK(error_of([&] { read_file_bytes(d.string()); }).find("is a directory") != std::string::npos);
  // 3 GiB, sparse (nothing on disk): refused from its size, never read
  const std::vector<uint8_t> sig = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  write_bytes(d / "huge.png", sig, sig.size());
  fs::resize_file(d / "huge.png", uint64_t{3} << 30);
  CHECK(error_of([&] { decode_file((d / "huge.png").string()); }).find("is 3.0 GiB, over the limit of 321.2 MiB") !=
        std::string::npos);
  DecodeOptions small;
  small.max_pixels = 100;  // 800 bytes + 16 MiB
  CHECK(max_image_file_bytes(small) == 800 + (uint64_t{16} << 20));
  CHECK(error_of([&] { read_file_bytes((d / "huge.png").string(), 1000); }).find("over the limit of 1000 bytes") !=
        std::string::npos);
  fs::remove_all(d);
}

TEST_CASE("a PNG header claiming 100000x100000 pixels is refused before decoding") {
  auto png = encode_png(pattern(4, 4));
  // IHDR starts at byte 8: length(4) "IHDR"(4) width(4) height(4) ... CRC over type + data.
  REQUIRE(std::string(png.begin() + 12, png.begin() + 16) == "IHDR");
  put_be32(&png[16], 100000);
  put_be32(&png[20], 100000);
  put_be32(&png[29], crc32(&png[12], 17));  // a valid CRC: the guard must not rely on stb skipping it
  // stb itself rejects this one as "too large" (over 2^30 bytes); the message must still name
  // the pixel limit, so the size is read by geoloc, not taken from stbi_info.
  CHECK(probe_memory(png.data(), png.size()) == std::array<int, 2>{100000, 100000});
  const std::string msg = error_of([&] { decode_memory(png.data(), png.size(), "bomb.png"); });
  CHECK(msg.find("bomb.png") != std::string::npos);
  CHECK(msg.find("100000x100000") != std::string::npos);
  CHECK(msg.find("limit of 40000000 pixels") != std::string::npos);
  CHECK_THROWS_AS(decode_memory(png.data(), png.size()), IoError);
}

TEST_CASE("a bomb that stb would try to decode is refused by the pixel limit") {
  auto png = encode_png(pattern(4, 4));
  put_be32(&png[16], 8000);
  put_be32(&png[20], 8000);
  put_be32(&png[29], crc32(&png[12], 17));
  int w = 0, h = 0, c = 0;
  // 64 megapixels: under stb's own ceiling, so without the guard stb would allocate 192 MB.
  REQUIRE(stbi_info_from_memory(png.data(), static_cast<int>(png.size()), &w, &h, &c));
  CHECK(w == 8000);
  CHECK(error_of([&] { decode_memory(png.data(), png.size(), "b.png"); }).find("64000000 pixels, over the limit") !=
        std::string::npos);
  // The same for a JPEG frame header patched to 9000x9000.
  auto jpg = encode_jpeg(pattern(8, 8));
  size_t sof = 2;
  while (!(jpg[sof] == 0xFF && jpg[sof + 1] == 0xC0)) sof += 2 + ((jpg[sof + 2] << 8) | jpg[sof + 3]);
  jpg[sof + 5] = 9000 >> 8;
  jpg[sof + 6] = 9000 & 0xFF;
  jpg[sof + 7] = 9000 >> 8;
  jpg[sof + 8] = 9000 & 0xFF;
  CHECK(probe_memory(jpg.data(), jpg.size()) == std::array<int, 2>{9000, 9000});
  CHECK(error_of([&] { decode_memory(jpg.data(), jpg.size(), "b.jpg"); }).find("limit of 40000000") !=
        std::string::npos);
}

TEST_CASE("the pixel limit is configurable and inclusive") {
  const auto png = encode_png(pattern(20, 20));
  DecodeOptions o;
  o.max_pixels = 399;
  CHECK_THROWS_AS(decode_memory(png.data(), png.size(), "x", o), IoError);
  o.max_pixels = 400;
  CHECK(decode_memory(png.data(), png.size(), "x", o).width == 20);
  const auto jpg = encode_jpeg(pattern(20, 20));
  o.max_pixels = 399;
  CHECK(error_of([&] { decode_memory(jpg.data(), jpg.size(), "x.jpg", o); }).find("max_pixels") != std::string::npos);
}

TEST_CASE("non-images, empty files and missing files give IoError") {
  const fs::path d = temp_dir("bad");
  const std::vector<uint8_t> text = {'h', 'e', 'l', 'l', 'o', ',', 'w', 'o', 'r', 'l', 'd'};
  write_bytes(d / "t.jpg", text, text.size());
  CHECK(error_of([&] { decode_file((d / "t.jpg").string()); }).find("not a JPEG or PNG") != std::string::npos);
  write_bytes(d / "empty.png", text, 0);
  CHECK_THROWS_AS(decode_file((d / "empty.png").string()), IoError);
  const std::string missing = (d / "missing.png").string();
  CHECK(error_of([&] { decode_file(missing); }).find(missing) != std::string::npos);
  CHECK_THROWS_AS(decode_file(missing), IoError);
  // Writing into a folder that does not exist fails cleanly.
  CHECK_THROWS_AS(write_png((d / "no" / "such" / "dir.png").string(), pattern(2, 2)), IoError);
  CHECK_THROWS_AS(encode_png(Image()), ValueError);
  fs::remove_all(d);
}

TEST_CASE("float conversion round trips and clamps") {
  const Image img = pattern(5, 3);
  const FloatImage f = to_float(img);
  CHECK(f.at(1, 2)[0] == doctest::Approx(img.at(1, 2)[0] / 255.0));
  CHECK(from_float(f) == img);
  FloatImage g(1, 1);
  g.pixels = {-0.5f, 2.f, std::nanf("")};
  const Image c = from_float(g);
  CHECK(c.pixels == std::vector<uint8_t>{0, 255, 0});
}

namespace {
// A PNG of the given IHDR size, colour type 2 (RGB, 8 bits), whose one IDAT holds `idat` as it is.
std::vector<uint8_t> png_with_idat(uint32_t w, uint32_t h, const std::vector<uint8_t>& idat) {
  std::vector<uint8_t> out = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  auto chunk = [&](const char* type, const std::vector<uint8_t>& data) {
    const size_t at = out.size();
    out.resize(at + 12 + data.size());
    put_be32(&out[at], static_cast<uint32_t>(data.size()));
    std::memcpy(&out[at + 4], type, 4);
    if (!data.empty()) std::memcpy(&out[at + 8], data.data(), data.size());
    put_be32(&out[at + 8 + data.size()], crc32(&out[at + 4], 4 + data.size()));
  };
  std::vector<uint8_t> ihdr(13, 0);
  put_be32(&ihdr[0], w);
  put_be32(&ihdr[4], h);
  ihdr[8] = 8;
  ihdr[9] = 2;
  chunk("IHDR", ihdr);
  chunk("IDAT", idat);
  chunk("IEND", {});
  return out;
}

std::vector<uint8_t> zlib_compress(const std::vector<uint8_t>& raw) {
  uLongf n = compressBound(static_cast<uLong>(raw.size()));
  std::vector<uint8_t> out(n);
  REQUIRE(compress2(out.data(), &n, raw.data(), static_cast<uLong>(raw.size()), 9) == Z_OK);
  out.resize(n);
  return out;
}
}  // namespace

// Issue #16 (found by fuzz_image): stb_image trusts a PNG chunk's length and grows its buffer to it before
// reading, so a 93-byte file whose IDAT claimed 1.5 GB made it allocate 1.5 GB. Every chunk must now
// lie inside the file, up to IEND, before stb sees the PNG.
TEST_CASE("a PNG chunk claiming more bytes than the file holds is refused before stb allocates") {
  auto png = encode_png(pattern(4, 4));
  size_t idat = 8;
  while (std::memcmp(&png[idat + 4], "IDAT", 4) != 0) idat += 12 + ((png[idat] << 24) | (png[idat + 1] << 16) |
                                                                     (png[idat + 2] << 8) | png[idat + 3]);
  put_be32(&png[idat], 0x5AFFFFFFu);
  const std::string msg = error_of([&] { decode_memory(png.data(), png.size(), "long-chunk.png"); });
  CHECK(msg.find("long-chunk.png") != std::string::npos);
  CHECK(msg.find("past the end of the file") != std::string::npos);
  // No IEND (the file cut right after IDAT): truncated.
  auto cut = encode_png(pattern(4, 4));
  cut.resize(cut.size() - 12);
  CHECK(error_of([&] { decode_memory(cut.data(), cut.size(), "cut.png"); }).find("truncated PNG") != std::string::npos);
  // Bytes after IEND are not read.
  auto tail = encode_png(pattern(4, 4));
  tail.insert(tail.end(), {1, 2, 3, 4, 5});
  CHECK(decode_memory(tail.data(), tail.size(), "tail.png") == pattern(4, 4));
}

// Issue #16: stb inflates a PNG's pixel data into a buffer that grows for as long as the stream does, so
// a 200 kB PNG claiming 1x1 pixels made it allocate 256 MB (and decoded it). The pixel data is now
// inflated and counted first, in a small buffer, against what the header's size needs.
TEST_CASE("a PNG whose pixel data inflates far beyond its header's size is refused") {
  std::vector<uint8_t> raw(1 + 3, 0);  // one scanline of a 1x1 RGB image: filter byte + 3 bytes
  raw.resize(16u << 20, 0);            // ... and 16 MB of zeros after it
  const auto png = png_with_idat(1, 1, zlib_compress(raw));
  CHECK(png.size() < 40000);
  const std::string msg = error_of([&] { decode_memory(png.data(), png.size(), "inflates.png"); });
  CHECK(msg.find("inflates.png") != std::string::npos);
  CHECK(msg.find("more than the 4 bytes") != std::string::npos);
  // Exactly what the header needs, and a little more (tolerated, as libpng does): decoded.
  raw.resize(4);
  raw[1] = 10;
  const auto exact = png_with_idat(1, 1, zlib_compress(raw));
  CHECK(decode_memory(exact.data(), exact.size(), "exact.png").pixels == std::vector<uint8_t>{10, 0, 0});
  raw.resize(1000, 0);
  const auto more = png_with_idat(1, 1, zlib_compress(raw));
  CHECK(decode_memory(more.data(), more.size(), "more.png").width == 1);
  // A corrupt stream is named as such.
  auto bad = zlib_compress(std::vector<uint8_t>(4000, 7));
  for (size_t i = 4; i < bad.size(); ++i) bad[i] ^= 0x5A;
  const auto corrupt = png_with_idat(30, 40, bad);
  CHECK(error_of([&] { decode_memory(corrupt.data(), corrupt.size(), "z.png"); }).find("corrupt PNG pixel data") !=
        std::string::npos);
}

TEST_CASE("interlaced, palette and 16-bit PNGs pass the inflated-size guard") {
  // Each written by hand with the exact amount of filtered scanline data its header needs.
  auto zeros = [](size_t n) { return std::vector<uint8_t>(n, 0); };
  auto with_header = [&](uint32_t w, uint32_t h, uint8_t depth, uint8_t type, uint8_t interlace, size_t raw,
                         bool palette) {
    auto png = png_with_idat(w, h, zlib_compress(zeros(raw)));
    png[24] = depth;
    png[25] = type;
    png[28] = interlace;
    put_be32(&png[29], crc32(&png[12], 17));
    if (palette) {  // a PLTE chunk before IDAT (after IHDR, which ends at byte 33)
      std::vector<uint8_t> plte = {0, 0, 0, 12, 'P', 'L', 'T', 'E', 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0, 0, 0, 0};
      put_be32(&plte[20], crc32(&plte[4], 16));
      png.insert(png.begin() + 33, plte.begin(), plte.end());
    }
    return png;
  };
  // 5x5 Adam7, 8-bit grey: the seven passes are 1x1, 1x1, 2x1, 1x2, 3x1, 2x3 and 5x2 pixels (width x
  // height); each row is a filter byte and the row's pixels.
  const size_t adam7 = 1 * 2 + 1 * 2 + 1 * 3 + 2 * 2 + 1 * 4 + 3 * 3 + 2 * 6;
  const auto inter = with_header(5, 5, 8, 0, 1, adam7, false);
  CHECK(decode_memory(inter.data(), inter.size(), "adam7.png").width == 5);
  const auto pal = with_header(7, 3, 2, 3, 0, 3 * (1 + 2), true);  // 2-bit palette: 7 pixels in 2 bytes
  CHECK(decode_memory(pal.data(), pal.size(), "palette.png").width == 7);
  const auto deep = with_header(3, 2, 16, 6, 0, 2 * (1 + 3 * 8), false);  // 16-bit RGBA
  CHECK(decode_memory(deep.data(), deep.size(), "rgba16.png").height == 2);
}
