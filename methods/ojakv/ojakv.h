// OjaKV (methods.md section 1): online low-rank KV compression with hybrid storage. One cache per
// layer; per KV head g a key basis U_k [D, r_k] and a value basis U_v [D, r_v] (orthonormal
// columns, f64), initialised from calibrated eigenbases (kv::Bases, methods.md 1.3 step 0) and
// updated with Oja's rule: at end of prefill from (salient, pooled) prompt tokens (step 1), then
// every `update_period` decode tokens from a buffer (step 3).
//
// Storage per KV head, in original token order (methods.md 1.2):
//   anchors F     full-rank post-RoPE K and V rows, f32, 2*D*4 bytes per token
//                 (positional: first n_start + sliding last n_recent; residual_topk: top k_full
//                 prompt tokens by ||k - k U U^T|| x attention from the last queries)
//   compressed    coefficients K~ = k U_k [r_k], V~ = v U_v [r_v] at coeff_dtype, relative to the
//                 basis current when the token was compressed (stale_policy keep) or rotated on
//                 every update (stale_policy rotate: c <- c U_old^T U_new)
//   buffer B      decode tokens since the last update, K and V f32, 2*D*4 bytes per token (the
//                 Oja batch, kept when online_update; under residual_topk also the tokens' only
//                 copy until the update compresses them, online or not)
//   index         per token its position (4 bytes) and per KV head its state and slot (5 bytes);
//                 under compose_with, per prompt survivor and KV head its original position (4)
// memory(): device = anchors + coefficients + bases (f64) + buffer + index; workspace = f32 basis
// copies, reconstruction tiles, free anchor slots, the observation window.
// Before end_prefill the prompt is held exactly (the prefill batch) and attention runs either on it
// (prefill_attention exact = OjaKV-PF) or on the compressed view with the initial basis: each
// prompt token is projected once when appended; the current anchors (positional, or the top k_full
// by residual norm) read their exact rows. At end_prefill the bases are updated and the prompt is
// re-projected with them.
//
// Attention (methods.md 1.3 step 4), attention_path:
//   reconstruct  tiles of `tile_tokens` tokens are rebuilt to [G, tile, D] (anchors copied,
//                coefficients times U^T, re-rotated when rope_frame pre) and run through
//                cpu::attention; tiles merge by log-sum-exp. Workspace: 2*G*tile*D floats.
//   latent       logits q.k for anchors, (q U_k).K~ for compressed tokens; output
//                sum_F p v + (sum_c p V~) U_v^T. Exact in arithmetic; needs rope_frame post.
// `online_update: false` freezes the bases: StaticPCA (no anchors) and StaticPCA-H (positional
// anchors), registered in baselines/static_pca on this class.
//
// Choices where the sources are silent ([DECIDE], methods.md 1.3-1.4), beyond the knob defaults:
//   * positional decode: a token is full-rank while in the n_recent window and is compressed when
//     it leaves it; its buffer copy only feeds the next Oja batch. residual_topk decode: buffered
//     tokens are full-rank until the periodic update compresses them with the new basis.
//   * compressed prefill under residual_topk ranks by the residual norm alone (the end-of-prompt
//     queries that weight it do not exist yet); the final selection uses the weighting.
//   * salient and residual scores use the exact prompt keys; QR signs always give diag(R) > 0
//     (linalg::qr_q), so there is no qr_sign_fix knob.
// compose_with (methods.md 1.3 step 5): at end_prefill, before the prefill update, each KV head
// keeps its SnapKV survivors (baselines::snapkv_select, the shared SnapKV selection) or the
// StreamingLLM set (evict_sinks first + most recent prompt tokens), evict_budget tokens or
// evict_ratio of the prompt; the rest are dropped for good (memory().evicted_tokens) and the
// normal flow (prefill update, anchors, compression) runs on the survivors, so positional anchors
// are the first n_start / last n_recent survivors. Eviction is prefill-only for both (SnapKV's own
// rule; StreamingLLM's decode-time eviction is not implemented here). Bytes: survivors x
// (anchor or compressed cost) + bases + index, plus 4 bytes per survivor and KV head for its
// original position.
// Not implemented (methods.md 1.8): stale_policy versioned, basis_scope per_layer, per-layer rank
// lists.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "baselines/common/attention_scores.h"
#include "baselines/common/eviction_cache.h"
#include "framework/core/dtype.h"
#include "framework/kv/bases.h"
#include "framework/kv/kv_cache.h"
#include "framework/linalg/linalg.h"
#include "methods/ojakv/oja_update.h"

