#pragma once
// Writing files so that a failure never leaves a partial output behind: everything goes to a
// temporary file beside the target, which is flushed to the disk (fsync) and renamed over the target
// only once complete; the folder is synced after the rename, so a power loss leaves either the old
// file or the new one. Every file geoloc writes goes through write_file_atomic.
//
// Temporary names are short, whatever the target's length: ".geoloc-<pid>-<n>.tmp" in the target's
// folder (a legal output name never makes an illegal temporary one). A process killed while writing
// (SIGKILL: no handler runs) leaves its temporaries behind; the next write into that folder removes the
// ".geoloc-<pid>-*" files and folders of processes that no longer run, so an interrupted, resumed
// training run ends with no stray file. (SIGINT, SIGTERM and SIGHUP are cleaned up by the CLI itself.)
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <system_error>
#include <vector>

#include "geoloc/error.hpp"

namespace geoloc {

namespace detail {

inline constexpr const char* kTempPrefix = ".geoloc-";
inline constexpr const char* kTempSuffix = ".tmp";

/// The pid in the name of a temporary of geoloc (".geoloc-<pid>-..." : write_file_atomic's files, the
/// CLI's reserved outputs and the demo's temporary folder), or -1 for any other name.
inline long temp_file_pid(const std::string& name) {
  const size_t plen = std::strlen(kTempPrefix);
  if (name.size() <= plen || name.compare(0, plen, kTempPrefix) != 0) return -1;
  char* end = nullptr;
  const long pid = std::strtol(name.c_str() + plen, &end, 10);
  return pid > 0 && end && *end == '-' ? pid : -1;
}

/// Removes the temporaries (files or folders) of processes that no longer run from `dir`: what a killed
/// process left (best effort, never throws).
inline void remove_stale_temp_files(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::directory_iterator it(dir.empty() ? fs::path(".") : dir, ec), end;
  std::vector<fs::path> stale;
  for (; !ec && it != end; it.increment(ec)) {
    const long pid = temp_file_pid(it->path().filename().string());
    if (pid <= 0 || pid == static_cast<long>(::getpid())) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive (or not ours to ask)
    stale.push_back(it->path());
  }
  for (const auto& p : stale) {
    std::error_code rm;
    fs::remove_all(p, rm);
  }
}

/// fsync of a file or folder by path; IoError naming it on failure.
inline void sync_path(const std::filesystem::path& p, bool directory, const std::string& what) {
  const int fd = ::open(p.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  GEOLOC_CHECK(fd >= 0, IoError, "cannot open '", p.string(), "' to flush ", what, ": ", std::strerror(errno));
  const int r = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // Some file systems cannot sync folders (EINVAL); the data itself was synced.
  GEOLOC_CHECK(r == 0 || (directory && (err == EINVAL || err == EROFS)), IoError, "flushing ", what, " '", p.string(),
               "' to the disk failed: ", std::strerror(err));
}

}  // namespace detail

/// Calls write(stream) on a temporary file next to `path`, syncs it, then renames it to `path`.
/// If write throws, or the stream fails, the temporary file is removed and IoError (or the
/// original exception) propagates; `path` is left untouched.
inline void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& write,
                              bool binary = true) {
  namespace fs = std::filesystem;
  static std::atomic<unsigned long> counter{0};
  const fs::path target(path);
  const fs::path dir = target.parent_path();
  detail::remove_stale_temp_files(dir);
  const fs::path tmp = dir / (std::string(detail::kTempPrefix) + std::to_string(::getpid()) + "-" +
                              std::to_string(counter.fetch_add(1)) + detail::kTempSuffix);
  try {
    {
      errno = 0;
      std::ofstream out(tmp, binary ? std::ios::binary | std::ios::trunc : std::ios::trunc);
      GEOLOC_CHECK(out.good(), IoError, "cannot write '", path, "': cannot create a file in '",
                   dir.empty() ? std::string(".") : dir.string(), "': ", std::strerror(errno));
      write(out);
      out.flush();
      GEOLOC_CHECK(out.good(), IoError, "writing '", path, "' failed: ", errno ? std::strerror(errno) : "disk full?");
    }
    detail::sync_path(tmp, false, "the new contents of " + path);
    std::error_code ec;
    fs::rename(tmp, target, ec);
    GEOLOC_CHECK(!ec, IoError, "cannot write '", path, "': ", ec.message());
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  detail::sync_path(dir.empty() ? fs::path(".") : dir, true, "the folder of " + path);
}

}  // namespace geoloc
