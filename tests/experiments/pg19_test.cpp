// PG-19 folder reading (datasets/pg19) and the pg19 streaming-perplexity experiment: with the
// full cache, feeding one token at a time must give the same perplexity as the teacher-forced
// `ppl` experiment on the same text (same math; only f32 blocking differs).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "datasets/pg19/pg19.h"
#include "datasets/text/corpus.h"
#include "datasets/text/unigram.h"
#include "framework/core/error.h"
#include "framework/io/trace_h5.h"
#include "tests/experiments/experiment_support.h"
#include "tests/support/temp_dir.h"

namespace kvlab::datasets {
namespace {

namespace fs = std::filesystem;

const char* const kBookA =
    "Chapter I. It was a bright cold day in April, and the clocks were striking.\n"
    "The hallway smelt of boiled cabbage and old rag mats. At one end of it a coloured poster,\n"
    "too large for indoor display, had been tacked to the wall.\n\n"
    "Chapter II. Of the reflexions of light, and of the colours of thin transparent bodies; "
    "of the rings which appear between two glasses laid one upon another.";

void write(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << s;
}

TEST(Pg19Folder, ListsSortsAndReadsMetadata) {
  kvlab::testing::TempDir tmp("kvlab_pg19");
  write(tmp.path() / "test" / "10005.txt", "Book 10005.");
  write(tmp.path() / "test" / "999.txt", "Book 999.");
  write(tmp.path() / "test" / "notes.md", "not a book");
  write(tmp.path() / "validation" / "1.txt", "v");
  write(tmp.path() / "metadata.csv",
        "10005,A Voyage to the Moon by George Tucker,1828,http://www.gutenberg.org/ebooks/10005\n"
        "999,\"Travels, in Four Parts\",1726,http://www.gutenberg.org/ebooks/999\r\n");
  EXPECT_EQ(pg19_book_ids(tmp.path().string(), "test"), (std::vector<std::string>{"999", "10005"}));
  const Pg19Book b = load_pg19_book(tmp.path().string(), "test", "10005");
  EXPECT_EQ(b.text, "Book 10005.");
  EXPECT_EQ(b.title, "A Voyage to the Moon by George Tucker");
  EXPECT_EQ(b.publication_date, 1828);
  EXPECT_EQ(load_pg19_book(tmp.path().string(), "test", "999").title, "Travels, in Four Parts");
  EXPECT_THROW(pg19_book_ids(tmp.path().string(), "train"), Error);  // no such folder
  EXPECT_THROW(pg19_book_ids(tmp.path().string(), "dev"), Error);    // not a split
  EXPECT_THROW(load_pg19_book(tmp.path().string(), "test", "1"), Error);
  EXPECT_THROW(parse_pg19_metadata("just,one\n", "m.csv"), Error);
}

TEST(Pg19Folder, DebianPg19StyleBooks) {
  try {
    load_book("opticks");
  } catch (const Error&) {
    GTEST_SKIP() << "opticks not installed (golang-github-andybalholm-brotli-dev)";
  }
  const auto ids = pg19_book_ids("debian", "test");
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids[0], "opticks");
  for (const auto& b : book_registry())
    if (b.split == "train") {
      EXPECT_EQ(std::find(ids.begin(), ids.end(), b.name), ids.end()) << b.name;
    }
  EXPECT_THROW(pg19_book_ids("debian", "validation"), Error);
  kvlab::testing::TempDir tmp("kvlab_pg19_deb");
  const auto written = write_pg19_style(tmp.path().string(), "test");
  EXPECT_EQ(written.size(), ids.size());
  EXPECT_EQ(load_pg19_book(tmp.path().string(), "test", "opticks").text, load_book("opticks"));
  EXPECT_NE(load_pg19_book(tmp.path().string(), "test", "opticks").title.find("PG-19-style"),
            std::string::npos);
}

TEST(Pg19Experiment, StreamingEqualsTeacherForcedWithFullCache) {
  kvlab::testing::TempDir tmp("kvlab_pg19_ppl");
  std::string text;
  for (int i = 0; i < 3; ++i) text += kBookA;  // ~1.3K byte tokens
  write(tmp.path() / "test" / "1.txt", text);
  const int64_t n_tokens = 700;  // BOS + 699 text tokens: 699 predictions
  const auto ppl = kvlab::testing::run_experiment(
      "ppl", {{"text", "file:" + (tmp.path() / "test" / "1.txt").string()},
              {"max_tokens", std::to_string(n_tokens)}});
  io::H5TraceSink trace(tmp.sub("trace.h5"));
  const auto st = kvlab::testing::run_experiment(
      "pg19", {{"data_dir", tmp.path().string()}, {"max_tokens", std::to_string(n_tokens - 1)},
               {"bucket", "256"}, {"trace_every", "100"}},
      &trace);
  trace.close();
  ASSERT_EQ(st["tokens_scored"], ppl["tokens_scored"]);
  const double a = ppl["perplexity"], b = st["perplexity"];
  EXPECT_NEAR(b, a, 1e-5 * a) << "teacher-forced " << a << " streaming " << b;
  EXPECT_GT(a, 50.0);  // a random model: near the vocabulary size, not a degenerate case
  ASSERT_EQ(st["nll_by_position"].size(), ppl["nll_by_position"].size());
  for (size_t i = 0; i < st["nll_by_position"].size(); ++i) {
    EXPECT_EQ(st["nll_by_position"][i]["start"], ppl["nll_by_position"][i]["start"]);
    EXPECT_EQ(st["nll_by_position"][i]["end"], ppl["nll_by_position"][i]["end"]);
    EXPECT_NEAR(st["nll_by_position"][i]["nll_mean"].get<double>(),
                ppl["nll_by_position"][i]["nll_mean"].get<double>(), 1e-5);
  }
  // Word-level perplexity: exp(sum NLL / words of the scored text).
  const double words = st["words"];
  EXPECT_GT(words, 50);
  EXPECT_NEAR(st["word_perplexity"].get<double>(),
              std::exp(st["nll_mean"].get<double>() * st["tokens_scored"].get<double>() / words), 1e-6);
  // Cache bytes sampled every 100 steps plus the last step; growing with the full cache.
  const auto& k = st["kv_over_steps"];
  ASSERT_EQ(k.size(), 8u);  // steps 0, 100, ..., 600, and 698
  EXPECT_EQ(k.back()["step"], 698);
  EXPECT_LT(k.front()["device_bytes"].get<int64_t>(), k.back()["device_bytes"].get<int64_t>());
  EXPECT_EQ(st["kv_memory"], ppl["kv_memory"]);
  std::ostringstream tree;
  io::inspect_h5(tmp.sub("trace.h5"), tree);
  EXPECT_NE(tree.str().find("layer_01"), std::string::npos) << tree.str();
  EXPECT_NE(tree.str().find("nll"), std::string::npos);
}

TEST(Pg19Experiment, BooksResetOrCarryOver) {
  kvlab::testing::TempDir tmp("kvlab_pg19_books");
  write(tmp.path() / "test" / "1.txt", std::string(kBookA).substr(0, 120));
  write(tmp.path() / "test" / "2.txt", std::string(kBookA).substr(100, 150));
  const auto reset = kvlab::testing::run_experiment(
      "pg19", {{"data_dir", tmp.path().string()}, {"books", "2"}, {"max_tokens", "1000"}});
  ASSERT_EQ(reset["books"].size(), 2u);
  EXPECT_EQ(reset["tokens_scored"], 120 + 150);  // BOS + n tokens: n predictions per book
  EXPECT_EQ(reset["books"][0]["id"], "1");
  // Book 2 alone gives the same numbers as book 2 after a reset.
  const auto alone = kvlab::testing::run_experiment(
      "pg19", {{"data_dir", tmp.path().string()}, {"book", "2"}, {"max_tokens", "1000"}});
  EXPECT_NEAR(alone["books"][0]["perplexity"].get<double>(),
              reset["books"][1]["perplexity"].get<double>(), 1e-9);
  // StreamingLLM carry-over: book 2 is scored with book 1 still in the cache.
  const auto carry = kvlab::testing::run_experiment(
      "pg19", {{"data_dir", tmp.path().string()}, {"books", "2"}, {"max_tokens", "1000"},
               {"reset_between_books", "false"}});
  EXPECT_EQ(carry["tokens_scored"], 270);
  EXPECT_NE(carry["books"][1]["perplexity"].get<double>(), reset["books"][1]["perplexity"].get<double>());
  EXPECT_EQ(carry["kv_memory"]["full_tokens"].get<int64_t>(),
            2 * 270);  // 2 layers, every fed token kept
  // max_tokens stops across books.
  const auto cut = kvlab::testing::run_experiment(
      "pg19", {{"data_dir", tmp.path().string()}, {"books", "2"}, {"max_tokens", "130"}});
  EXPECT_EQ(cut["tokens_scored"], 130);
  EXPECT_EQ(cut["books"][1]["tokens_scored"], 10);
  // book_tokens caps each book: 50 + 50 of the 120 + 150.
  const auto capped = kvlab::testing::run_experiment(
      "pg19", {{"data_dir", tmp.path().string()}, {"books", "2"}, {"max_tokens", "1000"},
               {"book_tokens", "50"}});
  EXPECT_EQ(capped["tokens_scored"], 100);
  EXPECT_EQ(capped["books"][0]["tokens_scored"], 50);
  EXPECT_EQ(capped["books"][1]["tokens_scored"], 50);
}

TEST(Unigram, AddOneSmoothedFromIds) {
  // V = 4, ids 0 0 1: p = (c + 1) / (3 + 4).
  const Unigram u = unigram_from_ids({0, 0, 1}, 4);
  ASSERT_EQ(u.nll.size(), 4u);
  EXPECT_EQ(u.tokens, 3);
  EXPECT_NEAR(u.nll[0], -std::log(3.0 / 7.0), 1e-15);
  EXPECT_NEAR(u.nll[1], -std::log(2.0 / 7.0), 1e-15);
  EXPECT_NEAR(u.nll[3], -std::log(1.0 / 7.0), 1e-15);
  double total = 0;
  for (double x : u.nll) total += std::exp(-x);
  EXPECT_NEAR(total, 1.0, 1e-12);
  EXPECT_THROW(unigram_from_ids({5}, 4), Error);
}

TEST(Pg19Experiment, UnigramBaselineScoresTheSameTokens) {
  try {
    load_book("opticks");
  } catch (const Error&) {
    GTEST_SKIP() << "corpus packages not installed";
  }
  kvlab::testing::TempDir tmp("kvlab_pg19_unigram");
  write(tmp.path() / "test" / "1.txt", kBookA);
  const auto r = kvlab::testing::run_experiment(
      "pg19", {{"data_dir", tmp.path().string()}, {"max_tokens", "200"}, {"bucket", "64"},
               {"unigram", "heldout"}});
  ASSERT_TRUE(r.contains("unigram")) << r.dump();
  EXPECT_EQ(r["unigram"]["source"], "corpus:heldout");
  EXPECT_GT(r["unigram"]["tokens_counted"].get<int64_t>(), 100000);
  // The bucket means, weighted by their counts, give the overall unigram NLL.
  double sum = 0, n = 0;
  for (const auto& b : r["nll_by_position"]) {
    sum += b["unigram_nll_mean"].get<double>() * b["count"].get<double>();
    n += b["count"].get<double>();
  }
  EXPECT_EQ(n, 200);
  EXPECT_NEAR(sum / n, r["unigram"]["nll_mean"].get<double>(), 1e-9);
  EXPECT_NEAR(std::exp(sum / n), r["unigram"]["perplexity"].get<double>(), 1e-6);
  // A byte-level unigram on English text beats a uniform guess over 258 ids by a wide margin.
  EXPECT_LT(r["unigram"]["perplexity"].get<double>(), 40.0);
  const auto none = kvlab::testing::run_experiment(
      "pg19", {{"data_dir", tmp.path().string()}, {"max_tokens", "200"}});
  EXPECT_FALSE(none.contains("unigram"));
}

}  // namespace
}  // namespace kvlab::datasets
