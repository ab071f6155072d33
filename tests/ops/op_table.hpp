#pragma once
// The op table (issue #13, after ggml's test-backend-ops): one row per backend-function case, run three
// ways from the same rows: every backend present against the CPU reference with outputs pre-filled with
// junk (tests/ops/test_op_table.cpp), a finite-difference gradient check of the autograd op that calls
// the function (same test), and a benchmark (bench/bench_ops.cpp).
//
// The table is a library (geoloc_op_table) that knows nothing of doctest or Google Benchmark, and the
// backends to compare are listed at run time (backends()): a build that links another implementation of
// namespace cuda (e.g. the CUDA kernels under a CPU emulator) reuses the table and its test unchanged.
//
// Adding an op: one row here (op = the function's name in GEOLOC_BACKEND_DECLARATIONS), and its cpu:: and
// cuda:: twins; test_op_table fails while a declared function has no row.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "geoloc/tensor.hpp"

namespace geoloc::optest {

/// How one output of a row is compared with the CPU's: |x - cpu| <= atol + rtol * |cpu| for F32 (equal
/// infinities pass, NaN fails); BF16 bit for bit when rtol = atol = 0, else the same test on the widened
/// values (rtol 2^-7 = one bf16 ulp); other dtypes (I32 indices, U8 masks) bit for bit.
struct OutSpec {
  std::string name;
  float rtol = 0.0f, atol = 0.0f;
  bool finite = true;  ///< every element must be finite (false: +-inf allowed, e.g. knn padding scores)
};

/// A row's call prepared on one device: the outputs (pre-filled with junk, or mutated copies of inputs
/// for in-place functions) and the call itself, repeatable (the benchmark loops over it).
struct Launch {
  std::vector<Tensor> outs;
  std::function<void()> call;
};

/// The finite-difference check of the autograd op over a row's backend function (see gradcheck.hpp).
struct GradSpec {
  std::function<std::vector<Tensor>()> inputs;  // CPU; the inputs to check have requires_grad set
  std::function<Tensor(const std::vector<Tensor>&)> f;
  float step = 1e-2f;
  double rtol = 2e-2, atol = 2e-3;
  int max_elements = 48;
};

struct OpRow {
  std::string op;     ///< exactly the backend function's name
  std::string label;  ///< the case: shapes, flags
  std::vector<OutSpec> outs;
  std::function<std::vector<Tensor>()> inputs;  ///< seeded CPU inputs
  /// Inputs copied to `d`, outputs allocated there filled with junk number `junk` (junk_f32 / junk_byte).
  std::function<Launch(const std::vector<Tensor>& in, Device d, int junk)> prepare;
  /// Optional: an independent check of the CPU outputs ("" = pass, else what is wrong), e.g. a brute-force
  /// double-precision reference or the same result composed from separate ops.
  std::function<std::string(const std::vector<Tensor>& in, const std::vector<Tensor>& out)> reference;
  /// Optional: the gradient check (differentiable ops; on the backward functions' rows the check runs on
  /// their forward twin's row, which calls them).
  GradSpec grad;
  bool has_grad() const { return static_cast<bool>(grad.f); }
  double flops = 0;  ///< per call, for the benchmark's FLOP/s
  double bytes = 0;  ///< per call, bytes that must move (inputs read + outputs written), for bytes/s
  std::string name() const { return op + " [" + label + "]"; }
};

/// Every row, built once.
const std::vector<OpRow>& op_table();

/// The function names of GEOLOC_BACKEND_DECLARATIONS, parsed from its stringified text.
std::vector<std::string> backend_function_names();

/// The backends to run: the CPU, then each one whose runtime says it is usable (cuda::available()).
std::vector<Device> backends();

/// prepare(in, d, junk) + call + the outputs copied to the CPU.
std::vector<Tensor> run(const OpRow& row, const std::vector<Tensor>& in, Device d, int junk);

/// Junk values: different for each junk number, none a plausible result (NaN, -7.7e29, 3.3e38, ...).
float junk_f32(int junk);
uint8_t junk_byte(int junk);
/// A tensor on `d` filled with junk (floats junk_f32, other dtypes every byte junk_byte).
Tensor junk_tensor(const Shape& s, DType t, Device d, int junk);

}  // namespace geoloc::optest
