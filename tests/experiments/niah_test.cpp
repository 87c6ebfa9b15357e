// Needle-in-a-haystack prompts (datasets/needle), scoring, and the niah experiment's grid.
// Tokenizer: model_init's byte-level one (token = byte), so positions are easy to check.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "datasets/needle/needle.h"
#include "datasets/synthetic/tasks.h"
#include "datasets/text/corpus.h"
#include "framework/core/error.h"
#include "framework/io/trace_h5.h"
#include "framework/model/model_init.h"
#include "tests/experiments/experiment_support.h"
#include "tests/support/temp_dir.h"

namespace kvlab::datasets::needle {
namespace {

const model::Tokenizer& bytes_tok() {
  static const model::Tokenizer t =
      model::Tokenizer::from_json(model::byte_level_tokenizer_json(), "byte_level");
  return t;
}

// A haystack file of short, varied sentences (12..48 bytes), some paragraphs.
std::string haystack_spec() {
  static const std::string path = [] {
    const auto p = std::filesystem::temp_directory_path() /
                   ("kvlab_niah_hay_" + std::to_string(::getpid()) + ".txt");
    const char* const s[] = {"The light was bent at the surface of the glass.",
                             "Red rays are least refracted!",
                             "Why do the colours appear in this order?",
                             "He wrote \"the experiment was tried again.\"",
                             "The prism was turned about its axis.",
                             "Nothing more was seen."};
    std::ofstream f(p);
    for (int i = 0; i < 400; ++i) f << s[(i * 7) % 6] << ((i % 9 == 8) ? "\n\n" : " ");
    return p.string();
  }();
  return "file:" + path;
}

bool ends_sentence(const std::string& s) {
  if (s.empty()) return false;
  const char c = s.back();
  return c == '.' || c == '!' || c == '?' || c == '"' || c == '\'' || c == ')' || c == ']';
}

std::string decode(const std::vector<int32_t>& ids, int64_t b, int64_t e) {
  return bytes_tok().decode(std::vector<int32_t>(ids.begin() + b, ids.begin() + e));
}

// Checks the invariants of one prompt; returns the asked needle's haystack-token offset.
int64_t check_prompt(const Prompt& p, int64_t L, const PromptOptions& opt) {
  EXPECT_EQ(static_cast<int64_t>(p.ids.size()), L) << "prompt length";
  if (opt.bos_id >= 0) {
    EXPECT_EQ(p.ids[0], opt.bos_id);
  }
  for (size_t j = 0; j < p.needles.size(); ++j) {
    const int64_t at = p.needle_pos[j], len = p.needle_len[j];
    EXPECT_EQ(decode(p.ids, at, at + len), " " + p.needles[j]) << "needle " << j << " tokens";
    // Before: the context start or a sentence end (or another needle, itself a sentence).
    if (at > p.context_begin) {
      const std::string before = decode(p.ids, p.context_begin, at);
      EXPECT_TRUE(ends_sentence(before)) << "needle " << j << " after '" << before.substr(before.size() - 20) << "'";
    }
    // After: the tail, or a new sentence (" " + capital or another needle).
    const int64_t after = at + len;
    EXPECT_LE(after, p.context_end);
    if (after < p.context_end && at != p.context_begin) {  // depth 0: a front-cut sentence follows
      EXPECT_EQ(decode(p.ids, after, after + 1), " ");
    }
  }
  int64_t needles_before = 0;
  for (size_t j = 1; j < p.needles.size(); ++j)
    if (p.needle_pos[j] < p.needle_pos[0]) needles_before += p.needle_len[j];
  int64_t needle_total = 0;
  for (auto n : p.needle_len) needle_total += n;
  EXPECT_EQ(p.context_end - p.context_begin - needle_total, p.haystack_tokens);
  const int64_t off = p.needle_pos[0] - p.context_begin - needles_before;
  EXPECT_NEAR(p.depth_actual, 100.0 * off / p.haystack_tokens, 1e-9);
  return off;
}

TEST(NeedlePrompt, ExactLengthSentenceBoundaryAndDepth) {
  const Haystack hay(bytes_tok(), haystack_spec());
  for (const std::string v : {"single", "multikey", "multivalue", "passkey", "sandwich"}) {
    PromptOptions opt;
    opt.variant = parse_variant(v);
    opt.bos_id = 256;
    for (int64_t L : {700, 1111, 2000, 4096}) {
      for (double d : {0.0, 10.0, 25.0, 33.3, 50.0, 75.0, 90.0, 100.0}) {
        Rng rng(static_cast<uint64_t>(L * 1000 + d));
        const Prompt p = build_prompt(bytes_tok(), hay, opt, L, d, rng);
        SCOPED_TRACE(v + " L=" + std::to_string(L) + " depth=" + std::to_string(d));
        const int64_t off = check_prompt(p, L, opt);
        // Nearest boundary: within half the longest sentence (48 bytes + space).
        const double want = d / 100.0 * static_cast<double>(p.haystack_tokens);
        EXPECT_LE(p.max_sentence_tokens, 49);
        const double tol = p.max_sentence_tokens / 2.0;
        EXPECT_LE(std::abs(static_cast<double>(off) - want), tol) << "offset " << off << " want " << want;
        if (d == 0) {
          EXPECT_EQ(off, 0);
        }
        if (d == 100) {  // the haystack ends on a complete sentence: the needle goes at the end
          EXPECT_EQ(off, p.haystack_tokens);
          if (p.needles.size() == 1) {
            EXPECT_EQ(p.needle_pos[0] + p.needle_len[0], p.context_end);
          }
        }
      }
    }
  }
}

TEST(NeedlePrompt, NoiseHaystackAndRealBook) {
  PromptOptions opt;
  opt.variant = Variant::kPasskey;
  const Haystack noise(bytes_tok(), "noise");
  Rng rng(3);
  const Prompt p = build_prompt(bytes_tok(), noise, opt, 1000, 50, rng);
  check_prompt(p, 1000, opt);
  EXPECT_NE(bytes_tok().decode(p.ids).find("The grass is green. The sky is blue."), std::string::npos);
  // The held-out public-domain haystack, when its Debian package is installed.
  bool have = false;
  try {
    load_book("opticks");
    have = true;
  } catch (const Error&) {
  }
  if (!have) GTEST_SKIP() << "opticks not installed (golang-github-andybalholm-brotli-dev)";
  const Haystack opticks(bytes_tok(), "book:opticks");
  for (double d : {0.0, 40.0, 100.0}) {
    Rng r(9);
    opt.variant = Variant::kSingle;
    const Prompt q = build_prompt(bytes_tok(), opticks, opt, 8000, d, r);
    check_prompt(q, 8000, opt);
  }
}

TEST(NeedlePrompt, BenchmarkWordingIsTheHeldOutSet) {
  const Haystack hay(bytes_tok(), haystack_spec());
  PromptOptions opt;
  Rng rng(1);
  const Prompt p = build_prompt(bytes_tok(), hay, opt, 600, 50, rng);
  const std::string text = bytes_tok().decode(p.ids);
  // RULER niah_single rendering (benchmarks.md 3.3).
  EXPECT_EQ(text.rfind("A special magic number is hidden within the following text. Make sure to "
                       "memorize it. I will quiz you about the number afterwards.\n", 0), 0u);
  EXPECT_NE(text.find("\nWhat is the special magic number for " + p.key +
                      " mentioned in the provided text? The special magic number for " + p.key +
                      " mentioned in the provided text is"), std::string::npos);
  EXPECT_EQ(p.needles[0], "One of the special magic numbers for " + p.key + " is: " + p.answers[0] + ".");
  EXPECT_EQ(p.answers[0].size(), 7u);
  // Never a training template.
  for (const auto& t : templates("needle", "train")) EXPECT_EQ(text.find(t.intro), std::string::npos);
  // Passkey: LongLoRA wording; multivalue: RULER's plural form with num_needles values.
  opt.variant = Variant::kPasskey;
  const Prompt k = build_prompt(bytes_tok(), hay, opt, 600, 50, rng);
  EXPECT_EQ(k.needles[0], "The pass key is " + k.answers[0] + ". Remember it. " + k.answers[0] + " is the pass key.");
  EXPECT_NE(bytes_tok().decode(k.ids).find("\nWhat is the pass key? The pass key is"), std::string::npos);
  opt.variant = Variant::kMultiValue;
  const Prompt mv = build_prompt(bytes_tok(), hay, opt, 900, 20, rng);
  EXPECT_EQ(mv.answers.size(), 4u);
  EXPECT_NE(bytes_tok().decode(mv.ids).find("What are all the special magic numbers for " + mv.key),
            std::string::npos);
  opt.wording = "train";
  EXPECT_THROW(build_prompt(bytes_tok(), hay, opt, 900, 20, rng), Error);
}

TEST(NeedlePrompt, TooShortIsAnError) {
  const Haystack hay(bytes_tok(), haystack_spec());
  PromptOptions opt;
  Rng rng(1);
  try {
    build_prompt(bytes_tok(), hay, opt, 100, 50, rng);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("too short"), std::string::npos) << e.what();
  }
}

TEST(NeedleScoring, StringMatchAll) {
  EXPECT_EQ(string_match_all(" The special magic number is 1234567.", {"1234567"}), 1.0);
  EXPECT_EQ(string_match_all("1234568", {"1234567"}), 0.0);
  EXPECT_EQ(string_match_all("123456", {"1234567"}), 0.0);
  EXPECT_EQ(string_match_all("", {"1234567"}), 0.0);
  // Case-insensitive substring.
  EXPECT_EQ(string_match_all("Eat a Sandwich and sit in DOLORES park on a sunny day!",
                             {"eat a sandwich and sit in dolores park on a sunny day"}), 1.0);
  // Fraction of references (multivalue).
  EXPECT_EQ(string_match_all("1111111, 2222222 and 9999999", {"1111111", "2222222", "3333333", "4444444"}), 0.5);
  // Control characters become newlines, so they split a value.
  EXPECT_EQ(string_match_all("12\x01" "34567", {"1234567"}), 0.0);
  EXPECT_EQ(ruler_clean("\t 12\x01" "3 \x1f\n"), "12\n3");
  EXPECT_EQ(string_match_all("x", {}), 0.0);
}

TEST(NeedleScoring, WordRecallQuirks) {
  const std::string want = "eat a sandwich and sit in Dolores Park on a sunny day.";
  // 11 distinct words ("a" twice); punctuation stays on words ("day." != "day").
  EXPECT_DOUBLE_EQ(word_recall(want, want), 1.0);
  EXPECT_DOUBLE_EQ(word_recall("Eat a sandwich.", want), 2.0 / 11.0);
  EXPECT_DOUBLE_EQ(word_recall("sunny day", want), 1.0 / 11.0);
  EXPECT_DOUBLE_EQ(word_recall("1234567", "1234567"), 1.0);
  EXPECT_DOUBLE_EQ(word_recall("1234567.", "1234567"), 0.0);
  EXPECT_DOUBLE_EQ(word_recall("anything", ""), 0.0);
}

TEST(NeedleGrid, DepthsAndLengths) {
  EXPECT_EQ(parse_depths("linear:5", "t"), (std::vector<double>{0, 25, 50, 75, 100}));
  const auto l35 = parse_depths("linear:35", "t");  // gkamradt default
  ASSERT_EQ(l35.size(), 35u);
  EXPECT_EQ(l35[1], 3);
  EXPECT_EQ(l35[9], 26);  // 26.47
  EXPECT_EQ(l35[17], 50);
  EXPECT_EQ(l35[34], 100);
  const auto s3 = parse_depths("sigmoid:3", "t");
  EXPECT_EQ(s3, (std::vector<double>{0, 50, 100}));
  const auto s5 = parse_depths("sigmoid:5", "t");
  EXPECT_NEAR(s5[1], 92.414, 1e-9);  // 100 * sigmoid(-0.1 * (25 - 50))
  EXPECT_EQ(parse_depths("0, 12.5,100", "t"), (std::vector<double>{0, 12.5, 100}));
  EXPECT_THROW(parse_depths("linear:0", "t"), Error);
  EXPECT_THROW(parse_depths("0,101", "t"), Error);
  EXPECT_THROW(parse_depths("a", "t"), Error);
  EXPECT_EQ(parse_lengths("1024,2048, 4096", "t"), (std::vector<int64_t>{1024, 2048, 4096}));
  EXPECT_THROW(parse_lengths("1024,1024", "t"), Error);
  EXPECT_THROW(parse_lengths("1k", "t"), Error);
  EXPECT_THROW(parse_lengths("", "t"), Error);
}

TEST(NiahExperiment, GridCoversEveryCellAndTraces) {
  kvlab::testing::TempDir tmp("kvlab_niah");
  io::H5TraceSink trace(tmp.sub("trace.h5"));
  const auto r = kvlab::testing::run_experiment(
      "niah",
      {{"context_lengths", "500,800"}, {"depths", "0,50,100"}, {"samples", "2"},
       {"haystack", haystack_spec()}, {"max_new_tokens", "4"}},
      &trace);
  trace.close();
  ASSERT_EQ(r["grid"].size(), 6u);
  std::set<std::pair<int64_t, double>> cells;
  double sum = 0;
  for (const auto& c : r["grid"]) {
    cells.insert({c["context_length"].get<int64_t>(), c["depth"].get<double>()});
    EXPECT_EQ(c["samples"], 2);
    const double s = c["score"];
    EXPECT_GE(s, 0.0);
    EXPECT_LE(s, 1.0);
    sum += s;
    EXPECT_GT(c["kv_device_bytes"].get<double>(), 0);
  }
  for (int64_t L : {500, 800})
    for (double d : {0.0, 50.0, 100.0}) EXPECT_TRUE(cells.count({L, d})) << L << " " << d;
  EXPECT_NEAR(r["accuracy"].get<double>(), sum / 6, 1e-12);
  EXPECT_EQ(r["samples_total"], 12);
  EXPECT_GT(r["kv_memory"]["device_bytes"].get<int64_t>(), 0);
  EXPECT_EQ(r["kv_memory_by_context_length"].size(), 2u);
  std::ostringstream tree;
  io::inspect_h5(tmp.sub("trace.h5"), tree);
  EXPECT_NE(tree.str().find("samples/score"), std::string::npos) << tree.str();
  EXPECT_NE(tree.str().find("0011"), std::string::npos) << tree.str();
  // Same seed, same results (the model is deterministic, samples seeded by cell).
  const auto again = kvlab::testing::run_experiment(
      "niah", {{"context_lengths", "500,800"}, {"depths", "0,50,100"}, {"samples", "2"},
               {"haystack", haystack_spec()}, {"max_new_tokens", "4"}});
  EXPECT_EQ(again["grid"], r["grid"]);
}

// The method's own trace() reaches the run's trace, once per layer, for the grid's last sample
// (its tokens seen = context length + generated tokens - 1: the last token is never fed).
TEST(NiahExperiment, HandsTheMethodTraceOfTheLastSample) {
  kvlab::testing::SeriesSink sink;
  kvlab::testing::run_experiment("niah",
                                 {{"context_lengths", "500,600"}, {"depths", "0,50"},
                                  {"samples", "2"}, {"haystack", haystack_spec()},
                                  {"max_new_tokens", "3"}},
                                 &sink, 0, kvlab::testing::trace_probe_factory());
  const int64_t L = kvlab::testing::tiny_model()->config().num_hidden_layers;
  const double want = 600 + sink.series["samples/generated_tokens"].back() - 1;
  for (int64_t l = 0; l < L; ++l) {
    const auto& s = sink.series["probe/layer_0" + std::to_string(l) + "/tokens_seen"];
    ASSERT_EQ(s.size(), 1u) << "layer " << l;
    EXPECT_EQ(s[0], want) << "layer " << l;
  }
  EXPECT_EQ(sink.attributes["samples:method_trace_sample"], "7");
}

TEST(NiahExperiment, RejectsLengthsBeyondTheModel) {
  EXPECT_THROW(kvlab::testing::run_experiment("niah", {{"context_lengths", "5000"},
                                                       {"haystack", haystack_spec()}}),
               Error);
}

}  // namespace
}  // namespace kvlab::datasets::needle
