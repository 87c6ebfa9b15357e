// Tokenizers from a Hugging Face tokenizer.json (DESIGN.md section 4):
//  - byte-level BPE (GPT-2, Llama-3, Qwen2): Split/ByteLevel pre-tokenizers with their regexes
//    (PCRE2 with Unicode properties), GPT-2 byte-to-unicode map, merges by rank;
//  - SentencePiece-style BPE (Llama-2, Mistral): Metaspace or Prepend+Replace normalizers,
//    byte fallback (<0xXX> tokens), merges by rank;
//  - added and special tokens matched before the model runs (respecting lstrip/rstrip/
//    single_word/normalized), decoding back to text.
// Token ids equal transformers.js's for the same tokenizer.json (tests/tokenizer).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvlab::model {

// GPT-2 bytes_to_unicode: the UTF-8 of byte b's printable stand-in (printable bytes stand for
// themselves; the other 68 map, in byte order, to U+0100 upwards). b in [0, 255].
std::string gpt2_byte_char(int b);

class Tokenizer {
 public:
  // Parses tokenizer.json text; `path` names the file in errors. Unsupported model types,
  // normalizers or pre-tokenizers are errors naming the key, never a silent fallback.
  static Tokenizer from_json(const std::string& json_text, const std::string& path);
  static Tokenizer load(const std::string& path);  // a tokenizer.json or a model directory
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Encodes text to ids. Special/added tokens in the text are recognised. Adds no BOS/EOS
  // (post-processor templates are not applied); callers add BOS explicitly.
  std::vector<int32_t> encode(std::string_view text) const;
  // Decodes ids to text (byte-level: bytes re-joined, invalid UTF-8 kept as bytes;
  // SentencePiece: '▁' -> ' ', byte tokens joined, the prepended leading space removed).
  // skip_special drops special tokens.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;

  int64_t vocab_size() const;  // largest id + 1, over the model vocabulary and added tokens
  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::string id_to_token(int32_t id) const;  // "" for an unknown id
  bool is_special(int32_t id) const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

namespace detail {
// Unicode NFC (UAX #15) of valid UTF-8 text (tokenizer_nfc.cpp); exposed for tests.
std::string nfc(std::string_view text);
}  // namespace detail

}  // namespace kvlab::model
