#pragma once
// geoloc's exceptions. The library never calls exit() or abort(): every failure is one of these,
// with a message that names the input and what is wrong with it.
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace geoloc {

/// Base of every exception geoloc throws.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
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
