#include "datasets/finetune/finetune_tasks.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include "datasets/text/corpus.h"
#include "datasets/text/text_source.h"
#include "framework/core/error.h"
#include "framework/core/params.h"
#include "framework/core/rng.h"

namespace kvlab::datasets {

namespace {

uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}
// True when `key` falls in the held-out share: a uniform in [0, 1) from (seed, key).
bool is_heldout(uint64_t seed, const std::string& key, double fraction) {
  const uint64_t h = mix64(fnv1a(key) ^ mix64(seed));
  return static_cast<double>(h >> 11) * 0x1.0p-53 < fraction;
}

void shuffle(std::vector<FtExample>& v, Rng& rng) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.below(i)]);
}

// Seeded shuffle, then the first n (0: all).
std::vector<FtExample> sample(std::vector<FtExample> pool, int64_t n, Rng& rng) {
  shuffle(pool, rng);
  if (n > 0 && static_cast<int64_t>(pool.size()) > n) pool.resize(static_cast<size_t>(n));
  return pool;
}

std::vector<std::string> words_of(const std::string& s) {
  std::istringstream is(s);
  std::vector<std::string> w;
  std::string x;
  while (is >> x) w.push_back(x);
  return w;
}

std::string strip_punct(const std::string& w) {
  size_t a = 0, b = w.size();
  while (a < b && !std::isalnum(static_cast<unsigned char>(w[a]))) ++a;
  while (b > a && !std::isalnum(static_cast<unsigned char>(w[b - 1]))) --b;
  return w.substr(a, b - a);
}

const char* const kSections[] = {"law", "history", "poetry", "prophets", "gospels", "epistles"};

void check_options(const FtTaskOptions& o) {
  if (o.n_train < 0) fail("task.n_train = ", o.n_train, ": must be >= 0 (0: every example)");
  if (o.n_heldout < 0) fail("task.n_heldout = ", o.n_heldout, ": must be >= 0 (0: every example)");
  if (!(o.heldout_fraction > 0 && o.heldout_fraction < 1))
    fail("task.heldout_fraction = ", o.heldout_fraction, ": must be in (0, 1)");
  if (o.passage_chars < 32) fail("task.passage_chars = ", o.passage_chars, ": must be >= 32");
}

// Classification: balanced round-robin over the labels (seeded order inside each label) until
// n examples (n = 0: until the smallest label's pool is used up).
std::vector<FtExample> balanced(const std::map<std::string, std::vector<FtExample>>& by_label,
                                int64_t n, Rng& rng) {
  std::vector<std::vector<FtExample>> pools;
  size_t smallest = SIZE_MAX;
  for (const auto& [label, v] : by_label) {
    pools.push_back(v);
    shuffle(pools.back(), rng);
    smallest = std::min(smallest, v.size());
  }
  std::vector<FtExample> out;
  for (size_t i = 0;; ++i) {
    bool any = false;
    for (auto& p : pools) {
      if (n > 0 && static_cast<int64_t>(out.size()) >= n) return out;
      if (n == 0 && i >= smallest) return out;
      if (i < p.size()) {
        out.push_back(p[i]);
        any = true;
      }
    }
    if (!any) return out;
  }
}

FtTask build_section(const FtTaskOptions& o) {
  FtTask t;
  t.name = "kjv_section";
  t.metric = "exact_match";
  for (const char* s : kSections) t.labels.push_back(s);
  // Verses up to 240 characters; a text that occurs under two labels is dropped, a text that
  // occurs twice under one label kept once (the split hashes the text, so it cannot straddle).
  std::map<std::string, std::set<std::string>> labels_of;
  std::map<std::string, std::string> first_ref;
  for (const auto& v : kjv_verses()) {
    if (v.text.size() > 240 || words_of(v.text).size() < 4) continue;
    labels_of[v.text].insert(kjv_section_of(v.book));
    first_ref.emplace(v.text, v.ref);
  }
  std::map<std::string, std::vector<FtExample>> train, held;
  for (const auto& [text, labels] : labels_of) {
    if (labels.size() != 1) continue;
    const std::string& label = *labels.begin();
    FtExample e{first_ref[text], "Verse: " + text + "\nSection:", " " + label, {label}};
    (is_heldout(o.seed, "verse:" + text, o.heldout_fraction) ? held : train)[label].push_back(e);
  }
  for (const auto& [l, v] : train) t.pool_train += static_cast<int64_t>(v.size());
  for (const auto& [l, v] : held) t.pool_heldout += static_cast<int64_t>(v.size());
  Rng rng(mix64(o.seed ^ 0x5ec7));
  t.train = balanced(train, o.n_train, rng);
  t.heldout = balanced(held, o.n_heldout, rng);
  return t;
}

