// OjaKV compose_with (methods.md 1.3 step 5, 1.8): eviction (SnapKV, StreamingLLM) at end of
// prefill, then OjaKV on the survivors. Checked against the eviction baselines themselves through
// the tiny model (rank = head_dim makes the compression lossless up to f32 rounding), against plain
// OjaKV when the budget covers the prompt (bit-identical), by exact byte accounting, and by the
// parameter errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "baselines/common/eviction_cache.h"
#include "framework/core/error.h"
#include "tests/methods/ojakv/ojakv_support.h"
#include "tests/support/close.h"

namespace kvlab {
namespace {

using methods::OjaKvCache;
using methods::OjaKvParams;
using testing::ojakv_params;
using testing::random_bases;
using Settings = std::vector<std::pair<std::string, std::string>>;

kv::KvFactory ojakv_factory(std::shared_ptr<const kv::Bases> b, const OjaKvParams& p) {
  return [b, p](const kv::LayerInfo& info) {
    return std::unique_ptr<kv::KvCache>(new OjaKvCache(info, p, b));
  };
}

kv::KvFactory method_factory(const std::string& name, const Settings& set) {
  ParamValues p(kv::KvRegistry::instance().find(name).params);
  for (const auto& [k, v] : set) p.set_from_string(k, v, "test");
  return kv::make_kv_factory(name, p);
}

double max_rel_diff(const float* a, const float* b, size_t n) {
  double m = 0.0, s = 0.0;
  for (size_t i = 0; i < n; ++i) {
    m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]));
    s = std::max(s, std::fabs(static_cast<double>(b[i])));
  }
  return m / s;
}

Settings with(Settings s, const Settings& more) {
  s.insert(s.end(), more.begin(), more.end());
  return s;
}

// Every layer and KV head: OjaKV's held positions (materialize) equal the eviction cache's kept
// positions.
void expect_same_survivors(model::Sequence* ours, model::Sequence* theirs, int64_t L, int64_t G,
                           const std::string& what) {
  for (int64_t l = 0; l < L; ++l) {
    auto* o = dynamic_cast<OjaKvCache*>(&ours->cache(l));
    auto* e = dynamic_cast<baselines::EvictionCache*>(&theirs->cache(l));
    ASSERT_TRUE(o && e);
    for (int64_t g = 0; g < G; ++g) {
      std::vector<float> K, V;
      std::vector<int32_t> pos;
      o->materialize(g, &K, &V, &pos);
      EXPECT_EQ(pos, e->kept_positions(g)) << what << " layer " << l << " head " << g;
    }
  }
}

// rank = head_dim, coefficients f32: compose_with snapkv gives SnapKV's logits (prefill and 40
// decode steps with Oja updates) and SnapKV's survivors per head, for both attention paths, both
// prefill modes, both anchor policies and the pre-RoPE frame. Tolerance as in
// FullRankReproducesFullCacheLogits (2e-4 of the logit scale). Rank 8 of 16 must break it.
TEST(OjaKvCompose, SnapKvFullRankReproducesSnapKvLogits) {
  const auto ids = testing::token_ids(120, 21);
  const int64_t prompt = 80;
  const Settings evict = {{"evict_budget", "30"}, {"evict_window", "8"}, {"evict_kernel", "5"}};
  model::Sequence* snap_seq = nullptr;
  const auto want = testing::model_logits(
      method_factory("snapkv", {{"budget", "30"}, {"window", "8"}, {"kernel", "5"}}), ids, prompt,
      32, &snap_seq);
  const Settings base = with(evict, {{"compose_with", "snapkv"},
                                     {"rank_mode", "fixed"},
                                     {"rank_k", "16"},
                                     {"rank_v", "16"},
                                     {"coeff_dtype", "f32"},
                                     {"n_start", "2"},
                                     {"n_recent", "3"},
                                     {"k_full", "5"},
                                     {"update_period", "8"},
                                     {"tile_tokens", "13"}});
  struct Case {
    Settings set;
    std::string frame;
  };
  const std::vector<Case> cases = {
      {{}, "post_rope"},
      {{{"attention_path", "latent"}}, "post_rope"},
      {{{"prefill_attention", "exact"}}, "post_rope"},
      {{{"anchor_policy", "residual_topk"}}, "post_rope"},
      {{{"rope_frame", "pre"}, {"evict_pooling", "max"}}, "pre_rope"},
  };
  for (const auto& c : cases) {
    auto bases = random_bases(2, 2, 16, 31, c.frame);
    model::Sequence* seq = nullptr;
    const auto got = testing::model_logits(ojakv_factory(bases, ojakv_params(with(base, c.set))),
                                           ids, prompt, 32, &seq);
    const std::string what = c.set.empty() ? "default" : c.set[0].second;
    EXPECT_LT(max_rel_diff(got.data(), want.data(), got.size()), 2e-4) << what;
    expect_same_survivors(seq, snap_seq, 2, 2, what);
    const MemoryReport m = seq->cache(0).memory();
    EXPECT_EQ(m.evicted_tokens, prompt - 30) << what;
    EXPECT_EQ(m.full_tokens + m.compressed_tokens, 30 + 40) << what;
    delete seq;
  }
  delete snap_seq;
  auto bases = random_bases(2, 2, 16, 31);
  const auto lossy = testing::model_logits(
      ojakv_factory(bases, ojakv_params(with(base, {{"rank_k", "8"}, {"rank_v", "8"}}))), ids,
      prompt, 32);
  EXPECT_GT(max_rel_diff(lossy.data(), want.data(), lossy.size()), 1e-2)
      << "rank D/2 should change the logits";
}