namespace kvlab::methods {

// Resolved OjaKV settings (methods.md 1.8); ParamValues -> this via from_values().
struct OjaKvParams {
  enum class Anchors { kPositional, kResidualTopk };
  enum class RankMode { kRatio, kEnergy, kFixed };
  enum class PrefillUpdate { kNone, kPooled, kSalientPooled };
  Anchors anchor_policy = Anchors::kPositional;
  int64_t n_start = 32, n_recent = 32;         // positional anchors
  int64_t k_full = 128, residual_window = 32;  // residual_topk anchors
  RankMode rank_mode = RankMode::kRatio;
  double ratio = 0.6;              // r = max(1, round(ratio * D)) for K and V
  double energy_threshold = 0.0;   // energy mode: smallest r with captured energy >= theta
  int64_t rank_k = 0, rank_v = 0;  // fixed mode
  std::string bases;               // calibrated bases file (kvlab calibrate)
  kv::BasisKind key_basis = kv::BasisKind::qk;
  bool online_update = true;
  PrefillUpdate prefill_update = PrefillUpdate::kSalientPooled;
  double salient_fraction = 0.25;
  int64_t salient_window = 32;  // prompt queries that score tokens for the salient batch
  int64_t pool_width = 4;
  int64_t prefill_steps = 1;
  int64_t prefill_batch = 0;  // pooled rows per prefill mini-batch; 0 = all in one batch
  double eta_pre = 0.5, eta_dec = 0.05;
  CovNorm cov_norm = CovNorm::kTrace;
  int64_t update_period = 64;
  bool rope_pre = false;       // rope_frame pre: bases and coefficients in the pre-RoPE frame
  bool stale_rotate = false;   // stale_policy rotate
  bool prefill_exact = false;  // prefill_attention exact (OjaKV-PF)
  bool latent = false;         // attention_path latent
  int64_t tile_tokens = 512;   // reconstruct path tile
  DType coeff_dtype = DType::kF16;
  // compose_with (methods.md 1.3 step 5): eviction at end_prefill, before the prefill update.
  enum class Compose { kNone, kSnapKv, kStreamingLlm };
  Compose compose = Compose::kNone;
  baselines::EvictionBudget evict;  // evict_budget / evict_ratio (exactly one when composing)
  int64_t evict_window = 32, evict_kernel = 7;  // snapkv: observation window, pooling kernel
  bool evict_max_pool = true;                   // snapkv: evict_pooling max (else avg)
  int64_t evict_sinks = 4;                      // streaming_llm: sink tokens

  // Reads the declared parameters; throws kvlab::Error naming `method.KEY` on bad combinations.
  static OjaKvParams from_values(const ParamValues& p, const std::string& method = "ojakv");
};

// The declarations behind `kvlab help ojakv` (static_pca registers a subset of them).
std::vector<ParamDecl> ojakv_params();

class OjaKvCache : public kv::KvCache {
 public:
  // `bases` must cover info.n_layers layers, info.G KV heads and head dim info.D, in the frame
  // params.rope_pre asks for; ranks are resolved per KV head from its eigenvalues. Throws
  // kvlab::Error naming `method.KEY` (e.g. ojakv.rank_k) when a rank exceeds D or is missing.
  OjaKvCache(const kv::LayerInfo& info, const OjaKvParams& params,
             std::shared_ptr<const kv::Bases> bases, const std::string& method = "ojakv");
  ~OjaKvCache() override;

  void append(const float* keys, const float* values, int64_t T, const int32_t* positions) override;
  void attend(const float* queries, int64_t T, const int32_t* q_positions, float* out) override;
  void end_prefill(const kv::PrefillContext& ctx) override;
  MemoryReport memory() const override;
  void trace(TraceSink& sink) const override;
  int64_t tokens_seen() const override { return seen_; }

  // ---- inspection (fidelity experiment, tests) ----
  const linalg::Mat& basis_k(int64_t g) const;  // current U_k of KV head g, [D, r_k]
  const linalg::Mat& basis_v(int64_t g) const;  // [D, r_v]
  // What attention sees for head g: reconstructed (or exact, for anchors) keys and values
  // of every token held, ascending position; K, V [N, D] floats (post-RoPE frame).
  void materialize(int64_t g, std::vector<float>* K, std::vector<float>* V,
                   std::vector<int32_t>* positions) const;
  int64_t basis_updates() const;  // Oja updates applied so far (prefill + decode)

