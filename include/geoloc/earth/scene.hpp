#pragma once
// Scene labels of a location, from the auxiliary rasters by a fixed rule (docs/earth-views.md).
//
// Features (measured once per location, not per view, so every view of a location has one label):
//   summer colour  mean RGB (0..1) of the Blue Marble of the local summer (July north of the
//                  equator, January south of it) over a 5 x 5 pixel north-up view 80 km wide
//                  centred on the point (render_view);
//   winter colour  the same from the other month;
//   lights         mean night-lights luminance (0..1) over the same window;
//   relief         standard deviation of the luminance of (topography - summer Blue Marble) over a
//                  9 x 9 pixel view 160 km wide, water pixels (summer luma < 0.05) left out, 0 when
//                  less than half the grid is dry: the hill shading the topography rendering adds,
//                  with the land-cover colour cancelled out;
//   land           Natural Earth land polygons (geo::CountryIndex::is_land) at the point itself.
// Rule, first match wins (thresholds in SceneRule; luma = 0.299 r + 0.587 g + 0.114 b,
// saturation = (max - min) / max, all on the window means):
//   0 water     not land, or near-black in both months (lakes inside the land polygons)
//   5 urban     lights >= 0.30
//   6 mountain  relief >= 0.05
//   1 ice_snow  luma >= 0.55 and saturation <= 0.25 in both months (snow all year: ice sheets, glaciers)
//   2 desert    summer luma >= 0.30 and summer r - g >= 0.05 (bright, yellow-brown: desert, barren, steppe)
//   3 forest    summer luma < 0.16 and summer g - r >= 0.03 (dark green)
//   4 grass     everything else on land (lighter green: grass, crops, mixed, tundra)
#include <array>
#include <string_view>

#include "geoloc/earth/imagery.hpp"
#include "geoloc/geo/countries.hpp"

namespace geoloc::earth {

enum class Scene : int { Water = 0, IceSnow = 1, Desert = 2, Forest = 3, Grass = 4, Urban = 5, Mountain = 6 };
inline constexpr int kNumScenes = 7;
/// "water", "ice_snow", "desert", "forest", "grass", "urban", "mountain"; ValueError for other ids.
std::string_view scene_name(int id);

struct SceneFeatures {
  std::array<float, 3> summer{}, winter{};  // mean RGB 0..1
  float lights = 0.f;                       // 0..1
  float relief = 0.f;                       // std of luminance difference, 0..1 scale
  bool land = false;
};

/// The thresholds of the rule above (calibrated on the imagery in data/earth, see the tests).
struct SceneRule {
  float water_luma = 0.05f;
  float urban_lights = 0.30f;
  float mountain_relief = 0.05f;
  float ice_luma = 0.55f;
  float ice_saturation = 0.25f;
  float desert_luma = 0.30f;
  float desert_redness = 0.05f;
  float forest_luma = 0.16f;
  float forest_greenness = 0.03f;
};

/// Measures the features at `p` (only `land` where it is not land). Thread-safe.
SceneFeatures scene_features(const EarthImagery& imagery, const geo::CountryIndex& countries, geo::LatLng p);
/// Applies the rule.
Scene classify_scene(const SceneFeatures& f, const SceneRule& rule = {});
/// scene_features + classify_scene.
Scene scene_at(const EarthImagery& imagery, const geo::CountryIndex& countries, geo::LatLng p,
               const SceneRule& rule = {});

}  // namespace geoloc::earth
