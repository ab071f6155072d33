// The CUDA runtime pieces that are not op comparisons: copies, the caching allocator, argument errors.
// Every backend function's GPU-vs-CPU comparison (junk-filled outputs, per-row tolerances) is a row of the
// op table, tests/ops/op_table.cpp, run by tests/ops/test_op_table.cpp on every backend present.
#include <doctest/doctest.h>

#include "cuda_test_util.hpp"
#include "geoloc/backend.hpp"

using namespace geoloc;
using namespace geoloc::test;

TEST_CASE("cuda copies, the caching allocator and argument errors") {
  GEOLOC_SKIP_WITHOUT_CUDA();
  MESSAGE("device: " << cuda::Context::get(0).description());
  Tensor h = randn({3, 1000}, 9);
  Tensor d = h.to(gpu()), d2 = d.clone(), back = d2.to(Device::cpu());
  CHECK(back.to_vector() == h.to_vector());  // H2D, D2D, D2H are exact
  Allocator& a = cuda::allocator(0);
  { Tensor t = Tensor::empty({12345}, DType::F32, gpu()); }
  const auto before = a.stats();
  for (int i = 0; i < 10; ++i) Tensor t = Tensor::empty({12345}, DType::F32, gpu());
  const auto after = a.stats();
  CHECK(after.system_allocs == before.system_allocs);  // steady state: no cudaMalloc
  CHECK(after.requests == before.requests + 10);
  a.empty_cache();
  CHECK(a.stats().bytes_cached == 0);
  cuda::synchronize();
  // an f16 tensor (only f32 and bf16 are implemented): CudaError "not implemented"
  Tensor bf = Tensor::empty({4}, DType::F16, gpu()), y = junk({4});
  CHECK_THROWS_WITH_AS(cuda::relu_forward(bf, y), doctest::Contains("not implemented"), CudaError);
  // a CPU tensor given to a CUDA op
  CHECK_THROWS_AS(cuda::relu_forward(h, y), ShapeError);
  CHECK_THROWS_WITH_AS(cuda::Context::get(1000), doctest::Contains("cuda:1000"), CudaError);
}
