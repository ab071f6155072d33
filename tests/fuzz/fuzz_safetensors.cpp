// libFuzzer target for the safetensors reader: any byte string must either parse into entries whose
// byte ranges lie inside the buffer, or be rejected with geoloc::IoError. Every accepted tensor is
// read (converted to f32 where possible) so that out-of-range reads show up under ASan.
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "geoloc/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace geoloc;
  try {
    const auto f = safetensors::File::from_bytes(data, size, "fuzz-input");
    for (const auto& e : f.entries()) {
      try {
        Tensor t = f.tensor(e.name);
        if (t.dtype() == DType::F32) {
          volatile float s = t.numel() ? t.sum_all() : 0.0f;
          (void)s;
        }
      } catch (const IoError&) {  // dtype not loadable or more than 4 dimensions: a documented refusal
      }
    }
  } catch (const IoError&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unexpected exception type: %s\n", e.what());
    std::abort();
  }
  return 0;
}
