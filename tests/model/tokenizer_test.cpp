// Unit tests for kvlab::model::Tokenizer on small hand-written tokenizer.json files. The real
// Llama-3 / Qwen3 / Llama-2 tokenizers are checked against tokenizers.js in tests/tokenizer.
#include "framework/model/model_init.h"
#include "framework/model/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "framework/core/error.h"

namespace kvlab::model {
namespace {

using json = nlohmann::json;
using Ids = std::vector<int32_t>;

// A byte-level BPE over the letters a, b, c with the given merges; GPT-2 symbols for ' ' (Ġ).
json small_bpe(const json& merges, bool ignore_merges) {
  return {{"model",
           {{"type", "BPE"},
            {"vocab", {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}, {"abc", 5},
                       {"\xC4\xA0", 6}, {"\xC4\xA0" "a", 7}, {"cab", 8}}},
            {"merges", merges},
            {"ignore_merges", ignore_merges}}},
          {"pre_tokenizer",
           {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
          {"decoder", {{"type", "ByteLevel"}}}};
}

// SentencePiece-style BPE as in Llama-2: Prepend+Replace normalizer, byte fallback, fuse_unk.
json small_sp() {
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}, {"\xE2\x96\x81", 3}, {"h", 4}, {"i", 5},
                {"\xE2\x96\x81h", 6}, {"\xE2\x96\x81hi", 7}, {"t", 8}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = 9 + b;
  }
  return {{"added_tokens",
           {{{"id", 0}, {"content", "<unk>"}, {"special", true}, {"normalized", false}},
            {{"id", 1}, {"content", "<s>"}, {"special", true}, {"normalized", false}},
            {{"id", 2}, {"content", "</s>"}, {"special", true}, {"normalized", false}}}},
          {"normalizer",
           {{"type", "Sequence"},
            {"normalizers",
             {{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
              {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}}}}},
          {"pre_tokenizer", nullptr},
          {"model",
           {{"type", "BPE"}, {"unk_token", "<unk>"}, {"byte_fallback", true}, {"fuse_unk", true},
            {"vocab", vocab}, {"merges", {"\xE2\x96\x81 h", "\xE2\x96\x81h i"}}}},
          {"decoder",
           {{"type", "Sequence"},
            {"decoders",
             {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
              {{"type", "ByteFallback"}},
              {{"type", "Fuse"}},
              {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}}};
}

Tokenizer make(const json& j) { return Tokenizer::from_json(j.dump(), "test.json"); }

TEST(Tokenizer, ByteLevelInitTokenizerRoundTrips) {
  const auto tok = Tokenizer::from_json(byte_level_tokenizer_json(), "init.json");
  EXPECT_EQ(tok.vocab_size(), 258);
  EXPECT_EQ(tok.encode("Hi!"), (Ids{'H', 'i', '!'}));
  EXPECT_EQ(tok.encode(" \n"), (Ids{' ', '\n'}));  // bytes, not their GPT-2 symbols
  EXPECT_EQ(tok.encode("<|begin_of_text|>x<|end_of_text|>"), (Ids{256, 'x', 257}));
  EXPECT_EQ(tok.encode("<|begin_of_tex"), tok.encode(std::string("<|begin_of_tex")));
  EXPECT_EQ(tok.encode("<|begin_of_tex").size(), 14u);
  const std::string text = "Grüße, 世界! 😀\t\r\n  <|end_of_text|> tail";
  const auto ids = tok.encode(text);
  EXPECT_EQ(tok.decode(ids), text);
  EXPECT_EQ(tok.decode(ids, /*skip_special=*/true), "Grüße, 世界! 😀\t\r\n   tail");
  EXPECT_TRUE(tok.is_special(256));
  EXPECT_FALSE(tok.is_special(65));
  EXPECT_EQ(tok.token_to_id("<|end_of_text|>"), 257);
  EXPECT_EQ(tok.token_to_id("\xC4\xA0"), 32);  // Ġ is byte ' '
  EXPECT_EQ(tok.id_to_token(257), "<|end_of_text|>");
  EXPECT_EQ(tok.id_to_token(1000), "");
  EXPECT_FALSE(tok.token_to_id("nope").has_value());
  // Invalid UTF-8 produced by a split multi-byte character decodes to the raw bytes.
  const auto e = tok.encode("é");
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(tok.decode({e[0]}), std::string("\xC3"));
}

TEST(Tokenizer, LoadsFromDirectory) {
  const auto dir = std::filesystem::temp_directory_path() / "kvlab_tokenizer_test";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << byte_level_tokenizer_json();
  EXPECT_EQ(Tokenizer::load(dir.string()).encode("ab"), (Ids{'a', 'b'}));
  EXPECT_EQ(Tokenizer::load((dir / "tokenizer.json").string()).vocab_size(), 258);
  EXPECT_THROW(Tokenizer::load((dir / "missing.json").string()), Error);
  std::filesystem::remove_all(dir);
}

TEST(Tokenizer, MergesApplyByRankInBothForms) {
  // b+c first (rank 0) then a+bc: "abc" -> abc. With a+b first: ab, then ab+c is no merge.
  EXPECT_EQ(make(small_bpe({"b c", "a bc"}, false)).encode("abc"), (Ids{5}));
  EXPECT_EQ(make(small_bpe(json::array({json::array({"b", "c"}), json::array({"a", "bc"})}), false)).encode("abc"), (Ids{5}));
  EXPECT_EQ(make(small_bpe({"a b", "b c", "a bc"}, false)).encode("abc"), (Ids{3, 2}));
  // Equal pairs merge leftmost first: "abab" with only a+b -> ab ab.
  EXPECT_EQ(make(small_bpe({"a b"}, false)).encode("abab"), (Ids{3, 3}));
  // The GPT-2 regex isolates " a" and the byte-level symbol Ġ merges with a.
  EXPECT_EQ(make(small_bpe({"\xC4\xA0 a"}, false)).encode("c a"), (Ids{2, 7}));
  EXPECT_EQ(make(small_bpe({"\xC4\xA0 a"}, false)).decode({2, 7}), "c a");
}

TEST(Tokenizer, IgnoreMergesEmitsWholeVocabWords) {
  // "cab" is in the vocab but no merge builds it.
  EXPECT_EQ(make(small_bpe({"a b"}, false)).encode("cab"), (Ids{2, 3}));
  EXPECT_EQ(make(small_bpe({"a b"}, true)).encode("cab"), (Ids{8}));
}

TEST(Tokenizer, WordCacheIsConsistentAcrossCallsAndThreads) {
  const auto tok = make(small_bpe({"b c", "a bc"}, false));
  std::string text;
  for (int i = 0; i < 200; ++i) text += i % 3 ? "abc cab " : "ba ";
  const auto first = tok.encode(text);
  std::vector<Ids> got(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back([&, t] { got[t] = tok.encode(text); });
  for (auto& th : threads) th.join();
  for (const auto& g : got) EXPECT_EQ(g, first);
  EXPECT_EQ(tok.decode(first), text);
}

TEST(Tokenizer, SentencePieceStyleByteFallbackAndDecode) {
  const auto tok = make(small_sp());
  EXPECT_EQ(tok.vocab_size(), 9 + 256);
  EXPECT_EQ(tok.encode("hi"), (Ids{7}));
  // "hi hi" -> ▁hi ▁hi; "t" in vocab; "é" falls back to its bytes C3 A9.
  EXPECT_EQ(tok.encode("hi hit"), (Ids{7, 7, 8}));
  EXPECT_EQ(tok.encode("hé"), (Ids{6, 9 + 0xC3, 9 + 0xA9}));
  EXPECT_EQ(tok.decode(tok.encode("hé hi")), "hé hi");
  // Special tokens split the text before normalization; each section gets its own ▁.
  EXPECT_EQ(tok.encode("<s>hi</s>"), (Ids{1, 7, 2}));
  EXPECT_EQ(tok.decode({1, 7, 2}), "<s> hi</s>");
  EXPECT_EQ(tok.decode({1, 7, 2}, /*skip_special=*/true), "hi");
  EXPECT_TRUE(tok.is_special(1));
}

TEST(Tokenizer, UnknownWithoutByteTokensFusesToOneUnk) {
  json j = small_sp();
  json vocab = json::object();
  for (auto& [k, v] : j["model"]["vocab"].items())
    if (v.get<int>() < 9) vocab[k] = v;
  j["model"]["vocab"] = vocab;
  EXPECT_EQ(make(j).encode("hxyz"), (Ids{6, 0}));
  j["model"]["fuse_unk"] = false;
  EXPECT_EQ(make(j).encode("hxyz"), (Ids{6, 0, 0, 0}));
}

TEST(Tokenizer, MetaspacePreTokenizer) {
  json j = small_sp();
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"},
                        {"prepend_scheme", "always"}, {"split", true}};
  j["decoder"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"},
                  {"prepend_scheme", "always"}, {"split", true}};
  const auto tok = make(j);
  EXPECT_EQ(tok.encode("hi hi"), (Ids{7, 7}));
  EXPECT_EQ(tok.decode({7, 7}), "hi hi");
  j["pre_tokenizer"]["prepend_scheme"] = "never";
  EXPECT_EQ(make(j).encode("hi hi"), (Ids{4, 5, 7}));
}

TEST(Tokenizer, AddedTokensLongestMatchStripAndSingleWord) {
  json j = json::parse(byte_level_tokenizer_json());
  j["added_tokens"].push_back({{"id", 258}, {"content", "<|end"}, {"special", false},
                               {"lstrip", true}, {"rstrip", true}, {"normalized", false}});
  j["added_tokens"].push_back({{"id", 259}, {"content", "cat"}, {"special", false},
                               {"single_word", true}, {"normalized", false}});
  const auto tok = make(j);
  EXPECT_EQ(tok.encode("<|end_of_text|>"), (Ids{257}));        // longest wins
  EXPECT_EQ(tok.encode("a  <|end \n b"), (Ids{'a', 258, 'b'}));  // lstrip + rstrip
  EXPECT_EQ(tok.encode("cat"), (Ids{259}));
  EXPECT_EQ(tok.encode("a cat."), (Ids{'a', ' ', 259, '.'}));
  EXPECT_EQ(tok.encode("cats"), (Ids{'c', 'a', 't', 's'}));  // not a whole word
  EXPECT_FALSE(tok.is_special(258));
}

TEST(Tokenizer, NfcNormalization) {
  EXPECT_EQ(detail::nfc("plain ASCII, Latin-1 café"), "plain ASCII, Latin-1 café");
  EXPECT_EQ(detail::nfc("e\xCC\x81"), "\xC3\xA9");                   // e + U+0301 -> é
  EXPECT_EQ(detail::nfc("\xE2\x84\xAB"), "\xC3\x85");                 // U+212B -> Å
  EXPECT_EQ(detail::nfc("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8"), "\xEA\xB0\x81");  // 각
  // Reordering: a + U+0301 (230) + U+0323 (220) -> ạ (U+1EA1) + U+0301.
  EXPECT_EQ(detail::nfc("a\xCC\x81\xCC\xA3"), "\xE1\xBA\xA1\xCC\x81");
  // Composition exclusion: U+0958 stays decomposed as U+0915 U+093C.
  EXPECT_EQ(detail::nfc("\xE0\xA5\x98"), "\xE0\xA4\x95\xE0\xA4\xBC");
  json j = json::parse(byte_level_tokenizer_json());
  j["normalizer"] = {{"type", "NFC"}};
  EXPECT_EQ(make(j).encode("e\xCC\x81"), (Ids{0xC3, 0xA9}));
}

TEST(Tokenizer, ErrorsNameTheProblem) {
  auto expect_error = [](const std::string& text, const std::string& needle) {
    try {
      Tokenizer::from_json(text, "bad.json");
      ADD_FAILURE() << "no error for " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("bad.json"), std::string::npos) << e.what();
    }
  };
  expect_error("{", "invalid tokenizer.json");
  expect_error("[]", "top level");
  expect_error(R"({"model": {"type": "Unigram", "vocab": {}}})", "Unigram");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}})",
               "merges[0]");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}}, "normalizer": {"type": "NFKC"}})",
               "NFKC");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}},
                   "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "("},
                                     "behavior": "Isolated"}})",
               "cannot compile regex");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 0}}})", "two tokens");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": -1}}})", "out of range");
  const auto tok = Tokenizer::from_json(byte_level_tokenizer_json(), "init.json");
  EXPECT_THROW(tok.encode("\xC3"), Error);     // truncated UTF-8
  EXPECT_THROW(tok.encode("\xED\xA0\x80"), Error);  // surrogate
  EXPECT_THROW(tok.decode({258}), Error);
  EXPECT_THROW(tok.decode({-1}), Error);
}

}  // namespace
}  // namespace kvlab::model
