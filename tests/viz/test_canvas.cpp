#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "geoloc/error.hpp"
#include "geoloc/viz/canvas.hpp"
#include "geoloc/viz/colormap.hpp"

using namespace geoloc::viz;

namespace {

constexpr Color kWhite{255, 255, 255};
constexpr Color kRed{255, 0, 0};

// The glyph as 9 strings of 5 characters, read back through Font::pixel.
std::string glyph_rows(char ch) {
  std::string s;
  for (int y = 0; y < Font::kRows; ++y) {
    for (int x = 0; x < Font::kGlyphWidth; ++x) s += Font::pixel(ch, x, y) ? '#' : '.';
    s += '\n';
  }
  return s;
}

}  // namespace

TEST_CASE("font: known glyphs have the pixels drawn in the table") {
  CHECK(glyph_rows('1') == "..#..\n.##..\n..#..\n..#..\n..#..\n..#..\n.###.\n.....\n.....\n");
  CHECK(glyph_rows('T') == "#####\n..#..\n..#..\n..#..\n..#..\n..#..\n..#..\n.....\n.....\n");
  // Descenders use the two rows below the baseline.
  CHECK(glyph_rows('g') == ".....\n.....\n.####\n#...#\n#...#\n#...#\n.####\n....#\n.###.\n");
  std::string blank;
  for (int i = 0; i < 9; ++i) blank += ".....\n";
  CHECK(glyph_rows(' ') == blank);
  // Every character the charts and maps need has a glyph, and no two of the digits look alike.
  const std::string needed = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.,-+:/%()_= @";
  for (char ch : needed) CHECK_MESSAGE(Font::has_glyph(ch), "no glyph for '", ch, "'");
  for (char a = '0'; a <= '9'; ++a)
    for (char b = static_cast<char>(a + 1); b <= '9'; ++b) CHECK(glyph_rows(a) != glyph_rows(b));
  // Out of range is blank; unknown characters are a visible box, not nothing.
  CHECK_FALSE(Font::pixel('A', -1, 0));
  CHECK_FALSE(Font::pixel('A', 5, 0));
  CHECK_FALSE(Font::has_glyph('~'));
  CHECK(Font::pixel('~', 0, 0));
  CHECK(Font::pixel('~', 4, 6));
  CHECK_FALSE(Font::pixel('~', 2, 3));
}

TEST_CASE("font: text width counts characters, UTF-8 sequences as one") {
  CHECK(Font::text_width("") == 0);
  CHECK(Font::text_width("A") == 5);
  CHECK(Font::text_width("AB") == 11);
  CHECK(Font::text_width("AB", 3) == 33);
  CHECK(Font::text_width("\xC2\xB0") == 5);  // the degree sign: one box
}

TEST_CASE("canvas: text puts each font pixel as a scale x scale block") {
  Canvas c(40, 30, kWhite);
  const int w = c.text(3, 4, "1", kRed, 2);
  CHECK(w == 10);
  for (int gy = 0; gy < Font::kRows; ++gy)
    for (int gx = 0; gx < Font::kGlyphWidth; ++gx)
      for (int sy = 0; sy < 2; ++sy)
        for (int sx = 0; sx < 2; ++sx) {
          const Color px = c.get(3 + gx * 2 + sx, 4 + gy * 2 + sy);
          CHECK(px == (Font::pixel('1', gx, gy) ? kRed : kWhite));
        }
  CHECK(c.get(2, 4) == kWhite);
  // Right alignment ends the text at x.
  Canvas r(40, 12, kWhite);
  r.text(30, 0, "T", kRed, 1, Align::right);
  CHECK(r.get(25, 0) == kRed);
  CHECK(r.get(29, 0) == kRed);
  CHECK(r.get(30, 0) == kWhite);
  CHECK_THROWS_AS(c.text(0, 0, "x", kRed, 0), geoloc::ValueError);
}

TEST_CASE("canvas: vertical text reads bottom to top") {
  Canvas c(20, 20, kWhite);
  // "T": its top bar (row 0 of the glyph) becomes the left column; its first column the bottom row.
  c.text_vertical(2, 3, "T", kRed);
  for (int i = 0; i < 5; ++i) CHECK(c.get(2, 3 + i) == kRed);  // the bar
  CHECK(c.get(3, 3 + 2) == kRed);                              // the stem, at the middle
  CHECK(c.get(3, 3) == kWhite);
}

