#pragma once
// Images in memory (8-bit RGB and float RGB, both HWC), decoding JPEG (libjpeg-turbo, optionally at
// 1/2, 1/4 or 1/8 scale) and PNG (stb_image) behind guards against decompression bombs and truncated
// files, and PNG/JPEG encoding.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "geoloc/error.hpp"

namespace geoloc::image {

/// An 8-bit RGB image, rows top to bottom, pixels interleaved (HWC): pixel (x, y) channel c is
/// pixels[(y * width + x) * 3 + c].
struct Image {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;

  Image() = default;
  /// A black width x height image; throws ValueError for negative sizes.
  Image(int width, int height);
  bool empty() const { return width == 0 || height == 0; }
  uint8_t* at(int x, int y) { return pixels.data() + (static_cast<size_t>(y) * width + x) * 3; }
  const uint8_t* at(int x, int y) const { return pixels.data() + (static_cast<size_t>(y) * width + x) * 3; }
  bool operator==(const Image& o) const = default;
};

/// A float RGB image, same layout as Image.
struct FloatImage {
  int width = 0;
  int height = 0;
  std::vector<float> pixels;

  FloatImage() = default;
  FloatImage(int width, int height);
  float* at(int x, int y) { return pixels.data() + (static_cast<size_t>(y) * width + x) * 3; }
  const float* at(int x, int y) const { return pixels.data() + (static_cast<size_t>(y) * width + x) * 3; }
};

/// Limits applied before any pixel is decoded.
struct DecodeOptions {
  /// Images whose header claims more than this many pixels (width * height) are refused before
  /// decoding: a 100 kB PNG can claim 10^10 pixels and make the decoder allocate tens of GB.
  int64_t max_pixels = 40'000'000;
  /// The shorter side the caller needs at least (0: full size). A JPEG is then decoded at the smallest
  /// of libjpeg-turbo's DCT scales 1/2, 1/4, 1/8 whose shorter side is still >= min_size (1600x1200
  /// with min_size 256: 400x300), which is 3-4x faster than decoding every pixel and resizing them
  /// away. PNGs, and JPEGs decoded with stb, are always full size.
  int min_size = 0;
  /// JPEG decoder: libjpeg-turbo (default) or stb_image (the reference; for comparisons). PNG is
  /// always stb_image. A JPEG that libjpeg-turbo cannot convert to RGB (CMYK) goes to stb.
  enum class Jpeg { Turbo, Stb } jpeg = Jpeg::Turbo;
};

/// Decodes a JPEG or PNG file to RGB (greyscale and alpha are converted; alpha is dropped).
/// Throws IoError naming `path` when the file cannot be read, is not JPEG/PNG, is truncated or
/// corrupt (with the decoder's reason), or claims more than options.max_pixels pixels (checked on
/// the full size, before any scaling). A path that is not a regular file, or a file larger than
/// max_image_file_bytes(options), is refused before it is read. The result is full size unless options.min_size allows a
/// DCT-scaled JPEG decode. Refused as well, before the decoder allocates for them: a PNG chunk that
/// reaches past the end of the file, PNG pixel data that inflates to more than the header's size
/// needs, and a JPEG whose scan does not fill its frame or whose entropy-coded data is corrupt
/// (libjpeg-turbo's warnings other than the few that leave every pixel intact), or that has more
/// than 500 progressive scans; with Jpeg::Stb the JPEG is checked by libjpeg-turbo first.
Image decode_file(const std::string& path, const DecodeOptions& options = {});

/// Same as decode_file for bytes in memory; `name` is used in error messages.
Image decode_memory(const uint8_t* data, size_t size, const std::string& name = "<memory>",
                    const DecodeOptions& options = {});

/// Width and height from the header only (no decoding). Throws IoError when unrecognised.
std::array<int, 2> probe_memory(const uint8_t* data, size_t size, const std::string& name = "<memory>");

/// Lossless PNG encoding of an image, to memory.
std::vector<uint8_t> encode_png(const Image& img);
/// Baseline JPEG encoding (quality 1..100) to memory; used to build test and benchmark inputs.
std::vector<uint8_t> encode_jpeg(const Image& img, int quality = 90);
/// Writes `img` as PNG to `path` atomically (write_file_atomic): a failure leaves no partial file.
void write_png(const std::string& path, const Image& img);

/// Pixel values divided by 255.
FloatImage to_float(const Image& img);
/// Values clamped to [0, 1], scaled by 255 and rounded to nearest.
Image from_float(const FloatImage& img);

/// Reads a whole file into memory; IoError naming the file when it cannot be opened or read, when it
/// is not a regular file (a directory, a FIFO, a device: checked before anything is read, without
/// blocking) or when it is larger than `max_bytes`.
std::vector<uint8_t> read_file_bytes(const std::string& path, uint64_t max_bytes = UINT64_MAX);

/// The largest image file decode_file reads: 8 bytes per allowed pixel (16-bit RGBA stored without
/// compression) plus 16 MiB of metadata; anything larger cannot be a valid image within the limit.
uint64_t max_image_file_bytes(const DecodeOptions& options);

}  // namespace geoloc::image