// compose_with streaming_llm evicts at end of prefill only: the prompt logits and the first decode
// step (both caches hold sinks + recent + the new token) equal streaming_llm's; the survivors are
// the first evict_sinks and the last (budget - sinks) prompt tokens, plus every decode token.
TEST(OjaKvCompose, StreamingLlmFullRankMatchesStreamingLlmAtPrefill) {
  const auto ids = testing::token_ids(90, 22);
  const int64_t prompt = 70, V = testing::tiny_model()->config().vocab_size;
  const auto want = testing::model_logits(
      method_factory("streaming_llm", {{"n_sink", "3"}, {"budget", "25"}}), ids, prompt, 16);
  auto bases = random_bases(2, 2, 16, 32);
  model::Sequence* seq = nullptr;
  const auto got =
      testing::model_logits(ojakv_factory(bases, ojakv_params({{"compose_with", "streaming_llm"},
                                                               {"evict_sinks", "3"},
                                                               {"evict_budget", "25"},
                                                               {"rank_mode", "fixed"},
                                                               {"rank_k", "16"},
                                                               {"rank_v", "16"},
                                                               {"coeff_dtype", "f32"},
                                                               {"update_period", "8"}})),
                            ids, prompt, 16, &seq);
  const size_t n = static_cast<size_t>((prompt + 1) * V);
  EXPECT_LT(max_rel_diff(got.data(), want.data(), n), 2e-4);
  std::vector<int32_t> expect = {0, 1, 2};
  for (int32_t i = static_cast<int32_t>(prompt) - 22; i < 90; ++i) expect.push_back(i);
  for (int64_t l = 0; l < 2; ++l)
    for (int64_t g = 0; g < 2; ++g) {
      std::vector<float> K, Vv;
      std::vector<int32_t> pos;
      dynamic_cast<OjaKvCache&>(seq->cache(l)).materialize(g, &K, &Vv, &pos);
      EXPECT_EQ(pos, expect) << "layer " << l << " head " << g;
    }
  delete seq;
}

// A budget covering the prompt evicts nothing: bit-identical logits to plain OjaKV (lossy rank,
// f16 coefficients, decode updates), for both policies and both budget forms.
TEST(OjaKvCompose, BudgetCoveringPromptEqualsPlainOjaKv) {
  const auto ids = testing::token_ids(100, 23);
  const int64_t prompt = 64;
  auto bases = random_bases(2, 2, 16, 33);
  const Settings base = {{"rank_mode", "fixed"}, {"rank_k", "5"},         {"rank_v", "4"},
                         {"n_start", "2"},       {"n_recent", "4"},       {"update_period", "8"},
                         {"evict_window", "40"}, {"salient_window", "16"}};
  const auto want = testing::model_logits(ojakv_factory(bases, ojakv_params(base)), ids, prompt);
  for (const char* policy : {"snapkv", "streaming_llm"})
    for (const Settings& b : std::vector<Settings>{
             {{"evict_budget", "64"}}, {{"evict_budget", "500"}}, {{"evict_ratio", "1.0"}}}) {
      model::Sequence* seq = nullptr;
      const auto got = testing::model_logits(
          ojakv_factory(bases, ojakv_params(with(with(base, b), {{"compose_with", policy}}))), ids,
          prompt, 512, &seq);
      EXPECT_TRUE(
          testing::all_close(got.data(), want.data(), static_cast<int64_t>(got.size()), 0.0, 0.0))
          << policy << " " << b[0].first;
      EXPECT_EQ(seq->cache(1).memory().evicted_tokens, 0);
      delete seq;
    }
  // And a budget below the prompt does change them (the check can fail).
  const auto cut = testing::model_logits(
      ojakv_factory(bases,
                    ojakv_params(with(base, {{"compose_with", "snapkv"}, {"evict_budget", "40"}}))),
      ids, prompt);
  EXPECT_GT(max_rel_diff(cut.data(), want.data(), cut.size()), 1e-3);
}

struct Sink : TraceSink {
  std::map<std::string, std::vector<double>> series;
  void append_scalar(std::string_view path, double v, std::string_view) override {
    series[std::string(path)].push_back(v);
  }
  void append_row(std::string_view, std::span<const float>, std::string_view) override {}
  void set_attribute(std::string_view, std::string_view, std::string_view) override {}
};

