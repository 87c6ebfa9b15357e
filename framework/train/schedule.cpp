#include "framework/train/schedule.h"

#include <cmath>
#include <numbers>

#include "framework/core/error.h"

namespace kvlab::train {

void validate(const WarmupCosine& s) {
  if (s.total_steps <= 0) fail("schedule: total_steps = ", s.total_steps, " must be > 0");
  if (s.warmup_steps < 0 || s.warmup_steps > s.total_steps)
    fail("schedule: warmup_steps = ", s.warmup_steps, " must be in [0, total_steps = ",
         s.total_steps, "]");
  if (!(s.max_lr >= 0)) fail("schedule: lr = ", s.max_lr, " must be >= 0");
  if (!(s.min_lr >= 0 && s.min_lr <= s.max_lr))
    fail("schedule: min_lr = ", s.min_lr, " must be in [0, lr = ", s.max_lr, "]");
  if (!(s.start_factor >= 0 && s.start_factor <= 1))
    fail("schedule: warmup_start_factor = ", s.start_factor, " must be in [0, 1]");
}

double lr_at(const WarmupCosine& s, int64_t step) {
  validate(s);
  if (step < 0) fail("schedule: step ", step, " must be >= 0");
  const auto W = s.warmup_steps, N = s.total_steps;
  if (step < W)
    return s.max_lr * (s.start_factor + (1.0 - s.start_factor) * static_cast<double>(step) /
                                            static_cast<double>(W));
  if (step >= N) return s.min_lr;
  const double progress = static_cast<double>(step - W) / static_cast<double>(N - W);  // [0, 1)
  return s.min_lr + (s.max_lr - s.min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

const std::vector<ParamDecl>& schedule_param_decls() {
  using T = ParamDecl::Type;
  static const std::vector<ParamDecl> decls = {
      {"lr", T::kFloat, 1e-3, 0.0, {}, {}, "peak learning rate, reached at the end of warmup"},
      {"min_lr", T::kFloat, 0.0, 0.0, {}, {}, "cosine floor, reached at total_steps"},
      {"warmup_steps", T::kInt, int64_t{0}, 0.0, {}, {}, "linear warmup steps"},
      {"total_steps", T::kInt, int64_t{1000}, 1.0, {}, {}, "steps of warmup + cosine decay"},
      {"warmup_start_factor", T::kFloat, 0.0, 0.0, 1.0, {}, "lr(0) = factor * lr"},
  };
  return decls;
}

WarmupCosine schedule_from(const ParamValues& v) {
  WarmupCosine s;
  s.max_lr = v.get_float("lr");
  s.min_lr = v.get_float("min_lr");
  s.warmup_steps = v.get_int("warmup_steps");
  s.total_steps = v.get_int("total_steps");
  s.start_factor = v.get_float("warmup_start_factor");
  validate(s);
  return s;
}

}  // namespace kvlab::train
