#include "framework/train/clip.h"

#include <cmath>

#include "framework/core/error.h"

namespace kvlab::train {

double global_grad_norm(std::span<const std::span<float>> grads) {
  double sum_sq = 0;  // f64: relative error <= n * 2^-53, below f32 resolution for n < 2^29
  for (const auto& g : grads)
    for (float x : g) sum_sq += static_cast<double>(x) * static_cast<double>(x);
  return std::sqrt(sum_sq);
}

ClipResult clip_grad_norm(std::span<const std::span<float>> grads, double max_norm) {
  if (!(max_norm > 0)) fail("clip_grad_norm: max_norm = ", max_norm, " must be > 0");
  ClipResult r;
  r.total_norm = global_grad_norm(grads);
  if (!std::isfinite(r.total_norm)) {
    r.finite = false;
    return r;
  }
  const double coef = max_norm / (r.total_norm + 1e-6);  // torch's 1e-6 guard
  if (coef >= 1.0) return r;
  const float c = static_cast<float>(coef);
  for (const auto& g : grads)
    for (float& x : g) x *= c;
  r.coef = c;
  r.clipped = true;
  return r;
}

}  // namespace kvlab::train
