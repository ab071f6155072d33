// The linear layer of the CPU backend (Eigen GEMM).
#include <Eigen/Core>
#include <cstdint>

#include "bf16.hpp"
#include "common.hpp"
namespace geoloc::cpu {
using namespace detail;

void linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& y) {
  if (bf16::widened("linear_forward", {x, w, bias, y},
                    [&](bf16::Widen& v) { linear_forward(v.in(x), v.in(w), v.in(bias), v.out(y)); }))
    return;
  const int64_t n = x.dim(0), d = x.dim(1), c = w.dim(0);
  MapM Y(f(y), n, c);
  Y.noalias() = CMapM(f(x), n, d) * CMapM(f(w), c, d).transpose();
  if (bias.defined()) Y.rowwise() += CMapV(f(bias), c).transpose();
}

void linear_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& dx, const Tensor& dw,
                     const Tensor& dbias) {
  if (bf16::widened("linear_backward", {dy, x, w, dx, dw, dbias}, [&](bf16::Widen& v) {
        linear_backward(v.in(dy), v.in(x), v.in(w), v.out(dx), v.out(dw), v.out(dbias));
      }))
    return;
  const int64_t n = x.dim(0), d = x.dim(1), c = w.dim(0);
  CMapM DY(f(dy), n, c);
  if (dx.defined()) MapM(f(dx), n, d).noalias() = DY * CMapM(f(w), c, d);
  if (dw.defined()) MapM(f(dw), c, d).noalias() = DY.transpose() * CMapM(f(x), n, d);
  if (dbias.defined()) MapV(f(dbias), c) = DY.colwise().sum().transpose();
}

}  // namespace geoloc::cpu
