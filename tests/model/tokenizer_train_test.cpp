// Byte-level BPE trainer (framework/model/tokenizer_train.h).
#include "framework/model/tokenizer_train.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "framework/core/error.h"
#include "framework/model/tokenizer.h"

namespace kvlab::cli {
int cmd_tokenizer_train(int argc, char** argv, int first);
}

namespace kvlab::model {
namespace {

constexpr int32_t kFirstMerged = 256 + 8;  // bytes + default special tokens

std::string small_text() {
  std::string t;
  const char* lines[] = {
      "In the beginning God created the heaven and the earth.\n",
      "And the earth was without form, and void; and darkness was upon the face of the deep.\n",
      "The pass key is 71432. Remember it. 71432 is the pass key.\n",
      "Tom said: \"I'll go there in 1876, won't I?\" and they laughed.\n",
      "Caf\xC3\xA9 na\xC3\xAFve \xE2\x80\x94 r\xC3\xA9sum\xC3\xA9, 3.14159 and 2718281828.\n",
      "  indented line\twith tab\n\n",
  };
  for (int r = 0; r < 20; ++r)
    for (const char* l : lines) t += l;
  return t;
}

TEST(TokenizerTrain, ToyMergesMatchHandComputation) {
  // One pre-token "aaabdaaabac" (letters only). Pair counts: aa 4, ab 2, others 1.
  //   merge 1: (a, a) -> aa          word: aa a b d aa a b a c
  //   merge 2: (a, b) count 2 ties (aa, a) count 2; (97, 98) < (264, 97) -> ab
  //                                  word: aa ab d aa ab a c
  //   merge 3: (aa, ab) count 2 -> aaab; then every pair occurs once < min_frequency 2.
  BpeTrainOptions o;
  o.vocab_size = 1000;
  const BpeModel m = train_bpe(std::vector<std::string>{"aaabdaaabac"}, o);
  ASSERT_EQ(m.merges.size(), 3u);
  EXPECT_EQ(m.merges[0].left, 'a');
  EXPECT_EQ(m.merges[0].right, 'a');
  EXPECT_EQ(m.merges[0].result, kFirstMerged);
  EXPECT_EQ(m.merges[0].count, 4);
  EXPECT_EQ(m.merges[1].left, 'a');
  EXPECT_EQ(m.merges[1].right, 'b');
  EXPECT_EQ(m.merges[1].count, 2);
  EXPECT_EQ(m.merges[2].left, kFirstMerged);
  EXPECT_EQ(m.merges[2].right, kFirstMerged + 1);
  EXPECT_EQ(m.tokens[kFirstMerged + 2], "aaab");
  EXPECT_EQ(m.tokens.size(), static_cast<size_t>(kFirstMerged + 3));
}

TEST(TokenizerTrain, ToyJsonUsesByteLevelSymbols) {
  // Pre-tokens "ab" x1 and " ab" x2: (a, b) 3 -> ab; then (' ', ab) 2 -> " ab" (written "Ġab").
  BpeTrainOptions o;
  o.vocab_size = 1000;
  const BpeModel m = train_bpe(std::vector<std::string>{"ab ab ab"}, o);
  const auto j = nlohmann::json::parse(bpe_tokenizer_json(m));
  const auto merges = j.at("model").at("merges");
  ASSERT_EQ(merges.size(), 2u);
  EXPECT_EQ(merges[0], "a b");
  EXPECT_EQ(merges[1], "\xC4\xA0 ab");
  EXPECT_EQ(j.at("model").at("vocab").at("\xC4\xA0" "ab"), kFirstMerged + 1);
  EXPECT_EQ(j.at("pre_tokenizer").at("pretokenizers")[0].at("pattern").at("Regex"),
            kSingleDigitPattern);
  const auto tok = Tokenizer::from_json(j.dump(), "toy");
  EXPECT_EQ(tok.encode("ab ab"), (std::vector<int32_t>{kFirstMerged, kFirstMerged + 1}));
}

TEST(TokenizerTrain, RoundTripAndSpecialTokens) {
  BpeTrainOptions o;
  o.vocab_size = 360;  // the text supports ~140 merges
  const BpeModel m = train_bpe(std::vector<std::string>{small_text()}, o);
  EXPECT_EQ(static_cast<int64_t>(m.tokens.size()), o.vocab_size);
  const auto tok = Tokenizer::from_json(bpe_tokenizer_json(m), "trained");
  EXPECT_EQ(tok.vocab_size(), o.vocab_size);
  EXPECT_EQ(tok.token_to_id("<|begin_of_text|>"), 256);
  EXPECT_EQ(tok.token_to_id("<|end_of_text|>"), 257);
  EXPECT_EQ(tok.token_to_id("<|pad|>"), 258);
  EXPECT_TRUE(tok.is_special(256));
  const std::string texts[] = {small_text(),
                               "Unseen words: zyzzyva, quixotic \xF0\x9F\x98\x80 emoji!\r\n\t 0042",
                               ""};
  for (const auto& t : texts) {
    const auto ids = tok.encode(t);
    EXPECT_EQ(tok.decode(ids), t);
  }
  // Learned merges compress the training text below half a token per byte (~2,200 pre-tokens,
  // 6,780 bytes).
  EXPECT_LT(tok.encode(small_text()).size() * 2, small_text().size());
  // Special tokens in text are single ids.
  const auto ids = tok.encode("<|begin_of_text|>The end<|end_of_text|>");
  EXPECT_EQ(ids.front(), 256);
  EXPECT_EQ(ids.back(), 257);
}

TEST(TokenizerTrain, DigitsAreSingleTokens) {
  std::string t;
  for (int i = 0; i < 200; ++i) t += "The pass key is 71432. Year 1876 and 1876 and 99.\n";
  BpeTrainOptions o;
  o.vocab_size = 400;
  const BpeModel m = train_bpe(std::vector<std::string>{t}, o);
  for (const auto& s : m.tokens) {
    int digits = 0;
    for (char c : s) digits += std::isdigit(static_cast<unsigned char>(c)) ? 1 : 0;
    EXPECT_LE(digits, 1) << "token '" << s << "' holds several digits";
  }
  const auto tok = Tokenizer::from_json(bpe_tokenizer_json(m), "digits");
  const auto ids = tok.encode(" 71432.");
  std::vector<std::string> pieces;
  for (int32_t id : ids) pieces.push_back(tok.decode({id}));
  EXPECT_EQ(pieces, (std::vector<std::string>{" ", "7", "1", "4", "3", "2", "."}));
}

TEST(TokenizerTrain, Deterministic) {
  BpeTrainOptions o;
  o.vocab_size = 500;
  const std::string a = bpe_tokenizer_json(train_bpe(std::vector<std::string>{small_text()}, o));
  const std::string b = bpe_tokenizer_json(train_bpe(std::vector<std::string>{small_text()}, o));
  EXPECT_EQ(a, b);
  // Splitting the corpus into several texts at a line boundary changes nothing.
  const std::string t = small_text();
  const size_t cut = t.find('\n', t.size() / 2) + 1;
  const std::string c =
      bpe_tokenizer_json(train_bpe(std::vector<std::string>{t.substr(0, cut), t.substr(cut)}, o));
  EXPECT_EQ(a, c);
}

TEST(TokenizerTrain, RejectsBadInput) {
  BpeTrainOptions o;
  o.vocab_size = 100;
  EXPECT_THROW(train_bpe(std::vector<std::string>{"abc"}, o), Error);
  o.vocab_size = 1000;
  EXPECT_THROW(train_bpe(std::vector<std::string>{std::string("ab\xFF\xFE")}, o), Error);
}

TEST(TokenizerTrain, CommandWritesLoadableFile) {
  const auto dir = std::filesystem::temp_directory_path() / "kvlab_tokenizer_train_test";
  std::filesystem::create_directories(dir);
  const std::string text_path = (dir / "text.txt").string();
  std::ofstream(text_path) << small_text();
  const std::string out = (dir / "tokenizer.json").string();
  std::vector<std::string> args = {"kvlab",        "tokenizer", "train", "--text",
                                   "file:" + text_path, "--vocab-size", "300", "--out", out};
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(s.data());
  ASSERT_EQ(cli::cmd_tokenizer_train(static_cast<int>(argv.size()), argv.data(), 3), 0);
  const auto tok = Tokenizer::load(out);
  EXPECT_EQ(tok.vocab_size(), 300);
  EXPECT_EQ(tok.decode(tok.encode(small_text())), small_text());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kvlab::model
