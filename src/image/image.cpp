// Decoding and encoding. stb's implementations live in Debian's libstb.so, so no
// STB_*_IMPLEMENTATION here. stbi_failure_reason() is thread-local in stb_image 2.27, which is what
// lets loader worker threads decode concurrently and still report the right reason. JPEGs go to
// libjpeg-turbo's TurboJPEG API (one handle per thread: a handle is not thread-safe, and creating one
// per image costs ~10 us of allocations).
#include "geoloc/image/image.hpp"

#include <stb_image.h>
#include <stb_image_write.h>
#include <turbojpeg.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>

#include "geoloc/atomic_file.hpp"
#include "geoloc/detail/input_file.hpp"

namespace geoloc::image {

Image::Image(int w, int h) : width(w), height(h) {
  GEOLOC_CHECK(w >= 0 && h >= 0, ValueError, "image size ", w, "x", h, " is negative");
  pixels.assign(static_cast<size_t>(w) * h * 3, 0);
}

FloatImage::FloatImage(int w, int h) : width(w), height(h) {
  GEOLOC_CHECK(w >= 0 && h >= 0, ValueError, "image size ", w, "x", h, " is negative");
  pixels.assign(static_cast<size_t>(w) * h * 3, 0.f);
}

namespace {

enum class Format { Jpeg, Png, Unknown };

Format sniff(const uint8_t* d, size_t n) {
  if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return Format::Jpeg;
  static const uint8_t png[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  if (n >= 8 && std::memcmp(d, png, 8) == 0) return Format::Png;
  return Format::Unknown;
}

// Offset of the first start-of-scan marker (FF DA), found by walking the segment lengths from SOI,
// or npos. Walking (instead of searching) matters: an EXIF thumbnail inside APP1 carries its own
// FF D9, which must not be mistaken for the main image's end.
size_t jpeg_first_sos(const uint8_t* d, size_t n) {
  size_t p = 2;
  while (p + 4 <= n) {
    if (d[p] != 0xFF) return std::string::npos;
    const uint8_t m = d[p + 1];
    if (m == 0xFF) { ++p; continue; }  // fill byte before a marker
    if (m == 0xDA) return p;
    if (m == 0x01 || (m >= 0xD0 && m <= 0xD8)) { p += 2; continue; }  // markers without a length
    const size_t len = (static_cast<size_t>(d[p + 2]) << 8) | d[p + 3];
    if (len < 2) return std::string::npos;
    p += 2 + len;
  }
  return std::string::npos;
}

// stb_image decodes a JPEG cut short "successfully", filling the missing blocks with grey, so a
// truncated download would silently become a training sample. Entropy-coded data byte-stuffs every
// FF, so after the first SOS the only FF D9 is the end-of-image marker; trailing bytes after it
// (padding, appended metadata) are allowed.
bool jpeg_complete(const uint8_t* d, size_t n) {
  const size_t sos = jpeg_first_sos(d, n);
  if (sos == std::string::npos) return false;
  for (size_t p = n - 1; p > sos + 2; --p)
    if (d[p] == 0xD9 && d[p - 1] == 0xFF) return true;
  return false;
}

// PNG: IHDR must be the first chunk, so width and height sit at fixed offsets 16 and 20.
std::array<int, 2> png_size(const uint8_t* d, size_t n) {
  if (n < 24 || std::memcmp(d + 12, "IHDR", 4) != 0) return {0, 0};
  auto be32 = [&](size_t p) {
    return (uint32_t(d[p]) << 24) | (uint32_t(d[p + 1]) << 16) | (uint32_t(d[p + 2]) << 8) | uint32_t(d[p + 3]);
  };
  const uint32_t w = be32(16), h = be32(20);
  if (w == 0 || h == 0 || w > 0x7FFFFFFFu || h > 0x7FFFFFFFu) return {0, 0};
  return {static_cast<int>(w), static_cast<int>(h)};
}

// JPEG: the first start-of-frame marker (SOF0..SOF15 except DHT C4, JPG C8 and DAC CC) holds
// precision(1) height(2) width(2) after its length.
std::array<int, 2> jpeg_size(const uint8_t* d, size_t n) {
  size_t p = 2;
  while (p + 4 <= n) {
    if (d[p] != 0xFF) return {0, 0};
    const uint8_t m = d[p + 1];
    if (m == 0xFF) { ++p; continue; }
    if (m == 0x01 || (m >= 0xD0 && m <= 0xD8)) { p += 2; continue; }
    if (m == 0xD9 || m == 0xDA) return {0, 0};  // image end or scan data before any frame header
    const size_t len = (static_cast<size_t>(d[p + 2]) << 8) | d[p + 3];
    if (len < 2) return {0, 0};
    if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
      if (p + 9 > n || len < 7) return {0, 0};
      const int h = (d[p + 5] << 8) | d[p + 6];
      const int w = (d[p + 7] << 8) | d[p + 8];
      return {w, h};  // h == 0 (height defined later by DNL) is rejected by the caller
    }
    p += 2 + len;
  }
  return {0, 0};
}

// stb_image trusts a PNG's chunk lengths and its compressed stream: an IDAT chunk that claims 2 GB
// makes it allocate 2 GB for a file of 100 bytes, and it inflates the pixel data into a buffer that
// grows for as long as the stream goes on (a 200 kB file claiming 1x1 pixels took 256 MB). So before
// stb sees a PNG: every chunk must lie inside the file, up to IEND, and the pixel data must inflate to
// no more than the header's size needs (inflated here, counted in a small buffer, then dropped).
uint32_t be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

// Bytes of filtered scanlines a w x h PNG of this type needs (Adam7: the seven passes), or 0 when the
// header's bit depth / colour type combination is invalid (stb refuses those itself).
uint64_t png_raw_size(uint64_t w, uint64_t h, int depth, int color_type, bool interlaced) {
  int channels = 0;
  switch (color_type) {
    case 0: channels = 1; break;
    case 2: channels = 3; break;
    case 3: channels = 1; break;
    case 4: channels = 2; break;
    case 6: channels = 4; break;
    default: return 0;
  }
  if (depth != 1 && depth != 2 && depth != 4 && depth != 8 && depth != 16) return 0;
  const uint64_t bpp = static_cast<uint64_t>(channels) * depth;
  auto rows = [&](uint64_t pw, uint64_t ph) { return pw && ph ? ph * (1 + (pw * bpp + 7) / 8) : 0; };
  if (!interlaced) return rows(w, h);
  static const int kPass[7][4] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4},
                                  {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}};
  uint64_t n = 0;
  for (const auto& q : kPass) {
    const uint64_t pw = w > static_cast<uint64_t>(q[0]) ? (w - q[0] + q[2] - 1) / q[2] : 0;
    const uint64_t ph = h > static_cast<uint64_t>(q[1]) ? (h - q[1] + q[3] - 1) / q[3] : 0;
    n += rows(pw, ph);
  }
  return n;
}

