// Token-eviction baselines (baselines/streaming_llm, h2o, snapkv over baselines/common).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>

#include "baselines/common/eviction_cache.h"
#include "framework/core/rng.h"
#include "framework/kv/kv_cache.h"
#include "tests/support/close.h"

namespace kvlab {
namespace {

using baselines::EvictionCache;

struct Shape {
  int64_t H = 4, G = 2, D = 16;
};

kv::LayerInfo layer_info(ThreadPool& pool, const Shape& s, const cpu::Rope* rope = nullptr) {
  kv::LayerInfo info;
  info.n_layers = 1;
  info.H = s.H;
  info.G = s.G;
  info.D = s.D;
  info.scale = 1.0f / std::sqrt(static_cast<float>(s.D));
  info.pool = &pool;
  info.rope = rope;
  return info;
}

std::unique_ptr<kv::KvCache> make(const std::string& method, const kv::LayerInfo& info,
                                  const std::vector<std::pair<std::string, std::string>>& set) {
  const auto& m = kv::KvRegistry::instance().find(method);
  ParamValues p(m.params);
  for (const auto& [k, v] : set) p.set_from_string(k, v, "test");
  return m.make(info, p);
}

EvictionCache* ev(kv::KvCache* c) {
  auto* e = dynamic_cast<EvictionCache*>(c);
  EXPECT_NE(e, nullptr);
  return e;
}

struct Stream {
  int64_t S;
  std::vector<float> k, v, q;
  std::vector<int32_t> pos;
  Stream(const Shape& s, int64_t S_, uint64_t seed, int32_t pos0 = 0) : S(S_) {
    Rng rng(seed);
    k.resize(S * s.G * s.D);
    v.resize(S * s.G * s.D);
    q.resize(S * s.H * s.D);
    for (auto& x : k) x = static_cast<float>(rng.normal());
    for (auto& x : v) x = static_cast<float>(rng.normal());
    for (auto& x : q) x = static_cast<float>(2.0 * rng.normal());  // peaky attention: clear scores
    pos.resize(S);
    for (int64_t i = 0; i < S; ++i) pos[i] = static_cast<int32_t>(pos0 + i);
  }
};

// Prefill of `prompt` tokens in chunks, end_prefill, then one-token decode steps; returns all
// outputs [S, H, D]. `step` (if set) runs after each decode step with the token index.
std::vector<float> run(kv::KvCache& c, const Shape& s, const Stream& st, int64_t prompt,
                       const std::function<void(int64_t)>& step = {}) {
  std::vector<float> out(st.S * s.H * s.D);
  int64_t done = 0;
  const int64_t chunks[] = {prompt / 3, prompt - prompt / 3};
  for (int64_t T : chunks) {
    c.append(st.k.data() + done * s.G * s.D, st.v.data() + done * s.G * s.D, T,
             st.pos.data() + done);
    c.attend(st.q.data() + done * s.H * s.D, T, st.pos.data() + done,
             out.data() + done * s.H * s.D);
    done += T;
  }
  c.end_prefill(kv::PrefillContext{prompt});
  if (step) step(-1);
  for (; done < st.S; ++done) {
    c.append(st.k.data() + done * s.G * s.D, st.v.data() + done * s.G * s.D, 1,
             st.pos.data() + done);
    c.attend(st.q.data() + done * s.H * s.D, 1, st.pos.data() + done,
             out.data() + done * s.H * s.D);
    if (step) step(done);
  }
  return out;
}

std::vector<std::string> eviction_methods() {
  std::vector<std::string> r;
  for (const auto& n : kv::KvRegistry::instance().names())
    if (n == "streaming_llm" || n == "h2o" || n == "snapkv") r.push_back(n);
  return r;
}

// ---- conformance over every registered eviction method ----

// A budget >= the whole context keeps everything: outputs equal the full cache's bit for bit
// (same kernel over the same bytes), prefill and decode, and memory() matches.
TEST(EvictionConformance, BudgetCoveringContextEqualsFullCache) {
  ThreadPool pool(2);
  const Shape s;
  const int64_t S = 120, prompt = 90;
  const Stream st(s, S, 11);
  auto full = kv::make_kv_factory("full_cache", ParamValues(std::vector<ParamDecl>{}))(
      layer_info(pool, s));
  const auto want = run(*full, s, st, prompt);
  auto methods = eviction_methods();
  ASSERT_FALSE(methods.empty());
  for (const auto& m : methods) {
    for (const auto& budget : std::vector<std::pair<std::string, std::string>>{
             {"budget", std::to_string(S)}, {"budget", std::to_string(S + 50)}}) {
      auto c = make(m, layer_info(pool, s), {budget});
      const auto got = run(*c, s, st, prompt);
      EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float))) << m;
      const MemoryReport r = c->memory();
      EXPECT_EQ(r.full_tokens, S) << m;
      EXPECT_EQ(r.evicted_tokens, 0) << m;
      EXPECT_EQ(c->tokens_seen(), S) << m;
    }
  }
}

