// Trains the 4096-token tokenizer on the training corpus (needs the Debian packages of
// scripts/install-deps.sh; skips without them) and checks speed and held-out compression.
#include <gtest/gtest.h>

#include "datasets/text/corpus.h"
#include "framework/core/error.h"
#include "framework/core/timer.h"
#include "framework/model/tokenizer.h"
#include "framework/model/tokenizer_train.h"

namespace kvlab::datasets {
namespace {

TEST(TokenizerCorpus, Trains4096OnTrainSplitQuickly) {
  std::vector<Document> train, held;
  try {
    train = corpus_split("train");
    held = corpus_split("heldout");
  } catch (const Error& e) {
    GTEST_SKIP() << e.what();
  }
  Timer t;
  model::PreTokenCounter counter;
  for (const auto& d : train) counter.add(d.text, d.name);
  model::BpeTrainOptions o;
  o.vocab_size = 4096;
  const auto m = model::train_bpe(counter, o);
  const double secs = t.seconds();
  EXPECT_EQ(m.tokens.size(), 4096u);
  EXPECT_LT(secs, 60.0);
  const auto tok = model::Tokenizer::from_json(model::bpe_tokenizer_json(m), "corpus");
  size_t bytes = 0, tokens = 0;
  for (const auto& d : held) {
    const auto ids = tok.encode(d.text);
    EXPECT_EQ(tok.decode(ids), d.text) << d.name;
    bytes += d.text.size();
    tokens += ids.size();
  }
  std::printf("train %lld bytes: %zu merges in %.1f s; held-out %zu bytes -> %zu tokens (%.2f bytes/token)\n",
              static_cast<long long>(counter.bytes()), m.merges.size(), secs, bytes, tokens,
              static_cast<double>(bytes) / static_cast<double>(tokens));
  EXPECT_GT(static_cast<double>(bytes) / static_cast<double>(tokens), 3.0);
}

}  // namespace
}  // namespace kvlab::datasets

#include "datasets/synthetic/data_stream.h"

namespace kvlab::datasets {
namespace {

// The stream on the real corpus with a trained tokenizer: speed and a look at the examples.
TEST(TokenizerCorpus, StreamOnCorpus) {
  std::vector<Document> train, held;
  try {
    train = corpus_split("train");
    held = corpus_split("heldout");
  } catch (const Error& e) {
    GTEST_SKIP() << e.what();
  }
  model::PreTokenCounter counter;
  for (const auto& d : train) counter.add(d.text, d.name);
  const auto tok = model::Tokenizer::from_json(
      model::bpe_tokenizer_json(model::train_bpe(counter, model::BpeTrainOptions{})), "corpus");
  TaskGenerator heldout_gen(tok, held, "heldout");
  for (const auto& task : task_names()) {
    Rng rng(1);
    const Example ex = heldout_gen.make(task, rng, 1024);
    const std::string t = ex.text();
    std::printf("---- %s (%lld tokens, depth %.2f, answer '%s')\n%s\n...\n%s\n", task.c_str(),
                static_cast<long long>(ex.size()), ex.depth, ex.answer.c_str(),
                t.substr(0, 300).c_str(), t.substr(t.size() > 300 ? t.size() - 300 : 0).c_str());
    EXPECT_EQ(tok.decode(ex.answer_ids()).find(ex.answer), 1u);
  }
  StreamConfig c;
  c.batch = 4;
  c.seq_len = 2048;
  DataStream s(tok, c, train);
  Timer t;
  for (int i = 0; i < 5; ++i) s.next();
  const double secs = t.seconds();
  std::printf("stream: 5 batches of 4 x 2048 in %.2f s (%.0f tokens/s); %s\n", secs,
              5 * 4 * 2048 / secs, s.state().c_str());
  EXPECT_LT(secs, 30.0);
}

}  // namespace
}  // namespace kvlab::datasets
