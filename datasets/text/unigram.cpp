#include "datasets/text/unigram.h"

#include <cmath>

#include "datasets/text/corpus.h"
#include "framework/core/error.h"

namespace kvlab::datasets {

namespace {
Unigram from_counts(const std::vector<int64_t>& counts, int64_t n) {
  Unigram u;
  u.tokens = n;
  const double denom = static_cast<double>(n + static_cast<int64_t>(counts.size()));
  u.nll.resize(counts.size());
  for (size_t t = 0; t < counts.size(); ++t)
    u.nll[t] = -std::log((static_cast<double>(counts[t]) + 1.0) / denom);
  return u;
}

void count(const std::vector<int32_t>& ids, std::vector<int64_t>& counts, int64_t& n) {
  for (int32_t t : ids) {
    if (t < 0 || t >= static_cast<int64_t>(counts.size()))
      fail("unigram: token id ", t, " outside the vocabulary of ", counts.size());
    ++counts[static_cast<size_t>(t)];
    ++n;
  }
}
}  // namespace

Unigram unigram_from_ids(const std::vector<int32_t>& ids, int64_t vocab_size) {
  KVLAB_CHECK(vocab_size > 0) << vocab_size;
  std::vector<int64_t> counts(static_cast<size_t>(vocab_size), 0);
  int64_t n = 0;
  count(ids, counts, n);
  Unigram u = from_counts(counts, n);
  u.source = "ids";
  return u;
}

Unigram unigram_from_split(const model::Tokenizer& tok, int64_t vocab_size,
                           const std::string& split) {
  KVLAB_CHECK(vocab_size > 0) << vocab_size;
  std::vector<int64_t> counts(static_cast<size_t>(vocab_size), 0);
  int64_t n = 0;
  for (const Document& d : corpus_split(split)) count(tok.encode(d.text), counts, n);
  Unigram u = from_counts(counts, n);
  u.source = "corpus:" + split;
  return u;
}

}  // namespace kvlab::datasets
