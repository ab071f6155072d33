// The op table (op_table.hpp) run as tests: (a) every function of GEOLOC_BACKEND_DECLARATIONS has a row;
// (b) every row on the CPU, twice with different junk in its outputs, gives identical, finite results that
// pass the row's independent reference; (c) every other backend present gives the CPU's results within
// the row's tolerances; (d) the finite-difference gradient check of every differentiable row.
// Each row prints one line "op table: ok ..." as it passes; scripts/test.sh shows them in the CI log.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <sstream>

#include "core/gradcheck.hpp"
#include "geoloc/backend.hpp"
#include "op_table.hpp"

using namespace geoloc;
using namespace geoloc::optest;

namespace {

bool bf16_nan(uint16_t b) { return (b & 0x7F80u) == 0x7F80u && (b & 0x7Fu) != 0; }

// "" when `got` (another backend, on the CPU) matches the CPU's `ref` within spec, else the worst element.
std::string compare(const OutSpec& spec, const Tensor& ref, const Tensor& got) {
  if (ref.shape() != got.shape() || ref.dtype() != got.dtype())
    return spec.name + ": " + got.str() + ", the CPU's " + ref.str();
  const int64_t n = ref.numel();
  std::ostringstream o;
  if (ref.dtype() == DType::F32) {
    const float *a = got.data<float>(), *b = ref.data<float>();
    int64_t bad = 0, worst = -1;
    double worst_excess = -1;
    for (int64_t i = 0; i < n; ++i) {
      bool ok;
      double excess = 0;
      if (spec.rtol == 0 && spec.atol == 0) {
        ok = a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i]));
        excess = ok ? 0 : 1e300;
      } else {
        const double diff = std::fabs(double(a[i]) - double(b[i])), lim = spec.atol + spec.rtol * std::fabs(double(b[i]));
        ok = (std::isinf(b[i]) && a[i] == b[i]) || (!std::isnan(a[i]) && !std::isnan(b[i]) && diff <= lim);
        excess = ok ? 0 : (std::isnan(diff) ? 1e300 : diff - lim);
      }
      if (!ok && ++bad && excess > worst_excess) worst_excess = excess, worst = i;
    }
    if (!bad) return "";
    o << spec.name << ": " << bad << " of " << n << " elements out of tolerance (rtol " << spec.rtol << ", atol "
      << spec.atol << "); worst [" << worst << "]: " << a[worst] << ", the CPU's " << b[worst];
    return o.str();
  }
  if (ref.dtype() == DType::BF16) {  // bit for bit, or within rtol/atol of the widened values (rtol 2^-7 = 1 ulp)
    const uint16_t *a = got.data<uint16_t>(), *b = ref.data<uint16_t>();
    auto widen = [](uint16_t v) {
      const uint32_t u = uint32_t(v) << 16;
      float f;
      std::memcpy(&f, &u, 4);
      return double(f);
    };
    int64_t bad = 0, worst = -1;
    double worst_excess = -1;
    for (int64_t i = 0; i < n; ++i) {
      if (a[i] == b[i] || (bf16_nan(a[i]) && bf16_nan(b[i]))) continue;
      const double ga = widen(a[i]), rb = widen(b[i]);
      const double diff = std::fabs(ga - rb), lim = spec.atol + spec.rtol * std::fabs(rb);
      if (!std::isnan(diff) && diff <= lim) continue;
      const double excess = std::isnan(diff) ? 1e300 : diff - lim;
      if (++bad && excess > worst_excess) worst_excess = excess, worst = i;
    }
    if (!bad) return "";
    o << spec.name << ": " << bad << " of " << n << " bf16 elements out of tolerance (rtol " << spec.rtol << ", atol "
      << spec.atol << "); worst [" << worst << "]: " << widen(a[worst]) << " (0x" << std::hex << a[worst]
      << "), the CPU's " << std::dec << widen(b[worst]) << " (0x" << std::hex << b[worst] << ")";
    return o.str();
  }
  if (std::memcmp(got.raw(), ref.raw(), ref.nbytes()) == 0) return "";
  const size_t es = dtype_size(ref.dtype());
  for (int64_t i = 0; i < n; ++i)
    if (std::memcmp(static_cast<const char*>(got.raw()) + i * es, static_cast<const char*>(ref.raw()) + i * es, es)) {
      o << spec.name << "[" << i << "] differs";
      if (ref.dtype() == DType::I32) o << ": " << got.data<int32_t>()[i] << ", the CPU's " << ref.data<int32_t>()[i];
      return o.str();
    }
  return "";
}

std::string same_bits(const OutSpec& spec, const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return spec.name + ": shapes differ between runs";
  if (std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0) return "";
  const size_t es = dtype_size(a.dtype());
  for (int64_t i = 0; i < a.numel(); ++i)
    if (std::memcmp(static_cast<const char*>(a.raw()) + i * es, static_cast<const char*>(b.raw()) + i * es, es)) {
      std::ostringstream o;
      o << spec.name << "[" << i << "] differs between two runs with different junk in the outputs (unwritten or "
        << "nondeterministic)";
      if (a.dtype() == DType::F32) o << ": " << a.data<float>()[i] << " vs " << b.data<float>()[i];
      return o.str();
    }
  return "";
}