// Both budget and ratio set, or neither, is an error for every method.
TEST(EvictionConformance, ExactlyOneBudget) {
  ThreadPool pool(1);
  for (const auto& m : eviction_methods()) {
    EXPECT_THROW(make(m, layer_info(pool, Shape{}), {{"budget", "8"}, {"ratio", "0.5"}}), Error)
        << m;
    EXPECT_THROW(make(m, layer_info(pool, Shape{}), {}), Error) << m;
  }
}


// With a small budget, every decode step's output equals f64 attention of each query head over
// its KV head's kept set (as it was before the step) plus the new token: per-head selections
// share one mask array correctly.
TEST(EvictionConformance, DecodeAttendsOverEachHeadsKeptSet) {
  ThreadPool pool(2);
  const Shape s{8, 2, 16};
  const int64_t S = 90, prompt = 64;
  const Stream st(s, S, 41);
  const double scale = 1.0 / std::sqrt(static_cast<double>(s.D));
  for (const auto& m : eviction_methods()) {
    auto c = make(m, layer_info(pool, s), {{"budget", "24"}});
    auto* e = ev(c.get());
    std::vector<std::vector<int32_t>> before(s.G);
    std::vector<float> want(S * s.H * s.D, 0.f);
    const auto got = run(*c, s, st, prompt, [&](int64_t t) {
      if (t >= 0) {
        for (int64_t h = 0; h < s.H; ++h) {
          const int64_t g = h / (s.H / s.G);
          std::vector<int32_t> toks = before[g];
          toks.push_back(static_cast<int32_t>(t));
          std::vector<double> p;
          double mx = -1e300, z = 0;
          for (int32_t j : toks) {
            double dot = 0;
            for (int64_t d = 0; d < s.D; ++d)
              dot += static_cast<double>(st.q[(t * s.H + h) * s.D + d]) * st.k[(j * s.G + g) * s.D + d];
            p.push_back(scale * dot);
            mx = std::max(mx, scale * dot);
          }
          for (double& x : p) z += (x = std::exp(x - mx));
          for (int64_t d = 0; d < s.D; ++d) {
            double o = 0;
            for (size_t i = 0; i < toks.size(); ++i) o += p[i] / z * st.v[(toks[i] * s.G + g) * s.D + d];
            want[(t * s.H + h) * s.D + d] = static_cast<float>(o);
          }
        }
      }
      for (int64_t g = 0; g < s.G; ++g) before[g] = e->kept_positions(g);
    });
    for (int64_t t = prompt; t < S; ++t)
      EXPECT_TRUE(testing::all_close(got.data() + t * s.H * s.D, want.data() + t * s.H * s.D,
                                     s.H * s.D, 2e-5, 2e-5))
          << m << " step " << t;
  }
}

// StreamingLLM's cache position mode with nothing evicted and positions from 0 is the full cache.
TEST(EvictionConformance, StreamingCacheModeWithoutEvictionEqualsFullCache) {
  ThreadPool pool(2);
  const Shape s;
  cpu::RopeConfig rc;
  rc.head_dim = s.D;
  const cpu::Rope rope(rc);
  const Stream st(s, 80, 13);
  auto full = kv::make_kv_factory("full_cache", ParamValues(std::vector<ParamDecl>{}))(
      layer_info(pool, s));
  const auto want = run(*full, s, st, 60);
  auto c = make("streaming_llm", layer_info(pool, s, &rope),
                {{"budget", "80"}, {"position_mode", "cache"}});
  const auto got = run(*c, s, st, 60);
  EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)));
}

