// LongBench v1 (benchmarks.md 1.2-1.5, 1.8): the 21 tasks with their prompt templates and
// generation lengths (config/dataset2prompt.json, dataset2maxlen.json), the JSONL reader for the
// official release (<data_dir>/<task>.jsonl, or <task>_e.jsonl for LongBench-E), pred.py's middle
// truncation in tokens, and eval.py's per-sample scoring.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "datasets/longbench/metrics.h"

namespace kvlab::model {
class Tokenizer;
}

namespace kvlab::datasets::longbench {

// One row of benchmarks.md 1.3.
struct TaskInfo {
  std::string name;      // dataset name, e.g. "narrativeqa"
  std::string category;  // "single-doc QA", ...
  std::string language;  // "en", "zh", "code"
  std::string metric;    // metrics.h name, e.g. "qa_f1_score"
  int max_gen = 0;       // dataset2maxlen: max new tokens
  bool chat = true;      // pred.py applies the chat template (after truncation)
  bool first_line = false;  // eval.py scores pred.lstrip('\n').split('\n')[0]
  bool in_e = false;     // part of LongBench-E
  std::string prompt;    // dataset2prompt template with {context} and {input}
};

// The 21 tasks in benchmarks.md 1.3 order.
const std::vector<TaskInfo>& tasks();
// By name; "<name>_e" gives the same task (LongBench-E) and is an error for a task not in -E.
// Unknown names are an Error with a did-you-mean.
const TaskInfo& task_info(const std::string& name);
// sha256-free fingerprint of all 21 templates (FNV-1a 64, hex) for the metric flavour record.
std::string prompt_hash();

// One JSONL line of the official release (benchmarks.md 1.2).
struct Sample {
  std::string input, context;
  std::vector<std::string> answers;
  int64_t length = -1;  // words (en, code) or characters (zh); -1 when absent
  std::string dataset, language, id;
  std::optional<std::vector<std::string>> all_classes;  // null / absent -> nullopt
  size_t line = 0;                                      // 1-based line in the file
};

// Reads a LongBench JSONL file. Required per line: input (str), context (str), answers (list of
// str); optional but type-checked: length (int), dataset, language, _id (str), all_classes (list
// of str or null). Blank lines are skipped; a malformed line is an Error naming file:line and
// the key.
std::vector<Sample> read_jsonl(const std::string& path);

// Python str.format(**sample) of a template: {context} and {input} substituted once each place.
std::string fill_prompt(const std::string& tmpl, const Sample& s);

// pred.py middle truncation: ids = [bos] + encode(prompt) when `bos` is given (Hugging Face adds
// BOS for Llama); if len(ids) > max_length, half = int(max_length / 2) and the prompt becomes
// decode(ids[:half], skip_special) + decode(ids[-half:], skip_special), concatenated as strings
// (the caller re-tokenizes it). Otherwise the prompt is returned unchanged.
std::string truncate_middle(const std::string& prompt, const model::Tokenizer& tok, int64_t max_length,
                            std::optional<int32_t> bos);

// A LongBench task over a user's data: samples, prompts and eval.py scoring.
class LongBenchTask {
 public:
  // Reads <data_dir>/<name>.jsonl (name may carry the "_e" suffix). The flavour's prompt_hash is
  // filled in.
  LongBenchTask(const std::string& data_dir, const std::string& name, MetricFlavour flavour = {});

  const TaskInfo& info() const { return *info_; }
  const std::string& name() const { return name_; }
  bool is_e() const { return is_e_; }
  const std::string& path() const { return path_; }
  const MetricFlavour& flavour() const { return flavour_; }
  const std::string& metric() const { return info_->metric; }
  size_t size() const { return samples_.size(); }
  const Sample& sample(size_t i) const { return samples_.at(i); }
  const std::vector<Sample>& samples() const { return samples_; }
  // eval.py takes all_classes from the last line of the file (constant per dataset).
  const std::vector<std::string>& all_classes() const { return all_classes_; }

  // The filled prompt; with max_length > 0, middle-truncated in tokens (see truncate_middle).
  std::string prompt(size_t i) const;
  std::string prompt(size_t i, const model::Tokenizer& tok, int64_t max_length,
                     std::optional<int32_t> bos) const;
  int max_new_tokens() const { return info_->max_gen; }

  // eval.py: first-line rule for the few-shot tasks, max over answers, floored at 0.
  double score(std::string_view prediction, const Sample& s) const;
  double score(std::string_view prediction, size_t i) const { return score(prediction, sample(i)); }

 private:
  const TaskInfo* info_;
  std::string name_, path_;
  bool is_e_ = false;
  MetricFlavour flavour_;
  std::vector<Sample> samples_;
  std::vector<std::string> all_classes_;
};

}  // namespace kvlab::datasets::longbench
