// AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", arXiv:1711.05101), the
// full-fine-tuning baseline of methods.md section 3.4: 2 f32 moments per parameter, i.e.
// state_bytes = 2 * 4 * sum(numel). Reproduces torch.optim.AdamW of torch 1.13 (single-tensor
// path, foreach=False, amsgrad=False, maximize=False) bit for bit; see adamw.cpp for the exact
// f32 operation order.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "framework/optim/optimizer.h"

namespace kvlab::baselines {

struct AdamWParams {
  double beta1 = 0.9;           // torch default betas = (0.9, 0.999)
  double beta2 = 0.999;
  double eps = 1e-8;            // torch default
  double weight_decay = 0.01;   // torch.optim.AdamW default (1e-2); applied to blocks with
                                // ParamBlock::weight_decay only
};

// The declarations behind the "adamw" registry entry (beta1, beta2, eps, weight_decay).
const std::vector<ParamDecl>& adamw_param_decls();
AdamWParams adamw_params_from(const ParamValues& v);

class AdamW : public optim::Optimizer {
 public:
  explicit AdamW(const AdamWParams& p);

  // Per block b, elementwise over its numel, with t = step_count() + 1:
  //   p *= 1 - lr*wd                       (weight_decay blocks only)
  //   m  = b1*m + (1 - b1)*g
  //   v  = b2*v + (1 - b2)*g*g
  //   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
  void step(std::span<optim::ParamBlock> params, double lr) override;
  void prepare(std::span<const optim::ParamBlock> params) override;
  int64_t state_bytes() const override;
  // "m/<block name>" for every block, then "v/<block name>" for every block, in block order;
  // each [numel] f32. Empty before the first step() or prepare().
  std::vector<optim::StateTensor> state() override;
  int64_t step_count() const override { return step_; }
  void set_step_count(int64_t n) override;
  const AdamWParams& params() const { return p_; }

 private:
  struct Moments {
    std::string name;
    std::vector<float> m, v;  // [numel] each
  };
  AdamWParams p_;
  std::vector<Moments> moments_;  // one per block, in block order
  int64_t step_ = 0;              // steps taken (torch's state["step"])
};

}  // namespace kvlab::baselines
