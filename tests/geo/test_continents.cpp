// The continent table (ISO 3166-1 numeric -> continent, UN M49) and the continent of a coordinate.
#include <doctest/doctest.h>

#include <set>
#include <string>

#include "geoloc/geo/continents.hpp"
#include "geoloc/geo/countries.hpp"
#include "country_index.hpp"

using namespace geoloc::geo;

namespace {
const CountryIndex& index50() { return geoloc::test::country_index_50m(); }
}  // namespace

TEST_CASE("every country of the shipped Natural Earth data has a continent") {
  const CountryIndex index110 = CountryIndex::load_default("110m");
  for (const auto& entry :
       {std::pair<const char*, const CountryIndex*>{"50m", &index50()}, {"110m", &index110}}) {
    const auto [resolution, index] = entry;
    const std::string res(resolution);  // CAPTURE's lambda cannot take a structured binding (clang < 16)
    CAPTURE(res);
    for (const Country& c : index->countries()) {
      CAPTURE(c.name);
      CAPTURE(c.iso_n3);
      // A code missing from the table, or a new feature without a code, fails here by name.
      if (c.iso_n3 >= 0) CHECK(continent_of_country(c.iso_n3) != Continent::None);
      else CHECK(continent_of_uncoded(c.name) != Continent::None);
      CHECK(c.continent != Continent::None);
    }
  }
  std::set<int> codes;
  for (const auto& row : continent_table()) {
    CHECK(codes.insert(row.iso_n3).second);
    CHECK(continent_name(row.continent) != "");
  }
  CHECK(continent_of_country(-1) == Continent::None);
  CHECK(continent_of_country(999) == Continent::None);
  CHECK(continent_of_uncoded("Atlantis") == Continent::None);
  CHECK(continent_name(Continent::None) == "");
  CHECK(continent_name(Continent::NorthAmerica) == "North America");
}

TEST_CASE("transcontinental countries follow their M49 region as a whole") {
  CHECK(continent_of_country(643) == Continent::Europe);        // Russia, Siberia included
  CHECK(continent_of_country(792) == Continent::Asia);          // Turkey, Thrace included
  CHECK(continent_of_country(818) == Continent::Africa);        // Egypt, Sinai included
  CHECK(continent_of_country(398) == Continent::Asia);          // Kazakhstan
  CHECK(continent_of_country(196) == Continent::Asia);          // Cyprus
  CHECK(continent_of_country(360) == Continent::Asia);          // Indonesia, New Guinea included
  CHECK(continent_of_country(591) == Continent::NorthAmerica);  // Panama
  CHECK(continent_of_country(304) == Continent::NorthAmerica);  // Greenland
  CHECK(continent_of_country(10) == Continent::Antarctica);
}

TEST_CASE("the continent of a coordinate, across the antimeridian and at sea") {
  struct Case {
    const char* name;
    LatLng where;
    Continent continent;
  };
  const Case cases[] = {
      {"Paris", {48.8566, 2.3522}, Continent::Europe},
      {"Nairobi", {-1.2921, 36.8219}, Continent::Africa},
      {"Brasilia", {-15.7939, -47.8828}, Continent::SouthAmerica},
      {"Tokyo", {35.6762, 139.6503}, Continent::Asia},
      {"Canberra", {-35.2809, 149.13}, Continent::Oceania},
      {"Ottawa", {45.4215, -75.6972}, Continent::NorthAmerica},
      {"South Pole plateau", {-85.0, 60.0}, Continent::Antarctica},
      {"Pristina (Kosovo, no ISO code)", {42.6629, 21.1655}, Continent::Europe},
      // Across the antimeridian: Fiji on both sides of 180, Chukotka (Russia, so Europe by M49).
      {"Viti Levu (Fiji, 178 E)", {-17.8, 178.0}, Continent::Oceania},
      {"Taveuni (Fiji, 179.97 W)", {-16.85, -179.97}, Continent::Oceania},
      {"Chukotka (172 E)", {67.0, 172.0}, Continent::Europe},
      {"Chukotka (172 W)", {66.0, -172.0}, Continent::Europe},
      {"Attu (Aleutians, United States, 173 E)", {52.85, 173.0}, Continent::NorthAmerica},
      // A country's overseas parts share its continent (documented in docs/geography.md).
      {"French Guiana (France)", {4.0, -53.0}, Continent::Europe},
      {"Hawaii (United States)", {19.6, -155.5}, Continent::NorthAmerica},
      // At sea: no country, no continent.
      {"mid-Atlantic", {30.0, -40.0}, Continent::None},
      {"mid-Pacific on the antimeridian", {0.0, 180.0}, Continent::None},
  };
  for (const Case& c : cases) {
    CAPTURE(std::string(c.name));
    CHECK(index50().continent(c.where) == c.continent);
  }
  std::vector<LatLng> points;
  for (const Case& c : cases) points.push_back(c.where);
  const std::vector<Continent> all = index50().continents(points);
  REQUIRE(all.size() == points.size());
  for (std::size_t i = 0; i < points.size(); ++i) CHECK(all[i] == cases[i].continent);
}
