// Packed training batches mixing corpus text and synthetic tasks (issue "Training loop and
// kvlab-tiny", item 4). Each row of T + 1 tokens is a sequence of pieces, each "<|begin_of_text|>
// piece": corpus chunks (cut at token level) and task examples (followed by <|end_of_text|>);
// the row's last piece is a corpus chunk that fills it exactly. Pieces do not attend across
// boundaries only if the trainer masks them: the stream itself is plain causal packing.
//
// Batch layout (row-major [B, T]): tokens[b, t] = row[t], targets[b, t] = row[t + 1],
// weights[b, t] = the loss weight of predicting row[t + 1]: answer_weight for answer tokens,
// text_weight otherwise, 0 for predicting <|begin_of_text|>.
//
// Determinism and resume: row r of batch n is a pure function of (config, n, r) (its Rng is
// seeded from seed, n and r), so the state is just {seed, next batch, counters} (state(),
// restore()); a restored stream yields exactly the batches the original would have.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "datasets/synthetic/tasks.h"

namespace kvlab::datasets {

struct StreamConfig {
  int64_t batch = 4;      // B
  int64_t seq_len = 512;  // T
  // Sources and their probabilities per piece: "corpus" and the task names of tasks.h.
  std::vector<std::pair<std::string, double>> mix = {
      {"corpus", 0.5}, {"passkey", 0.1}, {"needle", 0.1}, {"multikey", 0.05},
      {"kv", 0.05},    {"copy", 0.1},    {"recall", 0.1}};
  // Piece lengths in tokens (without BOS/EOS), uniform in [min_tokens, max_tokens]; max 0 = T.
  // Short lengths give short retrieval distances (copy/recall curriculum: raise them by stage).
  int64_t min_tokens = 64, max_tokens = 0;
  float answer_weight = 5.0f, text_weight = 1.0f;
  std::string wording = "train";  // template set: "train" or "heldout"
  uint64_t seed = 0;
};

struct Batch {
  int64_t B = 0, T = 0;
  std::vector<int32_t> tokens, targets;  // [B, T]
  std::vector<float> weights;            // [B, T]
};

class DataStream {
 public:
  // docs: corpus text and haystacks (normally corpus_split("train")). The tokenizer must hold
  // <|begin_of_text|> and <|end_of_text|> and outlive the stream.
  DataStream(const model::Tokenizer& tok, StreamConfig cfg, std::vector<Document> docs);

  Batch next();

  // {"seed", "batch" (next batch index), "fingerprint" (of the config), "tokens" per source,
  //  "answer_tokens"} as JSON. restore() rejects a state of another config.
  std::string state() const;
  void restore(const std::string& state);

  int64_t batches_done() const { return batch_; }
  const std::map<std::string, int64_t>& tokens_per_source() const { return tokens_; }
  const StreamConfig& config() const { return cfg_; }
  TaskGenerator& generator() { return gen_; }

 private:
  void fill_row(int64_t batch, int64_t row, int32_t* tokens, int32_t* targets, float* weights);
  uint64_t fingerprint() const;

  StreamConfig cfg_;
  TaskGenerator gen_;
  int32_t bos_ = 0, eos_ = 0;
  int64_t batch_ = 0;
  std::map<std::string, int64_t> tokens_;
  int64_t answer_tokens_ = 0;
};

}  // namespace kvlab::datasets
