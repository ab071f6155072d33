#pragma once
// GEOLOC_DISPATCH(device, fn, args...): calls cpu::fn or cuda::fn (backend.hpp) by device. Without
// CUDA in the build, a CUDA device is an error that names the function, never a silent CPU fallback.
#include "geoloc/backend.hpp"

#if defined(GEOLOC_HAS_CUDA) && GEOLOC_HAS_CUDA
#define GEOLOC_DISPATCH(dev, fn, ...)                      \
  do {                                                     \
    if ((dev).is_cuda()) ::geoloc::cuda::fn(__VA_ARGS__);  \
    else ::geoloc::cpu::fn(__VA_ARGS__);                   \
  } while (0)
#else
#define GEOLOC_DISPATCH(dev, fn, ...)                                                                        \
  do {                                                                                                       \
    if ((dev).is_cuda())                                                                                     \
      throw ::geoloc::CudaError("geoloc was built without CUDA: " #fn " cannot run on " + (dev).str());    \
    ::geoloc::cpu::fn(__VA_ARGS__);                                                                          \
  } while (0)
#endif
