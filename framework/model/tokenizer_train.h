// Byte-level BPE training (issue "Training loop and kvlab-tiny", item 3): pre-tokenize with a
// Llama-3-style regex whose digits are split singly, count pre-tokens, learn merges up to a target
// vocabulary, write a Hugging Face tokenizer.json that framework/model/tokenizer.h loads.
//
// Id layout of the result: 0..255 the bytes in byte order (as model_init.h's byte-level
// tokenizer), 256.. the special tokens (<|begin_of_text|> = 256, <|end_of_text|> = 257, as
// model_init.h), then merged tokens in the order learned.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace kvlab::model {

// Llama-3's pre-tokenizer regex with \p{N}{1,3} replaced by \p{N}: every digit is its own
// pre-token, so numbers are spelled digit by digit (passkeys and values survive tokenization).
inline constexpr const char* kSingleDigitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// <|begin_of_text|>, <|end_of_text|>, <|pad|>, <|sep|>, <|reserved_0|> .. <|reserved_3|>.
std::vector<std::string> default_special_tokens();

struct BpeTrainOptions {
  int64_t vocab_size = 4096;  // total ids: 256 bytes + special tokens + merged tokens
  int64_t min_frequency = 2;  // training stops when the best pair occurs fewer times
  std::vector<std::string> special_tokens = default_special_tokens();
  std::string pattern = kSingleDigitPattern;
};

// Pre-token frequencies of a corpus. Texts must be valid UTF-8 (errors say which text).
class PreTokenCounter {
 public:
  explicit PreTokenCounter(std::string pattern = kSingleDigitPattern);
  ~PreTokenCounter();
  PreTokenCounter(const PreTokenCounter&) = delete;
  PreTokenCounter& operator=(const PreTokenCounter&) = delete;

  // Cost: one regex pass over the text, one hash update per pre-token.
  void add(std::string_view text, std::string_view name = "text");
  const std::unordered_map<std::string, int64_t>& counts() const { return counts_; }
  const std::string& pattern() const { return pattern_; }
  int64_t bytes() const { return bytes_; }
  int64_t pre_tokens() const { return pre_tokens_; }

 private:
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code*
  std::unordered_map<std::string, int64_t> counts_;
  int64_t bytes_ = 0, pre_tokens_ = 0;
};

struct BpeModel {
  std::vector<std::string> tokens;  // id -> raw bytes (special tokens: their content)
  std::vector<uint8_t> special;     // id -> 1 for special tokens
  // Merges in rank order: (left id, right id) -> merged id. Two merges may yield the same
  // bytes (e.g. "a"+"bc" and "ab"+"c"): both are kept, sharing one id (as HF's trainer does).
  struct Merge {
    int32_t left, right, result;
    int64_t count;  // pair frequency when it was merged
  };
  std::vector<Merge> merges;
  std::string pattern;  // pre-tokenizer regex
};

// Learns merges greedily: the most frequent adjacent pair over all pre-tokens (weighted by
// frequency) is merged next; ties go to the smallest (left id, right id). Pair counts are updated
// incrementally: a merge touches only the pre-tokens holding that pair (an index pair -> words),
// and a max-heap with lazy re-insertion yields the next pair. Cost: O(sum of lengths of the
// touched words) per merge; ~4K merges on 5 MB of English in a few seconds.
// Deterministic: the same counts and options give the same model.
BpeModel train_bpe(const PreTokenCounter& counts, const BpeTrainOptions& opts);

// Convenience: counts the texts, then trains.
BpeModel train_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& opts);

// The tokenizer.json text: model BPE (vocab in id order, merges as "a b" in rank order),
// pre_tokenizer Sequence[Split(Regex, Isolated), ByteLevel(use_regex false)], decoder ByteLevel,
// special tokens as added_tokens. Byte-identical for identical models.
std::string bpe_tokenizer_json(const BpeModel& model);

}  // namespace kvlab::model
