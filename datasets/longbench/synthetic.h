// SYNTHETIC LongBench-format samples that kvlab generates offline from public-domain text (the
// held-out books of datasets/text/corpus.h by default). They are NOT LongBench: their dataset
// names all start with "synthetic_" and they only reuse LongBench's JSONL format (benchmarks.md
// 1.2) and official metrics (benchmarks.md 1.7), so the longbench experiment runs end to end
// without the official data.
//
// Tasks (all English, scored with the official metric named):
//   synthetic_qa         single-doc QA: a made-up fact sentence ("The keeper of the old mill was
//                        named Edwin Harlow.") planted at a paragraph boundary of a book excerpt,
//                        like a needle; the question asks for it.       metric: qa_f1_score
//   synthetic_retrieval  passage_retrieval-style: "Paragraph 1: ..." blocks cut from the book; the
//                        input quotes one sentence (unique in the context); answer "Paragraph N".
//                                                                        metric: retrieval_score
//   synthetic_count      passage_count-style: paragraphs, some repeated, shuffled; the answer is
//                        the number of distinct paragraphs.              metric: count_score
//
// Generation is deterministic: the same (source text, options) gives byte-identical samples.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "datasets/longbench/longbench.h"

namespace kvlab::datasets::longbench {

struct SyntheticOptions {
  int samples = 4;          // samples per task
  int context_words = 400;  // approximate words in each context (str.split() words)
  uint64_t seed = 0;
};

// The synthetic tasks' descriptions: name, category "synthetic (kvlab)", language "en", the
// official metric, max_gen, first_line = false, chat = true, and kvlab's own prompt template.
const std::vector<TaskInfo>& synthetic_tasks();
// True for a synthetic task name; synthetic_task_info fails with a did-you-mean otherwise.
bool is_synthetic_task(const std::string& name);
const TaskInfo& synthetic_task_info(const std::string& name);

// The samples of one synthetic task built from `source` (clean text, paragraphs separated by
// "\n\n"). Each sample has dataset = the task name, language "en", length = words of input +
// context + answers, a deterministic _id, and all_classes = null.
std::vector<Sample> make_synthetic(const std::string& task, const std::string& source,
                                   const SyntheticOptions& opt);

// Writes samples as LongBench JSONL (one object per line, the official field names).
void write_jsonl(const std::string& path, const std::vector<Sample>& samples);

// Writes <dir>/<task>.jsonl for every synthetic task; returns the paths.
std::vector<std::string> write_synthetic_dir(const std::string& dir, const std::string& source,
                                             const SyntheticOptions& opt);

}  // namespace kvlab::datasets::longbench
