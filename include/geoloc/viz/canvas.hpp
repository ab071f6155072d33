#pragma once
// A small dependency-free rasteriser over image::Image: pixels, anti-aliased lines, rectangles,
// circles, markers and text in a built-in 5x7 bitmap font. It is what the charts and probability
// maps are drawn with; nothing here knows about plots or geography.
#include <cstdint>
#include <string>
#include <string_view>

#include "geoloc/image/image.hpp"

namespace geoloc::viz {

/// An 8-bit RGB colour.
struct Color {
  uint8_t r = 0, g = 0, b = 0;
  friend bool operator==(const Color&, const Color&) = default;
};

/// A colour from 0xRRGGBB.
constexpr Color rgb(uint32_t hex) {
  return {static_cast<uint8_t>(hex >> 16), static_cast<uint8_t>(hex >> 8), static_cast<uint8_t>(hex)};
}
/// Linear interpolation a + t (b - a) per channel, t clamped to [0, 1].
Color mix(Color a, Color b, double t);

/// The built-in bitmap font: every glyph is 5 pixels wide and 7 tall above the baseline (plus 2
/// rows of descender for g, j, p, q, y and the comma), advancing 6 pixels per character.
/// Covers digits, A-Z, a-z, space and . , - + : / % ( ) _ = @ ! ? [ ] < > * ' " # |; any other
/// character is drawn as a hollow box so that missing glyphs are visible, not silently dropped
/// (a multi-byte UTF-8 character counts as one: its continuation bytes are skipped).
struct Font {
  static constexpr int kGlyphWidth = 5;
  static constexpr int kCapHeight = 7;    // rows above the baseline
  static constexpr int kRows = 9;         // with the descender
  static constexpr int kAdvance = 6;      // glyph plus one column of spacing
  static constexpr int kLineHeight = 11;  // baseline to baseline

  /// Whether `ch` has a glyph of its own.
  static bool has_glyph(char ch);
  /// Whether pixel (x, y) of glyph `ch` is inked; x in [0, 5), y in [0, 9), row 0 at the top.
  /// Out-of-range positions are not inked.
  static bool pixel(char ch, int x, int y);
  /// Width in pixels of `text` drawn at integer `scale` (no trailing spacing column).
  static int text_width(std::string_view text, int scale = 1);
  /// Whether `ch` is a UTF-8 continuation byte (10xxxxxx), which takes no space of its own.
  static bool is_utf8_continuation(char ch) { return (static_cast<unsigned char>(ch) & 0xC0u) == 0x80u; }
  /// Height of capitals at `scale` (7 * scale).
  static int cap_height(int scale = 1) { return kCapHeight * scale; }
};

/// Horizontal placement of text relative to the x given.
enum class Align { left, center, right };

/// Drawing onto an RGB image. Every primitive clips to the image: off-image parts are skipped, so
/// callers never need to clip. Coordinates are pixels with (0, 0) the top-left pixel; the centre of
/// pixel (x, y) is at (x + 0.5, y + 0.5) for the sub-pixel primitives (lines, circles).
class Canvas {
 public:
  /// A width x height canvas filled with `background`; ValueError for a non-positive size.
  Canvas(int width, int height, Color background = {255, 255, 255});
  /// Draws on `img` (e.g. a map background), taken by value; ValueError when it is empty,
  /// ShapeError when its pixel buffer does not hold width * height * 3 bytes.
  explicit Canvas(image::Image img);

  int width() const { return img_.width; }
  int height() const { return img_.height; }
  const image::Image& image() const { return img_; }
  /// Moves the image out; the canvas is empty afterwards.
  image::Image take() { return std::move(img_); }

  /// The colour at (x, y); ValueError outside the canvas.
  Color get(int x, int y) const;
  /// Sets one pixel; ignored outside the canvas.
  void set(int x, int y, Color c);
  /// Blends `c` over pixel (x, y) with opacity alpha in [0, 1] (clamped); ignored outside.
  void blend(int x, int y, Color c, double alpha);
  /// Fills the whole canvas.
  void clear(Color c);
  /// Copies `src` with its top-left at (x, y), clipped to the canvas.
  void draw_image(int x, int y, const image::Image& src);

  /// A line from (x0, y0) to (x1, y1) of the given thickness with round caps, anti-aliased by the
  /// distance of each pixel centre to the segment (coverage falls off over one pixel).
  void line(double x0, double y0, double x1, double y1, Color c, double thickness = 1.0, double alpha = 1.0);
  /// Fills columns [x, x + w) and rows [y, y + h), blended with `alpha`.
  void fill_rect(int x, int y, int w, int h, Color c, double alpha = 1.0);
  /// The 1-pixel (times `thickness`) outline just inside [x, x + w) x [y, y + h).
  void rect(int x, int y, int w, int h, Color c, int thickness = 1);
  /// An anti-aliased filled disc.
  void fill_circle(double cx, double cy, double radius, Color c, double alpha = 1.0);
  /// An anti-aliased ring of the given radius (to the middle of the stroke) and thickness.
  void circle(double cx, double cy, double radius, Color c, double thickness = 1.0, double alpha = 1.0);
  /// An "x" marker: two diagonals of half-length `size` through (cx, cy).
  void cross(double cx, double cy, double size, Color c, double thickness = 2.0);

  /// Draws `text` with its top-left at (x, y) (x moved by `align`), each font pixel a
  /// scale x scale block; returns the width drawn. ValueError for scale < 1.
  int text(int x, int y, std::string_view text, Color c, int scale = 1, Align align = Align::left);
  /// text() with a 1-font-pixel halo in `outline` around every stroke, readable on any background.
  int text_outlined(int x, int y, std::string_view text, Color c, Color outline, int scale = 1,
                    Align align = Align::left);
  /// Text rotated 90 degrees counter-clockwise (reading bottom to top), e.g. a y-axis label;
  /// (x, y) is the top-left of the rotated box, centred vertically on y when align is center.
  void text_vertical(int x, int y, std::string_view text, Color c, int scale = 1, Align align = Align::left);

  /// Writes the canvas as PNG atomically (image::write_png): IoError and no file on failure.
  void write_png(const std::string& path) const;

 private:
  image::Image img_;
};

}  // namespace geoloc::viz
