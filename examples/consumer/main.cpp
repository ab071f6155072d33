// Built against an installed geoloc by scripts/check-install.sh.
#include <cstdio>

#include "geoloc/tensor.hpp"

int main() {
  geoloc::Tensor t = geoloc::Tensor::full({2, 3}, 1.5f);
  std::printf("consumer: tensor %s holds %lld values, sum %.1f\n", t.shape().str().c_str(),
              static_cast<long long>(t.numel()), t.sum_all());
  return t.sum_all() == 9.0f ? 0 : 1;
}
