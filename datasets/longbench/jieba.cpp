#include "datasets/longbench/jieba.h"

#include <array>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <unordered_map>

#include "datasets/longbench/py_text.h"
#include "framework/core/error.h"
#include "framework/core/file_io.h"

namespace kvlab::datasets {
namespace {

using U32 = std::u32string;
constexpr double kMinFloat = -3.14e100;  // finalseg MIN_FLOAT
constexpr int kB = 0, kM = 1, kE = 2, kS = 3;  // 'BMES' in the order the Viterbi loops
constexpr char kStateChar[4] = {'B', 'M', 'E', 'S'};
// finalseg PrevStatus: B<-'ES', M<-'MB', S<-'SE', E<-'BM' (iteration order kept; ties are decided
// by the tuple max on the state letter anyway).
constexpr int kPrev[4][2] = {{kE, kS}, {kM, kB}, {kB, kM}, {kS, kE}};

int state_index(const U32& key, const std::string& file) {
  if (key == U"B") return kB;
  if (key == U"M") return kM;
  if (key == U"E") return kE;
  if (key == U"S") return kS;
  fail(file, ": unexpected HMM state key '", py::encode(key), "'");
}

// A parser for the Python dict literals in finalseg/prob_*.py: `P={'B': {'\u4e00': -3.65, ...}, ...}`.
// Values are floats or nested dicts; keys are single-quoted strings with \uXXXX escapes.
struct PyDictParser {
  const std::string& text;
  const std::string& file;
  size_t pos = 0;

  int line() const {
    int l = 1;
    for (size_t i = 0; i < pos && i < text.size(); ++i) l += text[i] == '\n';
    return l;
  }
  [[noreturn]] void error(const std::string& what) const {
    fail(file, ":", line(), ": cannot parse HMM table: ", what);
  }
  void skip_ws() {
    while (pos < text.size() && (text[pos] == ' ' || text[pos] == '\n' || text[pos] == '\r' || text[pos] == '\t'))
      ++pos;
  }
  void expect(char c) {
    skip_ws();
    if (pos >= text.size() || text[pos] != c) error(std::string("expected '") + c + "'");
    ++pos;
  }
  U32 parse_string() {
    skip_ws();
    if (pos >= text.size() || (text[pos] != '\'' && text[pos] != '"')) error("expected a string key");
    const char q = text[pos++];
    std::string raw;
    U32 out;
    while (pos < text.size() && text[pos] != q) {
      if (text[pos] == '\\') {
        if (pos + 1 >= text.size()) error("dangling escape");
        const char e = text[pos + 1];
        if (e == 'u' && pos + 6 <= text.size()) {
          out += py::decode(raw);
          raw.clear();
          out += static_cast<char32_t>(std::strtoul(text.substr(pos + 2, 4).c_str(), nullptr, 16));
          pos += 6;
          continue;
        }
        if (e == '\\' || e == '\'' || e == '"') {
          raw += e;
          pos += 2;
          continue;
        }
        error(std::string("unsupported escape \\") + e);
      }
      raw += text[pos++];
    }
    if (pos >= text.size()) error("unterminated string");
    ++pos;
    out += py::decode(raw);
    return out;
  }
  double parse_number() {
    skip_ws();
    const char* begin = text.c_str() + pos;
    char* end = nullptr;
    const double v = std::strtod(begin, &end);
    if (end == begin) error("expected a number");
    pos += static_cast<size_t>(end - begin);
    return v;
  }
  // Calls on_entry(key) with pos at the value, for each entry of the dict at pos.
  template <class F>
  void parse_dict(F&& on_entry) {
    expect('{');
    skip_ws();
    while (pos < text.size() && text[pos] != '}') {
      U32 key = parse_string();
      expect(':');
      on_entry(key);
      skip_ws();
      if (pos < text.size() && text[pos] == ',') ++pos;
      skip_ws();
    }
    expect('}');
  }
  void seek_assignment() {
    const size_t p = text.find("P=");
    if (p == std::string::npos) error("no 'P=' assignment");
    pos = p + 2;
  }
};

}  // namespace

struct Jieba::Impl {
  std::unordered_map<U32, int64_t> freq;  // Tokenizer.FREQ: words and their prefixes (freq 0)
  int64_t total = 0;                      // Tokenizer.total
  double log_total = 0;
  double start[4] = {kMinFloat, kMinFloat, kMinFloat, kMinFloat};
  double trans[4][4];
  bool has_trans[4][4] = {};
  std::unordered_map<char32_t, double> emit[4];
  std::string provenance;

