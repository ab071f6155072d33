#pragma once
// Rendering a small "photo" of the Earth around a point: a gnomonic projection on the tangent plane
// at the centre, rotated by a heading. Built from the centre's own tangent frame, so it has no
// distortion or seam at the poles or across the antimeridian.
#include <cstdint>

#include "geoloc/earth/imagery.hpp"
#include "geoloc/geo/coords.hpp"

namespace geoloc::earth {

/// Where a view looks: its centre, the compass direction of the image's "up" (degrees clockwise
/// from north) and its width on the ground (km, measured through the centre).
struct ViewGeometry {
  geo::LatLng centre;
  double heading_deg = 0.0;
  double fov_km = 500.0;
};

/// The view's tangent frame: unit vectors of the centre, of the image's right and of its up.
struct ViewFrame {
  geo::Vec3 centre, right, up;
  double half_tan = 0.0;  // tan of the half-width angle: the tangent-plane half-width of the image
};
/// ValueError for an invalid centre or a fov outside (0, 10000) km. At a pole, where east is
/// undefined, east is taken as +y (longitude 90) so that the frame is still well defined.
ViewFrame view_frame(const ViewGeometry& g);

/// The point that output pixel (col, row) (centre of the pixel) of a width x height view shows.
/// Pixels are square: the horizontal extent is fov_km; the vertical one is fov_km * height / width.
geo::LatLng view_pixel_location(const ViewFrame& f, int width, int height, double col, double row);

/// Renders a width x height RGB view (HWC, 3 bytes per pixel) of `raster` into `out`, bilinear,
/// rounded to nearest. Deterministic: the same inputs give the same bytes on the same build.
/// `scratch` needs 2 * width * height floats (passed in so the hot loop allocates nothing).
void render_view(const Raster& raster, const ViewFrame& f, int width, int height, uint8_t* out, float* scratch);
/// Convenience overload that allocates its scratch.
void render_view(const Raster& raster, const ViewGeometry& g, int width, int height, uint8_t* out);

}  // namespace geoloc::earth
