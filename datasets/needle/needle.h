// Needle-in-a-haystack prompts for evaluation (benchmarks.md section 3), built in token space so a
// prompt has EXACTLY the requested number of tokens and the needle lands on a sentence boundary
// at the requested depth of a public-domain haystack.
//
// Prompt layout (token ids, each part encoded on its own and concatenated):
//   [BOS] intro "\n" | haystack sentences " S1" " S2" ... with needle sentences " N" between them |
//   tail (question + answer prefix)
// The haystack part is filled to exactly context_length - (BOS + intro + needles + tail) tokens
// with whole sentences from a seeded start sentence; the excess is cut at a token from the FRONT
// of the first sentence (gkamradt cuts the end instead), so the haystack always ends on a
// complete sentence and depth 100 is exactly the end.
//
// Needle placement (RULER's "between sentences", gkamradt's "snap back to a '.'"): the asked
// needle goes to the sentence boundary whose token offset in the haystack is nearest to
// depth/100 * haystack_tokens (the earlier one on a tie); depth 0 is the haystack start and 100
// its end, exactly. Other depths are met within half the longest haystack sentence
// (Prompt::depth_actual records what was met: with long sentences and short contexts, e.g. a
// byte-level tokenizer on Newton's prose, a cell's actual depth can differ noticeably).
// Other needles: multikey distractors at seeded uniform depths (RULER samples them); multivalue's
// k-th further value at depth + k * (100 - depth) / n (gkamradt's multi-needle spacing).
//
// Variants (benchmarks.md 3.3-3.4):
//   single      RULER niah_single_2: one "special magic number" for an adjective-noun key;
//   multikey    RULER niah_multikey_1: num_needles needles with distinct keys, one asked;
//   multivalue  RULER niah_multivalue: num_needles values for one key, all asked (RULER's plural
//               template; heldout wording only);
//   passkey     LongLoRA / Landmark passkey (randint(1, 50000));
//   sandwich    gkamradt's San Francisco needle in KVCache-Factory's "story book" prompt.
// Wording: "heldout" (default) uses the held-out template set of datasets/synthetic (whose first
// entries are exactly RULER's and LongLoRA's benchmark wording), "train" the first training
// template, for measuring template overfitting only. Keys use kvlab's built-in adjective and
// noun lists in place of RULER's wonderwords lists; values are 7-digit numbers as in RULER.
//
// Haystack specs: "noise" (RULER's repeated grass/sky/sun sentences) or any datasets/text
// source: "book:opticks" (the held-out public-domain haystack of section 3.5, the default),
// "corpus:heldout", "kjv:RANGE", "file:PATH". Paul Graham's essays are not public domain and are
// never used.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "framework/core/rng.h"
#include "framework/model/tokenizer.h"

namespace kvlab::datasets::needle {

enum class Variant { kSingle, kMultiKey, kMultiValue, kPasskey, kSandwich };
Variant parse_variant(const std::string& name);  // error lists the names
std::string variant_name(Variant v);
std::vector<std::string> variant_names();

// A haystack's sentences, tokenized once (each as " " + sentence, newlines made spaces).
class Haystack {
 public:
  Haystack(const model::Tokenizer& tok, const std::string& spec);
  const std::string& spec() const { return spec_; }
  size_t size() const { return sentences_.size(); }
  const std::vector<int32_t>& sentence(size_t i) const { return sentences_[i % sentences_.size()]; }
  bool noise() const { return noise_; }

 private:
  std::string spec_;
  bool noise_ = false;
  std::vector<std::vector<int32_t>> sentences_;
};

// Splits text into sentences: each ends at . ! ? (plus closing quotes or brackets) followed by
// whitespace, or at a blank line; surrounding whitespace trimmed, empty pieces dropped.
std::vector<std::string> split_sentences(const std::string& text);

struct PromptOptions {
  Variant variant = Variant::kSingle;
  std::string wording = "heldout";  // "heldout" or "train"
  int num_needles = 4;              // multikey / multivalue
  int32_t bos_id = -1;              // prepended when >= 0
};

struct Prompt {
  std::vector<int32_t> ids;          // exactly context_length tokens
  std::vector<std::string> answers;  // references for string_match_all
  std::string expected;              // reference text for word_recall
  std::string key;                   // the asked key ("" for passkey / sandwich)
  std::vector<std::string> needles;  // needle sentences, asked first
  std::vector<int64_t> needle_pos;   // token index in ids where each needle starts (same order)
  std::vector<int64_t> needle_len;   // its tokens
  int64_t context_begin = 0;         // first haystack/needle token in ids
  int64_t context_end = 0;           // one past the last one (the tail starts here)
  int64_t haystack_tokens = 0;       // haystack tokens without needles
  double depth_requested = 0;        // percent
  double depth_actual = 0;           // percent: haystack tokens before the asked needle / haystack_tokens
  int64_t max_sentence_tokens = 0;   // longest haystack sentence used (placement tolerance is half)
};

// Builds one prompt of exactly `context_length` tokens with the asked needle at depth_percent
// (0..100). Random keys, values, haystack start sentence and distractor depths come from `rng`.
// Errors when the fixed parts leave no room for a haystack.
Prompt build_prompt(const model::Tokenizer& tok, const Haystack& hay, const PromptOptions& opt,
                    int64_t context_length, double depth_percent, Rng& rng);

// ---- scoring (benchmarks.md 3.2-3.3) ------------------------------------------------------------

// RULER's postprocessing: strip, replace [\x00-\x1f] with '\n', strip again (Python str.strip
// whitespace, ASCII).
std::string ruler_clean(const std::string& prediction);
// RULER string_match_all for one sample, in [0, 1]: the fraction of references r with
// r.lower() in pred.lower() (ASCII lowercasing) after ruler_clean.
double string_match_all(const std::string& prediction, const std::vector<std::string>& references);
// KVCache-Factory visualize.py: |set(response.lower().split()) & set(expected.lower().split())|
// / |set(expected.lower().split())| (whitespace split, punctuation kept on words). 0 if empty.
double word_recall(const std::string& response, const std::string& expected);

// Depth lists: "linear:K" (round(linspace(0, 100, K))), "sigmoid:K" (gkamradt's logistic
// spacing), or explicit percentages "0,25,50,75,100". `where` prefixes errors.
std::vector<double> parse_depths(const std::string& spec, const std::string& where);
// "1024,2048,4096" -> lengths (each >= 1), in the given order, duplicates rejected.
std::vector<int64_t> parse_lengths(const std::string& spec, const std::string& where);

}  // namespace kvlab::datasets::needle
