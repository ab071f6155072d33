// Runtime CPU dispatch: which convolution kernels (direct_conv.hpp) the CPU backend runs, chosen once from
// cpuid, or forced by GEOLOC_CPU / set_cpu_path.
#include <atomic>
#include <cstdlib>
#include <string>

#include "direct_conv.hpp"
#include "geoloc/build_info.hpp"
#include "geoloc/error.hpp"

#ifndef GEOLOC_VERSION_STRING
#define GEOLOC_VERSION_STRING "unknown"
#endif
#ifndef GEOLOC_BUILD_ARCH
#define GEOLOC_BUILD_ARCH ""
#endif

namespace geoloc {
namespace {

bool cpu_has(CpuPath p) {
  switch (p) {
    case CpuPath::generic: return true;
#if defined(GEOLOC_X86_KERNELS)
    // libgcc's/compiler-rt's cpuid checks include the OS's XSAVE support of the ymm/zmm state
    case CpuPath::avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case CpuPath::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#endif
    default: return false;
  }
}

std::atomic<int> g_path{-1};

std::string available_list() {
  std::string a;
  for (CpuPath q : available_cpu_paths()) {
    if (!a.empty()) a += ',';
    a += to_string(q);
  }
  return a;
}

CpuPath from_environment() {
  const char* legacy = std::getenv("GEOLOC_CPU_DIRECT_CONV");  // "0": the Eigen path, for A/B comparisons
  const char* v = std::getenv("GEOLOC_CPU");
  if (v && *v) {
    const std::string s = v;
    for (CpuPath p : {CpuPath::generic, CpuPath::avx2, CpuPath::avx512})
      if (s == to_string(p)) {
        GEOLOC_CHECK(cpu_has(p), ValueError, "GEOLOC_CPU=", s, ": this ",
                     p == CpuPath::generic ? "build" : "CPU (or build)", " has no ", s,
                     " path; available: ", available_list());
        return p;
      }
    throw ValueError("GEOLOC_CPU=" + s + ": unknown CPU path (generic, avx2 or avx512)");
  }
  if (legacy && std::string(legacy) == "0") return CpuPath::generic;
  return available_cpu_paths().back();
}

}  // namespace

const char* to_string(CpuPath p) {
  switch (p) {
    case CpuPath::avx2: return "avx2";
    case CpuPath::avx512: return "avx512";
    default: return "generic";
  }
}

std::vector<CpuPath> available_cpu_paths() {
  std::vector<CpuPath> out;
  for (CpuPath p : {CpuPath::generic, CpuPath::avx2, CpuPath::avx512})
    if (cpu_has(p)) out.push_back(p);
  return out;
}

CpuPath cpu_path() {
  int p = g_path.load(std::memory_order_acquire);
  if (p < 0) {
    p = static_cast<int>(from_environment());
    int expected = -1;
    if (!g_path.compare_exchange_strong(expected, p)) p = expected;
  }
  return static_cast<CpuPath>(p);
}

void set_cpu_path(CpuPath p) {
  GEOLOC_CHECK(cpu_has(p), ValueError, "set_cpu_path: this CPU (or build) has no ", to_string(p), " path");
  g_path.store(static_cast<int>(p), std::memory_order_release);
}

std::string build_info() {
  const std::string avail = available_list();
  std::string s = "geoloc " GEOLOC_VERSION_STRING "; CPU path ";
  s += to_string(cpu_path());
  s += " (available: " + avail + ")";
#if defined(__clang__)
  s += "; clang " __clang_version__;
#elif defined(__GNUC__)
  s += "; gcc " __VERSION__;
#endif
  if (*GEOLOC_BUILD_ARCH) s += " " GEOLOC_BUILD_ARCH;
#if defined(GEOLOC_HAS_CUDA)
  s += "; CUDA built in";
#else
  s += "; no CUDA";
#endif
  return s;
}

namespace cpu::direct {
const Kernels* active_kernels() {
  switch (cpu_path()) {
#if defined(GEOLOC_X86_KERNELS)
    case CpuPath::avx512: return kernels_avx512();
    case CpuPath::avx2: return kernels_avx2();
#endif
    default: return nullptr;
  }
}
}  // namespace cpu::direct

}  // namespace geoloc
