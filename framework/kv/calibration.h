// Offline calibration of per-layer, per-KV-head eigenbases (methods.md 1.3 step 0; the
// Eigen-Attention / StaticPCA construction). A CalibrationRecorder wraps a layer's cache (the full
// cache in `kvlab calibrate`), forwards every call unchanged, so the model runs exactly as it
// would without it, and accumulates f64 uncentred second moments of what it sees:
//   Q^T Q over the queries of the KV head's group (H/G query heads, each query row counts once),
//   K^T K over the keys, V^T V over the values,
// in the post-RoPE frame (what append()/attend() receive) or the pre-RoPE frame (keys and
// queries un-rotated with LayerInfo.rope at their positions; values have no RoPE).
// CalibrationStats::bases() then takes per head (linalg::sym_eig):
//   qk = eig(Q^T Q/|Q| + K^T K/|K|)   (methods.md 1.3 step 0.1: stacked [Q; K], each side's
//                                      moment normalised by its row count; see kv/bases.h)
//   k  = eig(K^T K/|K|),  v = eig(V^T V/|V|)
// io::save_bases_h5 writes the result (schema in results/README.md).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "framework/kv/bases.h"
#include "framework/kv/kv_cache.h"
#include "framework/linalg/linalg.h"

namespace kvlab::kv {

enum class CalibrationFrame { post_rope, pre_rope };
// "post_rope" | "pre_rope" (the Bases::frame strings); anything else throws naming `key`.
CalibrationFrame parse_calibration_frame(const std::string& s, const std::string& key);
const char* calibration_frame_name(CalibrationFrame f);

// Second-moment accumulators for every (layer, KV head) of one model. Each layer's recorder
// writes only its own layer's slots, so layers need no locking; one layer's calls must not run
// concurrently (the model calls a layer's cache from one thread).
class CalibrationStats {
 public:
  CalibrationStats(int64_t n_layers, int64_t H, int64_t G, int64_t D, CalibrationFrame frame);

  // keys, values [T, G, D] (post-RoPE keys, as KvCache::append receives them) at positions [T].
  // Cost O(T G D^2) f64 flops (plus a T*G*D un-rotation in the pre-RoPE frame).
  void add_keys_values(int64_t layer, const float* keys, const float* values, int64_t T,
                       const int32_t* positions, const cpu::Rope* rope, ThreadPool* pool);
  // queries [T, H, D] (post-RoPE) at positions [T]; query head h feeds KV head h / (H/G).
  // Cost O(T H D^2).
  void add_queries(int64_t layer, const float* queries, int64_t T, const int32_t* positions,
                   const cpu::Rope* rope, ThreadPool* pool);

  // The normalised moment M / count [D, D] of one head: kind qk is Q^T Q/|Q| + K^T K/|K|.
  // Throws when that side has seen no rows.
  linalg::Mat moment(BasisKind kind, int64_t layer, int64_t g) const;
  // Rows seen: keys (= values) per KV head, and query rows per KV head (T * H/G per call).
  int64_t key_rows(int64_t layer) const { return nk_[static_cast<size_t>(layer)]; }
  int64_t query_rows(int64_t layer) const { return nq_[static_cast<size_t>(layer)]; }

  // Full eigendecompositions of every head's qk, k and v moments. Cost O(L G D^3).
  // `tokens` and `source` go to the file's attributes.
  Bases bases(const std::string& source, int64_t tokens) const;

  CalibrationFrame frame() const { return frame_; }
  int64_t n_layers() const { return L_; }
  int64_t query_heads() const { return H_; }
  int64_t kv_heads() const { return G_; }
  int64_t head_dim() const { return D_; }

 private:
  linalg::Mat& slot(std::vector<linalg::Mat>& v, int64_t layer, int64_t g) {
    return v[static_cast<size_t>(layer * G_ + g)];
  }
  int64_t L_, H_, G_, D_;
  CalibrationFrame frame_;
  std::vector<linalg::Mat> sq_, sk_, sv_;  // [L * G] each [D, D], sums of outer products
  std::vector<int64_t> nq_, nk_;           // [L] rows per KV head
};

// A KvCache that forwards everything to `inner` and records into `stats` (layer info.layer).
// Recording happens before forwarding, so the inner cache sees identical inputs; outputs,
// memory() and tokens_seen() are the inner cache's.
class CalibrationRecorder : public KvCache {
 public:
  CalibrationRecorder(const LayerInfo& info, std::unique_ptr<KvCache> inner,
                      std::shared_ptr<CalibrationStats> stats);
  void append(const float* keys, const float* values, int64_t T, const int32_t* positions) override;
  void attend(const float* queries, int64_t T, const int32_t* q_positions, float* out) override;
  void end_prefill(const PrefillContext& ctx) override { inner_->end_prefill(ctx); }
  MemoryReport memory() const override { return inner_->memory(); }
  void trace(TraceSink& sink) const override { inner_->trace(sink); }
  int64_t tokens_seen() const override { return inner_->tokens_seen(); }

 private:
  LayerInfo info_;
  std::unique_ptr<KvCache> inner_;
  std::shared_ptr<CalibrationStats> stats_;
};

// Wraps every layer cache that `inner` builds in a CalibrationRecorder writing into `stats`.
KvFactory make_calibration_factory(KvFactory inner, std::shared_ptr<CalibrationStats> stats);

}  // namespace kvlab::kv
