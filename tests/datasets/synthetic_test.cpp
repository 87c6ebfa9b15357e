// Synthetic long-context tasks and the packed data stream (datasets/synthetic). Self-contained:
// a small tokenizer is trained on built-in sentences, which also serve as the haystack.
#include <algorithm>
#include <set>

#include <gtest/gtest.h>

#include "datasets/synthetic/data_stream.h"
#include "datasets/synthetic/tasks.h"
#include "framework/core/error.h"
#include "framework/model/tokenizer_train.h"

namespace kvlab::datasets {
namespace {

const char* const kSentences[] = {
    "The old man walked slowly along the river bank.",
    "Light falls upon the glass and is bent toward the perpendicular.",
    "She opened the window and looked out over the quiet town!",
    "Why should any of us fear the dark?",
    "The boys ran down the hill, laughing, and hid behind the fence.",
    "In the morning the rain had stopped and the fields were green.",
    "He counted 12 coins, then 7 more, and put them in his pocket.",
    "\"Come here,\" said the doctor, \"and tell me what you saw.\"",
    "The colours of the rainbow appear in a fixed order.",
    "Nobody in the village had ever seen such a storm.",
};

std::vector<Document> docs() {
  std::vector<Document> out;
  Rng rng(7);
  for (int d = 0; d < 3; ++d) {
    std::string t;
    for (int i = 0; i < 300; ++i) {
      t += kSentences[rng.below(std::size(kSentences))];
      t += (i % 5 == 4) ? "\n\n" : " ";
    }
    out.push_back({"doc" + std::to_string(d), t});
  }
  return out;
}

const model::Tokenizer& tok() {
  static const model::Tokenizer t = [] {
    std::vector<std::string> texts;
    for (const auto& d : docs()) texts.push_back(d.text);
    // Template words too, so prompts are not spelled byte by byte.
    for (const char* w : {"train", "heldout"})
      for (const auto& task : task_names())
        for (const auto& tp : templates(task, w)) texts.push_back(tp.intro + " " + tp.fact + " " + tp.question + " " + tp.prefix);
    model::BpeTrainOptions o;
    o.vocab_size = 700;
    return model::Tokenizer::from_json(model::bpe_tokenizer_json(model::train_bpe(texts, o)), "test");
  }();
  return t;
}

std::string trimmed(const std::string& s) {
  const size_t a = s.find_first_not_of(" \n");
  return a == std::string::npos ? "" : s.substr(a, s.find_last_not_of(" \n") - a + 1);
}

TEST(Synthetic, DeterministicFromSeed) {
  TaskGenerator g(tok(), docs(), "train");
  for (const auto& task : task_names()) {
    Rng a(11), b(11), c(12);
    const auto ea = g.make(task, a, 300), eb = g.make(task, b, 300), ec = g.make(task, c, 300);
    EXPECT_EQ(ea.ids(), eb.ids()) << task;
    EXPECT_EQ(ea.text(), eb.text()) << task;
    EXPECT_NE(ea.ids(), ec.ids()) << task;
  }
}

TEST(Synthetic, AnswerSpansDecodeToTheAnswer) {
  TaskGenerator g(tok(), docs(), "train");
  for (const auto& task : task_names()) {
    for (uint64_t seed = 0; seed < 20; ++seed) {
      Rng rng(seed);
      const Example ex = g.make(task, rng, 200 + 40 * static_cast<int64_t>(seed));
      const auto ids = ex.ids(), prompt = ex.prompt_ids(), ans = ex.answer_ids();
      const auto mask = ex.answer_mask();
      ASSERT_FALSE(ans.empty()) << task;
      ASSERT_EQ(mask.size(), ids.size());
      // The answer tokens sit right after the prompt, and the mask marks exactly them.
      ASSERT_LE(prompt.size() + ans.size(), ids.size());
      EXPECT_TRUE(std::equal(prompt.begin(), prompt.end(), ids.begin())) << task;
      EXPECT_TRUE(std::equal(ans.begin(), ans.end(), ids.begin() + static_cast<long>(prompt.size()))) << task;
      for (size_t i = 0; i < ids.size(); ++i)
        EXPECT_EQ(mask[i], i >= prompt.size() && i < prompt.size() + ans.size()) << task << " token " << i;
      EXPECT_EQ(trimmed(tok().decode(ans)), ex.answer) << task;
      EXPECT_FALSE(ex.answer.empty());
      // The fact the question asks about is in the context.
      const std::string context = tok().decode(prompt);
      if (task == "recall" || task == "copy") {
        EXPECT_NE(context.find(ex.answer), std::string::npos) << task;
      } else {
        bool in_needle = false;
        for (const auto& s : ex.segments)
          in_needle = in_needle || (s.role == Role::kNeedle && s.text.find(ex.answer) != std::string::npos);
        EXPECT_TRUE(in_needle) << task << ": " << ex.answer;
      }
      if (task == "passkey") {
        EXPECT_EQ(ex.answer.size(), 5u);
      }
      if (task == "needle" || task == "multikey") {
        EXPECT_EQ(ex.answer.size(), 7u);
      }
    }
  }
}

TEST(Synthetic, LengthsInTokens) {
  TaskGenerator g(tok(), docs(), "train");
  for (int64_t target : {256, 512, 2048}) {
    for (const auto& task : task_names()) {
      Rng rng(static_cast<uint64_t>(target));
      const Example ex = g.make(task, rng, target);
      if (task == "passkey" || task == "needle" || task == "multikey") {
        EXPECT_EQ(ex.size(), target) << task;
      } else if (task != "recall" || target <= 256) {  // recall: capped by the word pool
        EXPECT_LE(ex.size(), target) << task;
        EXPECT_GE(ex.size(), target - 40) << task;
      }
    }
  }
}

TEST(Synthetic, NeedleDepthIsAtSentenceBoundaryAndSpread) {
  TaskGenerator g(tok(), docs(), "train");
  // Explicit depths land near where asked.
  for (double d : {0.0, 0.25, 0.5, 0.75, 1.0}) {
    Rng rng(3);
    const Example ex = g.needle(rng, 1024, d);
    EXPECT_NEAR(ex.depth, d, 0.06) << d;
    // The text before the needle ends a sentence (or is the intro).
    for (size_t i = 1; i < ex.segments.size(); ++i)
      if (ex.segments[i].role == Role::kNeedle) {
        const std::string& prev = ex.segments[i - 1].text;
        const char last = prev.back();
        EXPECT_TRUE(last == '.' || last == '!' || last == '?' || last == '"' || last == '\n') << prev.substr(prev.size() - 20);
      }
  }
  // Random depths cover [0, 1] evenly: each fifth gets 10-30% of 300 examples.
  std::vector<int> bins(5, 0);
  for (uint64_t s = 0; s < 300; ++s) {
    Rng rng(1000 + s);
    const Example ex = g.needle(rng, 256);
    ASSERT_GE(ex.depth, 0.0);
    ASSERT_LE(ex.depth, 1.0);
    ++bins[std::min(4, static_cast<int>(ex.depth * 5))];
  }
  for (int b : bins) {
    EXPECT_GE(b, 20);
    EXPECT_LE(b, 90);
  }
}

TEST(Synthetic, HeldOutWordingIsDisjoint) {
  for (const auto& task : task_names()) {
    std::set<std::string> train;
    for (const auto& t : templates(task, "train"))
      for (const auto& s : {t.intro, t.fact, t.question, t.prefix})
        if (!s.empty()) train.insert(s);
    for (const auto& t : templates(task, "heldout"))
      for (const auto& s : {t.intro, t.fact, t.question, t.prefix})
        if (!s.empty()) {
          EXPECT_EQ(train.count(s), 0u) << task << ": '" << s << "'";
        }
  }
  // Benchmark wordings are held out.
  bool longlora = false;
  for (const auto& t : templates("passkey", "heldout"))
    longlora = longlora || t.fact == "The pass key is {v}. Remember it. {v} is the pass key.";
  EXPECT_TRUE(longlora);
  // A held-out example uses no training fact sentence.
  TaskGenerator g(tok(), docs(), "heldout");
  for (uint64_t s = 0; s < 20; ++s) {
    Rng rng(s);
    const Example ex = g.passkey(rng, 256);
    for (const auto& t : templates("passkey", "train"))
      EXPECT_EQ(ex.text().find(t.fact.substr(0, t.fact.find('{'))), std::string::npos);
  }
  EXPECT_THROW(TaskGenerator(tok(), docs(), "test"), Error);
}

StreamConfig small_stream() {
  StreamConfig c;
  c.batch = 3;
  c.seq_len = 256;
  c.min_tokens = 32;
  c.seed = 5;
  return c;
}

TEST(DataStreamTest, PackedRowsAndWeights) {
  DataStream s(tok(), small_stream(), docs());
  const Batch b = s.next();
  ASSERT_EQ(b.tokens.size(), 3u * 256u);
  const int32_t bos = *tok().token_to_id("<|begin_of_text|>");
  int answer = 0;
  for (int64_t r = 0; r < b.B; ++r) {
    EXPECT_EQ(b.tokens[r * b.T], bos);
    for (int64_t t = 0; t + 1 < b.T; ++t) EXPECT_EQ(b.targets[r * b.T + t], b.tokens[r * b.T + t + 1]);
    for (int64_t t = 0; t < b.T; ++t) {
      const float w = b.weights[r * b.T + t];
      if (b.targets[r * b.T + t] == bos) EXPECT_EQ(w, 0.0f);
      else EXPECT_TRUE(w == 1.0f || w == 5.0f);
      answer += w == 5.0f;
    }
  }
  EXPECT_GT(answer, 0);
  int64_t total = 0;
  for (const auto& [k, v] : s.tokens_per_source()) total += v;
  EXPECT_EQ(total, 3 * 257);
}

TEST(DataStreamTest, StateRestoreReproducesNextBatch) {
  DataStream a(tok(), small_stream(), docs());
  a.next();
  a.next();
  const std::string st = a.state();
  const Batch want = a.next();
  DataStream b(tok(), small_stream(), docs());
  b.restore(st);
  const Batch got = b.next();
  EXPECT_EQ(got.tokens, want.tokens);
  EXPECT_EQ(got.targets, want.targets);
  EXPECT_EQ(got.weights, want.weights);
  EXPECT_EQ(b.state(), a.state());
  // Fresh streams with one config agree; a state of another config is rejected.
  DataStream c(tok(), small_stream(), docs());
  DataStream d(tok(), small_stream(), docs());
  EXPECT_EQ(c.next().tokens, d.next().tokens);
  StreamConfig other = small_stream();
  other.seed = 6;
  DataStream e(tok(), other, docs());
  EXPECT_THROW(e.restore(st), Error);
  EXPECT_THROW(e.restore("{"), Error);
}

}  // namespace
}  // namespace kvlab::datasets
