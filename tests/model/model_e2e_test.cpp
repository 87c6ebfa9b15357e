// End to end on random models written by model_init: load, chunked prefill vs token-by-token
// decode, thread-count independence, scoring and seeded generation.
#include <gtest/gtest.h>

#include <filesystem>
#include <unistd.h>

#include "framework/model/generate.h"
#include "framework/model/llama.h"
#include "framework/model/model_init.h"
#include "tests/support/close.h"

namespace kvlab::model {
namespace {

namespace fs = std::filesystem;

std::shared_ptr<const Model> tiny_model(const std::string& preset, DType dtype) {
  const fs::path dir = fs::temp_directory_path() /
                       ("kvlab_e2e_" + preset + "_" + std::string(dtype_name(dtype)) + "_" + std::to_string(getpid()));
  if (!fs::exists(dir / "config.json")) {
    InitOptions o;
    o.config = preset_config(preset);
    o.dtype = dtype;
    o.seed = 11;
    o.init_std = 0.2;  // large enough that attention is far from uniform
    write_random_model(o, dir.string());
  }
  return Model::load(dir.string());
}

kv::KvFactory full() { return kv::make_kv_factory("full_cache", ParamValues(std::vector<ParamDecl>{})); }

std::vector<float> run(std::shared_ptr<const Model> m, const std::vector<int32_t>& ids, int threads,
                       int64_t chunk, int64_t decode_from) {
  ThreadPool pool(threads);
  Sequence seq(m, full(), pool, {.prefill_chunk = chunk});
  const int64_t V = m->config().vocab_size, T = static_cast<int64_t>(ids.size());
  std::vector<float> logits(T * V);
  seq.forward(std::span<const int32_t>(ids.data(), decode_from), logits.data(), true);
  for (int64_t t = decode_from; t < T; ++t)
    seq.forward(std::span<const int32_t>(ids.data() + t, 1), logits.data() + t * V, false);
  EXPECT_EQ(seq.length(), T);
  return logits;
}

class ModelE2E : public ::testing::TestWithParam<std::tuple<std::string, DType>> {};

TEST_P(ModelE2E, PrefillDecodeAndThreadsAgree) {
  auto m = tiny_model(std::get<0>(GetParam()), std::get<1>(GetParam()));
  ASSERT_NE(m->tokenizer(), nullptr);
  const auto ids = m->tokenizer()->encode("In the beginning God created the heaven and the earth. 0123456789");
  const int64_t n = static_cast<int64_t>(ids.size());
  const auto a = run(m, ids, 2, 512, n);  // one prefill chunk
  const auto b = run(m, ids, 1, 5, 9);    // small chunks then decode
  const auto c = run(m, ids, 2, 1, 1);    // all decode
  // Same f32 math, different blocking (GEMM vs GEMV, tiles): rounding-level differences only.
  EXPECT_TRUE(testing::all_close(b.data(), a.data(), a.size(), 1e-4, 1e-4));
  EXPECT_TRUE(testing::all_close(c.data(), a.data(), a.size(), 1e-4, 1e-4));
}

INSTANTIATE_TEST_SUITE_P(Presets, ModelE2E,
                         ::testing::Values(std::make_tuple("tiny", DType::kBF16),
                                           std::make_tuple("qwen2-tiny", DType::kF32),
                                           std::make_tuple("tiny", DType::kF16)));

TEST(ModelE2E, ScoringMatchesLogitsAndGenerationIsSeeded) {
  auto m = tiny_model("tiny", DType::kBF16);
  const auto ids = m->tokenizer()->encode("And God said, Let there be light: and there was light.");
  ThreadPool pool(2);
  Sequence s1(m, full(), pool, {.prefill_chunk = 7});
  const ScoreResult r = score_tokens(s1, ids);
  ASSERT_EQ(r.count(), static_cast<int64_t>(ids.size()) - 1);
  const auto logits = run(m, ids, 2, 512, static_cast<int64_t>(ids.size()));
  const int64_t V = m->config().vocab_size;
  double sum = 0;
  for (size_t t = 0; t + 1 < ids.size(); ++t) {
    std::span<const float> row(logits.data() + t * V, V);
    sum += log_sum_exp(row) - row[ids[t + 1]];
  }
  EXPECT_NEAR(r.nll_sum, sum, 1e-3 * std::abs(sum));
  EXPECT_TRUE(std::isfinite(r.perplexity()));

  SamplingOptions so;
  so.temperature = 0.8;
  so.top_p = 0.9;
  so.seed = 123;
  so.max_new_tokens = 12;
  so.stop_on_eos = false;
  Sequence g1(m, full(), pool), g2(m, full(), pool);
  const auto x = generate(g1, ids, so);
  const auto y = generate(g2, ids, so);
  EXPECT_EQ(x.tokens, y.tokens);
  EXPECT_EQ(x.tokens.size(), 12u);
  EXPECT_EQ(g1.length(), static_cast<int64_t>(ids.size()) + 11);
}

TEST(ModelE2E, BadTokenIdIsAnError) {
  auto m = tiny_model("tiny", DType::kBF16);
  ThreadPool pool(1);
  Sequence s(m, full(), pool);
  std::vector<int32_t> bad = {1, static_cast<int32_t>(m->config().vocab_size)};
  EXPECT_THROW(s.forward(bad, nullptr, false), Error);
}

}  // namespace
}  // namespace kvlab::model
