// kvlab's public-domain training corpus (issue "Training loop and kvlab-tiny", item 4): books that
// Debian packages install (never committed; scripts/install-deps.sh installs the packages), each
// with a name, its package and a loader that returns clean text (Gutenberg header/footer and
// verse labels removed, hard-wrapped lines joined into paragraphs separated by "\n\n").
//
// Books (name: package, where):
//   kjv/<Book>  (66, e.g. kjv/Genesis, kjv/1_Samuel): bible-kjv, `bible -f`; verses of a chapter
//               joined with spaces, chapters separated by "\n\n";
//   opticks     Newton, Opticks (1704; PG text): golang-github-andybalholm-brotli-dev
//               (or golang-1.19-src, same file);
//   tom_sawyer  Twain, The Adventures of Tom Sawyer (1876; PG text): golang-github-pierrec-lz4-dev;
//   sherlock    Doyle, The Adventures of Sherlock Holmes (1892; PG #1661): golang-github-pierrec-lz4-dev.
//
// Fixed split by BOOK (a held-out book is never in "train"):
//   heldout = kjv/{Ruth, Esther, Ecclesiastes, Jonah, Acts, James} + opticks (the public-domain
//             needle haystack of benchmarks.md section 3.5, so needle evaluation runs on unseen text);
//   train   = every other book.
// The six KJV books were chosen for having few parallel passages elsewhere in the Bible.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvlab::datasets {

struct BookInfo {
  std::string name;     // "kjv/Genesis", "opticks", ...
  std::string title;    // human-readable
  std::string package;  // Debian package that installs it
  std::string split;    // "train" or "heldout"
};

struct Document {
  std::string name;  // BookInfo::name
  std::string text;  // clean UTF-8 text
};

// All books in a fixed order (KJV in canonical order, then the others).
const std::vector<BookInfo>& book_registry();

// The clean text of one book; an unknown name lists the known ones, a missing package names it.
// KJV books come from one `bible` run, cached for the process (thread-safe).
std::string load_book(const std::string& name);

// The books of one split, in registry order: "train" or "heldout" (anything else is an error).
std::vector<Document> corpus_split(const std::string& split);

// Text cleaning, exposed for tests:
//   strip_gutenberg: drops everything up to the "*** START OF" line and from the "*** END OF"
//   line (or an "End of the Project Gutenberg" line) on, a leading "Produced by ..." paragraph,
//   a UTF-8 BOM and CRs; reflow_paragraphs: joins the lines of each blank-line-separated
//   paragraph with one space (lines trimmed), paragraphs separated by "\n\n", '_' italics marks
//   removed when `strip_underscores`.
std::string strip_gutenberg(const std::string& text);
std::string reflow_paragraphs(const std::string& text, bool strip_underscores);

}  // namespace kvlab::datasets
