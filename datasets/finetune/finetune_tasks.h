// Fine-tuning tasks built from installed public-domain text (kvlab issue 7 item 4; methods.md
// 3.6 evaluates SGC against LoRA/GaLore on classification, knowledge QA and small-data tasks;
// these are kvlab's public-domain stand-ins, not the paper's benchmarks). Every builder is
// deterministic given its options, and its train and held-out splits never share an example
// text: the split is decided by a hash of the example's identifying text (verse text, or the
// subject of a genealogy question), and texts with conflicting answers are dropped.
//
// Tasks (name: what, metric):
//   kjv_section    classification: which section of the KJV a verse comes from, one word of
//                  law | history | poetry | prophets | gospels | epistles (Gen-Deu law;
//                  Josh-Esther and Acts history; Job-Song of Solomon poetry; Isaiah-Malachi and
//                  Revelation prophets; Matthew-John gospels; Romans-Jude epistles). Prompt
//                  "Verse: <text>\nSection:", answer " <label>". Held-out and train sets are
//                  balanced across the six labels (equal counts, as far as the pool allows).
//                  Metric exact_match (first word of the generated answer).
//   kjv_genealogy  short-answer QA from genealogy facts: "X begat Y" (X the nearest capitalised
//                  word before "begat", Y the capitalised word right after it) and "Y[,] the son
//                  of X": "Question: Who was the father of <Y>?\nAnswer:" -> " <X>". Only names Y
//                  with a single father X over the whole KJV. Metric exact_match.
//   kjv_last_word  short-answer QA, verse completion: "Complete the verse: <verse without its last
//                  word>\nAnswer:" -> " <last word>" (trailing punctuation stripped). exact_match.
//   lm             domain-shift language modelling: `text` (default book:opticks, Newton's
//                  Opticks, held out of kvlab-tiny's pretraining) cut into passages of
//                  ~passage_chars characters at paragraph/sentence boundaries; train and held-out
//                  passages are disjoint passages of the same book. `original` (default
//                  book:kjv/Ruth, same domain as the pretraining corpus, itself held out of it)
//                  gives passages for perplexity on the original domain. Metric perplexity.
// Regimes: n_train = 0 takes every train example (full data); n_train = 64 is the small-data
// regime (a seeded sample of the same train pool).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvlab::datasets {

struct FtExample {
  std::string id;                    // e.g. "Ge1:1", "genealogy:Isaac", "opticks:17"
  std::string prompt;                // "" for language modelling (the whole text is scored)
  std::string answer;                // the scored continuation (leading space included)
  std::vector<std::string> answers;  // every accepted normalised answer (exact match)
};

struct FtTask {
  std::string name;
  std::string metric;  // "exact_match" or "perplexity"
  std::vector<FtExample> train, heldout;
  std::vector<FtExample> original;           // lm only: passages of the original domain
  std::vector<std::string> labels;           // kjv_section only
  int64_t pool_train = 0, pool_heldout = 0;  // sizes before sampling n_train / n_heldout
};

struct FtTaskOptions {
  std::string task = "kjv_section";
  uint64_t seed = 0;                       // split hash and sampling
  int64_t n_train = 0;                     // 0: every train example
  int64_t n_heldout = 256;                 // 0: every held-out example
  double heldout_fraction = 0.2;           // share of the pool hashed into held-out
  std::string text = "book:opticks";       // lm
  std::string original = "book:kjv/Ruth";  // lm
  int64_t passage_chars = 600;             // lm
};

const std::vector<std::string>& finetune_task_names();
FtTask build_finetune_task(const FtTaskOptions& o);

// Normalised answer for exact match: the first whitespace-separated word, lower-cased, with
// leading/trailing punctuation removed ("  Isaac; and" -> "isaac").
std::string normalize_answer(const std::string& s);

// One KJV verse from `bible -f` (Debian bible-kjv), in canonical order.
struct KjvVerse {
  int book = 0;     // 0..65, canonical order (book_registry() order)
  std::string ref;  // "Ge1:1"
  std::string text;
};
const std::vector<KjvVerse>& kjv_verses();
// Section label of a canonical book index (see kjv_section above).
const std::string& kjv_section_of(int book);
// (father, son) pairs from every "X begat Y" and "Y the son of X" in the KJV (once each).
std::vector<std::pair<std::string, std::string>> kjv_begat_pairs();

}  // namespace kvlab::datasets
