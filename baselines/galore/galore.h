// GaLore (Zhao et al., "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection",
// ICML 2024, arXiv:2403.03507): the official galore_torch GaLoreAdamW with GaLoreProjector,
// proj_type "std" (jiaweizzhao/GaLore, galore_torch/adamw.py and galore_projector.py).
// Per target block G [m, n] (2-D, named in target_modules), r = min(rank, m, n), it = steps done:
//   if it % update_proj_gap == 0: SVD G = U S V^T (framework/linalg svd_thin, f64, each column of
//     U signed so its largest-|x| entry is positive, V^T's rows flipped to match);
//     m >= n: O = V^T[:r, :] [r, n] ("right"), R = G O^T [m, r]
//     m <  n: O = U[:, :r]   [m, r] ("left"),  R = O^T G [r, n]
//   M = b1 M + (1-b1) R;  V = b2 V + (1-b2) R*R            (shape of R)
//   N = M / (sqrt(V) + eps)                                  (eps outside the bias correction)
//   W += -lr sqrt(1-b2^t)/(1-b1^t) * scale * back(N)         back: N O (right), O N (left)
//   W += -lr wd W                                            (decoupled decay after the update,
//                                                             blocks with weight decay only)
// Every other block (norms, embeddings, head) runs the same AdamW without projection, as the
// official optimizer does for its parameter group without "rank".
// Note: the projector is over the smaller side; the states take the larger one. The SVD is
// f64 (torch computes it in f32; the golden, tests/golden/make_galore_goldens.py, uses f64 too);
// projections and the back-projection are f32 GEMMs (OpenBLAS), as torch.matmul is. Cost per
// step: 4 m n r flops of GEMM + O(m n) elementwise; a refresh adds the SVD, O(m n min(m, n)).
// State (methods.md 3.4): per target block 2*r*max(m,n) moments + r*min(m,n) projector floats,
// f32; other blocks 2*numel. state(): "galore/exp_avg/<b>", "galore/exp_avg_sq/<b>" for every
// block, then "galore/ortho/<b>" for target blocks.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "framework/optim/optimizer.h"

namespace kvlab::baselines {

struct GaLoreParams {
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-6;              // galore_torch AdamW default
  double weight_decay = 0.0;      // galore_torch AdamW default
  int64_t rank = 128;             // torchrun_main.py default
  int64_t update_proj_gap = 200;  // GaLoreProjector default
  double scale = 1.0;  // GaLoreProjector default (the paper's pre-training runs use 0.25)
  std::vector<std::string> target_modules = {"q_proj",  "k_proj",    "v_proj",   "o_proj",
                                             "up_proj", "down_proj", "gate_proj"};
};

const std::vector<ParamDecl>& galore_param_decls();
GaLoreParams galore_params_from(const ParamValues& v);

class GaLore : public optim::Optimizer {
 public:
  explicit GaLore(const GaLoreParams& p);
  void step(std::span<optim::ParamBlock> params, double lr) override;
  void prepare(std::span<const optim::ParamBlock> params) override;
  int64_t state_bytes() const override;
  std::vector<optim::StateTensor> state() override;
  int64_t step_count() const override { return step_; }
  void set_step_count(int64_t n) override;

 private:
  struct Block {
    std::string name;
    bool target = false, right = false;
    int64_t m = 0, n = 0, r = 0;
    std::vector<float> exp_avg, exp_avg_sq;  // shape of R (target) or [numel]
    std::vector<float> ortho;                // right: [r, n]; left: [m, r]
  };
  GaLoreParams p_;
  std::vector<Block> blocks_;
  int64_t step_ = 0;
};

}  // namespace kvlab::baselines
