#include "datasets/text/corpus.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include "framework/core/error.h"

namespace kvlab::datasets {

namespace {

// `bible -f` labels, in canonical order, with the names used in book names.
struct KjvBook {
  const char* label;
  const char* name;
};
constexpr KjvBook kKjv[] = {
    {"Ge", "Genesis"},        {"Exo", "Exodus"},         {"Lev", "Leviticus"},
    {"Num", "Numbers"},       {"Deu", "Deuteronomy"},    {"Josh", "Joshua"},
    {"Jdgs", "Judges"},       {"Ruth", "Ruth"},          {"1Sm", "1_Samuel"},
    {"2Sm", "2_Samuel"},      {"1Ki", "1_Kings"},        {"2Ki", "2_Kings"},
    {"1Chr", "1_Chronicles"}, {"2Chr", "2_Chronicles"},  {"Ezra", "Ezra"},
    {"Neh", "Nehemiah"},      {"Est", "Esther"},         {"Job", "Job"},
    {"Psa", "Psalms"},        {"Prv", "Proverbs"},       {"Eccl", "Ecclesiastes"},
    {"SSol", "Song_of_Solomon"}, {"Isa", "Isaiah"},      {"Jer", "Jeremiah"},
    {"Lam", "Lamentations"},  {"Eze", "Ezekiel"},        {"Dan", "Daniel"},
    {"Hos", "Hosea"},         {"Joel", "Joel"},          {"Amos", "Amos"},
    {"Obad", "Obadiah"},      {"Jonah", "Jonah"},        {"Mic", "Micah"},
    {"Nahum", "Nahum"},       {"Hab", "Habakkuk"},       {"Zep", "Zephaniah"},
    {"Hag", "Haggai"},        {"Zec", "Zechariah"},      {"Mal", "Malachi"},
    {"Mat", "Matthew"},       {"Mark", "Mark"},          {"Luke", "Luke"},
    {"John", "John"},         {"Acts", "Acts"},          {"Rom", "Romans"},
    {"1Cor", "1_Corinthians"}, {"2Cor", "2_Corinthians"}, {"Gal", "Galatians"},
    {"Eph", "Ephesians"},     {"Phi", "Philippians"},    {"Col", "Colossians"},
    {"1Th", "1_Thessalonians"}, {"2Th", "2_Thessalonians"}, {"1Tim", "1_Timothy"},
    {"2Tim", "2_Timothy"},    {"Titus", "Titus"},        {"Phmn", "Philemon"},
    {"Heb", "Hebrews"},       {"Jas", "James"},          {"1Pet", "1_Peter"},
    {"2Pet", "2_Peter"},      {"1Jn", "1_John"},         {"2Jn", "2_John"},
    {"3Jn", "3_John"},        {"Jude", "Jude"},          {"Rev", "Revelation"},
};
const char* const kKjvHeldout[] = {"Ruth", "Esther", "Ecclesiastes", "Jonah", "Acts", "James"};

struct FileBook {
  const char* name;
  const char* title;
  const char* package;
  const char* split;
  std::vector<const char*> paths;  // first existing one is read
};
const std::vector<FileBook>& file_books() {
  static const std::vector<FileBook> books = {
      {"opticks", "Isaac Newton, Opticks (4th ed., 1730; Project Gutenberg)",
       "golang-github-andybalholm-brotli-dev", "heldout",
       {"/usr/share/gocode/src/github.com/andybalholm/brotli/testdata/Isaac.Newton-Opticks.txt",
        "/usr/share/go-1.19/src/testdata/Isaac.Newton-Opticks.txt"}},
      {"tom_sawyer", "Mark Twain, The Adventures of Tom Sawyer (1876; Project Gutenberg)",
       "golang-github-pierrec-lz4-dev", "train",
       {"/usr/share/gocode/src/github.com/pierrec/lz4/testdata/Mark.Twain-Tom.Sawyer.txt"}},
      {"sherlock", "Arthur Conan Doyle, The Adventures of Sherlock Holmes (1892; Project Gutenberg #1661)",
       "golang-github-pierrec-lz4-dev", "train",
       {"/usr/share/gocode/src/github.com/pierrec/lz4/testdata/pg1661.txt"}},
  };
  return books;
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, ": cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// label -> clean text of each KJV book, from one `bible -f` run of the whole Bible.
const std::map<std::string, std::string>& kjv_books() {
  static std::once_flag once;
  static std::map<std::string, std::string> books;
  std::call_once(once, [] {
    FILE* p = popen("bible -f \"Gen1:1-Rev22:21\" 2>/dev/null", "r");
    if (!p) fail("kjv: cannot run `bible` (install the Debian package bible-kjv)");
    std::string out;
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    const int rc = pclose(p);
    if (rc != 0 || out.empty())
      fail("kjv: `bible -f` failed (is the Debian package bible-kjv installed?)");
    // Lines "Ge1:1 In the beginning ..."; a line without a label continues the previous verse.
    std::istringstream is(out);
    std::string line, book, chapter;
    std::map<std::string, std::string> result;
    while (std::getline(is, line)) {
      size_t i = 0;
      while (i < line.size() && std::isdigit(static_cast<unsigned char>(line[i])) && i == 0) ++i;
      while (i < line.size() && std::isalpha(static_cast<unsigned char>(line[i]))) ++i;
      const size_t name_end = i;
      while (i < line.size() && std::isdigit(static_cast<unsigned char>(line[i]))) ++i;
      const size_t ch_end = i;
      const bool labelled = name_end > 0 && ch_end > name_end && i < line.size() && line[i] == ':';
      if (labelled) {
        while (++i < line.size() && std::isdigit(static_cast<unsigned char>(line[i]))) {
        }
        const std::string b = line.substr(0, name_end), c = line.substr(name_end, ch_end - name_end);
        std::string& t = result[b];
        if (b != book || c != chapter) {
          if (!t.empty()) t += "\n\n";
        } else {
          t += ' ';
        }
        book = b;
        chapter = c;
        while (i < line.size() && line[i] == ' ') ++i;
        t.append(line, i, std::string::npos);
      } else if (!book.empty() && !line.empty()) {
        result[book] += ' ' + line;
      }
    }
    for (auto& [b, t] : result) t += '\n';
    books = std::move(result);
  });
  return books;
}

bool starts_with(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

}  // namespace

const std::vector<BookInfo>& book_registry() {
  static const std::vector<BookInfo> reg = [] {
    std::vector<BookInfo> r;
    for (const auto& b : kKjv) {
      bool held = false;
      for (const char* h : kKjvHeldout) held = held || std::string(h) == b.name;
      r.push_back({std::string("kjv/") + b.name, std::string("King James Bible: ") + b.name,
                   "bible-kjv", held ? "heldout" : "train"});
    }
    for (const auto& b : file_books()) r.push_back({b.name, b.title, b.package, b.split});
    return r;
  }();
  return reg;
}

std::string strip_gutenberg(const std::string& raw) {
  std::string text;
  text.reserve(raw.size());
  size_t start = raw.rfind("\xEF\xBB\xBF", 0) == 0 ? 3 : 0;
  for (size_t i = start; i < raw.size(); ++i)
    if (raw[i] != '\r') text += raw[i];
  std::istringstream is(text);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(is, line)) lines.push_back(line);
  size_t b = 0, e = lines.size();
  for (size_t i = 0; i < lines.size(); ++i)
    if (starts_with(lines[i], "*** START OF") || starts_with(lines[i], "***START OF")) {
      b = i + 1;
      break;
    }
  for (size_t i = b; i < lines.size(); ++i)
    if (starts_with(lines[i], "*** END OF") || starts_with(lines[i], "***END OF") ||
        starts_with(lines[i], "End of the Project Gutenberg") ||
        starts_with(lines[i], "End of Project Gutenberg")) {
      e = i;
      break;
    }
  while (b < e && lines[b].find_first_not_of(" \t") == std::string::npos) ++b;
  if (b < e && starts_with(lines[b], "Produced by"))
    while (b < e && lines[b].find_first_not_of(" \t") != std::string::npos) ++b;
  std::string out;
  for (size_t i = b; i < e; ++i) {
    out += lines[i];
    out += '\n';
  }
  return out;
}

std::string reflow_paragraphs(const std::string& text, bool strip_underscores) {
  std::istringstream is(text);
  std::string line, para, out;
  auto flush = [&] {
    if (para.empty()) return;
    if (!out.empty()) out += "\n\n";
    out += para;
    para.clear();
  };
  while (std::getline(is, line)) {
    if (strip_underscores) std::erase(line, '_');
    const size_t a = line.find_first_not_of(" \t");
    if (a == std::string::npos) {
      flush();
      continue;
    }
    const size_t z = line.find_last_not_of(" \t");
    if (!para.empty()) para += ' ';
    para.append(line, a, z - a + 1);
  }
  flush();
  if (!out.empty()) out += '\n';
  return out;
}

std::string load_book(const std::string& name) {
  if (starts_with(name, "kjv/")) {
    const std::string want = name.substr(4);
    for (const auto& b : kKjv)
      if (want == b.name) {
        const auto& books = kjv_books();
        const auto it = books.find(b.label);
        if (it == books.end()) fail(name, ": `bible -f` gave no verses for ", b.label);
        return it->second;
      }
  }
  for (const auto& b : file_books()) {
    if (name != b.name) continue;
    for (const char* p : b.paths)
      if (std::filesystem::exists(p)) return reflow_paragraphs(strip_gutenberg(read_all(p)), true);
    fail(name, ": ", b.paths[0], " not found (install the Debian package ", b.package, ")");
  }
  std::string known;
  for (const auto& b : book_registry()) known += (known.empty() ? "" : ", ") + b.name;
  fail("unknown book '", name, "' (known: ", known, ")");
}

std::vector<Document> corpus_split(const std::string& split) {
  if (split != "train" && split != "heldout")
    fail("corpus split '", split, "': expected train or heldout");
  std::vector<Document> docs;
  for (const auto& b : book_registry())
    if (b.split == split) docs.push_back({b.name, load_book(b.name)});
  return docs;
}

}  // namespace kvlab::datasets