  void load_dict(const std::string& path);
  void load_hmm(const std::string& dir);

  // Tokenizer.FREQ.get(w) or 0 when absent (callers use `or 1` / truthiness as Python does).
  int64_t get(const U32& w) const {
    const auto it = freq.find(w);
    return it == freq.end() ? 0 : it->second;
  }
  bool contains(const U32& w) const { return freq.count(w) != 0; }

  void cut_dag(std::u32string_view sentence, std::vector<U32>& out) const;
  void finalseg_cut(std::u32string_view sentence, std::vector<U32>& out) const;
  void viterbi_cut(std::u32string_view sentence, std::vector<U32>& out) const;
};

void Jieba::Impl::load_dict(const std::string& path) {
  const std::string text = read_file(path);
  size_t pos = 0;
  int lineno = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string_view line(text.data() + pos, nl - pos);
    pos = nl + 1;
    ++lineno;
    // line.strip() on bytes: ASCII whitespace.
    auto is_ws = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; };
    while (!line.empty() && is_ws(line.front())) line.remove_prefix(1);
    while (!line.empty() && is_ws(line.back())) line.remove_suffix(1);
    // word, freq = line.split(' ')[:2]; freq = int(freq)
    const size_t sp = line.find(' ');
    if (sp == std::string_view::npos)
      fail("invalid dictionary entry in ", path, " at Line ", lineno, ": ", std::string(line));
    const std::string_view word8 = line.substr(0, sp);
    std::string_view f = line.substr(sp + 1);
    const size_t sp2 = f.find(' ');
    if (sp2 != std::string_view::npos) f = f.substr(0, sp2);
    if (f.empty() || f.find_first_not_of("0123456789") != std::string_view::npos)
      fail("invalid dictionary entry in ", path, " at Line ", lineno, ": ", std::string(line));
    const int64_t fr = std::strtoll(std::string(f).c_str(), nullptr, 10);
    const U32 word = py::decode(word8);
    freq[word] = fr;
    total += fr;
    for (size_t ch = 1; ch < word.size(); ++ch) freq.try_emplace(word.substr(0, ch), 0);
  }
  if (total <= 0) fail(path, ": empty jieba dictionary");
  log_total = std::log(static_cast<double>(total));
  provenance = kvlab::str("jieba-0.42.1-port dict=", path, " entries=", lineno, " total=", total, " hmm=on");
}

void Jieba::Impl::load_hmm(const std::string& dir) {
  {
    const std::string file = dir + "/finalseg/prob_start.py";
    const std::string text = read_file(file);
    PyDictParser p{text, file};
    p.seek_assignment();
    p.parse_dict([&](const U32& k) { start[state_index(k, file)] = p.parse_number(); });
  }
  {
    const std::string file = dir + "/finalseg/prob_trans.py";
    const std::string text = read_file(file);
    PyDictParser p{text, file};
    p.seek_assignment();
    p.parse_dict([&](const U32& k) {
      const int from = state_index(k, file);
      p.parse_dict([&](const U32& k2) {
        const int to = state_index(k2, file);
        trans[from][to] = p.parse_number();
        has_trans[from][to] = true;
      });
    });
  }
  {
    const std::string file = dir + "/finalseg/prob_emit.py";
    const std::string text = read_file(file);
    PyDictParser p{text, file};
    p.seek_assignment();
    p.parse_dict([&](const U32& k) {
      const int s = state_index(k, file);
      p.parse_dict([&](const U32& k2) {
        if (k2.size() != 1) p.error("emission key is not one character");
        emit[s][k2[0]] = p.parse_number();
      });
    });
  }
}