TEST_CASE("canvas: lines, rectangles, circles and markers") {
  Canvas c(100, 60, kWhite);
  c.line(10, 20.5, 90, 20.5, kRed, 1.0);
  CHECK(c.get(50, 20) == kRed);
  CHECK(c.get(50, 23) == kWhite);
  CHECK(c.get(5, 20) == kWhite);
  // Thick diagonal: the centre is fully covered, a pixel 5 away is not touched.
  c.line(10, 50, 50, 30, Color{0, 0, 255}, 3.0);
  CHECK(c.get(30, 39) == Color{0, 0, 255});
  CHECK(c.get(30, 46) == kWhite);
  // NaN ends draw nothing (gaps in series), and lines far outside the canvas are clipped.
  Canvas n(10, 10, kWhite);
  n.line(NAN, 0, 5, 5, kRed);
  n.line(-1e9, -1e9, -1e9 + 1, -1e9, kRed);
  for (int y = 0; y < 10; ++y)
    for (int x = 0; x < 10; ++x) CHECK(n.get(x, y) == kWhite);

  Canvas s(30, 30, kWhite);
  s.fill_circle(15, 15, 5, kRed);
  CHECK(s.get(14, 14) == kRed);
  CHECK(s.get(15, 9) == kWhite);
  s.rect(0, 0, 30, 30, Color{0, 255, 0}, 2);
  CHECK(s.get(0, 15) == Color{0, 255, 0});
  CHECK(s.get(1, 15) == Color{0, 255, 0});
  CHECK(s.get(2, 15) == kWhite);
  Canvas k(30, 30, kWhite);
  k.cross(15, 15, 6, kRed, 2.0);
  CHECK(k.get(14, 14) == kRed);  // pixel (14, 14) has its centre on the diagonal
  CHECK(k.get(19, 10) == kRed);
  CHECK(k.get(15, 8) == kWhite);
  Canvas o(30, 30, kWhite);
  o.circle(15, 15, 8, kRed, 2.0);
  CHECK(o.get(15, 15) == kWhite);
  CHECK(o.get(22, 15) == kRed);  // centre (22.5, 15.5) is 7.5 from the centre: inside the stroke
}

TEST_CASE("canvas: blend, clipping, errors") {
  Canvas c(4, 4, Color{0, 0, 0});
  c.blend(1, 1, Color{200, 100, 0}, 0.5);
  CHECK(c.get(1, 1) == Color{100, 50, 0});
  c.blend(-1, 1, kRed, 1.0);  // ignored
  c.set(4, 0, kRed);          // ignored
  c.fill_rect(-10, -10, 12, 12, kRed);
  CHECK(c.get(1, 1) == kRed);
  CHECK(c.get(2, 2) == Color{0, 0, 0});
  CHECK_THROWS_AS(c.get(4, 0), geoloc::ValueError);
  CHECK_THROWS_AS(Canvas(0, 5), geoloc::ValueError);
  CHECK(mix(Color{0, 0, 0}, Color{255, 255, 255}, 2.0) == Color{255, 255, 255});
  CHECK(rgb(0x102030) == Color{0x10, 0x20, 0x30});
}

TEST_CASE("colormaps: endpoints, monotone brightness, names") {
  CHECK(colormap(Colormap::inferno, 0) == rgb(0x000004));
  CHECK(colormap(Colormap::inferno, 1) == rgb(0xfcffa4));
  CHECK(colormap(Colormap::viridis, 1) == rgb(0xfde725));
  CHECK(colormap(Colormap::magma, NAN) == colormap(Colormap::magma, 0));
  for (Colormap m : {Colormap::inferno, Colormap::magma, Colormap::viridis}) {
    double prev = -1;
    for (int i = 0; i <= 100; ++i) {
      const Color k = colormap(m, i / 100.0);
      const double lum = 0.2126 * k.r + 0.7152 * k.g + 0.0722 * k.b;
      CHECK(lum >= prev - 1.0);  // perceptual maps brighten steadily
      prev = lum;
    }
  }
  CHECK(colormap_from_name("magma") == Colormap::magma);
  CHECK_THROWS_AS(colormap_from_name("jet"), geoloc::ValueError);
  CHECK(palette(0) != palette(1));
  CHECK(palette(10) == palette(0));
}