// ---- StreamingLLM ----

TEST(StreamingLlm, KeepsExactlySinksAndWindow) {
  ThreadPool pool(2);
  const Shape s;
  const int64_t S = 100, prompt = 70, n_sink = 4, window = 20;
  const Stream st(s, S, 5, 3);
  for (const auto& how : std::vector<std::pair<std::string, std::string>>{
           {"window", "20"}, {"budget", "24"}, {"ratio", std::to_string(24.0 / prompt)}}) {
    auto c = make("streaming_llm", layer_info(pool, s), {how});
    auto* e = ev(c.get());
    run(*c, s, st, prompt, [&](int64_t t) {
      const int64_t seen = t < 0 ? prompt : t + 1;
      std::vector<int32_t> want;
      for (int64_t i = 0; i < n_sink; ++i) want.push_back(st.pos[i]);
      for (int64_t i = seen - window; i < seen; ++i) want.push_back(st.pos[i]);
      for (int64_t g = 0; g < s.G; ++g) ASSERT_EQ(e->kept_positions(g), want) << how.first;
      // Kept K/V are the appended ones, unchanged (original position mode).
      for (int64_t g = 0; g < s.G; ++g)
        for (int64_t i = 0; i < e->kept(); ++i) {
          const int64_t tok = want[i] - 3;
          ASSERT_EQ(0, std::memcmp(e->key_row(g, i), st.k.data() + (tok * s.G + g) * s.D,
                                   s.D * sizeof(float)));
          ASSERT_EQ(0, std::memcmp(e->value_row(g, i), st.v.data() + (tok * s.G + g) * s.D,
                                   s.D * sizeof(float)));
        }
      const MemoryReport r = c->memory();
      EXPECT_EQ(r.full_tokens, n_sink + window);
      EXPECT_EQ(r.evicted_tokens, seen - n_sink - window);
      EXPECT_EQ(r.device_bytes, (n_sink + window) * (2 * s.G * s.D * 4 + s.G * 4));
    });
  }
}

// Decode output over the kept set equals reference attention over sinks + window (+ own token).
TEST(StreamingLlm, DecodeAttendsOverKeptSet) {
  ThreadPool pool(2);
  const Shape s;
  const int64_t S = 60, prompt = 40;
  const Stream st(s, S, 8);
  auto c = make("streaming_llm", layer_info(pool, s), {{"n_sink", "2"}, {"window", "10"}});
  const auto got = run(*c, s, st, prompt);
  for (int64_t t = prompt; t < S; ++t) {
    // Before step t the cache held sinks + the 10 tokens before t; t itself is appended.
    std::vector<int64_t> idx = {0, 1};
    for (int64_t i = t - 10; i <= t; ++i) idx.push_back(i);
    std::vector<float> k, v;
    std::vector<int32_t> p;
    for (int64_t i : idx) {
      k.insert(k.end(), st.k.begin() + i * s.G * s.D, st.k.begin() + (i + 1) * s.G * s.D);
      v.insert(v.end(), st.v.begin() + i * s.G * s.D, st.v.begin() + (i + 1) * s.G * s.D);
      p.push_back(st.pos[i]);
    }
    cpu::KvView ref{k.data(), v.data(), static_cast<int64_t>(idx.size()), s.D, s.G * s.D, p.data()};
    std::vector<float> want(s.H * s.D);
    cpu::attention_ref(st.q.data() + t * s.H * s.D, 1, st.pos.data() + t, ref,
                       {s.H, s.G, s.D, 1.0f / std::sqrt(16.0f)}, want.data(), nullptr);
    EXPECT_TRUE(testing::all_close(got.data() + t * s.H * s.D, want.data(), s.H * s.D, 2e-5, 2e-5))
        << "step " << t;
  }
}