void png_check(const uint8_t* d, size_t n, const std::string& name, int w, int h) {
  std::vector<std::pair<size_t, size_t>> idat;  // (offset, length) of each IDAT chunk's data
  bool end = false;
  for (size_t p = 8; !end;) {
    GEOLOC_CHECK(n - p >= 12, IoError, "'", name, "': truncated PNG (no IEND chunk; ", n, " bytes)");
    const uint32_t len = be32(d + p);
    const char type[5] = {static_cast<char>(d[p + 4]), static_cast<char>(d[p + 5]), static_cast<char>(d[p + 6]),
                          static_cast<char>(d[p + 7]), 0};
    GEOLOC_CHECK(len <= n - p - 12, IoError, "'", name, "': truncated or corrupt PNG (a chunk at byte ", p,
                 " claims ", len, " bytes, past the end of the file's ", n, ")");
    if (std::memcmp(type, "IDAT", 4) == 0) idat.emplace_back(p + 8, len);
    end = std::memcmp(type, "IEND", 4) == 0;
    p += 12 + static_cast<size_t>(len);
  }
  GEOLOC_CHECK(!idat.empty(), IoError, "'", name, "': PNG without pixel data (no IDAT chunk)");
  const uint64_t need = png_raw_size(static_cast<uint64_t>(w), static_cast<uint64_t>(h), d[24], d[25], d[28] == 1);
  if (need == 0) return;  // an invalid header: stb names the problem
  // A little more than needed is tolerated (libpng accepts it with a warning); stb ignores the excess.
  const uint64_t limit = need + 65536;
  z_stream z{};
  GEOLOC_CHECK(inflateInit(&z) == Z_OK, Error, "zlib: inflateInit failed");
  std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&z, inflateEnd);
  // 64 kB of output at a time: with less than zlib's 32 kB window it copies every byte once more (16 kB
  // took 20% longer). The check costs one inflate, about a third of stb's own PNG decode.
  const std::unique_ptr<uint8_t[]> out(new uint8_t[65536]);
  uint64_t total = 0;
  int rc = Z_OK;
  for (size_t i = 0; i < idat.size() && rc != Z_STREAM_END; ++i) {
    z.next_in = const_cast<Bytef*>(d + idat[i].first);
    z.avail_in = static_cast<uInt>(idat[i].second);
    while (z.avail_in > 0 && rc != Z_STREAM_END) {
      z.next_out = out.get();
      z.avail_out = 65536;
      rc = inflate(&z, Z_NO_FLUSH);
      GEOLOC_CHECK(rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR, IoError, "'", name,
                   "': corrupt PNG pixel data (zlib: ", z.msg ? z.msg : "error", ")");
      total += 65536 - z.avail_out;
      GEOLOC_CHECK(total <= limit, IoError, "'", name, "': the PNG's pixel data inflates to more than the ", need,
                   " bytes its header's ", w, "x", h, " needs (decompression bomb or corrupt file)");
      if (rc == Z_BUF_ERROR && z.avail_out > 0) break;  // no progress possible with this input
    }
  }
}

