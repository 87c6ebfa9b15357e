// SGC: sparse gradient compression of optimizer states (Yang et al., arXiv 2502.00311;
// methods.md section 3, reconstruction 3.2 [INFERRED]) and its variants MESGC and CESGC (3.3).
// Registry entries "sgc", "mesgc", "cesgc" share this class (one `variant` knob, 3.7).
//
// Per target block W [m, n] (2-D blocks named in target_modules; every other block — norms,
// embeddings, head — goes to a plain AdamW (baselines/adamw) inside this optimizer), with
// t = step_count() + 1 and x the vector SGC compresses (vec(G), d = m*n; CESGC: vec(P^T G),
// d = r*n, 3.3), cut into c chunks of d/c (c = 1 unless MESGC), each chunk with k/c states and
// s/c non-zeros against one projector A_c [(k/c), (d/c)] shared by the block's chunks:
//   x_s = sparsify_{s/c}(x)                top-|x|, ties by the lower flat index      (3.2 step 2)
//   c   = A_c x_s                          only s/c columns touched, O(k s / c^2)       (step 3)
//   p   = b1 p + (1-b1) c                  f32, fma as in AdamW                        (step 4)
//   Variant A (recovery = update, default):
//     q = b2 q + (1-b2) c*c                                                            (step 5)
//     u = (p/(1-b1^t)) / (sqrt(q/(1-b2^t)) + eps)   [k/c]                              (step 6)
//     Delta = OMP(A_c, u, s'/c)            [d/c], s'/c-sparse                          (step 7)
//   Variant B (recovery = moments): q = b2 q + (1-b2) A_c (x_s*x_s); m^ = OMP(A_c, p),
//     v^ = OMP(A_c, q); Delta_i = (m^_i/(1-b1^t)) / (sqrt(v^_i/(1-b2^t)) + eps) on the support of
//     m^, and 0 where v^_i <= 0 (not recovered there) [DECIDE]
//   W   = W - lr (alpha Delta + wd W)      decoupled decay (ParamBlock::weight_decay)   (step 8)
// CESGC maps back with P: W -= lr alpha P Delta_R, P [m, r] the top-r left singular vectors of G
// (framework/linalg svd_thin, sign-fixed), recomputed when (t - 1) % svd_refresh == 0;
// R = P^T G by f32 GEMM (OpenBLAS).
// Rounding: u is formed as (f32(-lr alpha / bc1) * p) / (sqrt(q) / f32(sqrt(bc2)) + eps), the
// same f32 expression as baselines/adamw, so with A = I (projection = identity, k = d) and s = d
// every step equals AdamW's bit for bit (OMP on I is exact in f64). Equivalent to step 8 by
// linearity of the least-squares solve in y.
//
// State (methods.md 3.4, state_bytes exact): per target block p, q [k] f32 (8k bytes); the
// projector 4*(k/c)*(d/c) bytes when projection_storage = stored, once per distinct
// (k/c, d/c) when shared_per_shape, 0 when regenerate (columns recomputed from
// (seed, block index, column) by a counter-based generator, projection.h); CESGC adds P,
// 4*m*r; AdamW blocks 8*numel. OMP and sparsify workspace is transient (traced, not state).
// state(): "sgc/p/<block>", "sgc/q/<block>", "sgc/A/<block>" (stored), "sgc/A_shared/<kc>x<dc>",
// "sgc/P/<block>" (CESGC), then the AdamW tensors "m/<block>", "v/<block>".
// Traces (methods.md 3.8), one row per trace() call, one column per target block (names in the
// attribute "blocks"): optim/sgc/energy_kept (||x_s||^2/||x||^2), optim/sgc/omp_residual
// (||y - A Delta|| / ||y|| over the block's chunks), optim/sgc/omp_iterations,
// optim/sgc/state_bytes; scalars optim/sgc/workspace_bytes and seconds in sparsify, project, omp,
// apply. diagnostics = true (small models) adds two shadow optimizers per target block on the
// same x (sparse Adam on x_s: the update uncompressed SGC would take, Delta_ref; and AdamW on x)
// as 4*d f32 of extra state ("sgc/diag_{ms,vs,mf,vf}/<block>", counted in state_bytes), and rows
// optim/sgc/recovery_error, optim/sgc/support_recall, optim/sgc/update_cosine (BlockInfo).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "baselines/adamw/adamw.h"
#include "framework/optim/optimizer.h"
#include "methods/sgc/omp.h"
#include "methods/sgc/projection.h"

