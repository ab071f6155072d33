// Built against an installed geoloc by scripts/check-install.sh: the tensor core and the public API.
#include <cstdio>

#include "geoloc/geoloc.hpp"
#include "geoloc/tensor.hpp"

int main(int argc, char** argv) {
  geoloc::Tensor t = geoloc::Tensor::full({2, 3}, 1.5f);
  std::printf("consumer: tensor %s holds %lld values, sum %.1f\n", t.shape().str().c_str(),
              static_cast<long long>(t.numel()), t.sum_all());
  try {
    geoloc::Locator::load("/nonexistent/model.safetensors");
    return 1;
  } catch (const geoloc::IoError& e) {
    std::printf("consumer: a missing model is reported: %s\n", e.what());
  }
  return t.sum_all() == 9.0f ? 0 : 1;
}
