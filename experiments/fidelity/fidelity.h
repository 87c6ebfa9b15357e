// Fidelity probes (issue 5 item 5; methods.md 1.9): a ShadowCache wraps one layer's cache of any
// KV method, keeps an exact copy of every key and value it is given (a FullCache) plus f64 second
// moments of all keys and values seen, and on request (probe()) compares, per KV head, what the
// method attends over with the exact cache:
//   any method      relative attention-output error ||o - o^|| / ||o|| of the last decode query
//                   (o^ what the method's attend() returned, o the full cache's);
//   materialised    (the method exposes the keys/values its attention sees, Inspector)
//                   attention-logit error |q.k_j - q.k^_j| / sqrt(D) (mean, max over positions
//                   and the group's query heads) next to its bound ||q|| ||k_j - k^_j|| / sqrt(D)
//                   (methods.md 1.3 step 2.2), KL(p_full || p_method) of the attention
//                   distribution, reconstruction error ||K - K^||_F^2 / ||K||_F^2 (same for V);
//   low-rank basis  principal angles between the current basis U [D, r] and the exact top-r PCA
//                   basis P of all keys (values) seen so far (uncentred, C = X^T X / n, in the
//                   basis' RoPE frame): max angle, mean cos^2 = ||U^T P||_F^2 / r, projection
//                   distance ||U U^T - P P^T||_F; the residual energy ratio of U on all tokens
//                   seen, RER = 1 - tr(U^T C U) / tr C; the max angle to the basis the cache
//                   started with (calibration); over the compressed (not full-rank) tokens,
//                   the reconstruction error and the staleness error ||K^ - K U U^T||^2 /
//                   ||K||^2 (stored coefficients vs re-projecting with the current basis,
//                   methods.md 1.3 "stale coefficients");
//   per layer       bytes by tier and tokens by state (KvCache::memory(), and the method's own
//                   tiers when exposed) against the full cache's bytes for the same tokens.
// Every number goes to the trace (`steps/layer_LL/head_G/NAME`, `steps/layer_LL/NAME`, one row per
// probe, NaN where a metric does not apply at that probe) and to a FidelityLog for results.json.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "baselines/full_cache/full_cache.h"
#include "framework/core/trace_sink.h"
#include "framework/kv/kv_cache.h"
#include "framework/linalg/linalg.h"

namespace kvlab::experiments::fidelity {

// What a cache can show the shadow beyond KvCache. Caches are adapted by inspect(); a cache
// class may also implement this interface itself (tests do).
class Inspector {
 public:
  virtual ~Inspector() = default;
  // Keys and values attention sees for KV head g, post-RoPE, ascending position: K, V [N, D].
  // Returns false when the method cannot show them.
  virtual bool materialize(int64_t g, std::vector<float>* K, std::vector<float>* V,
                           std::vector<int32_t>* positions) const {
    return false;
  }
  // Current key (value) basis of KV head g, [D, r], orthonormal columns; null when the method
  // keeps none.
  virtual const linalg::Mat* basis(int64_t g, bool key) const { return nullptr; }
  // Positions of KV head g's full-rank tokens (anchors, buffered); every other token held is
  // stored as coefficients. nullopt when the method does not say.
  virtual std::optional<std::vector<int32_t>> full_rank_positions(int64_t g) const {
    return std::nullopt;
  }
  // True when basis() is in the pre-RoPE frame (keys compared un-rotated).
  virtual bool basis_pre_rope() const { return false; }
  // Basis updates applied so far (-1 when not applicable).
  virtual int64_t basis_updates() const { return -1; }
  // Bytes by the method's own tiers and tokens by state, e.g. {"anchors", 4096}.
  virtual std::vector<std::pair<std::string, int64_t>> tier_bytes() const { return {}; }
  virtual std::vector<std::pair<std::string, int64_t>> token_states() const { return {}; }
};

// The inspector of a cache: the cache itself when it implements Inspector, adapters for
// FullCache and methods::OjaKvCache (OjaKV, StaticPCA, StaticPCA-H), or a default Inspector
// (output error and bytes only). The result refers to `c`, which must outlive it.
std::shared_ptr<const Inspector> inspect(const kv::KvCache& c);

// Shared by every layer's shadow: where probe results go.
class FidelityLog {
 public:
  explicit FidelityLog(TraceSink* trace) : trace_(trace) {}
  // One value of metric `name` for (layer, head) at the current probe; head < 0: a per-layer
  // value. Written to the trace at steps/layer_LL[/head_G]/name; NaN means "not applicable"
  // (kept in the trace for row alignment, left out of summaries).
  void add(int64_t layer, int64_t head, const std::string& name, double value,
           const std::string& unit);
  void begin_probe() { ++probe_; }
  int64_t probes() const { return probe_ + 1; }
  // {name: {mean, max, min, final_mean, count}} over layers, heads and probes (final_mean: at the
  // last probe), and {name: [mean per layer]} under "by_layer".
  nlohmann::json summary(int64_t n_layers) const;
  struct Rec {
    std::string name;
    int64_t layer, head, probe;
    double value;
  };
  const std::vector<Rec>& records() const { return recs_; }

