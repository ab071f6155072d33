#pragma once
// What this build of geoloc is and which CPU code it runs. One binary serves every x86-64 CPU with AVX2
// and FMA: the convolution kernels for AVX-512 and for AVX2 are both compiled in, and the best one the
// CPU has is chosen at run time from cpuid (docs/performance.md, "Runtime CPU dispatch").
#include <string>
#include <vector>

namespace geoloc {

/// The CPU code paths. generic: no hand-written kernels (Eigen's GEMM under every convolution; the only
/// path on non-x86 CPUs); avx2: geoloc's AVX2/FMA convolution kernels; avx512: its AVX-512 kernels.
enum class CpuPath { generic, avx2, avx512 };

/// "generic", "avx2" or "avx512".
const char* to_string(CpuPath p);

/// The paths this build has and this CPU can run, generic first, best last.
std::vector<CpuPath> available_cpu_paths();

/// The path in use: the one the environment variable GEOLOC_CPU names (generic, avx2 or avx512), else the
/// best available. Chosen on first use; throws ValueError when GEOLOC_CPU names an unknown path or one
/// that this CPU (or build) lacks.
CpuPath cpu_path();

/// Switches the path for the calls that follow (tests, benchmarks); ValueError when not available.
void set_cpu_path(CpuPath p);

/// One line saying the version, the CPU path in use and those available, the compiler and its target
/// flags, and whether CUDA is built in.
std::string build_info();

}  // namespace geoloc
