// The one shared close-comparison (style.md 4.2): checks every element against
// |a - b| <= atol + rtol * |b| and, on failure, reports the worst index, the max abs and rel
// error, how many elements fell outside, and the share of the budget the worst one used.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>

namespace kvlab::testing {

inline ::testing::AssertionResult all_close(const float* got, const float* want, int64_t n,
                                            double atol, double rtol) {
  int64_t worst = -1, bad = 0;
  double worst_ratio = 0, max_abs = 0, max_rel = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double a = got[i], b = want[i];
    if (std::isnan(a) != std::isnan(b) || std::isinf(a) != std::isinf(b)) {
      ++bad;
      worst = i;
      worst_ratio = INFINITY;
      continue;
    }
    if (std::isnan(a) || std::isinf(a)) continue;
    const double err = std::fabs(a - b);
    const double budget = atol + rtol * std::fabs(b);
    const double ratio = err / budget;
    max_abs = std::max(max_abs, err);
    if (b != 0) max_rel = std::max(max_rel, err / std::fabs(b));
    if (ratio > 1) ++bad;
    if (ratio > worst_ratio || worst < 0) {
      worst_ratio = ratio;
      worst = i;
    }
  }
  std::ostringstream os;
  os << n << " elements, " << bad << " outside atol=" << atol << " rtol=" << rtol
     << "; max abs err " << max_abs << ", max rel err " << max_rel << "; worst at [" << worst
     << "]";
  if (worst >= 0) os << " got " << got[worst] << " want " << want[worst];
  os << " (" << 100.0 * worst_ratio << "% of budget)";
  if (bad) return ::testing::AssertionFailure() << os.str();
  return ::testing::AssertionSuccess() << os.str();
}

}  // namespace kvlab::testing
