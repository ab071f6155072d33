#include "geoloc/geo/data_dir.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <system_error>
#include <vector>

#include "geoloc/error.hpp"

namespace geoloc::geo {

// The data is installed to <prefix>/share/geoloc beside <prefix>/lib (the library) and <prefix>/bin (the
// program), and found relative to where the code runs from: the shared library or, for a static link,
// the executable (the build tree has build/share/geoloc, a link to the source's data/, made by CMake).
// No source path is compiled in, so an installed package works after the source tree is gone.
std::string data_dir() {
  if (const char* env = std::getenv("GEOLOC_DATA_DIR"); env && *env) return env;
  namespace fs = std::filesystem;
  std::vector<fs::path> bases;
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&data_dir), &info) && info.dli_fname && *info.dli_fname)
    bases.push_back(fs::path(info.dli_fname));  // libgeoloc.so, or the executable when linked statically
  bases.push_back(fs::path("/proc/self/exe"));
  std::vector<std::string> looked;
  for (const fs::path& b : bases) {
    std::error_code ec;
    const fs::path bin = fs::weakly_canonical(b, ec);
    if (ec) continue;
    for (const fs::path& rel : {fs::path("../share/geoloc"), fs::path("../../share/geoloc")}) {
      const fs::path dir = (bin.parent_path() / rel).lexically_normal();
      const std::string d = dir.string();
      if (std::find(looked.begin(), looked.end(), d) != looked.end()) continue;
      looked.push_back(d);
      if (fs::is_directory(dir / "natural-earth", ec)) return d;
    }
  }
  std::string where;
  for (const std::string& d : looked) where += (where.empty() ? "" : ", ") + d;
  throw IoError("geoloc's data folder (share/geoloc, with natural-earth/ and earth/) was not found; looked in " +
                where + " (relative to " + (info.dli_fname ? info.dli_fname : "?") +
                "); install geoloc or set GEOLOC_DATA_DIR");
}

}  // namespace geoloc::geo
