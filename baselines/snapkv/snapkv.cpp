// SnapKV (Li et al., 2024, "SnapKV: LLM Knows What You are Looking for Before Generation"): at the
// end of the prompt, the last `window` prompt queries (the observation window, buffered in attend
// during prefill) vote for prompt tokens. Per query head: the exact softmax probabilities of the
// window queries over the prefix (tokens before the window; causal), summed over the window, then
// 1-D pooled along tokens (kernel `kernel`, stride 1, padding kernel/2; max pool, or avg pool
// counting the padding as kvpress / torch avg_pool1d do); GQA: the pooled scores of a KV head's
// query heads are averaged. Each KV head keeps its top (budget - window) prefix tokens plus the
// whole window. Decode appends without eviction. If budget <= window, the last `budget` prompt
// tokens are kept. Budget: `budget` tokens or `ratio` of the prompt (exactly one).
#include <algorithm>
#include <cmath>
#include <memory>

#include "baselines/common/attention_scores.h"
#include "baselines/common/eviction_cache.h"
#include "framework/core/error.h"

namespace kvlab::baselines {
namespace {

class SnapKv : public EvictionCache {
 public:
  SnapKv(const kv::LayerInfo& info, EvictionBudget budget, int64_t window, int64_t kernel,
         bool max_pool)
      : EvictionCache(info), budget_(budget), window_(window), kernel_(kernel),
        max_pool_(max_pool), obs_(window, info.H, info.D) {}

  void attend(const float* queries, int64_t T, const int32_t* q_positions, float* out) override {
    EvictionCache::attend(queries, T, q_positions, out);
    if (prefill_done_) return;
    obs_.push(queries, T, q_positions);  // the last `window` prompt queries
  }

 protected:
  void on_end_prefill(int64_t prompt_tokens) override {
    const int64_t keep = budget_.resolve(prompt_tokens);
    const int64_t w = obs_.size();
    if (S_ > keep) {
      std::vector<std::vector<double>> acc;  // [H][S_] window-summed probabilities
      if (keep > w) {
        std::vector<float> lse(static_cast<size_t>(w * info_.H)),
            out(static_cast<size_t>(w * info_.H * info_.D));
        run_attention(obs_.queries(), w, obs_.positions(), out.data(), lse.data());
        accumulate_probabilities(obs_.queries(), w, obs_.positions(), lse.data(), acc);
      }
      compact(snapkv_select(acc, S_, w, keep, kernel_, max_pool_ ? Pooling::kMax : Pooling::kAvg,
                            info_.G));
    }
    obs_.clear();
  }
  int64_t workspace_bytes() const override { return obs_.bytes(); }

 private:
  EvictionBudget budget_;
  int64_t window_, kernel_;
  bool max_pool_;
  ObservationWindow obs_;  // last <= window prompt queries [w, H, D] and positions
};

kv::KvMethod make_method() {
  std::vector<ParamDecl> params = eviction_budget_params();
  params.push_back(param_decl(
      "window", ParamDecl::Type::kInt, int64_t{32},
      "observation window: the last prompt queries that score the prefix (always kept)", 1.0));
  ParamDecl kernel =
      param_decl("kernel", ParamDecl::Type::kInt, int64_t{7},
                 "1-D pooling kernel over token scores (odd; stride 1, padding kernel/2)", 1.0);
  kernel.check = [](const ParamValue& v) {
    if (std::get<int64_t>(v) % 2 == 0) throw Error("kernel must be odd");
  };
  params.push_back(kernel);
  params.push_back(param_decl(
      "pooling", ParamDecl::Type::kChoice, std::string("max"),
      "pooling type (max as in PyramidKV/SentenceKV configs; avg as in kvpress)", std::nullopt,
      std::nullopt, {"max", "avg"}));
  return kv::KvMethod{
      "snapkv",
      "SnapKV (Li et al. 2024): at end of prefill the last `window` prompt queries score the "
      "prefix per query head (exact softmax, summed over the window, 1-D max/avg pooled with "
      "kernel `kernel`), averaged over each KV head's query heads; each KV head keeps its top "
      "(budget - window) prefix tokens plus the window. Decode appends without eviction. Budget: "
      "budget (tokens) or ratio of the prompt, exactly one.",
      params, [](const kv::LayerInfo& info, const ParamValues& p) {
        return std::unique_ptr<kv::KvCache>(new SnapKv(
            info, EvictionBudget::from_params(p, "snapkv"), p.get_int("window"),
            p.get_int("kernel"), p.get_string("pooling") == "max"));
      },
      [](const ParamValues& p) { EvictionBudget::from_params(p, "snapkv"); }};
}

}  // namespace

KVLAB_REGISTER_KV_METHOD(snapkv, make_method());

}  // namespace kvlab::baselines
