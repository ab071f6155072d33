#pragma once
// Internal to src/pipeline (not installed): the checks and query normalisation that knn.cpp and the
// Predictor's k-NN strategies (predict.cpp) share.
#include <cstdint>

#include "geoloc/pipeline/predict.hpp"

namespace geoloc::pipeline {

/// ValueError unless o.knn_k >= 1, o.knn_temperature > 0 and, for mean shift, the bandwidth > 0.
void check_knn_options(const PredictOptions& o);
/// q / |q| in place (the index rows are unit length, so inner products are cosines).
void normalise_query(float* q, int64_t dim);

}  // namespace geoloc::pipeline