const char* stb_reason() {
  const char* r = stbi_failure_reason();
  return r ? r : "unknown error";
}

Image decode_stb(const uint8_t* data, size_t size, const std::string& name, int w, int h) {
  int dw = 0, dh = 0, comp = 0;
  std::unique_ptr<uint8_t, void (*)(void*)> px(
      stbi_load_from_memory(data, static_cast<int>(size), &dw, &dh, &comp, 3), stbi_image_free);
  GEOLOC_CHECK(px != nullptr, IoError, "'", name, "': cannot decode image: ", stb_reason());
  GEOLOC_CHECK(dw == w && dh == h, IoError, "'", name, "': decoded size ", dw, "x", dh,
               " differs from the header's ", w, "x", h);
  Image img;
  img.width = dw;
  img.height = dh;
  img.pixels.assign(px.get(), px.get() + static_cast<size_t>(dw) * dh * 3);
  return img;
}

tjhandle turbo_handle() {
  struct Handle {
    tjhandle h = tjInitDecompress();
    ~Handle() {
      if (h) tjDestroy(h);
    }
  };
  thread_local Handle handle;
  GEOLOC_CHECK(handle.h != nullptr, Error, "libjpeg-turbo: cannot create a decompressor: ", tjGetErrorStr2(nullptr));
  return handle.h;
}

// The scale 1/d (d = 1, 2, 4, 8) of the smallest DCT-scaled size whose shorter side is >= min_size;
// TJSCALED rounds up, as libjpeg's output dimensions do.
int dct_denominator(int w, int h, int min_size) {
  if (min_size <= 0) return 1;
  const int shorter = std::min(w, h);
  int best = 1;
  for (int d : {2, 4, 8})
    if ((shorter + d - 1) / d >= min_size) best = d;
  return best;
}

// libjpeg-turbo reports recoverable problems as warnings and decodes on. Most of them mean that pixels
// are missing or made up: "premature end of data segment" is a scan that stops before the frame is
// filled (a header claiming 4000x4000 pixels over a 64x64 scan decodes to 16 million grey pixels),
// "bad Huffman code" and a missing restart marker are corrupt entropy-coded data. Those are refused.
// The warnings below leave every pixel as the encoder wrote it (bytes between segments, unknown version
// fields, a damaged ICC profile, which is not used, SOS fields a sequential decoder ignores) and occur
// in real photos. TurboJPEG keeps only the first warning's text (libjpeg's jerror.h has them all).
bool benign_jpeg_warning(const char* msg) {
  static const char* const kBenign[] = {"extraneous bytes before marker", "unknown JFIF revision",
                                        "Unknown Adobe color transform", "bad ICC marker",
                                        "Invalid SOS parameters for sequential JPEG"};
  for (const char* b : kBenign)
    if (std::strstr(msg, b)) return true;
  return false;
}

// Decodes into `out` (ow x oh, the DCT-scaled size, pixel format pf) a JPEG whose frame is w x h; IoError
// for a fatal error or a warning that means the pixels are not the encoder's ("truncated" when the scan
// data ends before the frame is filled). The first attempt stops at the first warning, so that a harmful
// one costs no more time: a progressive JPEG that repeats one tiny scan thousands of times makes
// libjpeg-turbo go over the whole image once per scan (57 kB, 2048x2048: 4.5 s), warning about the
// repetition at the second. Only after a benign warning is the image decoded to the end.
// TJFLAG_LIMITSCANS refuses more than 500 scans in any case (libjpeg-turbo's guard for this attack).
void turbo_decompress(tjhandle tj, const uint8_t* data, size_t size, const std::string& name, int w, int h,
                      uint8_t* out, int ow, int oh, int pf) {
  for (const int flags : {TJFLAG_LIMITSCANS | TJFLAG_STOPONWARNING, TJFLAG_LIMITSCANS}) {
    if (tjDecompress2(tj, data, static_cast<unsigned long>(size), out, ow, 0, oh, pf, flags) == 0) return;
    const std::string msg = tjGetErrorStr2(tj);
    const bool warning = tjGetErrorCode(tj) == TJERR_WARNING;
    if (warning && msg.find("remature end") != std::string::npos)
      throw IoError(detail::cat("'", name, "': truncated JPEG: the header declares ", w, "x", h,
                                " pixels but the scan data ends before they are all coded (", msg, ")"));
    if (!warning || !benign_jpeg_warning(msg.c_str())) throw IoError("'" + name + "': cannot decode JPEG: " + msg);
    if (!(flags & TJFLAG_STOPONWARNING)) return;  // decoded to the end; the first warning was benign
  }
}

