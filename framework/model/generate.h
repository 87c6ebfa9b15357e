// Generation (greedy and seeded temperature / top-p sampling, stop on EOS) and scoring
// (next-token log-likelihood over a token sequence, for perplexity).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "framework/core/rng.h"
#include "framework/model/llama.h"

namespace kvlab::model {

struct SamplingOptions {
  double temperature = 0.0;  // 0: greedy (argmax, lowest id wins ties)
  double top_p = 1.0;        // nucleus: smallest set of tokens with probability mass >= top_p
  uint64_t seed = 0;
  int64_t max_new_tokens = 32;
  bool stop_on_eos = true;   // stop after emitting one of the model's eos_token_ids
};

// Picks the next token from logits [V]. Greedy when temperature == 0; otherwise softmax of
// logits / temperature restricted to the top-p nucleus (ties broken by lower id), drawn with rng.
int32_t sample_token(std::span<const float> logits, const SamplingOptions& opt, Rng& rng);

struct GenerationResult {
  std::vector<int32_t> tokens;  // generated ids (EOS included when it stopped on it)
  bool stopped_on_eos = false;
  double prefill_seconds = 0;
  double decode_seconds = 0;
};

// Prefills `prompt` into `seq` (which may already hold tokens), calls end_prefill, then decodes
// up to max_new_tokens. on_token (optional) sees each new id as it is produced.
GenerationResult generate(Sequence& seq, std::span<const int32_t> prompt,
                          const SamplingOptions& opt,
                          const std::function<void(int32_t)>& on_token = {});

struct ScoreResult {
  std::vector<float> nll;  // [n-1] -log p(tokens[i+1] | tokens[..i]) in nats
  double nll_sum = 0;
  int64_t count() const { return static_cast<int64_t>(nll.size()); }
  double perplexity() const;  // exp(mean nll)
};

// Teacher-forced next-token negative log-likelihood of tokens[1..] given the prefix, computed
// chunk by chunk through `seq` (which must be empty). Logits rows are consumed per chunk, so
// memory is O(chunk * V).
ScoreResult score_tokens(Sequence& seq, std::span<const int32_t> tokens);

// log-sum-exp of a row, in f64.
double log_sum_exp(std::span<const float> row);

}  // namespace kvlab::model