// Cache position mode: kept keys equal pre-RoPE keys rotated at their slot, and decode output
// equals reference attention with keys and query recomputed at cache positions.
TEST(StreamingLlm, CachePositionModeReRotation) {
  ThreadPool pool(2);
  const Shape s;
  cpu::RopeConfig rc;
  rc.head_dim = s.D;
  const cpu::Rope rope(rc);
  const int64_t S = 70, prompt = 45, n_sink = 3, window = 12;
  Stream st(s, S, 21, 7);
  const std::vector<float> k_pre = st.k, q_pre = st.q;
  rope.apply(st.k.data(), S, s.G, st.pos.data());
  rope.apply(st.q.data(), S, s.H, st.pos.data());
  auto c = make("streaming_llm", layer_info(pool, s, &rope),
                {{"n_sink", "3"}, {"window", "12"}, {"position_mode", "cache"}});
  auto* e = ev(c.get());
  std::vector<float> want_out(S * s.H * s.D);
  std::vector<int64_t> kept_tok;  // token indices kept after the previous step
  auto check_keys = [&](const std::vector<int64_t>& toks) {
    for (int64_t g = 0; g < s.G; ++g)
      for (int64_t i = 0; i < static_cast<int64_t>(toks.size()); ++i) {
        std::vector<float> want(k_pre.begin() + (toks[i] * s.G + g) * s.D,
                                k_pre.begin() + (toks[i] * s.G + g + 1) * s.D);
        const int32_t p = static_cast<int32_t>(i);
        rope.apply(want.data(), 1, 1, &p);
        ASSERT_TRUE(testing::all_close(e->key_row(g, i), want.data(), s.D, 1e-5, 1e-5))
            << "slot " << i << " token " << toks[i];
      }
  };
  const auto got_out = run(*c, s, st, prompt, [&](int64_t t) {
    const int64_t seen = t < 0 ? prompt : t + 1;
    std::vector<int64_t> toks;
    for (int64_t i = 0; i < n_sink; ++i) toks.push_back(i);
    for (int64_t i = seen - window; i < seen; ++i) toks.push_back(i);
    check_keys(toks);
    if (t >= 0) {
      // Step t attended over kept_tok + t at slots 0..n, query at slot n.
      std::vector<int64_t> all = kept_tok;
      all.push_back(t);
      std::vector<float> k, v, q(q_pre.begin() + t * s.H * s.D, q_pre.begin() + (t + 1) * s.H * s.D);
      std::vector<int32_t> p;
      for (int64_t i = 0; i < static_cast<int64_t>(all.size()); ++i) {
        k.insert(k.end(), k_pre.begin() + all[i] * s.G * s.D, k_pre.begin() + (all[i] + 1) * s.G * s.D);
        v.insert(v.end(), st.v.begin() + all[i] * s.G * s.D, st.v.begin() + (all[i] + 1) * s.G * s.D);
        p.push_back(static_cast<int32_t>(i));
      }
      rope.apply(k.data(), static_cast<int64_t>(all.size()), s.G, p.data());
      const int32_t qp = p.back();
      rope.apply(q.data(), 1, s.H, &qp);
      cpu::KvView ref{k.data(), v.data(), static_cast<int64_t>(all.size()), s.D, s.G * s.D, p.data()};
      cpu::attention_ref(q.data(), 1, &qp, ref, {s.H, s.G, s.D, 1.0f / 4.0f},
                         want_out.data() + t * s.H * s.D, nullptr);
    }
    kept_tok = toks;
  });
  for (int64_t t = prompt; t < S; ++t)
    EXPECT_TRUE(testing::all_close(got_out.data() + t * s.H * s.D, want_out.data() + t * s.H * s.D,
                                   s.H * s.D, 1e-4, 1e-4))
        << "step " << t;
}


// ---- H2O ----