// nullopt: libjpeg-turbo cannot produce RGB from this JPEG's colour space (CMYK / YCCK); stb can, after
// the scan was checked here (decoded at 1/8 scale as CMYK), since stb fills a short or corrupt scan
// with grey and reports success. With validate_only, the JPEG is only checked (at 1/8 scale): stb
// decodes it.
std::optional<Image> decode_turbo(const uint8_t* data, size_t size, const std::string& name, int w, int h,
                                  int min_size, bool validate_only = false) {
  tjhandle tj = turbo_handle();
  int tw = 0, th = 0, subsamp = 0, colorspace = 0;
  GEOLOC_CHECK(tjDecompressHeader3(tj, data, static_cast<unsigned long>(size), &tw, &th, &subsamp, &colorspace) == 0,
               IoError, "'", name, "': cannot read the JPEG header: ", tjGetErrorStr2(tj));
  GEOLOC_CHECK(tw == w && th == h, IoError, "'", name, "': libjpeg-turbo reads ", tw, "x", th,
               " but the frame header says ", w, "x", h);
  const bool cmyk = colorspace == TJCS_CMYK || colorspace == TJCS_YCCK;
  if (cmyk || validate_only) {
    const int vw = (w + 7) / 8, vh = (h + 7) / 8, pf = cmyk ? TJPF_CMYK : TJPF_RGB;
    std::vector<uint8_t> check(static_cast<size_t>(vw) * vh * tjPixelSize[pf]);
    turbo_decompress(tj, data, size, name, w, h, check.data(), vw, vh, pf);
    return std::nullopt;
  }
  const int d = dct_denominator(w, h, min_size);
  Image img;
  img.width = (w + d - 1) / d;
  img.height = (h + d - 1) / d;
  img.pixels.resize(static_cast<size_t>(img.width) * img.height * 3);
  // Accurate integer IDCT and fancy upsampling (the defaults): what stb computes too, so the two
  // agree to about one level per pixel. Truncation was ruled out before (jpeg_complete).
  turbo_decompress(tj, data, size, name, w, h, img.pixels.data(), img.width, img.height, TJPF_RGB);
  return img;
}

}  // namespace

std::array<int, 2> probe_memory(const uint8_t* data, size_t size, const std::string& name) {
  GEOLOC_CHECK(data != nullptr || size == 0, ValueError, "'", name, "': null buffer");
  GEOLOC_CHECK(size <= static_cast<size_t>(INT32_MAX), IoError, "'", name, "': ", size,
               " bytes is too large for the decoder");
  const Format f = sniff(data, size);
  GEOLOC_CHECK(f != Format::Unknown, IoError, "'", name, "' is not a JPEG or PNG image (", size,
               " bytes; unrecognised signature)");
  // The size is read here rather than with stbi_info: stb refuses some huge headers itself with
  // a vague "too large", and the caller should learn that the pixel limit is what stopped it.
  const auto dims = f == Format::Png ? png_size(data, size) : jpeg_size(data, size);
  GEOLOC_CHECK(dims[0] > 0 && dims[1] > 0, IoError, "'", name, "': cannot read the image header (",
               f == Format::Png ? "PNG without a valid IHDR" : "JPEG without a frame header", "; truncated or corrupt)");
  return dims;
}

