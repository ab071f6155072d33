#include "geoloc/geo/countries.hpp"

#include <s2/mutable_s2shape_index.h>
#include <s2/s2closest_edge_query.h>
#include <s2/s2contains_point_query.h>
#include <s2/s2latlng.h>
#include <s2/s2lax_polygon_shape.h>
#include <s2/s2loop_measures.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "geoloc/error.hpp"
#include "geoloc/geo/data_dir.hpp"
#include "geoloc/thread_pool.hpp"

namespace geoloc::geo {
namespace {

using json = nlohmann::json;

// Natural Earth edges are drawn as straight lines in lon/lat; a great-circle arc between the same
// vertices bulges towards the pole (about 1.4 km over 3.4 degrees of the 49th parallel).
// Splitting long edges keeps the spherical polygon within metres of the planar one.
constexpr double kMaxEdgeDeg = 0.5;

// Densified edges across the antimeridian produce longitudes just beyond +-180; wrap them.
S2Point to_point(double lat, double lng) { return S2LatLng::FromDegrees(lat, lng).Normalized().ToPoint(); }

// One GeoJSON ring (closed, [lng, lat] pairs) as an S2 loop with the interior on its left.
// Rings that cross the antimeridian (TopoJSON stitches them) are handled by taking the short way
// round in longitude; Antarctica's ring around the South Pole works unchanged on the sphere.
std::vector<S2Point> ring_to_loop(const json& ring, bool hole, const std::string& where) {
  std::vector<S2Point> loop;
  double plat = 0, plng = 0;
  for (std::size_t i = 0; i < ring.size(); ++i) {
    const json& v = ring[i];
    GEOLOC_CHECK(v.is_array() && v.size() >= 2 && v[0].is_number() && v[1].is_number(), IoError, where,
                 ": vertex ", i, " is not a [longitude, latitude] pair");
    const double lng = v[0].get<double>(), lat = v[1].get<double>();
    GEOLOC_CHECK(std::abs(lat) <= 90 && std::abs(lng) <= 360, IoError, where, ": vertex ", i, " (", lng, ", ", lat,
                 ") is out of range");
    if (i > 0) {
      double dlng = lng - plng;
      if (dlng > 180) dlng -= 360;
      if (dlng < -180) dlng += 360;
      const int steps = static_cast<int>(std::ceil(std::max(std::abs(dlng), std::abs(lat - plat)) / kMaxEdgeDeg));
      for (int s = 1; s < steps; ++s)
        loop.push_back(to_point(plat + (lat - plat) * s / steps, plng + dlng * s / steps));
    }
    const S2Point p = to_point(lat, lng);
    // S2 points are unique per position, so -180/180 twins and repeated vertices vanish here.
    if (loop.empty() || loop.back() != p) loop.push_back(p);
    plat = lat;
    plng = lng;
  }
  while (loop.size() > 1 && loop.back() == loop.front()) loop.pop_back();  // GeoJSON repeats the first vertex
  if (loop.size() < 3) return {};
  // Natural Earth via TopoJSON winds shells clockwise (d3's convention), other sources follow RFC
  // 7946; rather than trust either, orient every shell to enclose less than half the sphere and
  // every hole to exclude it. No country or hole covers a hemisphere, so this is unambiguous.
  if (S2::IsNormalized(S2PointLoopSpan(loop)) == hole) std::reverse(loop.begin(), loop.end());
  return loop;
}

// A Polygon or MultiPolygon geometry as one lax polygon: lax shapes accept the duplicate
// vertices, sibling edges and slight self-touching that make some Natural Earth rings invalid
// as S2Loops, and define containment by crossing parity, which is all that lookup needs.
std::unique_ptr<S2LaxPolygonShape> geometry_to_shape(const json& geometry, const std::string& where) {
  const std::string type = geometry.value("type", "");
  const json& coords = geometry.at("coordinates");
  std::vector<std::vector<S2Point>> loops;
  auto add_polygon = [&](const json& polygon) {
    for (std::size_t r = 0; r < polygon.size(); ++r)
      if (auto loop = ring_to_loop(polygon[r], r > 0, where); !loop.empty()) loops.push_back(std::move(loop));
  };
  if (type == "Polygon") {
    add_polygon(coords);
  } else if (type == "MultiPolygon") {
    for (const json& polygon : coords) add_polygon(polygon);
  } else {
    throw IoError(detail::cat(where, ": geometry type '", type, "' is not Polygon or MultiPolygon"));
  }
  return std::make_unique<S2LaxPolygonShape>(loops);
}

json read_geojson(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  GEOLOC_CHECK(in.good(), IoError, "cannot open '", path, "' for reading");
  try {
    json doc = json::parse(in);
    GEOLOC_CHECK(doc.is_object() && doc.contains("features") && doc["features"].is_array(), IoError, path,
                 ": not a GeoJSON FeatureCollection");
    return doc;
  } catch (const json::exception& e) {
    throw IoError(detail::cat(path, ": ", e.what()));
  }
}

// Parses properties.iso_n3, which is a string ("250", "-99" or missing for disputed areas).
int iso_code(const json& properties) {
  const auto it = properties.find("iso_n3");
  if (it == properties.end() || !it->is_string()) return -1;
  const std::string& s = it->get_ref<const std::string&>();
  char* end = nullptr;
  const long v = std::strtol(s.c_str(), &end, 10);
  return (end && *end == 0 && !s.empty() && v >= 0) ? static_cast<int>(v) : -1;
}

}  // namespace

struct CountryIndex::Impl {
  std::vector<Country> countries;
  std::vector<int> country_of_shape;  // shape id in `borders` -> index in `countries`
  MutableS2ShapeIndex borders, land;
};

CountryIndex::CountryIndex(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CountryIndex::CountryIndex(CountryIndex&&) noexcept = default;
CountryIndex& CountryIndex::operator=(CountryIndex&&) noexcept = default;
CountryIndex::~CountryIndex() = default;

CountryIndex CountryIndex::load(const std::string& countries_geojson, const std::string& land_geojson) {
  auto impl = std::make_unique<Impl>();
  const json countries = read_geojson(countries_geojson);
  for (const json& feature : countries["features"]) {
    const json& props = feature.contains("properties") && feature["properties"].is_object() ? feature["properties"]
                                                                                          : json::object();
    Country country{iso_code(props), props.value("name", std::string())};
    country.continent = country.iso_n3 >= 0 ? continent_of_country(country.iso_n3) : continent_of_uncoded(country.name);
    const std::string where = detail::cat(countries_geojson, ": feature '", country.name, "'");
    if (!feature.contains("geometry") || feature["geometry"].is_null()) continue;
    impl->country_of_shape.push_back(static_cast<int>(impl->countries.size()));
    impl->borders.Add(geometry_to_shape(feature["geometry"], where));
    impl->countries.push_back(std::move(country));
  }
  const json land = read_geojson(land_geojson);
  for (const json& feature : land["features"])
    if (feature.contains("geometry") && !feature["geometry"].is_null())
      impl->land.Add(geometry_to_shape(feature["geometry"], detail::cat(land_geojson, ": land feature")));
  GEOLOC_CHECK(!impl->countries.empty(), IoError, countries_geojson, ": no country polygons");
  GEOLOC_CHECK(impl->land.num_shape_ids() > 0, IoError, land_geojson, ": no land polygons");
  // Build now: queries are then read-only and can run on several threads without locking.
  impl->borders.ForceBuild();
  impl->land.ForceBuild();
  return CountryIndex(std::move(impl));
}

CountryIndex CountryIndex::load_default(std::string_view resolution) {
  const std::string dir = data_dir() + "/natural-earth/";
  return load(detail::cat(dir, "countries-", resolution, ".geojson"), detail::cat(dir, "land-", resolution, ".geojson"));
}

const Country* CountryIndex::lookup(LatLng p) const {
  validate(p, "country lookup");
  int best = -1;
  MakeS2ContainsPointQuery(&impl_->borders).VisitContainingShapes(to_point(p.lat, p.lng), [&](S2Shape* shape) {
    if (best < 0 || shape->id() < best) best = shape->id();
    return true;
  });
  return best < 0 ? nullptr : &impl_->countries[impl_->country_of_shape[best]];
}

int CountryIndex::country_code(LatLng p) const {
  const Country* c = lookup(p);
  return c ? c->iso_n3 : -1;
}

std::vector<int> CountryIndex::country_codes(std::span<const LatLng> points) const {
  validate_all(points);
  std::vector<int> out(points.size());
  parallel_for(points.size(), 1024, [&](std::size_t i) { out[i] = country_code(points[i]); });
  return out;
}

Continent CountryIndex::continent(LatLng p) const {
  const Country* c = lookup(p);
  return c ? c->continent : Continent::None;
}

std::vector<Continent> CountryIndex::continents(std::span<const LatLng> points) const {
  validate_all(points);
  std::vector<Continent> out(points.size());
  const auto n = static_cast<std::ptrdiff_t>(points.size());
#pragma omp parallel for schedule(static, 1024)
  for (std::ptrdiff_t i = 0; i < n; ++i) out[i] = continent(points[i]);
  return out;
}

bool CountryIndex::is_land(LatLng p) const {
  validate(p, "land lookup");
  return MakeS2ContainsPointQuery(&impl_->land).Contains(to_point(p.lat, p.lng));
}

NearestLand CountryIndex::nearest_land(LatLng p) const {
  validate(p, "nearest land");
  S2ClosestEdgeQuery query(&impl_->land);  // include_interiors() is on: a point on land is at distance 0
  const S2Point point = to_point(p.lat, p.lng);
  S2ClosestEdgeQuery::PointTarget target(point);
  const auto result = query.FindClosestEdge(&target);
  GEOLOC_CHECK(!result.is_empty(), ValueError, "nearest land: the land index is empty");
  if (result.is_interior()) return {p, 0.0};
  const S2Point closest = query.Project(point, result);
  return {from_unit({closest.x(), closest.y(), closest.z()}), result.distance().ToAngle().radians() * kEarthRadiusKm};
}

const std::vector<Country>& CountryIndex::countries() const { return impl_->countries; }

std::string CountryIndex::name_of(int iso_n3) const {
  if (iso_n3 < 0) return "";
  for (const auto& c : impl_->countries)
    if (c.iso_n3 == iso_n3) return c.name;
  return "";
}

}  // namespace geoloc::geo
