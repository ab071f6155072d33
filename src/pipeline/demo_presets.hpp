#pragma once
// The seed systems of `geoloc demo` as data (internal to the pipeline library): what each preset changes
// in the shared recipe. demo.cpp runs the stages; this table says which classes, heads, strategies and
// extra stages each preset uses.
#include <string>
#include <vector>

#include "geoloc/pipeline/predict.hpp"

namespace geoloc::pipeline {

enum class Classes {
  S2Hierarchy,    // three S2 partitionings, coarse to fine (PlaNet / Müller-Budack et al.)
  CountryAndS2,   // a country head next to one S2 partitioning (EUGuess)
  KMeans,         // k-means clusters of the training coordinates (WorldNet, Hulse et al.)
  EuropeFishnet,  // a fishnet over Europe; views outside are left out (GeoGuessrAI)
};

struct Preset {
  const char* name;
  Classes classes;
  std::vector<Strategy> strategies;
  bool scene_head = false;        // L = L_geo + L_scene
  bool hybrid_head = false;       // OSV-5M's cell + offset head
  bool snap_to_land = false;      // predictions at sea moved to the nearest coast
  bool regression_heads = false;  // extra stage: haversine and MSE coordinate heads on the frozen backbone (Sy & Day)
  bool multiview = false;         // extra stage: several views of each test place averaged (EUGuess)
};

/// Every preset, in the order `geoloc demo --help` lists them.
const std::vector<Preset>& presets();
/// The preset called `name`; ValueError naming the known ones otherwise.
const Preset& find_preset(const std::string& name);

}  // namespace geoloc::pipeline
