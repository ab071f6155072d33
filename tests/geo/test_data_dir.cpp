#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

#include "geoloc/geo/data_dir.hpp"

TEST_CASE("data_dir: $GEOLOC_DATA_DIR when set, else share/geoloc beside the program") {
  const char* env = std::getenv("GEOLOC_DATA_DIR");
  const std::optional<std::string> saved = env ? std::optional<std::string>(env) : std::nullopt;
  ::setenv("GEOLOC_DATA_DIR", "/somewhere/else", 1);
  CHECK(geoloc::geo::data_dir() == "/somewhere/else");
  ::unsetenv("GEOLOC_DATA_DIR");
  // the build tree is laid out like an installation: build/tests/<program> -> build/share/geoloc
  const std::string found = geoloc::geo::data_dir();
  CHECK(std::filesystem::is_directory(std::filesystem::path(found) / "natural-earth"));
  CHECK(std::filesystem::is_directory(std::filesystem::path(found) / "earth"));
  if (saved) ::setenv("GEOLOC_DATA_DIR", saved->c_str(), 1);
}
