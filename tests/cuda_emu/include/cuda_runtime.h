#pragma once
// cuda_emu's stand-in for the toolkit's cuda_runtime.h (see tests/cuda_emu/README.md).
#include "cuda_emu/core.hpp"
#include "cuda_emu/intrinsics.hpp"
#include "cuda_emu/runtime_api.hpp"
