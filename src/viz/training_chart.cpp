#include "geoloc/viz/training_chart.hpp"

#include <utility>

namespace geoloc::viz {

ChartSpec training_loss_chart(std::span<const LossPoint> curve) {
  ChartSpec spec;
  spec.title = "training loss";
  spec.x_label = "step";
  spec.y_label = "loss";
  Series total{"total", {}, {}};
  std::map<std::string, Series> heads;
  for (const auto& p : curve) {
    total.x.push_back(static_cast<double>(p.step));
    total.y.push_back(p.loss);
    for (const auto& [h, v] : p.per_head) {
      auto& s = heads[h];
      s.name = h;
      s.x.push_back(static_cast<double>(p.step));
      s.y.push_back(v);
    }
  }
  spec.series.push_back(std::move(total));
  for (auto& [h, s] : heads) spec.series.push_back(std::move(s));
  return spec;
}

void write_training_chart(const std::string& png_path, std::span<const LossPoint> curve) {
  write_line_chart(png_path, training_loss_chart(curve));
}

}  // namespace geoloc::viz
