// The table of `geoloc demo`'s presets (see demo_presets.hpp).
#include "demo_presets.hpp"

#include "geoloc/error.hpp"

namespace geoloc::pipeline {
namespace {
const std::vector<Strategy> kAllStrategies = {Strategy::CellMean, Strategy::Hierarchy, Strategy::Centroid, Strategy::Knn,
                                              Strategy::Refine,   Strategy::Hybrid,    Strategy::Rank};
const std::vector<Strategy> kFlatStrategies = {Strategy::CellMean, Strategy::Centroid, Strategy::Knn, Strategy::Refine,
                                               Strategy::Rank};

}  // namespace

const std::vector<Preset>& presets() {
  static const std::vector<Preset> table = {
      {.name = "multitask", .classes = Classes::S2Hierarchy, .strategies = kAllStrategies, .scene_head = true,
       .hybrid_head = true},
      // the S2 multitask network pre-trains the backbone the regression heads use
      {.name = "regression", .classes = Classes::S2Hierarchy, .strategies = kAllStrategies, .scene_head = true,
       .regression_heads = true},
      {.name = "country", .classes = Classes::CountryAndS2, .strategies = kFlatStrategies, .multiview = true},
      {.name = "worldnet", .classes = Classes::KMeans, .strategies = kFlatStrategies, .snap_to_land = true},
      {.name = "grid", .classes = Classes::EuropeFishnet, .strategies = kFlatStrategies},
  };
  return table;
}

const Preset& find_preset(const std::string& name) {
  std::string names;
  for (const Preset& p : presets()) {
    if (name == p.name) return p;
    names += names.empty() ? p.name : std::string(", ") + p.name;
  }
  throw ValueError("unknown demo preset '" + name + "' (expected " + names + ")");
}

}  // namespace geoloc::pipeline
