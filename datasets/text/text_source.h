// Long public-domain text for perplexity and training, from what Debian installs (never committed):
//   "kjv:RANGE"  the King James Bible via `bible -f RANGE` (package bible-kjv), verse labels
//                stripped, e.g. "kjv:Gen1:1-Rev22:21" for the whole book (4.4 MB);
//   "book:NAME"  one book of the corpus registry (datasets/text/corpus.h), e.g. "book:sherlock";
//   "corpus:SPLIT"  all books of a corpus split ("train" or "heldout"), joined with "\n\n";
//   "file:PATH" or a plain PATH   a UTF-8 text file.
#pragma once

#include <string>

namespace kvlab::datasets {

// Returns the text; errors name the spec and say which package provides it.
std::string load_text(const std::string& spec);

}  // namespace kvlab::datasets