// finalseg.viterbi + finalseg.__cut on a run of [\u4E00-\u9FD5].
void Jieba::Impl::viterbi_cut(std::u32string_view obs, std::vector<U32>& out) const {
  const size_t n = obs.size();
  if (n == 0) return;
  auto em = [&](int y, char32_t c) {
    const auto it = emit[y].find(c);
    return it == emit[y].end() ? kMinFloat : it->second;
  };
  auto tr = [&](int from, int to) { return has_trans[from][to] ? trans[from][to] : kMinFloat; };
  std::vector<std::array<double, 4>> v(n);
  std::vector<std::array<int8_t, 4>> back(n);
  for (int y = 0; y < 4; ++y) v[0][y] = start[y] + em(y, obs[0]);
  for (size_t t = 1; t < n; ++t) {
    for (int y = 0; y < 4; ++y) {
      const double em_p = em(y, obs[t]);
      // max([(V[t-1][y0] + trans_p[y0].get(y, MIN_FLOAT) + em_p, y0) for y0 in PrevStatus[y]])
      int best = -1;
      double best_p = 0;
      for (int y0 : kPrev[y]) {
        const double p = v[t - 1][y0] + tr(y0, y) + em_p;
        if (best < 0 || p > best_p || (p == best_p && kStateChar[y0] > kStateChar[best])) best = y0, best_p = p;
      }
      v[t][y] = best_p;
      back[t][y] = static_cast<int8_t>(best);
    }
  }
  // max((V[-1][y], y) for y in 'ES')
  int state = (v[n - 1][kS] >= v[n - 1][kE]) ? kS : kE;
  std::vector<int> pos(n);
  for (size_t t = n; t-- > 0;) {
    pos[t] = state;
    if (t > 0) state = back[t][state];
  }
  size_t begin = 0, nexti = 0;
  for (size_t i = 0; i < n; ++i) {
    if (pos[i] == kB) {
      begin = i;
    } else if (pos[i] == kE) {
      out.emplace_back(obs.substr(begin, i + 1 - begin));
      nexti = i + 1;
    } else if (pos[i] == kS) {
      out.emplace_back(obs.substr(i, 1));
      nexti = i + 1;
    }
  }
  if (nexti < n) out.emplace_back(obs.substr(nexti));
}

