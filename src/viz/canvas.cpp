#include "geoloc/viz/canvas.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

#include "geoloc/error.hpp"

namespace geoloc::viz {
namespace {

uint8_t lerp_u8(uint8_t a, uint8_t b, double t) {
  return static_cast<uint8_t>(std::lround(a + (static_cast<double>(b) - a) * t));
}

// Distance from (px, py) to the segment (x0, y0)-(x1, y1).
double segment_distance(double px, double py, double x0, double y0, double x1, double y1) {
  const double dx = x1 - x0, dy = y1 - y0;
  const double len2 = dx * dx + dy * dy;
  double t = len2 > 0 ? ((px - x0) * dx + (py - y0) * dy) / len2 : 0.0;
  t = std::clamp(t, 0.0, 1.0);
  const double ex = px - (x0 + t * dx), ey = py - (y0 + t * dy);
  return std::sqrt(ex * ex + ey * ey);
}

int aligned_x(int x, int width, Align align) {
  switch (align) {
    case Align::left:
      return x;
    case Align::center:
      return x - width / 2;
    case Align::right:
      return x - width;
  }
  return x;
}

}  // namespace

Color mix(Color a, Color b, double t) {
  t = std::clamp(t, 0.0, 1.0);
  return {lerp_u8(a.r, b.r, t), lerp_u8(a.g, b.g, t), lerp_u8(a.b, b.b, t)};
}

Canvas::Canvas(int width, int height, Color background) {
  GEOLOC_CHECK(width > 0 && height > 0, ValueError, "Canvas: size must be positive, got ", width, "x",
               height);
  img_ = image::Image(width, height);
  clear(background);
}

Canvas::Canvas(image::Image img) : img_(std::move(img)) {
  GEOLOC_CHECK(!img_.empty(), ValueError, "Canvas: the image is empty");
  GEOLOC_CHECK(img_.pixels.size() == static_cast<size_t>(img_.width) * img_.height * 3, ShapeError,
               "Canvas: image of ", img_.width, "x", img_.height, " holds ", img_.pixels.size(),
               " bytes, not width*height*3");
}

Color Canvas::get(int x, int y) const {
  GEOLOC_CHECK(x >= 0 && y >= 0 && x < width() && y < height(), ValueError, "Canvas::get: (", x, ", ", y,
               ") is outside the ", width(), "x", height(), " canvas");
  const uint8_t* p = img_.at(x, y);
  return {p[0], p[1], p[2]};
}

void Canvas::set(int x, int y, Color c) {
  if (x < 0 || y < 0 || x >= width() || y >= height()) return;
  uint8_t* p = img_.at(x, y);
  p[0] = c.r, p[1] = c.g, p[2] = c.b;
}

void Canvas::blend(int x, int y, Color c, double alpha) {
  if (x < 0 || y < 0 || x >= width() || y >= height() || !(alpha > 0)) return;
  alpha = std::min(alpha, 1.0);
  uint8_t* p = img_.at(x, y);
  p[0] = lerp_u8(p[0], c.r, alpha);
  p[1] = lerp_u8(p[1], c.g, alpha);
  p[2] = lerp_u8(p[2], c.b, alpha);
}

void Canvas::clear(Color c) {
  for (size_t i = 0; i < img_.pixels.size(); i += 3) {
    img_.pixels[i] = c.r, img_.pixels[i + 1] = c.g, img_.pixels[i + 2] = c.b;
  }
}

void Canvas::draw_image(int x, int y, const image::Image& src) {
  const int xa = std::max(0, x), xb = std::min(width(), x + src.width);
  if (xa >= xb) return;
  for (int py = std::max(0, y); py < std::min(height(), y + src.height); ++py)
    std::copy_n(src.at(xa - x, py - y), static_cast<size_t>(xb - xa) * 3, img_.at(xa, py));
}

void Canvas::line(double x0, double y0, double x1, double y1, Color c, double thickness, double alpha) {
  // A NaN end (a gap in a series) or a non-positive width draws nothing rather than garbage.
  if (!std::isfinite(x0) || !std::isfinite(y0) || !std::isfinite(x1) || !std::isfinite(y1)) return;
  if (!(thickness > 0) || !(alpha > 0)) return;
  const double r = thickness / 2;
  const double reach = r + 1.0;  // pixels farther than this from the segment get no coverage
  const int ya = std::max(0, static_cast<int>(std::floor(std::min(y0, y1) - reach)));
  const int yb = std::min(height() - 1, static_cast<int>(std::ceil(std::max(y0, y1) + reach)));
  const double dx = x1 - x0, dy = y1 - y0;
  for (int py = ya; py <= yb; ++py) {
    const double cy = py + 0.5;
    // Only the x-span of this row that can be within `reach` of the segment is visited, so a long
    // diagonal costs its length times its width, not its bounding box.
    double xa, xb;
    if (std::abs(dy) < 1e-9) {
      xa = std::min(x0, x1), xb = std::max(x0, x1);
    } else {
      double ta = std::clamp((cy - reach - y0) / dy, 0.0, 1.0),
             tb = std::clamp((cy + reach - y0) / dy, 0.0, 1.0);
      const double xta = x0 + ta * dx, xtb = x0 + tb * dx;
      xa = std::min(xta, xtb), xb = std::max(xta, xtb);
    }
    const int pxa = std::max(0, static_cast<int>(std::floor(xa - reach)));
    const int pxb = std::min(width() - 1, static_cast<int>(std::ceil(xb + reach)));
    for (int px = pxa; px <= pxb; ++px) {
      const double d = segment_distance(px + 0.5, cy, x0, y0, x1, y1);
      const double cov = std::clamp(r + 0.5 - d, 0.0, 1.0);
      if (cov > 0) blend(px, py, c, alpha * cov);
    }
  }
}

void Canvas::fill_rect(int x, int y, int w, int h, Color c, double alpha) {
  const int xa = std::max(0, x), xb = std::min(width(), x + w);
  const int ya = std::max(0, y), yb = std::min(height(), y + h);
  for (int py = ya; py < yb; ++py)
    for (int px = xa; px < xb; ++px) {
      if (alpha >= 1.0)
        set(px, py, c);
      else
        blend(px, py, c, alpha);
    }
}

void Canvas::rect(int x, int y, int w, int h, Color c, int thickness) {
  if (w <= 0 || h <= 0 || thickness <= 0) return;
  const int t = std::min({thickness, (w + 1) / 2, (h + 1) / 2});
  fill_rect(x, y, w, t, c);
  fill_rect(x, y + h - t, w, t, c);
  fill_rect(x, y + t, t, h - 2 * t, c);
  fill_rect(x + w - t, y + t, t, h - 2 * t, c);
}

void Canvas::fill_circle(double cx, double cy, double radius, Color c, double alpha) {
  if (!std::isfinite(cx) || !std::isfinite(cy) || !(radius > 0)) return;
  const int ya = std::max(0, static_cast<int>(std::floor(cy - radius - 1)));
  const int yb = std::min(height() - 1, static_cast<int>(std::ceil(cy + radius + 1)));
  const int xa = std::max(0, static_cast<int>(std::floor(cx - radius - 1)));
  const int xb = std::min(width() - 1, static_cast<int>(std::ceil(cx + radius + 1)));
  for (int py = ya; py <= yb; ++py)
    for (int px = xa; px <= xb; ++px) {
      const double d = std::hypot(px + 0.5 - cx, py + 0.5 - cy);
      const double cov = std::clamp(radius + 0.5 - d, 0.0, 1.0);
      if (cov > 0) blend(px, py, c, alpha * cov);
    }
}

void Canvas::circle(double cx, double cy, double radius, Color c, double thickness, double alpha) {
  if (!std::isfinite(cx) || !std::isfinite(cy) || !(radius > 0) || !(thickness > 0)) return;
  const double outer = radius + thickness / 2 + 1;
  const int ya = std::max(0, static_cast<int>(std::floor(cy - outer)));
  const int yb = std::min(height() - 1, static_cast<int>(std::ceil(cy + outer)));
  const int xa = std::max(0, static_cast<int>(std::floor(cx - outer)));
  const int xb = std::min(width() - 1, static_cast<int>(std::ceil(cx + outer)));
  for (int py = ya; py <= yb; ++py)
    for (int px = xa; px <= xb; ++px) {
      const double d = std::hypot(px + 0.5 - cx, py + 0.5 - cy);
      const double cov = std::clamp(thickness / 2 + 0.5 - std::abs(d - radius), 0.0, 1.0);
      if (cov > 0) blend(px, py, c, alpha * cov);
    }
}

void Canvas::cross(double cx, double cy, double size, Color c, double thickness) {
  line(cx - size, cy - size, cx + size, cy + size, c, thickness);
  line(cx - size, cy + size, cx + size, cy - size, c, thickness);
}

int Canvas::text(int x, int y, std::string_view s, Color c, int scale, Align align) {
  GEOLOC_CHECK(scale >= 1, ValueError, "Canvas::text: scale must be >= 1, got ", scale);
  const int w = Font::text_width(s, scale);
  int cx = aligned_x(x, w, align);
  for (char ch : s) {
    if (Font::is_utf8_continuation(ch)) continue;
    for (int gy = 0; gy < Font::kRows; ++gy)
      for (int gx = 0; gx < Font::kGlyphWidth; ++gx)
        if (Font::pixel(ch, gx, gy)) fill_rect(cx + gx * scale, y + gy * scale, scale, scale, c);
    cx += Font::kAdvance * scale;
  }
  return w;
}

int Canvas::text_outlined(int x, int y, std::string_view s, Color c, Color outline, int scale, Align align) {
  GEOLOC_CHECK(scale >= 1, ValueError, "Canvas::text_outlined: scale must be >= 1, got ", scale);
  // The halo is the text drawn at the eight one-font-pixel offsets; the text goes on top.
  for (int oy = -1; oy <= 1; ++oy)
    for (int ox = -1; ox <= 1; ++ox)
      if (ox != 0 || oy != 0) text(x + ox * scale, y + oy * scale, s, outline, scale, align);
  return text(x, y, s, c, scale, align);
}

void Canvas::text_vertical(int x, int y, std::string_view s, Color c, int scale, Align align) {
  GEOLOC_CHECK(scale >= 1, ValueError, "Canvas::text_vertical: scale must be >= 1, got ", scale);
  const int w = Font::text_width(s, scale);
  const int top = align == Align::left ? y : align == Align::center ? y - w / 2 : y - w;
  // Horizontal text position (tx, ty) goes to (x + ty, top + w - 1 - tx): a 90-degree turn
  // counter-clockwise, so the first character ends up at the bottom.
  int tx0 = 0;
  for (char ch : s) {
    if (Font::is_utf8_continuation(ch)) continue;
    for (int gy = 0; gy < Font::kRows; ++gy)
      for (int gx = 0; gx < Font::kGlyphWidth; ++gx)
        if (Font::pixel(ch, gx, gy)) {
          const int tx = tx0 + gx * scale;
          fill_rect(x + gy * scale, top + w - tx - scale, scale, scale, c);
        }
    tx0 += Font::kAdvance * scale;
  }
}

void Canvas::write_png(const std::string& path) const { image::write_png(path, img_); }

}  // namespace geoloc::viz
