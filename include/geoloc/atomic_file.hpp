#pragma once
// Writing files so that a failure never leaves a partial output behind: everything goes to a
// temporary file beside the target, which is renamed over the target only once complete.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <system_error>

#include "geoloc/error.hpp"

namespace geoloc {

/// Calls write(stream) on a temporary file next to `path`, then renames it to `path`.
/// If write throws, or the stream fails, the temporary file is removed and IoError (or the
/// original exception) propagates; `path` is left untouched.
inline void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& write,
                              bool binary = true) {
  namespace fs = std::filesystem;
  fs::path target(path);
  std::random_device rd;
  fs::path tmp = target;
  tmp += ".tmp" + std::to_string(rd() % 1000000);
  try {
    {
      errno = 0;
      std::ofstream out(tmp, binary ? std::ios::binary | std::ios::trunc : std::ios::trunc);
      GEOLOC_CHECK(out.good(), IoError, "cannot open '", tmp.string(), "' for writing: ",
                   errno ? std::strerror(errno) : "unknown reason");
      write(out);
      out.flush();
      GEOLOC_CHECK(out.good(), IoError, "writing '", path, "' failed: ", errno ? std::strerror(errno) : "disk full?");
    }
    std::error_code ec;
    fs::rename(tmp, target, ec);
    GEOLOC_CHECK(!ec, IoError, "cannot rename '", tmp.string(), "' to '", path, "': ", ec.message());
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
}

}  // namespace geoloc
