#pragma once
// Continents of countries: a fixed table from ISO 3166-1 numeric codes to the seven continents,
// following the UN M49 regions (docs/geography.md says how transcontinental countries are assigned).
// CountryIndex uses it to give every Natural Earth country, and so every coordinate on land, a continent.
#include <span>
#include <string_view>

namespace geoloc::geo {

/// The seven continents; None at sea and for a code the table does not know. The values are stable
/// (they are what metrics and files compare), None is -1 like an unknown country code.
enum class Continent : int {
  None = -1,
  Africa = 0,
  Antarctica = 1,
  Asia = 2,
  Europe = 3,
  NorthAmerica = 4,
  Oceania = 5,
  SouthAmerica = 6,
};
inline constexpr int kNumContinents = 7;

/// "Africa", "Antarctica", "Asia", "Europe", "North America", "Oceania", "South America"; "" for None.
std::string_view continent_name(Continent c);

/// The continent of the country with ISO 3166-1 numeric code `iso_n3` (e.g. 250 France -> Europe);
/// None for -1 and for codes outside the table.
Continent continent_of_country(int iso_n3);

/// The continent of a Natural Earth feature that has no ISO code, by its name ("Kosovo" -> Europe,
/// "Somaliland" -> Africa, ...); None for other names.
Continent continent_of_uncoded(std::string_view natural_earth_name);

/// One row of the table.
struct CountryContinent {
  int iso_n3;
  Continent continent;
};
/// The whole table, sorted by code (for documentation and for the coverage test).
std::span<const CountryContinent> continent_table();

}  // namespace geoloc::geo
