#pragma once
// geoloc's exceptions. The library never calls exit() or abort(): every failure is one of these,
// with a message that names the input and what is wrong with it.
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace geoloc {

namespace detail {
/// Control characters written as escapes, so that a message quoting hostile input stays one line and
/// whole: what() is a C string, which a NUL byte would cut short, and a newline or an escape sequence
/// from a file would break the one-line error or drive the terminal. NUL becomes \0, \n \r \t stay
/// readable as \n \r \t, other bytes below 0x20 and 0x7F become \xNN. Backslashes are left alone, so
/// escaping an escaped message again changes nothing.
inline std::string escape_controls(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c < 0x20 || c == 0x7F);
  if (n == 0) return s;
  static const char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() + 3 * n);
  for (unsigned char c : s) {
    if (c >= 0x20 && c != 0x7F) {
      out += static_cast<char>(c);
    } else if (c == 0) {
      out += "\\0";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}
}  // namespace detail

/// Base of every exception geoloc throws. The message is one line: control characters (which can
/// only come from quoted input) are escaped (detail::escape_controls).
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(detail::escape_controls(what)) {}
};
/// A tensor had the wrong shape, dtype, device or layout for an operation.
class ShapeError : public Error { using Error::Error; };
/// An argument was outside its valid range (a NaN coordinate, a negative size, ...).
class ValueError : public Error { using Error::Error; };
/// A file could not be read or written, or its contents are malformed.
class IoError : public Error { using Error::Error; };
/// A CUDA, cuDNN or cuBLAS call failed, or CUDA was asked for where it is not available.
class CudaError : public Error { using Error::Error; };

namespace detail {
template <class... Args>
std::string cat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
}  // namespace detail

}  // namespace geoloc

/// GEOLOC_CHECK(cond, ExceptionType, message parts...): throws ExceptionType with the parts concatenated.
#define GEOLOC_CHECK(cond, Ex, ...) \
  do {                              \
    if (!(cond)) throw Ex(::geoloc::detail::cat(__VA_ARGS__)); \
  } while (0)
