// SentenceKV (Zhu et al., COLM 2025, arXiv 2504.00970; methods.md section 2): sentence-level
// semantic KV caching. Prefill is exact attention over the prompt; at end_prefill the last
// `window_size` prompt queries score the prompt SnapKV-style (baselines/common/attention_scores.h)
// and each query head keeps floor(r * tau) tokens; the prompt is cut into sentences at the exact
// punctuation tokens of the loaded tokenizer, and each (sentence, head) gets a semantic vector,
// the mean of its kept post-RoPE keys (Eq. 1). At each decode step every head scores sentences by
// q_bar . k_bar (q_bar: mean query of the sentence being generated, Eq. 2), takes the best
// sentences' slots up to tau - start - recent, and attends over them plus the first `start_budget`
// and last `recent_budget` cache slots (Eq. 3). A generated sentence becomes a new bucket when its
// punctuation token arrives.
//
// Two modes (methods.md 2.8):
//  - official_code (2.3, "mask"): every kept slot stays resident; retrieval selects slots of the
//    resident cache; full attention on the steps where the current sentence holds <=
//    length_threshold queries (the closing token, the one after it, the first decoded token).
//  - paper (2.2, "offload"): two tiers. Device: semantic vectors, slot lists, the first
//    start_budget and last recent_budget slots. Host: every other kept slot, in a HostPool with
//    its own byte accounting; the chosen slots are copied host -> device into a gather workspace
//    each step (bytes counted), and a slot leaving the recent window is copied device -> host.
//    CPU build: the host pool is ordinary memory and the transfer a conversion copy (no CUDA
//    pinned-memory path is implemented).
//
// Layout: K/V stored per QUERY head after end_prefill (the official code expands GQA heads before
// caching, 2.3 prefill step 1), so each head keeps and retrieves its own slots; memory() counts
// those H copies. Before end_prefill the prompt is stored dense per KV head [G, cap, D] f32.
// Slots: per head, slot i < kept is the i-th kept prompt token (ascending position); generated
// tokens take slots kept, kept + 1, ... in every head. Batch 1.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "baselines/common/attention_scores.h"
#include "framework/core/dtype.h"
#include "framework/kv/kv_cache.h"
#include "framework/model/tokenizer.h"
#include "methods/sentencekv/host_pool.h"

namespace kvlab::methods {

// The 13 exact token strings of the official run scripts (methods.md 2.3): . ! ? ". " "! " "? "
// ... "\n\n" "\n\n\n" 。 ！ ？ 。。
std::vector<std::string> official_punctuation();
// "official" or a JSON array of strings (e.g. [".", "?", "\n\n"]); errors name `key`.
std::vector<std::string> parse_punctuation(const std::string& text, const std::string& key);

struct BoundarySet {
  std::vector<std::string> strings;  // as configured
  std::vector<int32_t> ids;  // sorted unique ids of the strings that are one vocabulary entry
  std::vector<std::string> dropped;  // strings that are not a single vocabulary entry
  bool contains(int32_t id) const;
};
// Exact vocabulary lookup of each string (Tokenizer::token_to_id, never splitting characters);
// misses are dropped (2.3 configuration).
BoundarySet resolve_boundaries(const model::Tokenizer& tok,
                               const std::vector<std::string>& strings);

struct SentenceKvOptions {
  enum class Mode { kOfficialCode, kPaper };
  Mode mode = Mode::kOfficialCode;
  int64_t token_budget = 1024;   // tau
  double semantic_factor = 3.0;  // r: prefill keeps floor(r * tau) tokens per head
  int64_t window_size = 32;
  int64_t kernel_size = 7;
  baselines::Pooling pooling = baselines::Pooling::kMax;
  bool global_importance = false;  // importance_scope: global = scores summed over heads (paper)
  int64_t start_budget = 32, recent_budget = 32;
  int64_t length_threshold = 1;
  int64_t max_tokens_per_sentence = 0;  // 0: auto = max(100, floor(2 * r*tau / n_sent) + 50)
  bool boundary_full_attention = true;
  bool compat_slot32 = true;  // bucket slots must be > start_budget (the code's strict compare)
  DType host_dtype = DType::kF16;
  int64_t recall_every = 0;  // > 0: shadow full keys, recall of true top-attention every N steps
  std::vector<std::string> punctuation = official_punctuation();
};

// Per decode step, aggregated over heads (methods.md 2.10).
struct SentenceKvStep {
  int64_t token = 0;            // token index in the sequence
  bool full_attention = false;  // a <= length_threshold boundary step
  bool closed_sentence = false;
  double sentences = 0;      // mean over heads of sentences contributing >= 1 slot
  double sentences_cut = 0;  // mean over heads: 1 if the last sentence taken was truncated
  double bucket_tokens = 0;  // mean over heads of slots from buckets
  double local_tokens = 0;   // start + recent slots
  double attended = 0;       // mean over heads of slots attended
  int64_t h2d_bytes = 0;     // host -> device this step (paper mode)
  int64_t d2h_bytes = 0;     // device -> host this step (paper mode)
  // Time split, summed over heads (thread time, ms): scoring + ranking + slot selection;
  // gathering rows (device copies and the host -> device transfer); attention.
  double select_ms = 0, gather_ms = 0, attention_ms = 0;
  // Recall diagnostics (recall_every > 0, sampled steps; -1 otherwise, NaN in the trace):
  // means over heads.
  double recall_tau = -1, recall_64 = -1, mass = -1, lost_prefill_64 = -1, lost_decode_64 = -1;
};

class SentenceKvCache : public kv::KvCache {
 public:
  SentenceKvCache(const kv::LayerInfo& info, SentenceKvOptions opt);
  void observe_tokens(const int32_t* ids, int64_t T) override;
  void append(const float* keys, const float* values, int64_t T, const int32_t* positions) override;
  void attend(const float* queries, int64_t T, const int32_t* q_positions, float* out) override;
  void end_prefill(const kv::PrefillContext& ctx) override;
  MemoryReport memory() const override;
  void trace(TraceSink& sink) const override;
  int64_t tokens_seen() const override { return seen_; }

