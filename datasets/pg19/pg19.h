// PG-19 (benchmarks.md section 2.1): a local folder laid out like DeepMind's bucket,
//   <data_dir>/{train,validation,test}/<book_id>.txt   (UTF-8 books, read as they are: the
//                                                       Hugging Face loader does not strip)
//   <data_dir>/metadata.csv  (optional; NO header: book_id,short_book_title,publication_date,link)
// and, so everything runs offline, PG-19-STYLE books made from Debian-packaged public-domain text
// (data_dir "debian"): split "test" is kvlab's held-out corpus split (Newton's Opticks first, then
// the held-out KJV books; datasets/text/corpus.h), split "train" the training corpus books. These
// are never passed off as PG-19: their ids are the corpus names ("opticks", "kjv/Ruth") and every
// result records the data_dir. All of them meet PG-19's criterion (published before 1919).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace kvlab::datasets {

struct Pg19Metadata {
  std::string book_id;
  std::string title;
  int64_t publication_date = 0;  // year; 0 when unknown
  std::string link;
};

struct Pg19Book {
  std::string id;     // file stem ("10005") or corpus name for the Debian books
  std::string split;  // train, validation or test
  std::string title;  // from metadata.csv when listed, else the id
  int64_t publication_date = 0;
  std::string text;
};

// Parses metadata.csv text (no header). A title may contain commas: the first field is the id,
// the last two the date and the link, everything between is the title (a double-quoted CSV field
// is unquoted). `path` names the file in errors.
std::map<std::string, Pg19Metadata> parse_pg19_metadata(const std::string& csv, const std::string& path);

// The book ids of a split, sorted (numeric ids numerically, then others lexicographically).
// data_dir "debian" lists the Debian-packaged books. A missing split folder is an error naming it.
std::vector<std::string> pg19_book_ids(const std::string& data_dir, const std::string& split);

// One book (metadata joined when data_dir/metadata.csv exists).
Pg19Book load_pg19_book(const std::string& data_dir, const std::string& split, const std::string& id);

// Writes the Debian-packaged books of `split` ("test" or "train") as a PG-19-style folder:
// out_dir/<split>/<name>.txt (a '/' in a name becomes '_') and out_dir/metadata.csv (labelled
// "PG-19-style (kvlab, Debian-packaged public-domain text)"). Returns the ids written.
std::vector<std::string> write_pg19_style(const std::string& out_dir, const std::string& split);

}  // namespace kvlab::datasets
