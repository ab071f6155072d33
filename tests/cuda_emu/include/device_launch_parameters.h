#pragma once
// cuda_emu: threadIdx, blockIdx, blockDim, gridDim and warpSize come with cuda_runtime.h.
#include "cuda_runtime.h"