  const OjaKvParams& params() const { return p_; }
  bool prefill_done() const { return prefill_done_; }
  // Positions of head g's full-rank tokens (anchors, plus buffered tokens under residual_topk).
  std::vector<int32_t> full_rank_positions(int64_t g) const;
  // Bytes by tier, summed over KV heads (methods.md 1.9 "memory bytes per tier").
  struct Tiers {
    int64_t anchors = 0;       // sum_g |F_g| * 2 * D * 4
    int64_t coefficients = 0;  // sum_g N_c * (r_k + r_v) * bytes(coeff_dtype)
    int64_t bases = 0;         // sum_g D * (r_k + r_v) * 8 (f64 master copies)
    int64_t buffer = 0;        // |B| * G * 2 * D * 4 (+ the exact prompt before end_prefill)
    int64_t index = 0;         // per token: position (4) + per KV head state (1) and slot (4)
    int64_t workspace = 0;     // f32 basis copies, tiles, observation window (bounded)
  };
  Tiers tiers() const;
  struct Tokens {
    int64_t anchor = 0, compressed = 0, buffered = 0;  // summed over KV heads
  };
  Tokens tokens() const;

 private:
  struct Head;
  struct Update;
  void admit_decode_token(int64_t i, const float* k, const float* v);  // k, v [G, D]
  void periodic_update();
  void prefill_rebuild(const std::vector<std::vector<char>>& anchor);
  void refresh_prefill_anchors();
  std::vector<std::vector<char>> prefill_anchor_sets(bool final_selection);
  void run_prefill_update();
  double compress_token(int64_t g, int64_t i, const float* k, const float* v);
  void basis_update(int64_t g, bool key, const linalg::Mat& C, double eta, bool prefill);
  void key_to_frame(const float* k, int32_t pos, float* out) const;
  void attend_reconstruct(const float* q, int64_t T, const int32_t* q_pos, float* out);
  void attend_latent(const float* q, int64_t T, const int32_t* q_pos, float* out);
  void fill_tile(int64_t s0, int64_t n, float* kt, float* vt) const;
  void row_of(int64_t g, int64_t i, float* k, float* v) const;
  void add_anchor(int64_t g, int64_t i, const float* k, const float* v);
  void release_anchor(int64_t g, int64_t i);
  std::vector<std::vector<double>> window_scores(int64_t w) const;
  std::vector<std::vector<double>> window_probabilities(int64_t w) const;
  void evict_prompt();
  int32_t tok_pos(int64_t g, int64_t i) const;  // original position of head g's token i
  void refresh_f32(int64_t g);

  kv::LayerInfo info_;
  OjaKvParams p_;
  std::string method_;
  std::shared_ptr<const kv::Bases> bases_;
  std::vector<std::unique_ptr<Head>> heads_;  // [G]
  std::vector<int32_t> pos_;                  // [N] positions of every token held (mask)
  // compose_with: per KV head the original positions of its prompt survivors [G][K] (token i < K
  // of head g); empty when nothing was evicted. pos_[i] = max over heads.
  std::vector<std::vector<int32_t>> surv_pos_;
  int64_t evicted_ = 0;  // prompt tokens evicted per KV head
  int64_t seen_ = 0;
  bool prefill_done_ = false;
  // Exact prompt (before end_prefill): [n, G, D] K and V, post-RoPE.
  std::vector<float> pk_, pv_;
  // Decode buffer: token indices and their K and V rows [|B|, G, D], post-RoPE.
  std::vector<int64_t> buf_tok_;
  std::vector<float> bk_, bv_;
  // Last max(salient_window, residual_window) prompt queries [w, H, D] and positions.
  baselines::ObservationWindow obs_;
  std::vector<float> tile_k_, tile_v_;
  mutable size_t traced_ = 0;  // update records already written by trace()
  mutable bool anchors_traced_ = false;
  std::vector<Update> log_;
};

// Builds one layer's cache from declared parameters (loads `bases` through the process-wide
// cache of bases files).
std::unique_ptr<kv::KvCache> make_ojakv_cache(const kv::LayerInfo& info, const ParamValues& p,
                                              const std::string& method = "ojakv");
// The model-free checks of make_ojakv_cache (parameter combinations, the bases file exists): the
// registry's `check`, run on every sweep point before any work. Errors name `method.KEY`.
OjaKvParams check_ojakv_params(const ParamValues& p, const std::string& method = "ojakv");

}  // namespace kvlab::methods
