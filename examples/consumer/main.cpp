// Built against an installed geoloc by scripts/check-install.sh: the tensor core, the public API, and
// the installed data (share/geoloc, found relative to the installation; the check runs this with the
// source tree moved away).
#include <cstdio>
#include <string>

#include "geoloc/build_info.hpp"
#include "geoloc/geo/countries.hpp"
#include "geoloc/geo/data_dir.hpp"
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
  std::printf("consumer: %s\n", geoloc::build_info().c_str());
  std::printf("consumer: data folder %s\n", geoloc::geo::data_dir().c_str());
  const auto countries = geoloc::geo::CountryIndex::load_default("110m");
  const geoloc::geo::Country* fr = countries.lookup({48.8566, 2.3522});  // Paris
  if (!fr) return 1;
  std::printf("consumer: (48.8566, 2.3522) is in %s\n", fr->name.c_str());
  return t.sum_all() == 9.0f && fr->iso_n3 == 250 ? 0 : 1;
}
