#pragma once
// Scene-label propagation: a helper network trained on the rows with a known scene labels the others.
#include <cstddef>
#include <cstdint>

#include "geoloc/nn/resnet.hpp"
#include "geoloc/pipeline/dataset.hpp"
#include "geoloc/pipeline/model.hpp"
#include "geoloc/pipeline/trainer.hpp"

namespace geoloc::pipeline {

/// Scene-label propagation (the helper network of Müller-Budack et al.): trains a scene-only model on
/// the rows with a known scene and labels the others with its prediction. Returns how many were labelled.
/// The helper uses `backbone` and the main model's `preprocess`.
size_t propagate_scene_labels(Dataset& train, const nn::ResNetConfig& backbone, int64_t scene_classes,
                              const Preprocess& preprocess, TrainConfig config);

}  // namespace geoloc::pipeline
