// The Oja subspace step OjaKV applies at prefill and decode (methods.md 1.3 steps 1 and 3), and the
// batch second moment it is driven by. f64 throughout (d x d with d <= 256).
#pragma once

#include <cstdint>

#include "framework/linalg/linalg.h"

namespace kvlab::methods {

// Scale handling for C (methods.md 1.4 "why normalise C"): none: C = X^T X / m; trace: C / tr C;
// token_l2: every row scaled to unit L2 norm first (zero rows dropped), so tr C = 1.
enum class CovNorm { kNone, kTrace, kTokenL2 };

// C [d, d] from rows X [m, d] (floats, rows `stride` apart). trace_raw receives tr(X^T X / m)
// before any normalisation (traced as "tr C"). m = 0 gives zeros. Cost O(m d^2).
linalg::Mat batch_second_moment(const float* X, int64_t m, int64_t d, int64_t stride, CovNorm norm,
                                double* trace_raw = nullptr);

struct OjaStepStats {
  double step = 0.0;          // eta * ||C U - U (U^T C U)||_F (effective step)
  double delta = 0.0;         // ||U_new - U_old||_F
  double orth_error = 0.0;    // ||U_new^T U_new - I||_F after the QR
};

// One batch Oja step (methods.md 1.3 step 1.3, the ACL rule):
// U <- qr_q(U + eta (C U - U (U^T C U))), diag(R) > 0. U [d, r], C [d, d]. Cost O(d^2 r + d r^2).
OjaStepStats oja_step(linalg::Mat& U, const linalg::Mat& C, double eta);

}  // namespace kvlab::methods