 private:
  TraceSink* trace_;
  int64_t probe_ = -1;
  std::vector<Rec> recs_;
};

// One layer's shadow around `inner` (the method's cache). Calls are forwarded unchanged, so the
// model runs exactly as with `inner` alone; the shadow only reads. Extra cost per token: one
// f32 copy of K and V and O(G D^2) f64 for the moments; per probe O(G (N D + D^3)).
class ShadowCache : public kv::KvCache {
 public:
  ShadowCache(const kv::LayerInfo& info, std::unique_ptr<kv::KvCache> inner,
              std::shared_ptr<FidelityLog> log);
  void append(const float* keys, const float* values, int64_t T, const int32_t* positions) override;
  void attend(const float* queries, int64_t T, const int32_t* q_positions, float* out) override;
  void end_prefill(const kv::PrefillContext& ctx) override { inner_->end_prefill(ctx); }
  MemoryReport memory() const override { return inner_->memory(); }
  void trace(TraceSink& sink) const override { inner_->trace(sink); }
  int64_t tokens_seen() const override { return inner_->tokens_seen(); }

  // Computes and logs every applicable metric for the cache as it is now. with_attention: the
  // attention metrics use the last query row passed to attend() (the current decode token) and
  // the output the method returned for it; without, they are logged as NaN.
  void probe(bool with_attention);
  const kv::KvCache& inner() const { return *inner_; }
  const Inspector& inspector() const { return *insp_; }

 private:
  void probe_attention(int64_t g, bool with_attention);
  void probe_basis(int64_t g);
  // Compressed-token errors of head g from its materialised rows (Km, Vm [N, D], exact order).
  void probe_staleness(int64_t g, const std::vector<float>& Km, const std::vector<float>& Vm);
  void probe_bytes();

  kv::LayerInfo info_;
  std::unique_ptr<kv::KvCache> inner_;
  std::shared_ptr<FidelityLog> log_;
  std::shared_ptr<const Inspector> insp_;
  baselines::FullCache exact_;  // every token's exact K, V
  std::vector<linalg::Mat> gram_k_,
      gram_v_;     // [G] sums x x^T over all tokens (keys in basis frame)
  int64_t n_ = 0;  // tokens in the moments
  bool has_basis_ = false, has_init_ = false;
  std::vector<linalg::Mat> init_k_, init_v_;  // [G] bases at the first append (calibrated start)
  std::vector<float> last_q_, last_out_;      // [H * D] last query row and the method's output
  int32_t last_qpos_ = 0;
  bool has_query_ = false;
};

// Wraps every layer cache `inner` builds in a ShadowCache logging to `log`.
kv::KvFactory make_shadow_factory(kv::KvFactory inner, std::shared_ptr<FidelityLog> log);

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

}  // namespace kvlab::experiments::fidelity
