#pragma once
// Country and land lookup from Natural Earth polygons (GeoJSON, lon/lat degrees).
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "geoloc/geo/continents.hpp"
#include "geoloc/geo/coords.hpp"

namespace geoloc::geo {

struct Country {
  int iso_n3 = -1;   // ISO 3166-1 numeric; -1 where Natural Earth has none (e.g. Kosovo, N. Cyprus)
  std::string name;  // Natural Earth's short name
  /// continent_of_country(iso_n3), or continent_of_uncoded(name) for a feature without a code.
  Continent continent = Continent::None;
};

struct NearestLand {
  LatLng point;        // closest point on land (the query itself when it is on land)
  double distance_km;  // 0 on land
};

/// Point-in-polygon queries on the sphere (edges are great-circle arcs, long edges are densified
/// first so that they follow the lat/lng lines the data was drawn with). Thread-safe for queries.
class CountryIndex {
 public:
  /// Loads admin-0 countries and land polygons. IoError on an unreadable or malformed file.
  static CountryIndex load(const std::string& countries_geojson, const std::string& land_geojson);
  /// Loads data_dir()/natural-earth/{countries,land}-<resolution>.geojson ("50m" or "110m"); data_dir():
  /// geo/data_dir.hpp.
  static CountryIndex load_default(std::string_view resolution = "50m");

  CountryIndex(CountryIndex&&) noexcept;
  CountryIndex& operator=(CountryIndex&&) noexcept;
  ~CountryIndex();

  /// The country containing `p`, or nullptr at sea. Where polygons overlap, the first in the file wins.
  const Country* lookup(LatLng p) const;
  /// lookup(p)->iso_n3, or -1 at sea or for a country without a code.
  int country_code(LatLng p) const;
  /// country_code() of many points, in parallel.
  std::vector<int> country_codes(std::span<const LatLng> points) const;
  /// The continent of the country containing `p` (see continents.hpp); None at sea.
  Continent continent(LatLng p) const;
  /// continent() of many points, in parallel.
  std::vector<Continent> continents(std::span<const LatLng> points) const;
  /// Whether `p` lies on land (the land polygons, which include islands and Antarctica).
  bool is_land(LatLng p) const;
  /// The closest land point and its great-circle distance.
  NearestLand nearest_land(LatLng p) const;
  /// The name of the country with ISO numeric code `iso_n3`; "" for an unknown code and for -1 (at sea,
  /// or one of the few territories without a code, whose names would be ambiguous).
  std::string name_of(int iso_n3) const;
  /// All countries, in file order.
  const std::vector<Country>& countries() const;

 private:
  struct Impl;
  explicit CountryIndex(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace geoloc::geo
