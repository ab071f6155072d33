// Runs everywhere: on a machine without a usable GPU, asking for CUDA memory must give a CudaError with
// a clear message, never a crash; on a GPU machine, an absent device index must.
#include <doctest/doctest.h>

#include <string>

#include "geoloc/backend.hpp"
#include "geoloc/cuda/context.hpp"
#include "geoloc/ops.hpp"
#include "geoloc/tensor.hpp"

using namespace geoloc;

TEST_CASE("a CUDA tensor without a GPU is a clear CudaError") {
  if (cuda::available()) {
    MESSAGE("a CUDA device is present: checking an absent device index instead");
    const int n = cuda::device_count();
    CHECK(n > 0);
    CHECK_THROWS_WITH_AS(Tensor::empty({2, 3}, DType::F32, Device::cuda(n)), doctest::Contains("CUDA device"),
                         CudaError);
    return;
  }
  CHECK(cuda::device_count() == 0);
  CHECK_NOTHROW(cuda::synchronize());
  try {
    (void)Tensor::empty({2, 3}, DType::F32, Device::cuda(0));
    FAIL("expected a CudaError");
  } catch (const CudaError& e) {
    const std::string msg = e.what();
    MESSAGE("message: " << msg);
    CHECK(msg.find("cuda:0") != std::string::npos);
    CHECK(msg.find("no CUDA device") != std::string::npos);
  }
  Tensor h = Tensor::full({4}, 1.0f);
  CHECK_THROWS_AS(h.to(Device::cuda()), CudaError);
  CHECK_THROWS_AS(cuda::allocator(0), CudaError);
  CHECK_THROWS_AS(cuda::Context::get(0), CudaError);
  CHECK_THROWS_AS((void)ops::relu(Tensor::from_vector({2}, {1.0f, -1.0f}).to(Device::cuda())), CudaError);
}
