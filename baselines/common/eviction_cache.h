// Shared machinery for token-eviction baselines (StreamingLLM, H2O, SnapKV): the kvpress "scorer
// press" lesson. A method decides only WHICH tokens to keep (a per-KV-head score, or a forced set);
// this base owns storage, top-k selection, compaction, attention and memory accounting.
//
// Storage: head-major [G, cap, D] K and V at f32, like FullCache, so with nothing evicted the
// attention call is the very same cpu::attention over the very same bytes (bit-identical output).
// Every KV head keeps the SAME number of tokens (per-head selections differ only in which), so one
// KvView serves all heads. Each head keeps its own original positions pos_[g][slot] (sorted); the
// view's mask positions are the per-slot maximum over heads. That mask is exact for every query
// whose position is >= every kept token's position not appended with it, i.e. all decode queries
// and any chunk appended after an eviction (eviction happens only at end_prefill and after
// decode-time attend, never in the middle of the prompt).
//
// Budget: `budget` tokens (>0) or `ratio` (0,1] of the prompt length (resolved at end_prefill as
// max(1, round(ratio * prompt_tokens)) and then fixed for decode). Exactly one must be set.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "baselines/common/attention_scores.h"
#include "framework/kv/kv_cache.h"

namespace kvlab::baselines {

// Budget as declared by eviction methods: exactly one of budget (tokens) and ratio is > 0.
struct EvictionBudget {
  int64_t tokens = 0;  // > 0: fixed token budget
  double ratio = 0.0;  // > 0: fraction of the prompt
  // Tokens to keep for a prompt of `prompt_tokens`.
  int64_t resolve(int64_t prompt_tokens) const;
  bool set() const { return tokens > 0 || ratio > 0.0; }
  // Reads "<prefix>budget" and "<prefix>ratio"; throws unless exactly one is > 0 (allow_none:
  // neither is fine, for a method with another way to size itself, e.g. StreamingLLM's window).
  // `prefix` names the keys of a method that embeds eviction (OjaKV's compose_with: "evict_").
  static EvictionBudget from_params(const ParamValues& p, const std::string& method,
                                    bool allow_none = false, const std::string& prefix = "");
};
// The two ParamDecls every eviction method declares, named <prefix>budget and <prefix>ratio.
std::vector<ParamDecl> eviction_budget_params(const std::string& prefix = "");

// Per KV head, the `keep` slots of [0, S) kept (ascending): `forced` (ascending, shared by every
// head) plus the (keep - |forced|) highest-scored other slots; scores [G][>= S], higher = keep,
// ties keep the earlier slot. Requires |forced| <= keep < S. Cost O(G S log keep).
std::vector<std::vector<int64_t>> top_slots(int64_t S, int64_t keep,
                                            const std::vector<int64_t>& forced,
                                            const std::vector<std::vector<double>>& scores);

// SnapKV's selection (Li et al. 2024 section 4.1) over S prompt tokens whose last w are the
// observation window: acc [H][S] holds the window-summed attention probabilities per query head;
// each head's prefix [0, S - w) is 1-D pooled (kernel, pooling), the pooled votes are averaged over
// each KV head's H/G query heads, and every KV head keeps its top (keep - w) prefix tokens plus the
// window. keep <= w: the last `keep` tokens (acc unread). Requires keep < S. Returns [G] slot
// lists.
std::vector<std::vector<int64_t>> snapkv_select(const std::vector<std::vector<double>>& acc,
                                                int64_t S, int64_t w, int64_t keep, int64_t kernel,
                                                Pooling pooling, int64_t G);

class EvictionCache : public kv::KvCache {
 public:
  explicit EvictionCache(const kv::LayerInfo& info);
  void append(const float* keys, const float* values, int64_t T, const int32_t* positions) override;
  void attend(const float* queries, int64_t T, const int32_t* q_positions, float* out) override;
  void end_prefill(const kv::PrefillContext& ctx) override;
  MemoryReport memory() const override;
  int64_t tokens_seen() const override { return seen_; }

  // Inspection (tests, traces).
  int64_t kept() const { return S_; }
  bool prefill_done() const { return prefill_done_; }
  // Original positions of head g's kept tokens, ascending.
  std::vector<int32_t> kept_positions(int64_t g) const;
  // Stored key / value row of head g, slot i (D floats).
  const float* key_row(int64_t g, int64_t i) const { return k_.data() + (g * cap_ + i) * info_.D; }
  const float* value_row(int64_t g, int64_t i) const { return v_.data() + (g * cap_ + i) * info_.D; }
  cpu::KvView view() const;

 protected:
  // Hooks for methods.
  virtual bool wants_probabilities() const { return false; }
  // Called after attention of T queries (post-RoPE, as given) with lse [T, H] when
  // wants_probabilities().
  virtual void observe(const float* queries, int64_t T, const int32_t* q_positions,
                       const float* lse) {}
  virtual void on_end_prefill(int64_t prompt_tokens) {}
  virtual void after_decode_attend() {}
  // Extra bytes per kept token per KV head that the method stores (e.g. H2O's f64 score).
  virtual int64_t meta_bytes_per_token_head() const { return 0; }
  virtual int64_t workspace_bytes() const { return 0; }
  // Called while compacting: slot `from` of head g moves to slot `to` (to <= from, ascending).
  virtual void move_slot(int64_t g, int64_t from, int64_t to) {}

  // Keeps, per head, `forced` slots (ascending, the same for all heads) plus the
  // (keep - forced.size()) highest-scored other slots; scores [G][S_] (higher = keep; ties keep
  // the earlier slot). keep >= S_ keeps everything.
  void keep_top(int64_t keep, const std::vector<int64_t>& forced,
                const std::vector<std::vector<double>>& scores);
  // Keeps exactly slots keep[g] (ascending, same count for every head) and compacts.
  void compact(const std::vector<std::vector<int64_t>>& keep);
  // Rotation hook: position a slot's key is rotated at differs from its original position
  // (StreamingLLM cache mode). Default: original positions.
  virtual void after_compact() {}
  // Mask positions from the kept positions (default: per-slot max over heads).
  virtual void refresh_mask();
  // Adds, for every query head h, the exact attention probabilities of queries [T, H, D] at q_pos
  // over the kept slots to acc[h][slot] (acc resized to [H][S_], new entries 0):
  // p = exp(scale * q.k - lse[t, h]) with lse from cpu::attention, the dot product in f64.
  void accumulate_probabilities(const float* q, int64_t T, const int32_t* q_pos, const float* lse,
                                std::vector<std::vector<double>>& acc) const;
  // cpu::attention over the kept set; lse [T, H] may be null.
  void run_attention(const float* q, int64_t T, const int32_t* q_pos, float* out, float* lse);

  kv::LayerInfo info_;
  int64_t S_ = 0, cap_ = 0, seen_ = 0;
  int32_t last_pos_ = 0;
  bool prefill_done_ = false;
  Buffer k_, v_;                    // [G, cap, D]
  std::vector<int32_t> pos_;        // [G, cap] original positions
  std::vector<int32_t> mask_pos_;   // [cap] positions the kernel masks with
  std::vector<float> lse_;          // scratch [T, H]

 private:
  void reserve(int64_t cap);
};

}  // namespace kvlab::baselines
