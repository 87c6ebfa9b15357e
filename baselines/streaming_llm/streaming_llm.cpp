// StreamingLLM (Xiao et al., 2023, "Efficient Streaming Language Models with Attention Sinks"):
// keep the first n_sink tokens (attention sinks) and the most recent `window` tokens; everything
// in between is evicted. The prompt is attended in full; the cache is cut to n_sink + window at
// end_prefill and after every decode step's attention (so a decode query sees the kept set plus
// its own token). Positions: "original" keeps every key at its original RoPE position (kvpress
// default); "cache" uses positions within the cache, as the paper does: a kept key that shifts to
// slot i is re-rotated with Rope::unapply(old) + Rope::apply(i), new keys and the queries are
// rotated to their slot, and the causal mask uses slot indices.
#include <algorithm>
#include <cstring>
#include <memory>

#include "baselines/common/eviction_cache.h"
#include "framework/core/error.h"

namespace kvlab::baselines {
namespace {

class StreamingLlm : public EvictionCache {
 public:
  StreamingLlm(const kv::LayerInfo& info, int64_t n_sink, int64_t window, EvictionBudget budget,
               bool cache_positions)
      : EvictionCache(info), n_sink_(n_sink), window_(window), budget_(budget),
        cache_pos_(cache_positions) {
    KVLAB_CHECK(!cache_pos_ || info.rope) << "streaming_llm position_mode=cache needs the RoPE";
    if (window_ > 0) keep_ = n_sink_ + window_;
  }

  void append(const float* keys, const float* values, int64_t T,
              const int32_t* positions) override {
    const int64_t first = S_;
    EvictionCache::append(keys, values, T, positions);
    if (!cache_pos_) return;
    // New keys: from their original position to their slot.
    for (int64_t t = 0; t < T; ++t) {
      rotate_slot(first + t, positions[t]);
      mask_pos_[static_cast<size_t>(first + t)] = static_cast<int32_t>(first + t);
    }
  }

  void attend(const float* queries, int64_t T, const int32_t* q_positions, float* out) override {
    if (!cache_pos_) return EvictionCache::attend(queries, T, q_positions, out);
    // Query t belongs to the token in slot S_ - T + t (attend follows append of the same tokens).
    const int64_t H = info_.H, D = info_.D;
    q_.assign(queries, queries + T * H * D);
    qpos_.resize(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) qpos_[static_cast<size_t>(t)] = static_cast<int32_t>(S_ - T + t);
    bool same = true;
    for (int64_t t = 0; t < T; ++t) same = same && qpos_[static_cast<size_t>(t)] == q_positions[t];
    if (!same) {
      info_.rope->unapply(q_.data(), T, H, q_positions);
      info_.rope->apply(q_.data(), T, H, qpos_.data());
    }
    run_attention(q_.data(), T, qpos_.data(), out, nullptr);
    if (prefill_done_) after_decode_attend();
  }

  int64_t keep_target() const { return keep_; }

 protected:
  void on_end_prefill(int64_t prompt_tokens) override {
    if (keep_ == 0) {
      keep_ = budget_.resolve(prompt_tokens);
      KVLAB_CHECK(keep_ > n_sink_) << "streaming_llm: budget " << keep_ << " must exceed n_sink "
                                   << n_sink_;
    }
    evict();
  }
  void after_decode_attend() override { evict(); }

  void refresh_mask() override {
    if (!cache_pos_) return EvictionCache::refresh_mask();
    for (int64_t i = 0; i < S_; ++i) mask_pos_[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  }
  void after_compact() override {
    if (!cache_pos_) return;
    // Slot i now holds a key rotated at rot_[i] (set in move_slot); bring it to i.
    for (int64_t i = 0; i < S_; ++i) rotate_slot(i, rot_[static_cast<size_t>(i)]);
  }
  void move_slot(int64_t g, int64_t from, int64_t to) override {
    if (cache_pos_ && g == 0) rot_[static_cast<size_t>(to)] = static_cast<int32_t>(from);
  }

 private:
  void evict() {
    if (S_ <= keep_) return;
    std::vector<int64_t> forced;
    for (int64_t i = 0; i < n_sink_; ++i) forced.push_back(i);
    for (int64_t i = S_ - (keep_ - n_sink_); i < S_; ++i) forced.push_back(i);
    if (cache_pos_) {
      rot_.assign(static_cast<size_t>(S_), 0);
      for (int64_t i = 0; i < S_; ++i) rot_[static_cast<size_t>(i)] = static_cast<int32_t>(i);
    }
    compact(std::vector<std::vector<int64_t>>(static_cast<size_t>(info_.G), forced));
  }
  // Re-rotates slot i's keys (every head) from position `from` to position i.
  void rotate_slot(int64_t i, int32_t from) {
    if (from == i) return;
    const int32_t to = static_cast<int32_t>(i);
    for (int64_t g = 0; g < info_.G; ++g) {
      float* row = k_.data() + (g * cap_ + i) * info_.D;
      info_.rope->unapply(row, 1, 1, &from);
      info_.rope->apply(row, 1, 1, &to);
    }
  }

  int64_t n_sink_, window_;
  EvictionBudget budget_;
  bool cache_pos_;
  int64_t keep_ = 0;
  std::vector<int32_t> rot_;
  std::vector<float> q_;
  std::vector<int32_t> qpos_;
};

kv::KvMethod make_method() {
  std::vector<ParamDecl> params = {
      param_decl("n_sink", ParamDecl::Type::kInt, int64_t{4},
                 "attention-sink tokens kept at the start", 0.0),
      param_decl("window", ParamDecl::Type::kInt, int64_t{0},
                 "most recent tokens kept (> 0); 0 = derive from budget/ratio as budget - n_sink. "
                 "Exactly one of window/budget/ratio.",
                 0.0)};
  for (auto& d : eviction_budget_params()) params.push_back(d);
  params.push_back(param_decl(
      "position_mode", ParamDecl::Type::kChoice, std::string("original"),
      "original: keys keep their RoPE positions; cache: positions within the cache, kept keys "
      "re-rotated when they shift (as in the paper)",
      std::nullopt, std::nullopt, {"original", "cache"}));
  // The budget from window / budget / ratio (exactly one), checked.
  static const auto budget_of = [](const ParamValues& p) {
    const int64_t window = p.get_int("window");
    const EvictionBudget b = EvictionBudget::from_params(p, "streaming_llm", window > 0);
    if (window > 0 && b.set()) throw Error("streaming_llm: set one of window, budget, ratio");
    if (b.tokens > 0 && b.tokens <= p.get_int("n_sink"))
      throw Error("streaming_llm: budget must exceed n_sink");
    return b;
  };
  return kv::KvMethod{
      "streaming_llm",
      "StreamingLLM (Xiao et al. 2023): keeps n_sink first tokens + the most recent window; the "
      "prompt is attended in full and cut at end of prefill, then after each decode step. Budget: "
      "window tokens, or budget (tokens, = n_sink + window) or ratio of the prompt; exactly one. "
      "position_mode original|cache (cache re-rotates kept keys to their slot). memory() counts "
      "evicted tokens.",
      params,
      [](const kv::LayerInfo& info, const ParamValues& p) {
        return std::unique_ptr<kv::KvCache>(new StreamingLlm(info, p.get_int("n_sink"),
                                                             p.get_int("window"), budget_of(p),
                                                             p.get_string("position_mode") == "cache"));
      },
      [](const ParamValues& p) { budget_of(p); }};
}

}  // namespace

KVLAB_REGISTER_KV_METHOD(streaming_llm, make_method());

}  // namespace kvlab::baselines
