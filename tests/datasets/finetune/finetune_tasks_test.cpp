// Fine-tuning task builders (datasets/finetune): deterministic for a seed, train and held-out
// never share an example text (nor, for genealogy, a subject), exact-match answers are what the
// prompt asks for, small regimes are samples of the full train pool. Needs Debian's bible-kjv
// (and golang-github-andybalholm-brotli-dev for Opticks); skips without them.
#include "datasets/finetune/finetune_tasks.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <iostream>
#include <set>
#include <string>

#include "framework/core/error.h"

namespace kvlab::datasets {
namespace {

bool have_bible() { return std::system("command -v bible >/dev/null 2>&1") == 0; }

std::set<std::string> texts(const std::vector<FtExample>& v) {
  std::set<std::string> s;
  for (const auto& e : v) s.insert(e.prompt + "\x1f" + e.answer);
  return s;
}

void expect_same(const FtTask& a, const FtTask& b) {
  ASSERT_EQ(a.train.size(), b.train.size());
  ASSERT_EQ(a.heldout.size(), b.heldout.size());
  for (size_t i = 0; i < a.train.size(); ++i) {
    EXPECT_EQ(a.train[i].prompt, b.train[i].prompt);
    EXPECT_EQ(a.train[i].answer, b.train[i].answer);
  }
  for (size_t i = 0; i < a.heldout.size(); ++i) EXPECT_EQ(a.heldout[i].id, b.heldout[i].id);
}

void expect_disjoint(const FtTask& t) {
  const auto tr = texts(t.train);
  for (const auto& e : t.heldout)
    EXPECT_EQ(tr.count(e.prompt + "\x1f" + e.answer), 0u) << t.name << " held-out " << e.id;
  // The identifying text alone (prompt for QA/classification, the passage for LM) never repeats
  // across the splits either.
  std::set<std::string> keys;
  for (const auto& e : t.train) keys.insert(e.prompt.empty() ? e.answer : e.prompt);
  for (const auto& e : t.heldout) EXPECT_EQ(keys.count(e.prompt.empty() ? e.answer : e.prompt), 0u);
}

class FtTaskTest : public ::testing::TestWithParam<std::string> {};

TEST_P(FtTaskTest, DeterministicDisjointAndSubsampled) {
  if (!have_bible()) GTEST_SKIP() << "bible-kjv not installed";
  FtTaskOptions o;
  o.task = GetParam();
  o.seed = 3;
  o.n_heldout = 0;
  FtTask full;
  try {
    full = build_finetune_task(o);
  } catch (const Error& e) {
    if (o.task == "lm") GTEST_SKIP() << e.what();  // Opticks' package missing
    throw;
  }
  std::cout << o.task << ": pool train " << full.pool_train << ", held-out " << full.pool_heldout
            << "; full regime train " << full.train.size() << ", held-out " << full.heldout.size()
            << "\n  e.g. [" << full.train[0].prompt << "] -> [" << full.train[0].answer << "]\n";
  ASSERT_GT(full.train.size(), 40u);
  ASSERT_GT(full.heldout.size(), 10u);
  expect_disjoint(full);
  expect_same(full, build_finetune_task(o));
  // Another seed gives another split.
  FtTaskOptions o2 = o;
  o2.seed = 4;
  const FtTask other = build_finetune_task(o2);
  EXPECT_NE(texts(other.heldout), texts(full.heldout));
  // Small-data regime: 64 examples, all from the full regime's train pool.
  FtTaskOptions small = o;
  small.n_train = 64;
  small.n_heldout = 32;
  const FtTask s = build_finetune_task(small);
  EXPECT_EQ(s.train.size(), 64u);
  EXPECT_EQ(s.heldout.size(), std::min<size_t>(32, full.heldout.size()));
  const auto pool = texts(full.train);
  for (const auto& e : s.train) EXPECT_EQ(pool.count(e.prompt + "\x1f" + e.answer), 1u) << e.id;
  expect_disjoint(s);
  for (const auto& e : full.heldout) {
    if (full.metric == "exact_match") {
      ASSERT_FALSE(e.answers.empty()) << e.id;
      EXPECT_EQ(normalize_answer(e.answer), e.answers[0]) << e.id;
      EXPECT_EQ(e.answer[0], ' ');
    } else {
      EXPECT_TRUE(e.prompt.empty());
    }
  }
  if (o.task == "lm") EXPECT_FALSE(full.original.empty());
}

INSTANTIATE_TEST_SUITE_P(Ft, FtTaskTest,
                         ::testing::Values("kjv_section", "kjv_genealogy", "kjv_last_word", "lm"));

TEST(FtTasks, SectionLabelsBalancedAndCorrect) {
  if (!have_bible()) GTEST_SKIP() << "bible-kjv not installed";
  EXPECT_EQ(kjv_section_of(0), "law");        // Genesis
  EXPECT_EQ(kjv_section_of(16), "history");   // Esther
  EXPECT_EQ(kjv_section_of(18), "poetry");    // Psalms
  EXPECT_EQ(kjv_section_of(43), "history");   // Acts
  EXPECT_EQ(kjv_section_of(44), "epistles");  // Romans
  EXPECT_EQ(kjv_section_of(65), "prophets");  // Revelation
  const auto& v = kjv_verses();
  ASSERT_EQ(v.front().ref, "Ge1:1");
  EXPECT_EQ(v.front().text, "In the beginning God created the heaven and the earth.");
  EXPECT_EQ(v.back().book, 65);
  FtTaskOptions o;
  o.task = "kjv_section";
  o.n_train = 600;
  o.n_heldout = 120;
  const FtTask t = build_finetune_task(o);
  std::map<std::string, int> count;
  for (const auto& e : t.heldout) ++count[e.answers[0]];
  EXPECT_EQ(count.size(), 6u);
  for (const auto& [l, c] : count) EXPECT_EQ(c, 20) << l;
  // The label is the section of the verse's book.
  std::map<std::string, int> book_of;
  for (const auto& x : v) book_of[x.ref] = x.book;
  for (const auto& e : t.train) EXPECT_EQ(" " + kjv_section_of(book_of.at(e.id)), e.answer) << e.id;
}

TEST(FtTasks, GenealogyFactsAndErrors) {
  if (!have_bible()) GTEST_SKIP() << "bible-kjv not installed";
  const auto pairs = kjv_begat_pairs();
  auto has = [&](const char* x, const char* y) {
    for (const auto& p : pairs)
      if (p.first == x && p.second == y) return true;
    return false;
  };
  EXPECT_TRUE(has("Abraham", "Isaac"));  // Mat1:2
  EXPECT_TRUE(has("Seth", "Enos"));      // Ge5:6 "And Seth lived ... and begat Enos"
  EXPECT_TRUE(has("Jesse", "David"));
  EXPECT_TRUE(has("Nun", "Joshua"));  // "Joshua the son of Nun"
  EXPECT_EQ(normalize_answer("  Isaac; and"), "isaac");
  FtTaskOptions o;
  o.task = "kjv_sectoin";
  try {
    build_finetune_task(o);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("did you mean 'kjv_section'"), std::string::npos)
        << e.what();
  }
  o.task = "kjv_section";
  o.heldout_fraction = 1.0;
  EXPECT_THROW(build_finetune_task(o), Error);
}

}  // namespace
}  // namespace kvlab::datasets