// f64 probabilities of query t (all heads) over token set `toks` for KV head g's query heads,
// summed over the group: adds to score[tok].
void add_h2o_scores(const Shape& s, const Stream& st, int64_t t, int64_t g,
                    const std::vector<int64_t>& toks, std::map<int64_t, double>& score) {
  const int64_t group = s.H / s.G;
  const double scale = 1.0 / std::sqrt(static_cast<double>(s.D));
  for (int64_t h = g * group; h < (g + 1) * group; ++h) {
    std::vector<double> logit;
    double mx = -1e300;
    for (int64_t j : toks) {
      double dot = 0;
      for (int64_t d = 0; d < s.D; ++d)
        dot += static_cast<double>(st.q[(t * s.H + h) * s.D + d]) * st.k[(j * s.G + g) * s.D + d];
      logit.push_back(scale * dot);
      mx = std::max(mx, scale * dot);
    }
    double z = 0;
    for (double l : logit) z += std::exp(l - mx);
    for (size_t i = 0; i < toks.size(); ++i) score[toks[i]] += std::exp(logit[i] - mx) / z;
  }
}

// Keeps `recent` last tokens of toks plus the top (keep - recent) by score (ties: earlier).
std::vector<int64_t> h2o_select(std::vector<int64_t> toks, const std::map<int64_t, double>& score,
                                int64_t keep, int64_t recent) {
  if (static_cast<int64_t>(toks.size()) <= keep) return toks;
  std::vector<int64_t> rest(toks.begin(), toks.end() - recent), out(toks.end() - recent, toks.end());
  std::stable_sort(rest.begin(), rest.end(),
                   [&](int64_t a, int64_t b) { return score.at(a) > score.at(b); });
  out.insert(out.end(), rest.begin(), rest.begin() + (keep - recent));
  std::sort(out.begin(), out.end());
  return out;
}

TEST(H2o, KeptSetMatchesBruteForceAccumulatedAttention) {
  ThreadPool pool(2);
  const Shape s{8, 2, 16};
  const int64_t S = 110, prompt = 80, keep = 30, recent = 10;
  const Stream st(s, S, 17);
  for (const auto& how : std::vector<std::pair<std::string, std::string>>{
           {"budget", "30"}, {"ratio", std::to_string(30.0 / prompt)}}) {
    auto c = make("h2o", layer_info(pool, s), {how, {"recent_fraction", "0.34"}});
    auto* e = ev(c.get());
    // Reference: per head, kept token set and accumulated scores.
    std::vector<std::vector<int64_t>> kept(s.G);
    std::vector<std::map<int64_t, double>> score(s.G);
    for (int64_t g = 0; g < s.G; ++g) {
      for (int64_t t = 0; t < prompt; ++t) {
        std::vector<int64_t> vis;
        for (int64_t j = 0; j <= t; ++j) vis.push_back(j);
        add_h2o_scores(s, st, t, g, vis, score[g]);
      }
      for (int64_t j = 0; j < prompt; ++j) kept[g].push_back(j);
      kept[g] = h2o_select(kept[g], score[g], keep, recent);
    }
    run(*c, s, st, prompt, [&](int64_t t) {
      for (int64_t g = 0; g < s.G; ++g) {
        if (t >= 0) {
          kept[g].push_back(t);
          add_h2o_scores(s, st, t, g, kept[g], score[g]);
          kept[g] = h2o_select(kept[g], score[g], keep, recent);
        }
        std::vector<int32_t> want(kept[g].begin(), kept[g].end());
        ASSERT_EQ(e->kept_positions(g), want) << how.first << " head " << g << " step " << t;
      }
      const MemoryReport r = c->memory();
      const int64_t seen = t < 0 ? prompt : t + 1;
      EXPECT_EQ(r.full_tokens, keep);
      EXPECT_EQ(r.evicted_tokens, seen - keep);
      EXPECT_EQ(r.device_bytes, keep * (2 * s.G * s.D * 4 + s.G * 4 + s.G * 8));
    });
    // The two heads made different choices (per-head selection is exercised).
    EXPECT_NE(e->kept_positions(0), e->kept_positions(1));
  }
}


// ---- SnapKV ----