Image decode_memory(const uint8_t* data, size_t size, const std::string& name, const DecodeOptions& options) {
  const auto [w, h] = probe_memory(data, size, name);
  // Checked before stbi_load allocates anything: the header is all an attacker controls.
  GEOLOC_CHECK(static_cast<int64_t>(w) * h <= options.max_pixels, IoError, "'", name, "': header claims ", w,
               "x", h, " = ", static_cast<int64_t>(w) * h, " pixels, over the limit of ", options.max_pixels,
               " pixels (max_pixels; possible decompression bomb)");
  if (sniff(data, size) == Format::Jpeg)
    GEOLOC_CHECK(jpeg_complete(data, size), IoError, "'", name,
                 "': truncated or corrupt JPEG (no end-of-image marker after the scan data)");
  else
    png_check(data, size, name, w, h);
  if (sniff(data, size) == Format::Jpeg)  // with stb, only checked by libjpeg-turbo (see decode_turbo)
    if (auto img = decode_turbo(data, size, name, w, h, options.min_size, options.jpeg == DecodeOptions::Jpeg::Stb))
      return std::move(*img);
  return decode_stb(data, size, name, w, h);
}

std::vector<uint8_t> read_file_bytes(const std::string& path, uint64_t max_bytes) {
  const detail::InputFile f(path, "file", max_bytes);
  std::vector<uint8_t> bytes;
  f.read_all(bytes);
  return bytes;
}

uint64_t max_image_file_bytes(const DecodeOptions& options) {
  const uint64_t pixels = options.max_pixels > 0 ? static_cast<uint64_t>(options.max_pixels) : 0;
  return std::min<uint64_t>(pixels, UINT64_MAX / 16) * 8 + (uint64_t{16} << 20);
}

Image decode_file(const std::string& path, const DecodeOptions& options) {
  // Whole-file read, then decode from memory: the JPEG completeness check needs the tail anyway,
  // and one read is faster than stb's small fread calls.
  const detail::InputFile f(path, "image", max_image_file_bytes(options));
  std::vector<uint8_t> bytes;
  f.read_all(bytes);
  return decode_memory(bytes.data(), bytes.size(), path, options);
}

namespace {
void append_bytes(void* ctx, void* data, int size) {
  auto* out = static_cast<std::vector<uint8_t>*>(ctx);
  const auto* p = static_cast<const uint8_t*>(data);
  out->insert(out->end(), p, p + size);
}
void check_encodable(const Image& img, const char* what) {
  GEOLOC_CHECK(img.width > 0 && img.height > 0, ValueError, "cannot encode an empty ", img.width, "x",
               img.height, " image as ", what);
  GEOLOC_CHECK(img.pixels.size() == static_cast<size_t>(img.width) * img.height * 3, ShapeError, "image ",
               img.width, "x", img.height, " has ", img.pixels.size(), " bytes, expected ",
               static_cast<size_t>(img.width) * img.height * 3);
}
}  // namespace

std::vector<uint8_t> encode_png(const Image& img) {
  check_encodable(img, "PNG");
  std::vector<uint8_t> out;
  GEOLOC_CHECK(stbi_write_png_to_func(append_bytes, &out, img.width, img.height, 3, img.pixels.data(),
                                      img.width * 3),
               IoError, "PNG encoding of a ", img.width, "x", img.height, " image failed");
  return out;
}

std::vector<uint8_t> encode_jpeg(const Image& img, int quality) {
  check_encodable(img, "JPEG");
  GEOLOC_CHECK(quality >= 1 && quality <= 100, ValueError, "JPEG quality ", quality, " is outside [1, 100]");
  std::vector<uint8_t> out;
  GEOLOC_CHECK(stbi_write_jpg_to_func(append_bytes, &out, img.width, img.height, 3, img.pixels.data(), quality),
               IoError, "JPEG encoding of a ", img.width, "x", img.height, " image failed");
  return out;
}

void write_png(const std::string& path, const Image& img) {
  const std::vector<uint8_t> bytes = encode_png(img);
  write_file_atomic(path, [&](std::ostream& os) {
    os.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  });
}

FloatImage to_float(const Image& img) {
  FloatImage f;
  f.width = img.width;
  f.height = img.height;
  f.pixels.resize(img.pixels.size());
  constexpr float k = 1.f / 255.f;
  for (size_t i = 0; i < img.pixels.size(); ++i) f.pixels[i] = img.pixels[i] * k;
  return f;
}

Image from_float(const FloatImage& img) {
  Image out;
  out.width = img.width;
  out.height = img.height;
  out.pixels.resize(img.pixels.size());
  for (size_t i = 0; i < img.pixels.size(); ++i) {
    const float v = img.pixels[i];
    // NaN compares false and lands on 0, so a bad pixel can never become an out-of-range byte.
    const float c = v > 0.f ? (v < 1.f ? v : 1.f) : 0.f;
    out.pixels[i] = static_cast<uint8_t>(std::lround(c * 255.f));
  }
  return out;
}

}  // namespace geoloc::image
