#include "baselines/common/eviction_cache.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "baselines/common/attention_scores.h"
#include "framework/core/error.h"

namespace kvlab::baselines {

int64_t EvictionBudget::resolve(int64_t prompt_tokens) const {
  if (tokens > 0) return tokens;
  return std::max<int64_t>(1, std::llround(ratio * static_cast<double>(prompt_tokens)));
}

EvictionBudget EvictionBudget::from_params(const ParamValues& p, const std::string& method,
                                           bool allow_none, const std::string& prefix) {
  EvictionBudget b;
  const std::string bk = prefix + "budget", rk = prefix + "ratio";
  b.tokens = p.get_int(bk);
  b.ratio = p.get_float(rk);
  if (b.tokens > 0 && b.ratio > 0.0)
    throw Error(method + "." + bk + ", " + method + "." + rk + ": set either " + bk +
                " (tokens) or " + rk + " (of the prompt), not both");
  if (!allow_none && !b.set())
    throw Error(method + "." + bk + ": set a budget: " + bk + " (tokens, > 0) or " + rk +
                " (of the prompt, (0, 1])");
  return b;
}

std::vector<ParamDecl> eviction_budget_params(const std::string& prefix) {
  return {param_decl(prefix + "budget", ParamDecl::Type::kInt, int64_t{0},
                     "tokens kept per KV head (> 0); 0 = unset (use " + prefix +
                         "ratio). Exactly one of " + prefix + "budget/" + prefix + "ratio.",
                     0.0),
          param_decl(prefix + "ratio", ParamDecl::Type::kFloat, 0.0,
                     "fraction of the prompt kept (resolved at end of prefill, then fixed); 0 = "
                     "unset.",
                     0.0, 1.0)};
}

EvictionCache::EvictionCache(const kv::LayerInfo& info) : info_(info) {}

void EvictionCache::reserve(int64_t cap) {
  if (cap <= cap_) return;
  const int64_t G = info_.G, D = info_.D;
  Buffer nk(static_cast<size_t>(G * cap * D)), nv(static_cast<size_t>(G * cap * D));
  std::vector<int32_t> np(static_cast<size_t>(G * cap));
  for (int64_t g = 0; g < G && S_ > 0; ++g) {
    std::memcpy(nk.data() + g * cap * D, k_.data() + g * cap_ * D, S_ * D * sizeof(float));
    std::memcpy(nv.data() + g * cap * D, v_.data() + g * cap_ * D, S_ * D * sizeof(float));
    std::copy_n(pos_.data() + g * cap_, S_, np.data() + g * cap);
  }
  k_ = std::move(nk);
  v_ = std::move(nv);
  pos_ = std::move(np);
  mask_pos_.resize(static_cast<size_t>(cap));
  cap_ = cap;
}

void EvictionCache::append(const float* keys, const float* values, int64_t T,
                           const int32_t* positions) {
  if (S_ + T > cap_) reserve(std::max<int64_t>({S_ + T, 2 * cap_, 256}));
  const int64_t G = info_.G, D = info_.D;
  for (int64_t t = 0; t < T; ++t) {
    KVLAB_CHECK(seen_ + t == 0 || positions[t] > last_pos_)
        << "positions must increase: " << positions[t] << " after " << last_pos_;
    last_pos_ = positions[t];
    for (int64_t g = 0; g < G; ++g) {
      std::memcpy(k_.data() + (g * cap_ + S_ + t) * D, keys + (t * G + g) * D, D * sizeof(float));
      std::memcpy(v_.data() + (g * cap_ + S_ + t) * D, values + (t * G + g) * D,
                  D * sizeof(float));
      pos_[static_cast<size_t>(g * cap_ + S_ + t)] = positions[t];
    }
    mask_pos_[static_cast<size_t>(S_ + t)] = positions[t];
  }
  S_ += T;
  seen_ += T;
}

cpu::KvView EvictionCache::view() const {
  cpu::KvView kv;
  kv.k = k_.data();
  kv.v = v_.data();
  kv.S = S_;
  kv.head_stride = cap_ * info_.D;
  kv.row_stride = info_.D;
  kv.pos = mask_pos_.data();
  return kv;
}

void EvictionCache::run_attention(const float* q, int64_t T, const int32_t* q_pos, float* out,
                                  float* lse) {
  const cpu::AttentionShape shape{info_.H, info_.G, info_.D, info_.scale};
  cpu::attention(q, T, q_pos, view(), shape, out, lse, *info_.pool);
}

void EvictionCache::attend(const float* queries, int64_t T, const int32_t* q_positions,
                           float* out) {
  float* lse = nullptr;
  if (wants_probabilities()) {
    lse_.resize(static_cast<size_t>(T * info_.H));
    lse = lse_.data();
  }
  run_attention(queries, T, q_positions, out, lse);
  if (lse) observe(queries, T, q_positions, lse);
  if (prefill_done_) after_decode_attend();
}

void EvictionCache::end_prefill(const kv::PrefillContext& ctx) {
  prefill_done_ = true;
  on_end_prefill(ctx.prompt_tokens > 0 ? ctx.prompt_tokens : seen_);
}

std::vector<int32_t> EvictionCache::kept_positions(int64_t g) const {
  return std::vector<int32_t>(pos_.begin() + g * cap_, pos_.begin() + g * cap_ + S_);
}

void EvictionCache::refresh_mask() {
  for (int64_t i = 0; i < S_; ++i) {
    int32_t m = pos_[static_cast<size_t>(i)];
    for (int64_t g = 1; g < info_.G; ++g) m = std::max(m, pos_[static_cast<size_t>(g * cap_ + i)]);
    mask_pos_[static_cast<size_t>(i)] = m;
  }
}

void EvictionCache::compact(const std::vector<std::vector<int64_t>>& keep) {
  const int64_t G = info_.G, D = info_.D;
  KVLAB_CHECK(static_cast<int64_t>(keep.size()) == G);
  const int64_t K = static_cast<int64_t>(keep[0].size());
  for (int64_t g = 0; g < G; ++g) {
    const auto& kg = keep[static_cast<size_t>(g)];
    KVLAB_CHECK(static_cast<int64_t>(kg.size()) == K) << "every KV head keeps the same count";
    for (int64_t j = 0; j < K; ++j) {
      const int64_t from = kg[static_cast<size_t>(j)];
      KVLAB_CHECK(from >= j && from < S_ && (j == 0 || from > kg[static_cast<size_t>(j - 1)]));
      if (from == j) continue;
      std::memmove(k_.data() + (g * cap_ + j) * D, k_.data() + (g * cap_ + from) * D,
                   D * sizeof(float));
      std::memmove(v_.data() + (g * cap_ + j) * D, v_.data() + (g * cap_ + from) * D,
                   D * sizeof(float));
      pos_[static_cast<size_t>(g * cap_ + j)] = pos_[static_cast<size_t>(g * cap_ + from)];
      move_slot(g, from, j);
    }
  }
  S_ = K;
  refresh_mask();
  after_compact();
}

std::vector<std::vector<int64_t>> top_slots(int64_t S, int64_t keep,
                                            const std::vector<int64_t>& forced,
                                            const std::vector<std::vector<double>>& scores) {
  const int64_t G = static_cast<int64_t>(scores.size());
  KVLAB_CHECK(static_cast<int64_t>(forced.size()) <= keep) << "forced set exceeds the budget";
  std::vector<char> is_forced(static_cast<size_t>(S), 0);
  for (int64_t f : forced) is_forced[static_cast<size_t>(f)] = 1;
  std::vector<std::vector<int64_t>> sel(static_cast<size_t>(G));
  const int64_t extra = keep - static_cast<int64_t>(forced.size());
  for (int64_t g = 0; g < G; ++g) {
    const auto& sc = scores[static_cast<size_t>(g)];
    std::vector<int64_t> cand;
    for (int64_t i = 0; i < S; ++i)
      if (!is_forced[static_cast<size_t>(i)]) cand.push_back(i);
    const int64_t n = std::min<int64_t>(extra, static_cast<int64_t>(cand.size()));
    std::partial_sort(cand.begin(), cand.begin() + n, cand.end(), [&](int64_t a, int64_t b) {
      const double sa = sc[static_cast<size_t>(a)], sb = sc[static_cast<size_t>(b)];
      return sa != sb ? sa > sb : a < b;
    });
    auto& s = sel[static_cast<size_t>(g)];
    s.assign(forced.begin(), forced.end());
    s.insert(s.end(), cand.begin(), cand.begin() + n);
    std::sort(s.begin(), s.end());
  }
  return sel;
}

std::vector<std::vector<int64_t>> snapkv_select(const std::vector<std::vector<double>>& acc,
                                                int64_t S, int64_t w, int64_t keep, int64_t kernel,
                                                Pooling pooling, int64_t G) {
  KVLAB_CHECK(keep < S && w <= S);
  if (keep <= w) {
    std::vector<int64_t> last;
    for (int64_t i = S - keep; i < S; ++i) last.push_back(i);
    return std::vector<std::vector<int64_t>>(static_cast<size_t>(G), last);
  }
  const int64_t n = S - w;  // prefix length
  std::vector<std::vector<double>> pooled;
  for (const auto& a : acc) {
    pooled.push_back(pool_scores(a, n, kernel, pooling));
    pooled.back().resize(static_cast<size_t>(S), 0.0);
  }
  std::vector<int64_t> forced;
  for (int64_t i = n; i < S; ++i) forced.push_back(i);
  return top_slots(S, keep, forced, group_mean(pooled, G));
}

void EvictionCache::keep_top(int64_t keep, const std::vector<int64_t>& forced,
                             const std::vector<std::vector<double>>& scores) {
  if (keep >= S_) return;
  compact(top_slots(S_, keep, forced, scores));
}

void EvictionCache::accumulate_probabilities(const float* q, int64_t T, const int32_t* q_pos,
                                             const float* lse,
                                             std::vector<std::vector<double>>& acc) const {
  const cpu::AttentionShape shape{info_.H, info_.G, info_.D, info_.scale};
  baselines::accumulate_probabilities(q, T, q_pos, lse, view(), shape, acc, *info_.pool);
}

MemoryReport EvictionCache::memory() const {
  MemoryReport r;
  const int64_t G = info_.G;
  const int64_t per_token = 2 * G * info_.D * static_cast<int64_t>(sizeof(float)) +
                            G * static_cast<int64_t>(sizeof(int32_t)) +
                            G * meta_bytes_per_token_head();
  r.device_bytes = S_ * per_token;
  r.workspace_bytes = (cap_ - S_) * per_token + workspace_bytes();
  r.full_tokens = S_;
  r.evicted_tokens = seen_ - S_;
  return r;
}

}  // namespace kvlab::baselines