  // ---- inspection (tests, traces) ----
  enum class Place { kDevice, kHost };
  const SentenceKvOptions& options() const { return opt_; }
  const BoundarySet& boundaries() const { return bounds_; }
  bool prefill_done() const { return prefill_done_; }
  int64_t slots() const { return S_; }  // slots per head after end_prefill
  int64_t kept_prompt() const { return kept_; }
  int64_t sentences() const { return n_sent_; }
  int64_t prompt_sentences() const { return n_prompt_sent_; }
  // Token index held by slot `slot` of head h.
  int32_t slot_token(int64_t h, int64_t slot) const;
  // Where the slot lives (official_code: always device).
  Place place(int64_t h, int64_t slot) const;
  // Copies the stored key/value of a slot (as stored: f32, or the host dtype rounded) without
  // counting a transfer.
  void read_slot(int64_t h, int64_t slot, float* k, float* v) const;
  // Semantic vector [D] and slot list of sentence s for head h.
  const float* sentence_vector(int64_t h, int64_t s) const;
  std::vector<int64_t> sentence_slots(int64_t h, int64_t s) const;
  // Slots head h attended at the last decode step (ascending), and the sentences it took in order.
  const std::vector<int64_t>& last_attended(int64_t h) const { return last_sel_[h]; }
  const std::vector<SentenceKvStep>& steps() const { return steps_; }
  int64_t resident_rows() const;  // device-resident K/V rows per head (paper: local window)
  int64_t host_rows() const { return host_.rows(); }
  int64_t prefill_d2h_bytes() const { return prefill_d2h_; }

 private:
  void prefill_select();
  void commit_token(const float* k, const float* v, int32_t id);  // k, v [G, D]
  void decode_step(const float* q, float* out);                   // q, out [H, D]
  void select_head(int64_t h, const float* qbar, bool full, std::vector<int64_t>& sel,
                   double& n_sent_taken, double& cut) const;
  void recall_step(const float* q, SentenceKvStep& st) const;
  int64_t max_tokens_per_sentence(int64_t n_sent) const;
  const float* key_ptr(int64_t h, int64_t slot) const;  // official_code / device rows only
  const float* value_ptr(int64_t h, int64_t slot) const;

  kv::LayerInfo info_;
  SentenceKvOptions opt_;
  BoundarySet bounds_;
  int64_t seen_ = 0;
  bool prefill_done_ = false;
  std::vector<int32_t> ids_;          // every token's id (-1 when none was observed)
  std::vector<int32_t> pending_ids_;  // ids given to observe_tokens for the next append

  // Prefill: dense per KV head.
  int64_t dcap_ = 0;
  Buffer dk_, dv_;             // [G, dcap, D]
  std::vector<int32_t> dpos_;  // [dcap] positions
  std::vector<float> qbuf_;    // last <= window_size prompt queries [w, H, D]
  std::vector<int32_t> qpos_;

  // After end_prefill.
  int64_t S_ = 0, cap_ = 0, kept_ = 0;
  std::vector<int32_t> slot_tok_;  // [H, cap] token index per slot
  Buffer k_, v_;                   // official_code: [H, cap, D]; paper: [H, start + recent, D]
  HostPool host_;                  // paper: slots [start, S - recent) of every head
  int64_t prefill_d2h_ = 0;
  // Sentences: vectors [H][n_sent][D] (f32) and per-head CSR slot lists.
  int64_t n_sent_ = 0, n_prompt_sent_ = 0;
  std::vector<std::vector<float>> svec_;                 // [H] -> [n_sent * D]
  std::vector<std::vector<int64_t>> soff_, sslots_;      // [H] -> offsets [n_sent + 1], slots
  std::vector<int64_t> prompt_sentence_tokens_;          // prompt tokens per prompt sentence
  std::vector<std::vector<int64_t>> kept_per_sentence_;  // [H][n_prompt_sent]
  std::vector<int64_t> lost_to_cap_;  // [H] kept tokens beyond max_tokens_per_sentence
  std::vector<double> window_mass_;   // [H] observation-window mass kept
  int64_t cap_per_sentence_ = 0;
  // Current (generated) sentence: running sums [H, D] (f64), its slots.
  std::vector<double> cur_q_, cur_k_;
  int64_t cur_n_ = 0;
  std::vector<int64_t> cur_slots_;
  // Pending decode tokens (appended, not yet attended): [T, G, D].
  std::vector<float> pk_, pv_;
  std::vector<int32_t> pids_;
  // Diagnostics.
  std::vector<float> shadow_k_;  // recall_every > 0: every token's key [n, G, D]
  std::vector<std::vector<int64_t>> last_sel_;
  std::vector<SentenceKvStep> steps_;
  int64_t generated_sentences_ = 0;
  std::vector<std::vector<float>> gk_, gv_;  // per-head gather workspace [n, D] (device side)
  std::vector<int32_t> zero_pos_;            // positions of gathered rows (all 0: visible)
};

}  // namespace kvlab::methods
