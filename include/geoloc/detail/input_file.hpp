#pragma once
// Reading an input file defensively: before a byte is read, the path must name a regular file of at
// most a given size. A directory, a FIFO (which would block open() until a writer appears), a device
// such as /dev/zero (endless) or a multi-gigabyte (possibly sparse) file is an IoError that names the
// path and says what it is, instead of a blocked program, gigabytes read for nothing or std::bad_alloc.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

#include "geoloc/error.hpp"

namespace geoloc::detail {

/// What a file that is not a regular one is, for messages: "a directory", "a FIFO (named pipe)", ...
inline const char* file_kind(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

/// "512 bytes", "3.0 MiB", "12.4 GiB".
inline std::string byte_size_text(uint64_t n) {
  char buf[32];
  if (n < 1024) {
    std::snprintf(buf, sizeof buf, "%llu bytes", static_cast<unsigned long long>(n));
  } else {
    const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double v = static_cast<double>(n) / 1024.0;
    int u = 0;
    while (v >= 1024.0 && u < 5) {
      v /= 1024.0;
      ++u;
    }
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  }
  return buf;
}

/// An open, checked input file (closed on destruction).
class InputFile {
 public:
  /// Opens `path` read-only and without blocking, and checks that it is a regular file of at most
  /// `max_bytes` bytes. `what` names the file's role in messages ("image", "manifest", ...).
  InputFile(const std::string& path, const std::string& what, uint64_t max_bytes) : path_(path), what_(what) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    GEOLOC_CHECK(fd_ >= 0, IoError, "cannot open ", what, " '", path, "': ", std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
      const int err = errno;
      ::close(fd_);
      throw IoError(detail::cat("cannot read ", what, " '", path, "': ", std::strerror(err)));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd_);
      throw IoError(detail::cat(what, " '", path, "' is ", file_kind(st.st_mode), ", not a regular file"));
    }
    size_ = static_cast<uint64_t>(st.st_size);
    if (size_ > max_bytes) {
      ::close(fd_);
      throw IoError(detail::cat(what, " '", path, "' is ", byte_size_text(size_), ", over the limit of ",
                                byte_size_text(max_bytes), " (it is read whole)"));
    }
  }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;
  ~InputFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  int fd() const { return fd_; }
  uint64_t size() const { return size_; }

  /// Reads the whole file (the size found when it was opened) into `out` (anything with resize()
  /// and data(), e.g. std::string or std::vector<uint8_t>).
  template <class Buffer>
  void read_all(Buffer& out) const {
    out.resize(static_cast<size_t>(size_));
    size_t done = 0;
    while (done < size_) {
      const ssize_t n = ::read(fd_, reinterpret_cast<char*>(out.data()) + done, static_cast<size_t>(size_ - done));
      if (n < 0 && errno == EINTR) continue;
      GEOLOC_CHECK(n >= 0, IoError, "reading ", what_, " '", path_, "' failed after ", done, " of ", size_,
                   " bytes: ", std::strerror(errno));
      GEOLOC_CHECK(n > 0, IoError, "reading ", what_, " '", path_, "' failed: it ended after ", done, " of ", size_,
                   " bytes (the file shrank while it was read)");
      done += static_cast<size_t>(n);
    }
  }

 private:
  std::string path_, what_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

/// The whole of a checked input file (see InputFile) as a string.
inline std::string read_input_file(const std::string& path, const std::string& what, uint64_t max_bytes) {
  const InputFile f(path, what, max_bytes);
  std::string text;
  f.read_all(text);
  return text;
}

}  // namespace geoloc::detail
