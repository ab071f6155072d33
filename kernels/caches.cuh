#pragma once
// Internal: the per-context algorithm caches (host code). A key is the full problem description, so a
// training step that repeats its shapes pays for algorithm selection once per shape.
#include <array>
#include <map>
#include <mutex>

#include "cuda_libs.cuh"

namespace geoloc::cuda {

struct ConvAlgoChoice {
  int algo = 0;  // cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t
  cudnnMathType_t math = CUDNN_FMA_MATH;
  size_t workspace = 0;
};

struct LtAlgoChoice {
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;
};

// kind (0 fwd, 1 bwd data, 2 bwd filter), n, h, w, ci, co, kh, kw, stride, pad, dtype
using ConvKey = std::array<int64_t, 11>;
// transa, transb, m, n, k, lda, ldb, ldc, epilogue, dtype, has_beta
using LtKey = std::array<int64_t, 11>;

struct Context::Caches {
  std::mutex mu;
  std::map<ConvKey, ConvAlgoChoice> conv;
  std::map<LtKey, LtAlgoChoice> lt;
};

}  // namespace geoloc::cuda
