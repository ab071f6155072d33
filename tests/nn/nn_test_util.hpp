#pragma once
// Helpers shared by the nn tests.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "geoloc/tensor.hpp"

namespace geoloc::test {

/// A fresh per-process scratch directory.
inline std::filesystem::path scratch_dir() {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() / ("geoloc_nn_tests_" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}
inline std::string scratch(const std::string& name) { return (scratch_dir() / name).string(); }

inline std::string fixture(const std::string& name) { return std::string(GEOLOC_TEST_DIR) + "/fixtures/" + name; }

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// A safetensors image from a header string and data bytes; header_len overrides the length field.
inline std::string st_image(const std::string& header, const std::string& data, int64_t header_len = -1) {
  const uint64_t n = header_len < 0 ? header.size() : static_cast<uint64_t>(header_len);
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out + header + data;
}

/// max |a - b| / max(max |b|, floor): a scale-aware relative error.
inline double rel_err(const std::vector<float>& a, const std::vector<float>& b, double floor = 1e-6) {
  REQUIRE(a.size() == b.size());
  double num = 0.0, den = floor;
  for (size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, std::fabs(static_cast<double>(a[i]) - b[i]));
    den = std::max(den, std::fabs(static_cast<double>(b[i])));
  }
  return num / den;
}

/// ||a - b||_2 / ||b||_2.
inline double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double num = 0.0, den = 1e-30;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

/// OHWI -> OIHW of a host vector with OHWI shape s.
inline std::vector<float> ohwi_to_oihw(const std::vector<float>& v, const Shape& s) {
  const int64_t o = s[0], kh = s[1], kw = s[2], ci = s[3];
  std::vector<float> out(v.size());
  for (int64_t a = 0; a < o; ++a)
    for (int64_t h = 0; h < kh; ++h)
      for (int64_t w = 0; w < kw; ++w)
        for (int64_t i = 0; i < ci; ++i) out[((a * ci + i) * kh + h) * kw + w] = v[((a * kh + h) * kw + w) * ci + i];
  return out;
}

}  // namespace geoloc::test