FtTask build_genealogy(const FtTaskOptions& o) {
  FtTask t;
  t.name = "kjv_genealogy";
  t.metric = "exact_match";
  std::map<std::string, std::set<std::string>> fathers;  // son -> every father named
  for (const auto& [x, y] : kjv_begat_pairs())
    if (x != y) fathers[y].insert(x);
  std::vector<FtExample> train, held;
  for (const auto& [son, fs] : fathers) {
    if (fs.size() != 1) continue;
    const std::string& f = *fs.begin();
    FtExample e{"genealogy:" + son,
                "Question: Who was the father of " + son + "?\nAnswer:",
                " " + f,
                {normalize_answer(f)}};
    (is_heldout(o.seed, "son:" + son, o.heldout_fraction) ? held : train).push_back(e);
  }
  t.pool_train = static_cast<int64_t>(train.size());
  t.pool_heldout = static_cast<int64_t>(held.size());
  Rng rng(mix64(o.seed ^ 0x6e4));
  t.train = sample(std::move(train), o.n_train, rng);
  t.heldout = sample(std::move(held), o.n_heldout, rng);
  return t;
}

FtTask build_last_word(const FtTaskOptions& o) {
  FtTask t;
  t.name = "kjv_last_word";
  t.metric = "exact_match";
  // prompt text -> answers seen; a prompt seen with two answers is dropped.
  std::map<std::string, std::set<std::string>> answers;
  std::map<std::string, std::string> ref, shown;
  for (const auto& v : kjv_verses()) {
    if (v.text.size() > 240) continue;
    const auto w = words_of(v.text);
    if (w.size() < 6) continue;
    const std::string last = strip_punct(w.back());
    if (last.empty()) continue;
    std::string head;
    for (size_t i = 0; i + 1 < w.size(); ++i) head += (i ? " " : "") + w[i];
    answers[head].insert(last);
    ref.emplace(head, v.ref);
    shown.emplace(head, last);
  }
  std::vector<FtExample> train, held;
  for (const auto& [head, as] : answers) {
    if (as.size() != 1) continue;
    FtExample e{ref[head],
                "Complete the verse: " + head + "\nAnswer:",
                " " + shown[head],
                {normalize_answer(shown[head])}};
    (is_heldout(o.seed, "verse:" + head, o.heldout_fraction) ? held : train).push_back(e);
  }
  t.pool_train = static_cast<int64_t>(train.size());
  t.pool_heldout = static_cast<int64_t>(held.size());
  Rng rng(mix64(o.seed ^ 0x1a57));
  t.train = sample(std::move(train), o.n_train, rng);
  t.heldout = sample(std::move(held), o.n_heldout, rng);
  return t;
}

