// geoloc::Error messages are one whole line: control bytes from quoted input are escaped.
#include <doctest/doctest.h>

#include <string>

#include "geoloc/error.hpp"

using namespace geoloc;

TEST_CASE("an error message quoting a NUL, a newline or an escape sequence stays one whole line") {
  const std::string field("4\0" "5", 3);
  try {
    GEOLOC_CHECK(false, ValueError, "m.csv line 2: latitude '", field, "' is not a number");
  } catch (const Error& e) {
    CHECK(std::string(e.what()) == "m.csv line 2: latitude '4\\05' is not a number");
  }
  CHECK(std::string(IoError("a\nb\r\tc\x1b[2Jd\x7f").what()) == "a\\nb\\r\\tc\\x1b[2Jd\\x7f");
  CHECK(std::string(Error("plain, with UTF-8 caf\xc3\xa9 and a \\ backslash").what()) ==
        "plain, with UTF-8 caf\xc3\xa9 and a \\ backslash");
  // escaping an escaped message changes nothing (errors are often wrapped in others)
  const std::string once = IoError(std::string("x\0y", 3)).what();
  CHECK(std::string(IoError(once).what()) == once);
}
