// Learning-rate schedule of the training loop: linear warmup, then cosine decay to a floor
// (Loshchilov & Hutter, SGDR, arXiv:1608.03983, without restarts; the shape of Hugging Face's
// get_cosine_schedule_with_warmup with a min_lr floor).
#pragma once

#include <cstdint>
#include <vector>

#include "framework/core/params.h"

namespace kvlab::train {

struct WarmupCosine {
  double max_lr = 0;            // lr at the end of warmup
  double min_lr = 0;            // floor reached at step == total_steps
  int64_t warmup_steps = 0;     // W, 0 <= W <= total_steps
  int64_t total_steps = 0;      // N > 0
  double start_factor = 0;      // lr(0) = start_factor * max_lr, in [0, 1]
};

// lr for the optimizer step with 0-based index `step` (the number of steps already taken):
//   step <  W:      max_lr * (f0 + (1 - f0) * step / W)
//   W <= step < N:  min_lr + (max_lr - min_lr) * (1 + cos(pi * (step - W) / (N - W))) / 2
//   step >= N:      min_lr (the floor; training past N stays there)
// Throws kvlab::Error for step < 0 or an invalid schedule.
double lr_at(const WarmupCosine& s, int64_t step);
// Checks the ranges above; throws kvlab::Error naming the field.
void validate(const WarmupCosine& s);

// Declarations: lr, min_lr, warmup_steps, total_steps, warmup_start_factor.
const std::vector<ParamDecl>& schedule_param_decls();
WarmupCosine schedule_from(const ParamValues& v);

}  // namespace kvlab::train
