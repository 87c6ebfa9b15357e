// Fuzzes Tokenizer::from_json with mutated tokenizer.json text (a small byte-level one and a small
// SentencePiece-style one as seeds), then encodes and decodes a short text. Malformed input must
// raise kvlab::Error; anything else (crash, UB, other exception) fails the run.
#include <cstdint>
#include <string>
#include <vector>

#include "framework/core/error.h"
#include "framework/model/model_init.h"
#include "framework/model/tokenizer.h"

std::vector<std::string> kvlab_fuzz_seeds() {
  const std::string byte_level = kvlab::model::byte_level_tokenizer_json();
  const std::string split_bpe = R"({"added_tokens": [{"id": 7, "content": "<s>", "special": true,
      "lstrip": true, "rstrip": false, "single_word": false, "normalized": false}],
    "normalizer": {"type": "NFC"},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": "(?i:'s|'t)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
       "behavior": "Isolated", "invert": false},
      {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]},
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "ignore_merges": true,
      "vocab": {"a": 0, "b": 1, "ab": 2, "\u0120": 3, "\u0120ab": 4, "c": 5, "abc": 6},
      "merges": ["a b", ["\u0120", "ab"], "ab c"]}})";
  const std::string sentencepiece = R"({"added_tokens": [
      {"id": 0, "content": "<unk>", "special": true, "normalized": false},
      {"id": 1, "content": "<s>", "special": true, "normalized": false}],
    "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
      {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
    "pre_tokenizer": null,
    "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": true, "fuse_unk": true,
      "vocab": {"<unk>": 0, "<s>": 1, "\u2581": 2, "h": 3, "i": 4, "\u2581h": 5, "\u2581hi": 6,
                "<0xC3>": 7, "<0xA9>": 8},
      "merges": ["\u2581 h", "\u2581h i"]},
    "decoder": {"type": "Sequence", "decoders": [
      {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
      {"type": "ByteFallback"}, {"type": "Fuse"},
      {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}})";
  const std::string metaspace = R"({"pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581",
      "prepend_scheme": "first", "split": true},
    "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first"},
    "model": {"type": "BPE", "vocab": {"\u2581": 0, "h": 1, "i": 2, "\u2581h": 3},
      "merges": [["\u2581", "h"]]}})";
  return {byte_level, split_bpe, sentencepiece, metaspace};
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const auto tok = kvlab::model::Tokenizer::from_json(text, "fuzz.json");
    for (const char* s : {"hi abc <s> h\xC3\xA9 e\xCC\x81 12345 \n\t  x", "", "<s>", "\xE2\x96\x81"}) {
      const auto ids = tok.encode(s);
      tok.decode(ids);
      tok.decode(ids, true);
    }
    tok.vocab_size();
    tok.id_to_token(0);
    tok.token_to_id("a");
  } catch (const kvlab::Error&) {
    // expected for malformed input
  }
  return 0;
}
