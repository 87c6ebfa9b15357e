// Global-norm gradient clipping with torch.nn.utils.clip_grad_norm_ semantics (norm_type 2):
//   total_norm = ||concat(g_1, ..., g_B)||_2
//   clip_coef  = max_norm / (total_norm + 1e-6);  g_b *= clip_coef only when clip_coef < 1
// Differences from torch 1.13, by design: the sum of squares is accumulated in f64 over all
// elements (torch: per-tensor f32 norms, then the norm of the stacked norms in f32), so
// total_norm agrees with torch to ~1e-7 relative, not bit for bit; clip_coef is computed in f64
// and rounded once to f32 before the multiply (torch: f32 throughout). A non-finite total norm
// leaves the gradients untouched and is reported (torch would multiply them by NaN).
#pragma once

#include <span>

namespace kvlab::train {

struct ClipResult {
  double total_norm = 0;  // pre-clip global L2 norm
  double coef = 1;        // factor applied (1 when not clipped)
  bool clipped = false;   // coef < 1 was applied
  bool finite = true;     // false: a NaN/Inf gradient; nothing was scaled
};

// Global L2 norm of all gradients together, accumulated in f64.
double global_grad_norm(std::span<const std::span<float>> grads);
// Scales every gradient in place when the global norm exceeds max_norm (> 0).
ClipResult clip_grad_norm(std::span<const std::span<float>> grads, double max_norm);

}  // namespace kvlab::train
