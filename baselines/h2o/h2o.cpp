// H2O (Zhang et al., 2023, "H2O: Heavy-Hitter Oracle"): keep the most recent tokens plus the
// "heavy hitters", the tokens with the largest attention probability accumulated over every query
// that has seen them. Per KV head: the score of a token is the sum over queries and over the KV
// head's query heads of its exact softmax probability (recomputed from the lse the attention
// kernel returns, p = exp(scale q.k - lse), in f64). The prompt is attended in full (scores
// accumulate over all prompt queries), then cut to the budget at end_prefill; in decode each step
// adds its query's probabilities and evicts the lowest-scored non-recent tokens while over budget.
// Budget: `budget` tokens or `ratio` of the prompt (exactly one); recent = floor(budget *
// recent_fraction) most recent tokens are always kept, the rest of the budget goes to heavy hitters.
#include <cmath>
#include <memory>

#include "baselines/common/eviction_cache.h"
#include "framework/core/error.h"

namespace kvlab::baselines {
namespace {

class H2o : public EvictionCache {
 public:
  H2o(const kv::LayerInfo& info, EvictionBudget budget, double recent_fraction)
      : EvictionCache(info), budget_(budget), recent_fraction_(recent_fraction) {}

 protected:
  bool wants_probabilities() const override { return true; }
  void observe(const float* queries, int64_t T, const int32_t* q_positions,
               const float* lse) override {
    accumulate_probabilities(queries, T, q_positions, lse, acc_);
    const int64_t G = info_.G, group = info_.H / G;
    scores_.resize(static_cast<size_t>(G));
    for (int64_t g = 0; g < G; ++g) {
      auto& sc = scores_[static_cast<size_t>(g)];
      sc.resize(static_cast<size_t>(S_), 0.0);
      for (int64_t h = g * group; h < (g + 1) * group; ++h)
        for (int64_t s = 0; s < S_; ++s) {
          sc[static_cast<size_t>(s)] += acc_[static_cast<size_t>(h)][static_cast<size_t>(s)];
          acc_[static_cast<size_t>(h)][static_cast<size_t>(s)] = 0.0;
        }
    }
  }
  void on_end_prefill(int64_t prompt_tokens) override {
    keep_ = budget_.resolve(prompt_tokens);
    recent_ = std::min<int64_t>(keep_, static_cast<int64_t>(std::floor(keep_ * recent_fraction_)));
    evict();
  }
  void after_decode_attend() override { evict(); }
  void move_slot(int64_t g, int64_t from, int64_t to) override {
    auto& sc = scores_[static_cast<size_t>(g)];
    sc[static_cast<size_t>(to)] = sc[static_cast<size_t>(from)];
  }
  void after_compact() override {
    for (auto& sc : scores_) sc.resize(static_cast<size_t>(S_));
  }
  int64_t meta_bytes_per_token_head() const override { return sizeof(double); }

 private:
  void evict() {
    if (S_ <= keep_) return;
    scores_.resize(static_cast<size_t>(info_.G));
    for (auto& sc : scores_) sc.resize(static_cast<size_t>(S_), 0.0);
    std::vector<int64_t> forced;
    for (int64_t i = S_ - recent_; i < S_; ++i) forced.push_back(i);
    keep_top(keep_, forced, scores_);
  }

  EvictionBudget budget_;
  double recent_fraction_;
  int64_t keep_ = 0, recent_ = 0;
  std::vector<std::vector<double>> scores_;  // [G][S_] accumulated attention
  std::vector<std::vector<double>> acc_;     // [H][S_] scratch
};

kv::KvMethod make_method() {
  std::vector<ParamDecl> params = eviction_budget_params();
  params.push_back(param_decl(
      "recent_fraction", ParamDecl::Type::kFloat, 0.5,
      "share of the budget kept as the most recent tokens (H2O paper: half); the rest are heavy "
      "hitters",
      0.0, 1.0));
  return kv::KvMethod{
      "h2o",
      "H2O (Zhang et al. 2023): keeps the most recent floor(budget * recent_fraction) tokens plus "
      "the heavy hitters, per KV head, by attention probability accumulated over all queries "
      "(summed over the KV head's query heads, exact from the kernel's lse). Evicts at end of "
      "prefill and after each decode step. Budget: budget (tokens) or ratio of the prompt, "
      "exactly one. memory() counts evicted tokens and the f64 score per kept token and head.",
      params, [](const kv::LayerInfo& info, const ParamValues& p) {
        return std::unique_ptr<kv::KvCache>(new H2o(
            info, EvictionBudget::from_params(p, "h2o"), p.get_float("recent_fraction")));
      },
      [](const ParamValues& p) { EvictionBudget::from_params(p, "h2o"); }};
}

}  // namespace

KVLAB_REGISTER_KV_METHOD(h2o, make_method());

}  // namespace kvlab::baselines
