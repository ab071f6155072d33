#pragma once
// Losses of the geolocation network: the differentiable haversine (great-circle) loss and the
// multitask loss over a GeoNet's heads.
#include <map>
#include <string>

#include "geoloc/nn/heads.hpp"

namespace geoloc::nn {

enum class DistanceUnit { Kilometres, Radians };

/// Mean great-circle distance between predictions and targets, differentiable in `pred`.
/// pred: [N, 3] any non-zero 3-vectors (normalised inside, differentiably; a point on the unit sphere
///       with x towards (0, 0), z towards the north pole) or [N, 2] (lat, lng) in radians.
/// target: [N, 2] (lat, lng) in radians; no gradient.
/// Returns a one-element tensor: the mean distance in km (R = 6371.0088 km) or in radians.
/// Computed on pred's device by the backend's haversine_loss; a CPU target is checked for finite values
/// and uploaded, a device target is used as it is.
Tensor haversine_loss(const Tensor& pred, const Tensor& target_latlng, DistanceUnit unit = DistanceUnit::Kilometres);

/// Targets of one batch, by head name. A head with neither `labels` nor `soft` is an error.
struct MultitaskTargets {
  // Targets are best CPU tensors: the loss counts the labelled samples there and uploads each once.
  std::map<std::string, Tensor> labels;  // I32 [N]; < 0 = unknown (no loss from that sample)
  std::map<std::string, Tensor> soft;    // F32 [N, C] (e.g. haversine-smoothed cell targets); wins over labels
  Tensor latlng;                          // F32 [N, 2] radians, for Coordinates heads
  Tensor offset_cell;                     // I32 [N]: the cell whose offset pair an Offset head is trained on
  Tensor offset;                          // F32 [N, 2]: that pair's target (east, north) / cell size
};

struct MultitaskWeights {
  float geo = 1.0f;      // each Partition head's cross-entropy (the geo term sums over partitionings)
  float scene = 1.0f;
  float country = 1.0f;
  float coords = 1.0f;   // haversine term in radians (3-output head) or MSE of (lat/90, lng/180) (2-output head)
  float offset = 1.0f;   // mean over the batch of the squared error of the true cell's offset pair
};

struct MultitaskLoss {
  Tensor total;                          // one element, differentiable
  std::map<std::string, Tensor> per_head;  // each head's unweighted term (one element, on the device;
                                           // item() reads it back: do so only when logging)
};

/// L = geo * sum_partitions CE + scene * CE_scene + country * CE_country + coords * (haversine(rad) or MSE).
/// With the defaults and only partition + scene heads this is L_geo + L_scene.
MultitaskLoss multitask_loss(const GeoNet& net, const GeoOutput& out, const MultitaskTargets& targets,
                             const MultitaskWeights& weights = {});

}  // namespace geoloc::nn