namespace {
bool is_finalseg_han(char32_t c) { return c >= 0x4E00 && c <= 0x9FD5; }
bool is_ascii_alnum(char32_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
// re_han_default character class: [\u4E00-\u9FD5a-zA-Z0-9+#&\._%\-]
bool is_han_default(char32_t c) {
  return is_finalseg_han(c) || is_ascii_alnum(c) || c == '+' || c == '#' || c == '&' || c == '.' ||
         c == '_' || c == '%' || c == '-';
}
}  // namespace

// finalseg.cut.
void Jieba::Impl::finalseg_cut(std::u32string_view s, std::vector<U32>& out) const {
  size_t i = 0;
  while (i < s.size()) {
    size_t j = i;
    if (is_finalseg_han(s[i])) {
      while (j < s.size() && is_finalseg_han(s[j])) ++j;
      viterbi_cut(s.substr(i, j - i), out);
      i = j;
      continue;
    }
    while (j < s.size() && !is_finalseg_han(s[j])) ++j;
    // re_skip.split(blk) with "([a-zA-Z0-9]+(?:\.\d+)?%?)", non-empty pieces yielded.
    std::u32string_view blk = s.substr(i, j - i);
    size_t a = 0, gap = 0;
    while (a < blk.size()) {
      if (!is_ascii_alnum(blk[a])) {
        ++a;
        continue;
      }
      if (a > gap) out.emplace_back(blk.substr(gap, a - gap));
      size_t b = a;
      while (b < blk.size() && is_ascii_alnum(blk[b])) ++b;
      // (?:\.\d+)? : \d is Unicode Nd, but a block here holds only re_han_default characters.
      if (b + 1 < blk.size() && blk[b] == '.' && py::is_decimal(blk[b + 1])) {
        b += 1;
        while (b < blk.size() && py::is_decimal(blk[b])) ++b;
      }
      if (b < blk.size() && blk[b] == '%') ++b;
      out.emplace_back(blk.substr(a, b - a));
      a = gap = b;
    }
    if (blk.size() > gap) out.emplace_back(blk.substr(gap));
    i = j;
  }
}

// Tokenizer.get_DAG + calc + __cut_DAG on one re_han_default block.
void Jieba::Impl::cut_dag(std::u32string_view sentence, std::vector<U32>& out) const {
  const size_t n = sentence.size();
  std::vector<std::vector<size_t>> dag(n);
  U32 frag;
  for (size_t k = 0; k < n; ++k) {
    size_t i = k;
    frag.assign(1, sentence[k]);
    while (i < n) {
      const auto it = freq.find(frag);
      if (it == freq.end()) break;
      if (it->second) dag[k].push_back(i);
      ++i;
      if (i < n) frag += sentence[i];
    }
    if (dag[k].empty()) dag[k].push_back(k);
  }
  std::vector<double> route_p(n + 1, 0.0);
  std::vector<size_t> route_x(n + 1, 0);
  U32 w;
  for (size_t idx = n; idx-- > 0;) {
    bool first = true;
    double best_p = 0;
    size_t best_x = 0;
    for (size_t x : dag[idx]) {
      w.assign(sentence.substr(idx, x + 1 - idx));
      const int64_t f = get(w);
      const double p = (std::log(static_cast<double>(f ? f : 1)) - log_total) + route_p[x + 1];
      if (first || p > best_p || (p == best_p && x > best_x)) best_p = p, best_x = x;
      first = false;
    }
    route_p[idx] = best_p;
    route_x[idx] = best_x;
  }
  auto flush = [&](U32& buf) {
    if (buf.empty()) return;
    if (buf.size() == 1) {
      out.push_back(buf);
    } else if (!get(buf)) {
      finalseg_cut(buf, out);
    } else {
      for (char32_t c : buf) out.emplace_back(1, c);
    }
    buf.clear();
  };
  U32 buf;
  size_t x = 0;
  while (x < n) {
    const size_t y = route_x[x] + 1;
    if (y - x == 1) {
      buf += sentence[x];
    } else {
      flush(buf);
      out.emplace_back(sentence.substr(x, y - x));
    }
    x = y;
  }
  flush(buf);
}

Jieba::Jieba(const std::string& dir) : impl_(std::make_unique<Impl>()) {
  impl_->load_dict(dir + "/dict.txt");
  impl_->load_hmm(dir);
}
Jieba::~Jieba() = default;
Jieba::Jieba(Jieba&&) noexcept = default;

const std::string& Jieba::provenance() const { return impl_->provenance; }

std::vector<std::u32string> Jieba::cut32(std::u32string_view s) const {
  std::vector<U32> out;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = i;
    if (is_han_default(s[i])) {
      while (j < s.size() && is_han_default(s[j])) ++j;
      impl_->cut_dag(s.substr(i, j - i), out);
      i = j;
      continue;
    }
    while (j < s.size() && !is_han_default(s[j])) ++j;
    // re_skip_default.split(blk) with "(\r\n|\s)": "\r\n" is one token, every other code point
    // (space or not) is yielded alone.
    for (size_t k = i; k < j; ++k) {
      if (s[k] == U'\r' && k + 1 < j && s[k + 1] == U'\n') {
        out.emplace_back(U"\r\n");
        ++k;
      } else {
        out.emplace_back(1, s[k]);
      }
    }
    i = j;
  }
  return out;
}

std::vector<std::string> Jieba::cut(std::string_view text) const {
  std::vector<std::string> out;
  for (const auto& t : cut32(py::decode(text))) out.push_back(py::encode(t));
  return out;
}

std::string Jieba::default_dir() {
  if (const char* d = std::getenv("KVLAB_JIEBA_DIR"); d && *d) return d;
  return "/usr/lib/python3/dist-packages/jieba";
}

const Jieba& Jieba::shared() {
  static std::once_flag once;
  static std::unique_ptr<Jieba> inst;
  std::call_once(once, [] {
    const std::string dir = default_dir();
    try {
      inst = std::make_unique<Jieba>(dir);
    } catch (const Error& e) {
      fail("the Chinese LongBench metrics need jieba's model files in ", dir,
           " (Debian: apt-get install python3-jieba, or set KVLAB_JIEBA_DIR): ", e.what());
    }
  });
  return *inst;
}

}  // namespace kvlab::datasets