// Bytes multiply: after eviction to K survivors per head, device bytes = per head
// (anchors x 2 D 4 + compressed x (r_k + r_v) x 2 (f16) + bases D (r_k + r_v) 8) + decode buffer
// |B| G 2 D 4 + index (N 4 + N G 5 + G K 4), N = K + decode tokens. The compressed payload is
// (K - anchors)/(prompt - anchors) of plain OjaKV's and (r_k + r_v)/(8 D) of SnapKV's per token.
TEST(OjaKvCompose, MemoryIsSurvivorsTimesCompressedCost) {
  const auto ids = testing::token_ids(90, 24);
  const int64_t prompt = 80, dec = 10, K = 30, G = 2, D = 16, rk = 4, rv = 3;
  auto bases = random_bases(2, 2, 16, 34);
  const Settings base = {{"rank_mode", "fixed"}, {"rank_k", "4"},      {"rank_v", "3"},
                         {"n_start", "2"},       {"n_recent", "3"},    {"update_period", "64"},
                         {"coeff_dtype", "f16"}, {"evict_window", "8"}};
  for (const char* policy : {"snapkv", "streaming_llm"}) {
    model::Sequence* seq = nullptr;
    testing::model_logits(
        ojakv_factory(bases, ojakv_params(with(base, {{"compose_with", policy},
                                                      {"evict_budget", std::to_string(K)}}))),
        ids, prompt, 512, &seq);
    model::Sequence* plain = nullptr;
    testing::model_logits(ojakv_factory(bases, ojakv_params(base)), ids, prompt, 512, &plain);
    for (int64_t l = 0; l < 2; ++l) {
      auto& c = dynamic_cast<OjaKvCache&>(seq->cache(l));
      const int64_t N = K + dec, anchors = 2 + 3, compressed = N - anchors;
      const int64_t want =
          G * (anchors * 2 * D * 4 + compressed * (rk + rv) * 2 + D * (rk + rv) * 8) +
          dec * G * 2 * D * 4 + (N * 4 + N * G * 5 + G * K * 4);
      const MemoryReport m = c.memory();
      EXPECT_EQ(m.device_bytes, want) << policy << " layer " << l;
      EXPECT_EQ(m.evicted_tokens, prompt - K);
      EXPECT_EQ(m.full_tokens, anchors);  // decode tokens' buffer copies only feed the next update
      EXPECT_EQ(m.compressed_tokens, compressed);
      const auto t = c.tiers();
      const auto tp = dynamic_cast<OjaKvCache&>(plain->cache(l)).tiers();
      EXPECT_EQ(t.coefficients, G * compressed * (rk + rv) * 2);
      EXPECT_EQ(tp.coefficients, G * (prompt + dec - anchors) * (rk + rv) * 2);
      // The traced achieved ratio is against a full cache of every token seen (90), not of the
      // survivors.
      Sink sink;
      c.trace(sink);
      const std::string L = "ojakv/layer_0" + std::to_string(l);
      EXPECT_DOUBLE_EQ(sink.series[L + "/bytes/ratio_to_full"].back(),
                       static_cast<double>(want) / (90.0 * (2 * G * D * 4 + 4)));
      EXPECT_EQ(sink.series[L + "/tokens/evicted"].back(), prompt - K);
    }
    delete seq;
    delete plain;
  }
}

// Bad combinations fail naming the key.
TEST(OjaKvCompose, BadCombinationsNameTheKey) {
  auto fails_with = [](const Settings& s, const std::string& key) {
    try {
      ojakv_params(s);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
      return;
    }
    ADD_FAILURE() << "no error for " << key;
  };
  fails_with({{"evict_budget", "32"}}, "ojakv.evict_budget");
  fails_with({{"evict_ratio", "0.5"}}, "ojakv.evict_ratio");
  fails_with({{"compose_with", "snapkv"}, {"evict_budget", "32"}, {"evict_ratio", "0.5"}},
             "ojakv.evict_budget");
  fails_with({{"compose_with", "snapkv"}, {"evict_budget", "32"}, {"evict_ratio", "0.5"}},
             "ojakv.evict_ratio");
  fails_with({{"compose_with", "streaming_llm"}}, "ojakv.evict_budget");
  fails_with({{"compose_with", "streaming_llm"}, {"evict_budget", "4"}, {"evict_sinks", "8"}},
             "ojakv.evict_sinks");
  fails_with({{"compose_with", "snapkv"}, {"evict_budget", "32"}, {"evict_kernel", "4"}},
             "evict_kernel");
  EXPECT_NO_THROW(ojakv_params({{"compose_with", "snapkv"}, {"evict_ratio", "0.5"}}));
}

}  // namespace
}  // namespace kvlab
