#include "datasets/pg19/pg19.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <sstream>

#include "datasets/text/corpus.h"
#include "framework/core/error.h"
#include "framework/core/file_io.h"

namespace kvlab::datasets {

namespace fs = std::filesystem;

namespace {

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

std::string unquote(std::string s) {
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') {
    s = s.substr(1, s.size() - 2);
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
      out += s[i];
      if (s[i] == '"' && i + 1 < s.size() && s[i + 1] == '"') ++i;
    }
    return out;
  }
  return s;
}

// The Debian-packaged books of a PG-19-style split: test = the held-out corpus split with
// Opticks first (the long prose book), train = the training split.
std::vector<std::string> debian_books(const std::string& split) {
  std::string corpus_split;
  if (split == "test") corpus_split = "heldout";
  else if (split == "train") corpus_split = "train";
  else fail("pg19 data_dir debian: split '", split,
            "' does not exist (the Debian-packaged PG-19-style books have test (kvlab's held-out "
            "books) and train)");
  std::vector<std::string> names;
  for (const auto& b : book_registry())
    if (b.split == corpus_split) names.push_back(b.name);
  std::stable_partition(names.begin(), names.end(), [](const std::string& n) { return n == "opticks"; });
  return names;
}

void check_split(const std::string& split) {
  if (split != "train" && split != "validation" && split != "test")
    fail("pg19 split '", split, "': expected train, validation or test");
}

}  // namespace

std::map<std::string, Pg19Metadata> parse_pg19_metadata(const std::string& csv, const std::string& path) {
  std::map<std::string, Pg19Metadata> out;
  std::istringstream is(csv);
  std::string line;
  int64_t lineno = 0;
  while (std::getline(is, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    const size_t a = line.find(',');
    const size_t c = line.rfind(',');
    const size_t b = c == std::string::npos || c == 0 ? std::string::npos : line.rfind(',', c - 1);
    if (a == std::string::npos || b == std::string::npos || b < a)
      fail(path, ":", lineno, ": expected book_id,short_book_title,publication_date,link (4 fields, no header)");
    Pg19Metadata m;
    m.book_id = line.substr(0, a);
    m.title = unquote(a == b ? "" : line.substr(a + 1, b - a - 1));
    const std::string date = line.substr(b + 1, c - b - 1);
    if (!date.empty()) {
      if (!all_digits(date)) fail(path, ":", lineno, ": publication_date '", date, "' is not a year");
      m.publication_date = std::stoll(date);
    }
    m.link = line.substr(c + 1);
    out[m.book_id] = std::move(m);
  }
  return out;
}

std::vector<std::string> pg19_book_ids(const std::string& data_dir, const std::string& split) {
  check_split(split);
  if (data_dir == "debian") return debian_books(split);
  const fs::path dir = fs::path(data_dir) / split;
  if (!fs::is_directory(dir))
    fail("pg19: ", dir.string(), " is not a folder (expected <data_dir>/{train,validation,test}/<book_id>.txt)");
  std::vector<std::string> ids;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".txt") ids.push_back(e.path().stem().string());
  std::sort(ids.begin(), ids.end(), [](const std::string& x, const std::string& y) {
    const bool dx = all_digits(x), dy = all_digits(y);
    if (dx != dy) return dx;
    if (dx && x.size() != y.size()) return x.size() < y.size();
    return x < y;
  });
  if (ids.empty()) fail("pg19: ", dir.string(), " holds no .txt books");
  return ids;
}

Pg19Book load_pg19_book(const std::string& data_dir, const std::string& split, const std::string& id) {
  check_split(split);
  Pg19Book b;
  b.id = id;
  b.split = split;
  b.title = id;
  if (data_dir == "debian") {
    const auto names = debian_books(split);
    if (std::find(names.begin(), names.end(), id) == names.end())
      fail("pg19 data_dir debian: no book '", id, "' in split ", split);
    b.text = load_book(id);
    for (const auto& info : book_registry())
      if (info.name == id) b.title = info.title;
    return b;
  }
  const fs::path file = fs::path(data_dir) / split / (id + ".txt");
  if (!fs::exists(file)) fail("pg19: ", file.string(), " does not exist");
  b.text = read_file(file.string());
  const fs::path meta = fs::path(data_dir) / "metadata.csv";
  if (fs::exists(meta)) {
    const auto m = parse_pg19_metadata(read_file(meta.string()), meta.string());
    if (auto it = m.find(id); it != m.end()) {
      b.title = it->second.title;
      b.publication_date = it->second.publication_date;
    }
  }
  return b;
}

std::vector<std::string> write_pg19_style(const std::string& out_dir, const std::string& split) {
  const auto names = debian_books(split);
  fs::create_directories(fs::path(out_dir) / split);
  std::string csv;
  std::vector<std::string> ids;
  for (const auto& n : names) {
    std::string id = n;
    std::replace(id.begin(), id.end(), '/', '_');
    write_file_atomic((fs::path(out_dir) / split / (id + ".txt")).string(), load_book(n));
    std::string title;
    for (const auto& info : book_registry())
      if (info.name == n) title = info.title;
    csv += id + ",\"PG-19-style (kvlab, Debian-packaged public-domain text): " + title + "\",,debian:" + n + "\n";
    ids.push_back(id);
  }
  write_file_atomic((fs::path(out_dir) / "metadata.csv").string(), csv);
  return ids;
}

}  // namespace kvlab::datasets