namespace kvlab::sgc {

enum class Variant { kSgc, kMesgc, kCesgc };
enum class Storage { kStored, kRegenerate, kSharedPerShape };

struct SgcParams {
  Variant variant = Variant::kSgc;
  int64_t k = 0;  // 0: from state_fraction
  double state_fraction =
      0.0008;     // k = ceil(state_fraction * numel / 2), i.e. 2k floats ~ 0.08 % (3.5)
  int64_t s = 0;  // 0: auto, largest s <= d/e with 4 s ln(d/s) <= k (per chunk) (3.5)
  ProjectionKind projection = ProjectionKind::kGaussian;
  Storage storage = Storage::kRegenerate;
  uint64_t seed = 0;
  bool recover_moments = false;  // Variant B
  int64_t omp_sparsity = 0;      // s'; 0: = s
  double omp_tol = 0;
  OmpSolver omp_solver = OmpSolver::kCholesky;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0, alpha = 1;
  int64_t chunks = 1;         // MESGC c
  int64_t svd_rank = 128;     // CESGC r (clamped to min(m, n))
  int64_t svd_refresh = 200;  // CESGC refresh period in steps
  std::vector<std::string> target_modules = {"q_proj",  "k_proj",    "v_proj",   "o_proj",
                                             "up_proj", "down_proj", "gate_proj"};
  bool diagnostics = false;  // shadow optimizers for the 3.8 recovery diagnostics
};

// Declarations of every knob (methods.md 3.7); `variant`'s default is `v`.
std::vector<ParamDecl> sgc_param_decls(Variant v);
SgcParams sgc_params_from(const ParamValues& v);

class Sgc : public optim::Optimizer {
 public:
  explicit Sgc(const SgcParams& p);

  void step(std::span<optim::ParamBlock> params, double lr) override;
  // Sizes every block (k, s, chunks) and throws kvlab::Error naming the key (k, s, chunks,
  // omp_sparsity, projection) when a block cannot take the settings.
  void prepare(std::span<const optim::ParamBlock> params) override;
  int64_t state_bytes() const override;
  std::vector<optim::StateTensor> state() override;
  int64_t step_count() const override { return step_; }
  void set_step_count(int64_t n) override;
  void trace(TraceSink& sink) const override;

  // Per target block, after prepare(): what the block got.
  struct BlockInfo {
    std::string name;
    int64_t m = 0, n = 0, d = 0, k = 0, s = 0, omp_sparsity = 0, chunks = 1, rank = 0;
    int64_t state_bytes = 0;
    double energy_kept = 0, omp_residual = 0;  // last step
    int64_t omp_iterations = 0;                // last step, summed over chunks
    // diagnostics = true only (methods.md 3.8), last step, in the space of x:
    double recovery_error =
        0;  // ||Delta - Delta_ref|| / ||Delta_ref||, Delta_ref = sparse Adam on x_s
    double support_recall = 0;  // |supp(Delta) & top-s' of |Delta_ref|| / min(s', nnz(Delta_ref))
    double update_cosine = 0;   // cos(Delta, the AdamW update on the unsparsified x)
  };
  std::vector<BlockInfo> block_info() const;
  const SgcParams& params() const { return p_; }

 private:
  struct Block {
    BlockInfo info;
    size_t index = 0;                         // position in the step's block list
    int64_t kc = 0, dc = 0, sc = 0, spc = 0;  // per chunk: k/c, d/c, s/c, s'/c
    std::vector<float> p, q;                  // [k] = chunks * kc, chunk-major
    std::vector<float> P;                     // CESGC [m, r]
    std::vector<float> ms, vs, mf, vf;  // diagnostics: shadow moments [d] (sparse Adam, AdamW)
    Projector* proj = nullptr;          // own_ or a shared one
    std::unique_ptr<Projector> own;
  };
  void step_block(Block& b, optim::ParamBlock& pb, double lr, int64_t t);
  void diagnose(Block& b, const float* x, const std::vector<int64_t>& kept_idx,
                const std::vector<std::pair<int64_t, float>>& delta, int64_t t, double lr);

  SgcParams p_;
  baselines::AdamW adamw_;          // non-target blocks
  std::vector<Block> blocks_;       // target blocks, in block order
  std::vector<size_t> other_;       // indices of AdamW blocks
  std::vector<std::string> names_;  // every block's name, for prepare() checks
  std::map<std::pair<int64_t, int64_t>, std::unique_ptr<Projector>> shared_;  // (kc, dc)
  bool prepared_ = false;
  int64_t step_ = 0;
  // Last step's totals (traces).
  double t_sparsify_ = 0, t_project_ = 0, t_omp_ = 0, t_apply_ = 0;
  int64_t workspace_bytes_ = 0;
  mutable bool attrs_written_ = false;
};

}  // namespace kvlab::sgc
