#include "geoloc/earth/scene.hpp"

#include <algorithm>
#include <cmath>

#include "geoloc/earth/projection.hpp"
#include "geoloc/error.hpp"

namespace geoloc::earth {
namespace {
constexpr std::array<std::string_view, kNumScenes> kSceneNames{"water", "ice_snow", "desert", "forest",
                                                              "grass", "urban",    "mountain"};
// Window sizes of the features: the colour window (5 x 5 over 80 km) is about the 4 x 4 source
// pixels around the point; the relief window is wider because hill shading is a texture.
constexpr int kColourGrid = 5;
constexpr double kColourKm = 80.0;
constexpr int kReliefGrid = 9;
constexpr double kReliefKm = 160.0;
// Luma below which a Blue Marble pixel is water: the seas and lakes are near black (< 0.03), the
// darkest rain forest is about 0.09.
constexpr float kDarkWater = 0.05f;

float luma(const float* c) { return 0.299f * c[0] + 0.587f * c[1] + 0.114f * c[2]; }
float luma(const uint8_t* c) { return 0.299f * c[0] + 0.587f * c[1] + 0.114f * c[2]; }
float luma(const std::array<float, 3>& c) { return luma(c.data()); }
float saturation(const std::array<float, 3>& c) {
  const float mx = std::max({c[0], c[1], c[2]}), mn = std::min({c[0], c[1], c[2]});
  return mx > 1e-6f ? (mx - mn) / mx : 0.f;
}

float redness(const std::array<float, 3>& c) { return c[0] - c[1]; }
}  // namespace

std::string_view scene_name(int id) {
  GEOLOC_CHECK(id >= 0 && id < kNumScenes, ValueError, "scene id ", id, " is outside [0, ", kNumScenes, ")");
  return kSceneNames[id];
}

SceneFeatures scene_features(const EarthImagery& imagery, const geo::CountryIndex& countries, geo::LatLng p) {
  geo::validate(p, "scene location");
  SceneFeatures f;
  f.land = countries.is_land(p);
  if (!f.land) return f;  // water whatever the colours say; the rest is not needed
  // The growing season: July in the north, January in the south.
  const Raster& summer = imagery.rendering(p.lat >= 0 ? Rendering::BlueMarbleJul : Rendering::BlueMarbleJan);
  const Raster& winter = imagery.rendering(p.lat >= 0 ? Rendering::BlueMarbleJan : Rendering::BlueMarbleJul);
  const Raster& topo = imagery.rendering(Rendering::Topography);
  // The windows are tiny north-up views rendered like the data set's own (gnomonic, so they are
  // fine at the poles), which also reuses render_view's vectorised projection.
  constexpr int kC = kColourGrid * kColourGrid, kR = kReliefGrid * kReliefGrid;
  std::array<uint8_t, kC * 3> s{}, w{}, l{};
  std::array<uint8_t, kR * 3> rs{}, rt{};
  std::array<float, 2 * kR> scratch{};
  const ViewFrame colour_frame = view_frame({p, 0.0, kColourKm});
  render_view(summer, colour_frame, kColourGrid, kColourGrid, s.data(), scratch.data());
  render_view(winter, colour_frame, kColourGrid, kColourGrid, w.data(), scratch.data());
  render_view(imagery.night_lights(), colour_frame, kColourGrid, kColourGrid, l.data(), scratch.data());
  for (int i = 0; i < kC; ++i) {
    for (int k = 0; k < 3; ++k) {
      f.summer[k] += s[i * 3 + k];
      f.winter[k] += w[i * 3 + k];
    }
    f.lights += luma(&l[i * 3]);
  }
  const float norm = 1.f / (255.f * kC);
  for (int k = 0; k < 3; ++k) {
    f.summer[k] *= norm;
    f.winter[k] *= norm;
  }
  f.lights *= norm;
  // Relief: the hill shading is what the topography rendering adds to the Blue Marble, so the
  // spread of their luminance difference measures it while land-cover edges (deserts next to
  // forests) cancel. Water is left out: the topography's bathymetry is lighter than the Blue
  // Marble's sea, so coasts would otherwise look like mountains.
  const ViewFrame relief_frame = view_frame({p, 0.0, kReliefKm});
  render_view(summer, relief_frame, kReliefGrid, kReliefGrid, rs.data(), scratch.data());
  render_view(topo, relief_frame, kReliefGrid, kReliefGrid, rt.data(), scratch.data());
  double sum = 0.0, sum2 = 0.0;
  int n = 0;
  for (int i = 0; i < kR; ++i) {
    const float ls = luma(&rs[i * 3]);
    if (ls < kDarkWater * 255.f) continue;
    const double d = (luma(&rt[i * 3]) - ls) / 255.0;
    sum += d;
    sum2 += d * d;
    ++n;
  }
  // Less than half the window dry: too little to judge relief (small islands, coasts).
  if (2 * n >= kR) f.relief = static_cast<float>(std::sqrt(std::max(0.0, sum2 / n - (sum / n) * (sum / n))));
  return f;
}

Scene classify_scene(const SceneFeatures& f, const SceneRule& rule) {
  if (!f.land || (luma(f.summer) < rule.water_luma && luma(f.winter) < rule.water_luma)) return Scene::Water;
  if (f.lights >= rule.urban_lights) return Scene::Urban;
  if (f.relief >= rule.mountain_relief) return Scene::Mountain;
  if (luma(f.summer) >= rule.ice_luma && luma(f.winter) >= rule.ice_luma &&
      saturation(f.summer) <= rule.ice_saturation && saturation(f.winter) <= rule.ice_saturation)
    return Scene::IceSnow;
  if (luma(f.summer) >= rule.desert_luma && redness(f.summer) >= rule.desert_redness) return Scene::Desert;
  if (luma(f.summer) < rule.forest_luma && -redness(f.summer) >= rule.forest_greenness) return Scene::Forest;
  return Scene::Grass;
}

Scene scene_at(const EarthImagery& imagery, const geo::CountryIndex& countries, geo::LatLng p,
               const SceneRule& rule) {
  return classify_scene(scene_features(imagery, countries, p), rule);
}

}  // namespace geoloc::earth
