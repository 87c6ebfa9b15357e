// A unigram language model over a tokenizer's ids: the floor a trained model's perplexity must
// beat (issue "kvlab-tiny": held-out perplexity "clearly below a unigram baseline").
// p(t) = (count(t) + 1) / (N + V) (add-one smoothing over the model vocabulary V), counts from
// the tokens of a text split.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "framework/model/tokenizer.h"

namespace kvlab::datasets {

struct Unigram {
  std::vector<double> nll;  // [V] -log p(t), nats
  int64_t tokens = 0;       // N: tokens counted
  std::string source;       // what was counted, e.g. "corpus:train"
};

// Counts the tokens of corpus_split(split) ("train" or "heldout") encoded without BOS.
// Cost: one tokenizer pass over the split (about 5 MB of text for "train").
Unigram unigram_from_split(const model::Tokenizer& tok, int64_t vocab_size,
                           const std::string& split);
// From explicit token ids (tests).
Unigram unigram_from_ids(const std::vector<int32_t>& ids, int64_t vocab_size);

}  // namespace kvlab::datasets
