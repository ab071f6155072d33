#pragma once
// The training-loss chart (`geoloc train`'s and `geoloc demo`'s training-curve PNG): the total loss and
// each head's loss against the step, from plain points (pipeline::TrainHistory hands its curve over).
#include <cstdint>
#include <map>
#include <span>
#include <string>

#include "geoloc/viz/chart.hpp"

namespace geoloc::viz {

/// One logged training step: the total loss and the loss of each head.
struct LossPoint {
  int64_t step = 0;
  double loss = 0.0;
  std::map<std::string, double> per_head;
};

/// "training loss" against "step": the series "total" over every point, then one series per head (in
/// name order) over the points that have it.
ChartSpec training_loss_chart(std::span<const LossPoint> curve);
/// training_loss_chart() written as PNG atomically (write_line_chart).
void write_training_chart(const std::string& png_path, std::span<const LossPoint> curve);

}  // namespace geoloc::viz
