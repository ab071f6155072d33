#include "geoloc/geo/continents.hpp"

#include <algorithm>
#include <array>

namespace geoloc::geo {
namespace {

using enum Continent;

// ISO 3166-1 numeric code -> continent, after the UN M49 regions (unstats.un.org/unsd/methodology/m49):
// M49's "Americas" is split into North America (Northern America, Central America, the Caribbean)
// and South America; a transcontinental country takes its M49 region as a whole (Russia: Europe;
// Turkey, Cyprus, Georgia, Armenia, Azerbaijan, Kazakhstan: Asia; Egypt: Africa; Indonesia: Asia;
// Panama: North America); overseas territories with their own code follow their own M49 region
// (Greenland: North America; French Southern Territories, British Indian Ocean Territory: Africa).
// Every code of the shipped Natural Earth countries is here (tests/geo/test_continents.cpp checks
// it), and a few more that M49 lists and other data sets use. Sorted by code.
constexpr std::array kTable = std::to_array<CountryContinent>({
    {4, Asia},            // Afghanistan
    {8, Europe},          // Albania
    {10, Antarctica},     // Antarctica
    {12, Africa},         // Algeria
    {16, Oceania},        // American Samoa
    {20, Europe},         // Andorra
    {24, Africa},         // Angola
    {28, NorthAmerica},   // Antigua and Barbuda
    {31, Asia},           // Azerbaijan
    {32, SouthAmerica},   // Argentina
    {36, Oceania},        // Australia (and Ashmore and Cartier Is.)
    {40, Europe},         // Austria
    {44, NorthAmerica},   // Bahamas
    {48, Asia},           // Bahrain
    {50, Asia},           // Bangladesh
    {51, Asia},           // Armenia
    {52, NorthAmerica},   // Barbados
    {56, Europe},         // Belgium
    {60, NorthAmerica},   // Bermuda
    {64, Asia},           // Bhutan
    {68, SouthAmerica},   // Bolivia
    {70, Europe},         // Bosnia and Herzegovina
    {72, Africa},         // Botswana
    {74, SouthAmerica},   // Bouvet Island
    {76, SouthAmerica},   // Brazil
    {84, NorthAmerica},   // Belize
    {86, Africa},         // British Indian Ocean Territory
    {90, Oceania},        // Solomon Islands
    {92, NorthAmerica},   // British Virgin Islands
    {96, Asia},           // Brunei
    {100, Europe},        // Bulgaria
    {104, Asia},          // Myanmar
    {108, Africa},        // Burundi
    {112, Europe},        // Belarus
    {116, Asia},          // Cambodia
    {120, Africa},        // Cameroon
    {124, NorthAmerica},  // Canada
    {132, Africa},        // Cabo Verde
    {136, NorthAmerica},  // Cayman Islands
    {140, Africa},        // Central African Republic
    {144, Asia},          // Sri Lanka
    {148, Africa},        // Chad
    {152, SouthAmerica},  // Chile
    {156, Asia},          // China
    {158, Asia},          // Taiwan
    {162, Oceania},       // Christmas Island
    {166, Oceania},       // Cocos (Keeling) Islands
    {170, SouthAmerica},  // Colombia
    {174, Africa},        // Comoros
    {175, Africa},        // Mayotte
    {178, Africa},        // Congo
    {180, Africa},        // Democratic Republic of the Congo
    {184, Oceania},       // Cook Islands
    {188, NorthAmerica},  // Costa Rica
    {191, Europe},        // Croatia
    {192, NorthAmerica},  // Cuba
    {196, Asia},          // Cyprus
    {203, Europe},        // Czechia
    {204, Africa},        // Benin
    {208, Europe},        // Denmark
    {212, NorthAmerica},  // Dominica
    {214, NorthAmerica},  // Dominican Republic
    {218, SouthAmerica},  // Ecuador
    {222, NorthAmerica},  // El Salvador
    {226, Africa},        // Equatorial Guinea
    {231, Africa},        // Ethiopia
    {232, Africa},        // Eritrea
    {233, Europe},        // Estonia
    {234, Europe},        // Faroe Islands
    {238, SouthAmerica},  // Falkland Islands
    {239, SouthAmerica},  // South Georgia and the South Sandwich Islands
    {242, Oceania},       // Fiji
    {246, Europe},        // Finland
    {248, Europe},        // Åland Islands
    {250, Europe},        // France
    {254, SouthAmerica},  // French Guiana
    {258, Oceania},       // French Polynesia
    {260, Africa},        // French Southern Territories
    {262, Africa},        // Djibouti
    {266, Africa},        // Gabon
    {268, Asia},          // Georgia
    {270, Africa},        // Gambia
    {275, Asia},          // Palestine
    {276, Europe},        // Germany
    {288, Africa},        // Ghana
    {292, Europe},        // Gibraltar
    {296, Oceania},       // Kiribati
    {300, Europe},        // Greece
    {304, NorthAmerica},  // Greenland
    {308, NorthAmerica},  // Grenada
    {312, NorthAmerica},  // Guadeloupe
    {316, Oceania},       // Guam
    {320, NorthAmerica},  // Guatemala
    {324, Africa},        // Guinea
    {328, SouthAmerica},  // Guyana
    {332, NorthAmerica},  // Haiti
    {334, Oceania},       // Heard Island and McDonald Islands
    {336, Europe},        // Vatican City
    {340, NorthAmerica},  // Honduras
    {344, Asia},          // Hong Kong
    {348, Europe},        // Hungary
    {352, Europe},        // Iceland
    {356, Asia},          // India
    {360, Asia},          // Indonesia
    {364, Asia},          // Iran
    {368, Asia},          // Iraq
    {372, Europe},        // Ireland
    {376, Asia},          // Israel
    {380, Europe},        // Italy
    {384, Africa},        // Côte d'Ivoire
    {388, NorthAmerica},  // Jamaica
    {392, Asia},          // Japan
    {398, Asia},          // Kazakhstan
    {400, Asia},          // Jordan
    {404, Africa},        // Kenya
    {408, Asia},          // North Korea
    {410, Asia},          // South Korea
    {414, Asia},          // Kuwait
    {417, Asia},          // Kyrgyzstan
    {418, Asia},          // Laos
    {422, Asia},          // Lebanon
    {426, Africa},        // Lesotho
    {428, Europe},        // Latvia
    {430, Africa},        // Liberia
    {434, Africa},        // Libya
    {438, Europe},        // Liechtenstein
    {440, Europe},        // Lithuania
    {442, Europe},        // Luxembourg
    {446, Asia},          // Macao
    {450, Africa},        // Madagascar
    {454, Africa},        // Malawi
    {458, Asia},          // Malaysia
    {462, Asia},          // Maldives
    {466, Africa},        // Mali
    {470, Europe},        // Malta
    {474, NorthAmerica},  // Martinique
    {478, Africa},        // Mauritania
    {480, Africa},        // Mauritius
    {484, NorthAmerica},  // Mexico
    {492, Europe},        // Monaco
    {496, Asia},          // Mongolia
    {498, Europe},        // Moldova
    {499, Europe},        // Montenegro
    {500, NorthAmerica},  // Montserrat
    {504, Africa},        // Morocco
    {508, Africa},        // Mozambique
    {512, Asia},          // Oman
    {516, Africa},        // Namibia
    {520, Oceania},       // Nauru
    {524, Asia},          // Nepal
    {528, Europe},        // Netherlands
    {531, NorthAmerica},  // Curaçao
    {533, NorthAmerica},  // Aruba
    {534, NorthAmerica},  // Sint Maarten
    {535, NorthAmerica},  // Bonaire, Sint Eustatius and Saba
    {540, Oceania},       // New Caledonia
    {548, Oceania},       // Vanuatu
    {554, Oceania},       // New Zealand
    {558, NorthAmerica},  // Nicaragua
    {562, Africa},        // Niger
    {566, Africa},        // Nigeria
    {570, Oceania},       // Niue
    {574, Oceania},       // Norfolk Island
    {578, Europe},        // Norway
    {580, Oceania},       // Northern Mariana Islands
    {581, Oceania},       // United States Minor Outlying Islands
    {583, Oceania},       // Micronesia
    {584, Oceania},       // Marshall Islands
    {585, Oceania},       // Palau
    {586, Asia},          // Pakistan
    {591, NorthAmerica},  // Panama
    {598, Oceania},       // Papua New Guinea
    {600, SouthAmerica},  // Paraguay
    {604, SouthAmerica},  // Peru
    {608, Asia},          // Philippines
    {612, Oceania},       // Pitcairn Islands
    {616, Europe},        // Poland
    {620, Europe},        // Portugal
    {624, Africa},        // Guinea-Bissau
    {626, Asia},          // Timor-Leste
    {630, NorthAmerica},  // Puerto Rico
    {634, Asia},          // Qatar
    {638, Africa},        // Réunion
    {642, Europe},        // Romania
    {643, Europe},        // Russia
    {646, Africa},        // Rwanda
    {652, NorthAmerica},  // Saint Barthélemy
    {654, Africa},        // Saint Helena
    {659, NorthAmerica},  // Saint Kitts and Nevis
    {660, NorthAmerica},  // Anguilla
    {662, NorthAmerica},  // Saint Lucia
    {663, NorthAmerica},  // Saint Martin
    {666, NorthAmerica},  // Saint Pierre and Miquelon
    {670, NorthAmerica},  // Saint Vincent and the Grenadines
    {674, Europe},        // San Marino
    {678, Africa},        // São Tomé and Príncipe
    {682, Asia},          // Saudi Arabia
    {686, Africa},        // Senegal
    {688, Europe},        // Serbia
    {690, Africa},        // Seychelles
    {694, Africa},        // Sierra Leone
    {702, Asia},          // Singapore
    {703, Europe},        // Slovakia
    {704, Asia},          // Vietnam
    {705, Europe},        // Slovenia
    {706, Africa},        // Somalia
    {710, Africa},        // South Africa
    {716, Africa},        // Zimbabwe
    {724, Europe},        // Spain
    {728, Africa},        // South Sudan
    {729, Africa},        // Sudan
    {732, Africa},        // Western Sahara
    {740, SouthAmerica},  // Suriname
    {744, Europe},        // Svalbard and Jan Mayen
    {748, Africa},        // Eswatini
    {752, Europe},        // Sweden
    {756, Europe},        // Switzerland
    {760, Asia},          // Syria
    {762, Asia},          // Tajikistan
    {764, Asia},          // Thailand
    {768, Africa},        // Togo
    {772, Oceania},       // Tokelau
    {776, Oceania},       // Tonga
    {780, NorthAmerica},  // Trinidad and Tobago
    {784, Asia},          // United Arab Emirates
    {788, Africa},        // Tunisia
    {792, Asia},          // Turkey
    {795, Asia},          // Turkmenistan
    {796, NorthAmerica},  // Turks and Caicos Islands
    {798, Oceania},       // Tuvalu
    {800, Africa},        // Uganda
    {804, Europe},        // Ukraine
    {807, Europe},        // North Macedonia
    {818, Africa},        // Egypt
    {826, Europe},        // United Kingdom
    {831, Europe},        // Guernsey
    {832, Europe},        // Jersey
    {833, Europe},        // Isle of Man
    {834, Africa},        // Tanzania
    {840, NorthAmerica},  // United States
    {850, NorthAmerica},  // U.S. Virgin Islands
    {854, Africa},        // Burkina Faso
    {858, SouthAmerica},  // Uruguay
    {860, Asia},          // Uzbekistan
    {862, SouthAmerica},  // Venezuela
    {876, Oceania},       // Wallis and Futuna
    {882, Oceania},       // Samoa
    {887, Asia},          // Yemen
    {894, Africa},        // Zambia
});

constexpr bool sorted_unique() {
  for (std::size_t i = 1; i < kTable.size(); ++i)
    if (kTable[i - 1].iso_n3 >= kTable[i].iso_n3) return false;
  return true;
}
static_assert(sorted_unique(), "the continent table must be sorted by code, one row per code");

}  // namespace

std::string_view continent_name(Continent c) {
  switch (c) {
    case Africa: return "Africa";
    case Antarctica: return "Antarctica";
    case Asia: return "Asia";
    case Europe: return "Europe";
    case NorthAmerica: return "North America";
    case Oceania: return "Oceania";
    case SouthAmerica: return "South America";
    case None: break;
  }
  return "";
}

Continent continent_of_country(int iso_n3) {
  const auto it = std::lower_bound(kTable.begin(), kTable.end(), iso_n3,
                                   [](const CountryContinent& row, int code) { return row.iso_n3 < code; });
  return it != kTable.end() && it->iso_n3 == iso_n3 ? it->continent : None;
}

Continent continent_of_uncoded(std::string_view name) {
  // The Natural Earth 4.1 features without iso_n3, by the same M49 rule as their neighbours.
  if (name == "Kosovo") return Europe;
  if (name == "N. Cyprus" || name == "Siachen Glacier") return Asia;
  if (name == "Somaliland") return Africa;
  if (name == "Indian Ocean Ter.") return Oceania;  // Christmas and Cocos Islands (Australia)
  return None;
}

std::span<const CountryContinent> continent_table() { return kTable; }

}  // namespace geoloc::geo
