#pragma once
// Writers for test shards, from the formats' descriptions (docs/data.md): a ustar archive and the
// few MessagePack types an ECCV 2018 record uses. Kept free of libarchive / msgpack-cxx so that the
// tests check geoloc's readers against independently written files.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace geoloc::test {

using Bytes = std::vector<uint8_t>;

inline Bytes to_bytes(const std::string& s) { return Bytes(s.begin(), s.end()); }

/// A ustar archive of (name, content) members, in order.
inline Bytes make_tar(const std::vector<std::pair<std::string, Bytes>>& members) {
  Bytes out;
  for (const auto& [name, data] : members) {
    uint8_t h[512] = {};
    std::memcpy(h, name.data(), std::min<size_t>(name.size(), 100));
    std::snprintf(reinterpret_cast<char*>(h + 100), 8, "%07o", 0644);
    std::snprintf(reinterpret_cast<char*>(h + 108), 8, "%07o", 0);
    std::snprintf(reinterpret_cast<char*>(h + 116), 8, "%07o", 0);
    std::snprintf(reinterpret_cast<char*>(h + 124), 12, "%011llo", static_cast<unsigned long long>(data.size()));
    std::snprintf(reinterpret_cast<char*>(h + 136), 12, "%011o", 0);
    h[156] = '0';
    std::memcpy(h + 257, "ustar", 6);
    std::memcpy(h + 263, "00", 2);
    std::memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (uint8_t c : h) sum += c;
    std::snprintf(reinterpret_cast<char*>(h + 148), 8, "%06o", sum);
    h[155] = ' ';
    out.insert(out.end(), h, h + 512);
    out.insert(out.end(), data.begin(), data.end());
    out.resize((out.size() + 511) / 512 * 512, 0);
  }
  out.resize(out.size() + 1024, 0);
  return out;
}

inline void mp_str(Bytes& o, const std::string& s) {
  if (s.size() < 32) {
    o.push_back(static_cast<uint8_t>(0xA0 | s.size()));
  } else {
    o.push_back(0xD9);
    o.push_back(static_cast<uint8_t>(s.size()));
  }
  o.insert(o.end(), s.begin(), s.end());
}

inline void mp_bin(Bytes& o, const Bytes& b) {
  o.push_back(0xC6);
  for (int sh = 24; sh >= 0; sh -= 8) o.push_back(static_cast<uint8_t>(b.size() >> sh));
  o.insert(o.end(), b.begin(), b.end());
}

/// One ECCV 2018 record: {"id": id, "image": bytes}.
inline Bytes mp_record(const std::string& id, const Bytes& image) {
  Bytes o{0x82};
  mp_str(o, "id");
  mp_str(o, id);
  mp_str(o, "image");
  mp_bin(o, image);
  return o;
}

inline void write_bytes(const std::string& path, const Bytes& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

}  // namespace geoloc::test