// Brute force in f64: window queries' softmax over all prompt tokens they can see, summed over the
// window, pooled over the prefix, averaged over the group; keep top (keep - w) + the window.
std::vector<int64_t> snapkv_reference(const Shape& s, const Stream& st, int64_t prompt, int64_t g,
                                      int64_t keep, int64_t w, int64_t kernel, bool max_pool) {
  const int64_t group = s.H / s.G, n = prompt - w;
  const double scale = 1.0 / std::sqrt(static_cast<double>(s.D));
  std::vector<double> score(n, 0.0);
  for (int64_t h = g * group; h < (g + 1) * group; ++h) {
    std::vector<double> attn(prompt, 0.0);
    for (int64_t t = prompt - w; t < prompt; ++t) {
      std::vector<double> logit(t + 1);
      double mx = -1e300, z = 0;
      for (int64_t j = 0; j <= t; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < s.D; ++d)
          dot += static_cast<double>(st.q[(t * s.H + h) * s.D + d]) * st.k[(j * s.G + g) * s.D + d];
        logit[j] = scale * dot;
        mx = std::max(mx, logit[j]);
      }
      for (double l : logit) z += std::exp(l - mx);
      for (int64_t j = 0; j <= t; ++j) attn[j] += std::exp(logit[j] - mx) / z;
    }
    for (int64_t i = 0; i < n; ++i) {
      double v = 0.0;  // probabilities are >= 0, so 0-padding does not change a max
      for (int64_t j = i - kernel / 2; j <= i + kernel / 2; ++j) {
        const double a = (j >= 0 && j < n) ? attn[j] : 0.0;  // zero padding
        v = max_pool ? std::max(v, a) : v + a;
      }
      score[i] += (max_pool ? v : v / kernel) / group;
    }
  }
  std::vector<int64_t> idx(n);
  for (int64_t i = 0; i < n; ++i) idx[i] = i;
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return score[a] > score[b]; });
  std::vector<int64_t> out(idx.begin(), idx.begin() + (keep - w));
  for (int64_t i = n; i < prompt; ++i) out.push_back(i);
  std::sort(out.begin(), out.end());
  return out;
}

TEST(SnapKv, KeptSetMatchesBruteForcePooledScores) {
  ThreadPool pool(2);
  const Shape s{8, 2, 16};
  const int64_t S = 100, prompt = 90, keep = 30;
  const Stream st(s, S, 29);
  for (const std::string pooling : {"max", "avg"}) {
    for (const auto& [w, kernel] : std::vector<std::pair<int64_t, int64_t>>{{8, 7}, {16, 5}, {8, 1}}) {
      auto c = make("snapkv", layer_info(pool, s),
                    {{"budget", "30"}, {"window", std::to_string(w)},
                     {"kernel", std::to_string(kernel)}, {"pooling", pooling}});
      auto* e = ev(c.get());
      std::vector<std::vector<int64_t>> want(s.G);
      for (int64_t g = 0; g < s.G; ++g)
        want[g] = snapkv_reference(s, st, prompt, g, keep, w, kernel, pooling == "max");
      run(*c, s, st, prompt, [&](int64_t t) {
        const int64_t decoded = t < 0 ? 0 : t + 1 - prompt;
        for (int64_t g = 0; g < s.G; ++g) {
          std::vector<int32_t> exp(want[g].begin(), want[g].end());
          for (int64_t i = prompt; i < prompt + decoded; ++i) exp.push_back(static_cast<int32_t>(i));
          ASSERT_EQ(e->kept_positions(g), exp) << pooling << " w=" << w << " k=" << kernel
                                               << " head " << g << " step " << t;
        }
        const MemoryReport r = c->memory();
        EXPECT_EQ(r.full_tokens, keep + decoded);
        EXPECT_EQ(r.evicted_tokens, prompt - keep);
        EXPECT_EQ(r.device_bytes, (keep + decoded) * (2 * s.G * s.D * 4 + s.G * 4));
      });
      EXPECT_NE(e->kept_positions(0), e->kept_positions(1));
    }
  }
}

// Budget at or below the window keeps the last `budget` prompt tokens.
TEST(SnapKv, BudgetWithinWindowKeepsLastTokens) {
  ThreadPool pool(1);
  const Shape s;
  const Stream st(s, 50, 3);
  auto c = make("snapkv", layer_info(pool, s), {{"budget", "6"}, {"window", "8"}});
  run(*c, s, st, 50);
  EXPECT_EQ(ev(c.get())->kept_positions(0), (std::vector<int32_t>{44, 45, 46, 47, 48, 49}));
}

}  // namespace
}  // namespace kvlab