std::string finite(const OutSpec& spec, const Tensor& t) {
  if (!spec.finite || t.dtype() != DType::F32) return "";
  const float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i)
    if (!std::isfinite(p[i])) {
      std::ostringstream o;
      o << spec.name << "[" << i << "] = " << p[i] << " is not finite";
      return o.str();
    }
  return "";
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST_CASE("op table: every backend function has a row, and every row names a backend function") {
  const auto names = backend_function_names();
  CHECK(names.size() >= 30);  // the parser found the declarations
  std::set<std::string> declared(names.begin(), names.end());
  std::map<std::string, int> rows;
  for (const OpRow& r : op_table()) ++rows[r.op];
  for (const std::string& n : names) {
    INFO("backend function ", n, " (GEOLOC_BACKEND_DECLARATIONS) has no row in tests/ops/op_table.cpp");
    CHECK(rows.count(n) == 1);
  }
  for (const auto& row : rows) {
    const std::string& op = row.first;  // INFO's lambda cannot take a structured binding (clang < 16)
    INFO("row op '", op, "' is not a function of GEOLOC_BACKEND_DECLARATIONS");
    CHECK(declared.count(op) == 1);
  }
  std::printf("op table: %zu rows over %zu ops; %zu backend functions declared, all covered\n", op_table().size(),
              rows.size(), names.size());
}

TEST_CASE("op table: every row on the CPU, twice with different junk, against its reference") {
  const auto t0 = std::chrono::steady_clock::now();
  int passed = 0, with_ref = 0;
  for (const OpRow& row : op_table()) {
    INFO("row ", row.name());
    std::vector<std::string> errors;
    try {
      const auto in = row.inputs();
      const auto a = run(row, in, Device::cpu(), 0), b = run(row, in, Device::cpu(), 1);
      REQUIRE(a.size() == row.outs.size());
      REQUIRE(b.size() == row.outs.size());
      for (size_t i = 0; i < a.size(); ++i) {
        for (const std::string& e : {same_bits(row.outs[i], a[i], b[i]), finite(row.outs[i], a[i])})
          if (!e.empty()) errors.push_back(e);
      }
      if (row.reference && errors.empty()) {
        ++with_ref;
        const std::string e = row.reference(in, a);
        if (!e.empty()) errors.push_back("reference: " + e);
      }
    } catch (const std::exception& e) {
      errors.push_back(std::string("exception: ") + e.what());
    }
    for (const std::string& e : errors) FAIL_CHECK(row.name(), ": ", e);
    if (errors.empty()) {
      ++passed;
      std::printf("op table: ok   cpu  %s%s\n", row.name().c_str(), row.reference ? "  (+reference)" : "");
    }
  }
  std::printf("op table: cpu: %d of %zu rows passed (%d with an independent reference) in %.2f s\n", passed,
              op_table().size(), with_ref, seconds_since(t0));
  CHECK(passed == static_cast<int>(op_table().size()));
}

TEST_CASE("op table: every other backend against the CPU") {
  const auto devices = backends();
  if (devices.size() == 1) {
    MESSAGE("SKIPPED: no CUDA device (geoloc::cuda::available() is false): only the CPU rows ran");
    std::printf("op table: cuda skipped (no device)\n");
    return;
  }
  for (size_t di = 1; di < devices.size(); ++di) {
    const Device dev = devices[di];
    const auto t0 = std::chrono::steady_clock::now();
    int passed = 0;
    for (const OpRow& row : op_table()) {
      INFO("row ", row.name(), " on ", dev.str());
      std::vector<std::string> errors;
      try {
        const auto in = row.inputs();
        const auto ref = run(row, in, Device::cpu(), 1);
        // twice, with different junk: an unwritten element fails either way, and the second call of the
        // same shapes runs on whatever the first cached (cuDNN algorithms, workspaces)
        for (int junk : {0, 2}) {
          const auto got = run(row, in, dev, junk);
          REQUIRE(got.size() == row.outs.size());
          for (size_t i = 0; i < got.size(); ++i) {
            for (const std::string& e : {compare(row.outs[i], ref[i], got[i]), finite(row.outs[i], got[i])})
              if (!e.empty()) errors.push_back(e + (junk ? " (second call)" : ""));
          }
        }
      } catch (const std::exception& e) {
        errors.push_back(std::string("exception: ") + e.what());
      }
      for (const std::string& e : errors) FAIL_CHECK(row.name(), " on ", dev.str(), ": ", e);
      if (errors.empty()) {
        ++passed;
        std::printf("op table: ok   %s %s\n", dev.str().c_str(), row.name().c_str());
      }
    }
    std::printf("op table: %s: %d of %zu rows match the CPU in %.2f s\n", dev.str().c_str(), passed,
                op_table().size(), seconds_since(t0));
  }
}

TEST_CASE("op table: finite-difference gradients of every differentiable row") {
  const auto t0 = std::chrono::steady_clock::now();
  int n = 0;
  std::set<std::string> ops;
  for (const OpRow& row : op_table()) {
    if (!row.has_grad()) continue;
    test::GradcheckOptions o;
    o.step = row.grad.step;
    o.rtol = row.grad.rtol;
    o.atol = row.grad.atol;
    o.max_elements = row.grad.max_elements;
    test::gradcheck(row.name(), row.grad.inputs(), row.grad.f, o);
    ++n;
    ops.insert(row.op);
    std::printf("op table: grad %s checked\n", row.name().c_str());
  }
  std::printf("op table: gradients: %d rows over %zu ops checked in %.2f s\n", n, ops.size(), seconds_since(t0));
  // the forward functions whose backward twins are checked through them
  for (const char* op : {"conv2d_forward", "batch_norm_forward_train", "batch_norm_forward_eval",
                         "batch_norm_act_forward_train", "batch_norm_stats", "relu_forward", "add_forward", "add_relu_forward", "scale",
                         "max_pool2d_forward", "global_avg_pool_forward", "linear_forward", "dropout_forward",
                         "cross_entropy_hard", "cross_entropy_soft", "cross_entropy_multihead", "haversine_loss"}) {
    INFO(op, " has no gradient-checked row");
    CHECK(ops.count(op) == 1);
  }
}