// Passages of about `chars` characters: paragraphs ("\n\n"-separated) packed greedily; a longer
// paragraph is cut after a sentence end (". ") or, failing that, a space.
std::vector<std::string> passages(const std::string& text, int64_t chars) {
  std::vector<std::string> paras;
  size_t i = 0;
  while (i < text.size()) {
    size_t j = text.find("\n\n", i);
    if (j == std::string::npos) j = text.size();
    std::string p = text.substr(i, j - i);
    while (static_cast<int64_t>(p.size()) > chars) {
      size_t cut = p.rfind(". ", static_cast<size_t>(chars));
      if (cut == std::string::npos || cut < static_cast<size_t>(chars) / 3)
        cut = p.rfind(' ', static_cast<size_t>(chars));
      if (cut == std::string::npos || cut == 0) cut = static_cast<size_t>(chars);
      paras.push_back(p.substr(0, cut + 1));
      p = p.substr(std::min(p.size(), cut + 1));
      while (!p.empty() && p[0] == ' ') p.erase(0, 1);
    }
    if (!p.empty()) paras.push_back(p);
    i = j + 2;
  }
  std::vector<std::string> out;
  std::string cur;
  for (auto& p : paras) {
    if (!cur.empty() && static_cast<int64_t>(cur.size() + 2 + p.size()) > chars) {
      out.push_back(cur);
      cur.clear();
    }
    cur += (cur.empty() ? "" : "\n\n") + p;
  }
  if (!cur.empty()) out.push_back(cur);
  // Very short tail passages (headings, a last line) carry little signal: keep >= chars / 4.
  std::vector<std::string> kept;
  for (auto& p : out)
    if (static_cast<int64_t>(p.size()) >= chars / 4) kept.push_back(std::move(p));
  return kept;
}

FtTask build_lm(const FtTaskOptions& o) {
  FtTask t;
  t.name = "lm";
  t.metric = "perplexity";
  const auto ps = passages(load_text(o.text), o.passage_chars);
  std::set<std::string> seen;
  std::vector<FtExample> train, held;
  for (size_t i = 0; i < ps.size(); ++i) {
    if (!seen.insert(ps[i]).second) continue;  // a repeated passage would straddle nothing; once
    FtExample e{o.text + ":" + std::to_string(i), "", ps[i], {}};
    (is_heldout(o.seed, "passage:" + ps[i], o.heldout_fraction) ? held : train).push_back(e);
  }
  if (train.empty() || held.empty())
    fail("task.text = ", o.text, ": only ", ps.size(), " passages of ", o.passage_chars,
         " characters; too short for a train and a held-out split");
  t.pool_train = static_cast<int64_t>(train.size());
  t.pool_heldout = static_cast<int64_t>(held.size());
  Rng rng(mix64(o.seed ^ 0x7e47));
  t.train = sample(std::move(train), o.n_train, rng);
  t.heldout = sample(std::move(held), o.n_heldout, rng);
  const auto orig = passages(load_text(o.original), o.passage_chars);
  std::vector<FtExample> op;
  for (size_t i = 0; i < orig.size(); ++i)
    op.push_back({o.original + ":" + std::to_string(i), "", orig[i], {}});
  t.original = sample(std::move(op), o.n_heldout, rng);
  return t;
}

}  // namespace

const std::vector<std::string>& finetune_task_names() {
  static const std::vector<std::string> n = {"kjv_section", "kjv_genealogy", "kjv_last_word", "lm"};
  return n;
}

std::string normalize_answer(const std::string& s) {
  const auto w = words_of(s);
  if (w.empty()) return "";
  std::string x = strip_punct(w[0]);
  for (char& c : x) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return x;
}

FtTask build_finetune_task(const FtTaskOptions& o) {
  check_options(o);
  if (o.task == "kjv_section") return build_section(o);
  if (o.task == "kjv_genealogy") return build_genealogy(o);
  if (o.task == "kjv_last_word") return build_last_word(o);
  if (o.task == "lm") return build_lm(o);
  std::string msg = str("task.name: unknown fine-tuning task '", o.task, "'");
  if (auto s = did_you_mean(o.task, finetune_task_names()))
    msg += str(" (did you mean '", *s, "'?)");
  fail(msg, "; known: kjv_section, kjv_genealogy, kjv_last_word, lm");
}

