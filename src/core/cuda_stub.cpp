// Without CUDA in the build, the cuda:: entry points that core code reaches say so clearly.
#include "geoloc/backend.hpp"
#include "geoloc/cuda/context.hpp"

#if !(defined(GEOLOC_HAS_CUDA) && GEOLOC_HAS_CUDA)
namespace geoloc::cuda {

bool available() { return false; }

int device_count() { return 0; }  // as cuda/context.hpp promises

void copy_bytes(void*, Device dst, const void*, Device src, size_t) {
  throw CudaError("geoloc was built without CUDA: cannot copy from " + src.str() + " to " + dst.str());
}

Allocator& allocator(int device) {
  throw CudaError("geoloc was built without CUDA: no allocator for cuda:" + std::to_string(device));
}

void synchronize() {}

}  // namespace geoloc::cuda
#endif
