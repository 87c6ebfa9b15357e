// Synthetic long-context tasks generated on the fly (issue "Training loop and kvlab-tiny", item 4;
// formats after benchmarks.md sections 3.3 and 3.4). Each example is a list of segments with
// token ids; answer segments say which tokens the trainer weights and the eval scores by exact
// match. Everything is a function of the Rng passed in: the same seed gives the same example.
//
// Tasks:
//   passkey   a number (5 digits) at a random depth of filler (RULER noise sentences or corpus
//             text), then a question (section 3.4);
//   needle    one key-value fact sentence inserted at a sentence boundary of a corpus haystack
//             (RULER niah_single: word key, 7-digit value; section 3.3);
//   multikey  2-6 such facts with distinct keys at random depths; one is asked (niah_multikey);
//   kv        a list of UUID-like key: value lines; one key is asked;
//   copy      a sequence of random word tokens, then its repetition (the answer);
//   recall    associative recall: key/value token pairs, then one key; the answer is its value
//             (keys distinct: at most one pair per word of the pool, which caps the length).
// Lengths are in tokens: an example fills target_tokens exactly (haystack tasks: the haystack is
// cut at token level) or within one item (kv, copy, recall).
//
// Wording: every task has a "train" set of templates and a disjoint "heldout" set for evaluation.
// The benchmark wordings (LongLoRA passkey, RULER needle, section 3) are held out, so needle and
// passkey evaluation never uses a training template.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "datasets/text/corpus.h"
#include "framework/core/rng.h"
#include "framework/model/tokenizer.h"

namespace kvlab::datasets {

enum class Role : uint8_t { kText, kNeedle, kAnswer };

struct Segment {
  std::string text;
  std::vector<int32_t> ids;  // the tokens of this segment (encoded on its own)
  Role role = Role::kText;
};

struct Example {
  std::string task;
  std::vector<Segment> segments;
  std::string answer;  // exact-match reference: the answer segments' text, trimmed
  double depth = -1;   // needle/passkey/asked item: tokens before it / context tokens; -1 if none

  std::vector<int32_t> ids() const;         // all segments
  std::vector<uint8_t> answer_mask() const; // per token of ids(): 1 inside answer segments
  std::vector<int32_t> prompt_ids() const;  // segments before the first answer segment
  std::vector<int32_t> answer_ids() const;  // the answer segments
  std::string text() const;
  int64_t size() const;  // tokens
};

// One wording template. Placeholders: {k} key, {v} value.
struct Template {
  std::string intro;     // instruction before the context
  std::string fact;      // the needle sentence
  std::string question;  // asked after the context
  std::string prefix;    // answer prefix; the answer follows it after a space
};

// The template sets of a task ("passkey", "needle" (also multikey), "kv", "copy", "recall"),
// wording "train" or "heldout". Intros and (fact, question, prefix) triples are combined freely.
const std::vector<Template>& templates(const std::string& task, const std::string& wording);

std::vector<std::string> task_names();  // passkey, needle, multikey, kv, copy, recall

class TaskGenerator {
 public:
  // haystack: documents for needle haystacks and corpus filler (the train split for training,
  // the held-out split for evaluation); wording: "train" or "heldout". The tokenizer must outlive
  // the generator.
  TaskGenerator(const model::Tokenizer& tok, std::vector<Document> haystack, std::string wording);

  // depth in [0, 1], or < 0 to draw it uniformly.
  Example passkey(Rng& rng, int64_t target_tokens, double depth = -1);
  Example needle(Rng& rng, int64_t target_tokens, double depth = -1);
  Example multikey(Rng& rng, int64_t target_tokens, int n_keys = 0);  // 0: 2..6
  Example kv(Rng& rng, int64_t target_tokens);
  Example copy(Rng& rng, int64_t target_tokens);
  Example recall(Rng& rng, int64_t target_tokens);
  Example make(const std::string& task, Rng& rng, int64_t target_tokens);

  // `n` tokens of corpus text starting at a random sentence of a random document.
  std::vector<int32_t> corpus_tokens(Rng& rng, int64_t n);

  const model::Tokenizer& tokenizer() const { return tok_; }
  const std::string& wording() const { return wording_; }

 private:
  struct Sentence {
    int32_t doc;
    size_t begin, end;  // byte range in the document
  };
  std::vector<int32_t> encode(const std::string& s) const { return tok_.encode(s); }
  // Haystack sentences (each " " + sentence) of exactly `n` tokens in total (the last one cut).
  std::vector<std::vector<int32_t>> haystack(Rng& rng, int64_t n, bool noise);
  // Builds intro + haystack (with needles inserted at the sentence boundaries nearest to
  // `depths`) + question/prefix + answer + ".", filling target_tokens exactly.
  Example with_haystack(const std::string& task, Rng& rng, int64_t target_tokens,
                        const std::string& intro, const std::vector<std::string>& needles,
                        std::vector<double> depths, size_t asked, const std::string& tail,
                        const std::string& answer, bool noise);
  std::string random_key(Rng& rng) const;
  // n distinct random "words" (each one token of the vocabulary when it has >= 64 " word" tokens,
  // else a built-in word encoded).
  std::vector<std::vector<int32_t>> random_words(Rng& rng, size_t n) const;

  const model::Tokenizer& tok_;
  std::vector<Document> docs_;
  std::string wording_;
  std::vector<Sentence> sentences_;
  std::vector<std::vector<int32_t>> word_pool_;  // " word" token sequences
  bool last_cut_ = false;  // haystack(): the last sentence was cut
};

}  // namespace kvlab::datasets