const std::vector<KjvVerse>& kjv_verses() {
  static std::once_flag once;
  static std::vector<KjvVerse> verses;
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
    // "Ge1:1 In the beginning ..."; a line without a label continues the previous verse. The
    // book index advances when the label's book part changes (canonical order).
    std::istringstream is(out);
    std::string line, book;
    std::vector<KjvVerse> v;
    int index = -1;
    while (std::getline(is, line)) {
      size_t i = 0;
      if (i < line.size() && std::isdigit(static_cast<unsigned char>(line[i]))) ++i;
      while (i < line.size() && std::isalpha(static_cast<unsigned char>(line[i]))) ++i;
      const size_t name_end = i;
      while (i < line.size() && std::isdigit(static_cast<unsigned char>(line[i]))) ++i;
      const size_t ch_end = i;
      const bool labelled = name_end > 0 && ch_end > name_end && i < line.size() && line[i] == ':';
      if (labelled) {
        while (++i < line.size() && std::isdigit(static_cast<unsigned char>(line[i]))) {
        }
        const std::string b = line.substr(0, name_end);
        if (b != book) ++index;
        book = b;
        KjvVerse x;
        x.book = index;
        x.ref = line.substr(0, i);
        while (i < line.size() && line[i] == ' ') ++i;
        x.text = line.substr(i);
        v.push_back(std::move(x));
      } else if (!v.empty() && !line.empty()) {
        v.back().text += ' ' + line;
      }
    }
    if (index != 65) fail("kjv: expected 66 books from `bible -f`, found ", index + 1);
    for (auto& x : v)
      while (!x.text.empty() && (x.text.back() == ' ' || x.text.back() == '\r')) x.text.pop_back();
    verses = std::move(v);
  });
  return verses;
}

const std::string& kjv_section_of(int book) {
  static const std::vector<std::string> s = [] {
    std::vector<std::string> r(66);
    for (int b = 0; b < 66; ++b) {
      // Canonical indices: 0-4 law, 5-16 history, 17-21 poetry, 22-38 prophets, 39-42 gospels,
      // 43 Acts (history), 44-64 epistles, 65 Revelation (prophets).
      r[b] = b < 5     ? "law"
             : b < 17  ? "history"
             : b < 22  ? "poetry"
             : b < 39  ? "prophets"
             : b < 43  ? "gospels"
             : b == 43 ? "history"
             : b < 65  ? "epistles"
                       : "prophets";
    }
    return r;
  }();
  if (book < 0 || book >= 66) fail("kjv_section_of: book index ", book, " outside [0, 66)");
  return s[static_cast<size_t>(book)];
}

std::vector<std::pair<std::string, std::string>> kjv_begat_pairs() {
  std::set<std::pair<std::string, std::string>> seen;
  std::vector<std::pair<std::string, std::string>> out;
  static const std::set<std::string> kNotNames = {"And",   "The",   "He",   "I",   "Now",
                                                  "These", "Which", "LORD", "God", "Who",
                                                  "For",   "Of",    "In",   "Also"};
  auto capital = [](const std::string& w) {
    return !w.empty() && std::isupper(static_cast<unsigned char>(w[0])) && !kNotNames.count(w);
  };
  auto add = [&](const std::string& father, const std::string& son) {
    if (father != son && seen.insert({father, son}).second) out.push_back({father, son});
  };
  for (const auto& v : kjv_verses()) {
    const auto w = words_of(v.text);
    for (size_t i = 1; i + 1 < w.size(); ++i) {
      // "X begat Y" (X the nearest capitalised word before, e.g. "And Seth lived ... and begat
      // Enos")
      if (strip_punct(w[i]) == "begat") {
        const std::string y = strip_punct(w[i + 1]);
        if (!capital(y)) continue;
        for (size_t j = i; j-- > 0;) {
          const std::string c = strip_punct(w[j]);
          if (!c.empty() && std::isupper(static_cast<unsigned char>(c[0]))) {
            if (capital(c)) add(c, y);
            break;
          }
        }
      }
      // "Y the son of X" / "Y, the son of X" (Y the word right before "the").
      if (i + 3 < w.size() && w[i] == "the" && w[i + 1] == "son" && w[i + 2] == "of") {
        const std::string y = strip_punct(w[i - 1]), x = strip_punct(w[i + 3]);
        // "Jesus of Nazareth, the son of Joseph": a place before "the son of" is not the son.
        const bool place = i >= 2 && (w[i - 2] == "of" || w[i - 2] == "in" || w[i - 2] == "from");
        if (capital(y) && capital(x) && !place) add(x, y);
      }
    }
  }
  return out;
}

}  // namespace kvlab::datasets
