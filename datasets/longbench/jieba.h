// A port of jieba 0.42.1 `jieba.cut(text, cut_all=False, HMM=True)` (benchmarks.md 1.7,
// qa_f1_zh_score / rouge_zh_score), reading jieba's own model files at run time:
//   <dir>/dict.txt                     the prefix dictionary (word freq [tag] per line)
//   <dir>/finalseg/prob_{start,trans,emit}.py   the HMM tables (Python dict literals)
// <dir> defaults to Debian's python3-jieba install, /usr/lib/python3/dist-packages/jieba, and is
// overridden by $KVLAB_JIEBA_DIR. Nothing of jieba is copied into kvlab.
//
// Reproduced Python behaviour:
//  - blocks: re_han_default "([\u4E00-\u9FD5a-zA-Z0-9+#&\._%\-]+)" splits the text; other blocks
//    yield "\r\n" as one token and every other code point alone (re_skip "(\r\n|\s)");
//  - Tokenizer.calc: route[i] = max over DAG[i] of (log(FREQ.get(w) or 1) - log(total) +
//    route[x+1], x), tuple max so ties go to the larger x;
//  - __cut_DAG: runs of single-character route steps are buffered; a buffer of length > 1 not in
//    FREQ (or with frequency 0) goes to finalseg.cut, else is yielded char by char;
//  - finalseg.cut: re_han "([\u4E00-\u9FD5]+)" blocks go to the BMES Viterbi (MIN_FLOAT -3.14e100,
//    PrevStatus, tuple max so ties go to the larger state letter, final max over 'E','S');
//    other blocks split by "([a-zA-Z0-9]+(?:\.\d+)?%?)" yielding non-empty pieces.
// Every log and sum is done in the same order as the Python code, so routes and Viterbi paths
// are bit-identical to CPython's on the same libm.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kvlab::datasets {

class Jieba {
 public:
  // Loads the model from `dir` (see above). Errors name the file and line.
  explicit Jieba(const std::string& dir);
  ~Jieba();
  Jieba(Jieba&&) noexcept;

  // jieba.cut(text, cut_all=False, HMM=True), as UTF-8 tokens.
  std::vector<std::string> cut(std::string_view text) const;
  std::vector<std::u32string> cut32(std::u32string_view text) const;

  // A short provenance string: directory, dict.txt entries and total frequency.
  const std::string& provenance() const;

  // The process-wide instance for the default directory ($KVLAB_JIEBA_DIR or Debian's); loaded on
  // first use (about a second), thread-safe.
  static const Jieba& shared();
  static std::string default_dir();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvlab::datasets
