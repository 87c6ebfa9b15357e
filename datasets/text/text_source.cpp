#include "datasets/text/text_source.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "datasets/text/corpus.h"
#include "framework/core/error.h"
#include "framework/core/file_io.h"

namespace kvlab::datasets {

namespace {

std::string run_bible(const std::string& range) {
  for (char c : range)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == ':' || c == '-' || c == ' '))
      fail("kjv:", range, ": a verse range may hold only letters, digits, ':', '-' and spaces");
  const std::string cmd = "bible -f \"" + range + "\" 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) fail("kjv:", range, ": cannot run `bible` (install the Debian package bible-kjv)");
  std::string out;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int rc = pclose(p);
  if (rc != 0 || out.empty())
    fail("kjv:", range, ": `bible -f` failed (is the Debian package bible-kjv installed?)");
  // Lines look like "Ge1:1 In the beginning ..." (continuation lines have no label); drop the
  // label so the text reads as prose.
  std::istringstream is(out);
  std::string line, text;
  while (std::getline(is, line)) {
    size_t i = 0;
    if (!line.empty() && std::isalnum(static_cast<unsigned char>(line[0]))) {
      const size_t sp = line.find(' ');
      const size_t colon = line.find(':');
      if (sp != std::string::npos && colon != std::string::npos && colon < sp &&
          std::isdigit(static_cast<unsigned char>(line[sp - 1])))
        i = sp + 1;
    }
    if (i >= line.size()) continue;
    if (!text.empty()) text += i ? "\n" : " ";
    text.append(line, i, std::string::npos);
  }
  return text + "\n";
}

}  // namespace

std::string load_text(const std::string& spec) {
  if (spec.rfind("kjv:", 0) == 0) return run_bible(spec.substr(4));
  if (spec.rfind("book:", 0) == 0) return load_book(spec.substr(5));
  if (spec.rfind("corpus:", 0) == 0) {
    std::string out;
    for (const auto& d : corpus_split(spec.substr(7))) out += (out.empty() ? "" : "\n\n") + d.text;
    return out;
  }
  const std::string path = spec.rfind("file:", 0) == 0 ? spec.substr(5) : spec;
  return read_file(path);
}

}  // namespace kvlab::datasets
