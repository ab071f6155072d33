// One main for every geoloc test executable. In the executables that link geoloc (GEOLOC_TEST_CPU_PATH),
// a GEOLOC_CPU naming a path this CPU lacks skips the whole run (exit code 77, which CTest reports as
// skipped): the per-path test entries (tests/CMakeLists.txt) run where the machine has the path.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#if defined(GEOLOC_TEST_CPU_PATH)
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "geoloc/build_info.hpp"
#endif

int main(int argc, char** argv) {
#if defined(GEOLOC_TEST_CPU_PATH)
  if (const char* want = std::getenv("GEOLOC_CPU"); want && *want) {
    const auto paths = geoloc::available_cpu_paths();
    if (std::none_of(paths.begin(), paths.end(), [&](geoloc::CpuPath p) { return want == std::string(geoloc::to_string(p)); })) {
      std::printf("GEOLOC_CPU=%s: not available on this machine, skipped\n", want);
      return 77;
    }
  }
#endif
  return doctest::Context(argc, argv).run();
}
