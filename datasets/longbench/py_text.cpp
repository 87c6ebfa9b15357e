#include "datasets/longbench/py_text.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "framework/core/utf8.h"

namespace kvlab::datasets::py {
namespace {

struct CpRange {
  uint32_t lo, hi;
};
struct LowerEntry {
  uint32_t cp;
  uint32_t to[2];
};
#include "datasets/longbench/py_unicode_tables.inc"

template <size_t N>
bool in_ranges(const CpRange (&table)[N], char32_t c) {
  const auto* it = std::upper_bound(std::begin(table), std::end(table), static_cast<uint32_t>(c),
                                    [](uint32_t v, const CpRange& r) { return v < r.lo; });
  if (it == std::begin(table)) return false;
  --it;
  return c <= it->hi;
}

}  // namespace

U32 decode(std::string_view s) {
  U32 out;
  out.reserve(s.size());
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    int len = 0;
    uint32_t cp = 0, min = 0;
    if (b0 < 0x80) {
      out += static_cast<char32_t>(b0);
      ++i;
      continue;
    } else if ((b0 & 0xE0) == 0xC0) {
      len = 2, cp = b0 & 0x1F, min = 0x80;
    } else if ((b0 & 0xF0) == 0xE0) {
      len = 3, cp = b0 & 0x0F, min = 0x800;
    } else if ((b0 & 0xF8) == 0xF0) {
      len = 4, cp = b0 & 0x07, min = 0x10000;
    }
    bool ok = len > 0 && i + len <= n;
    for (int k = 1; ok && k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (b & 0x3F);
    }
    if (ok && (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))) ok = false;
    if (!ok) {
      out += U'\uFFFD';
      ++i;
      continue;
    }
    out += static_cast<char32_t>(cp);
    i += len;
  }
  return out;
}

std::string encode(std::u32string_view cps) {
  std::string out;
  out.reserve(cps.size());
  for (char32_t c : cps) append_utf8(static_cast<uint32_t>(c), out);
  return out;
}

bool is_space(char32_t c) { return in_ranges(kPySpace, c); }
bool is_word(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  return in_ranges(kPyWord, c);
}
bool is_decimal(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  return in_ranges(kPyDecimal, c);
}

namespace {

// CPython handle_capital_sigma: U+03A3 is final (-> U+03C2) in
// \p{cased}\p{case-ignorable}* U+03A3 !(\p{case-ignorable}*\p{cased}).
bool final_sigma(std::u32string_view s, size_t i) {
  size_t j = i;
  while (j > 0 && in_ranges(kPyCaseIgnorable, s[j - 1])) --j;
  if (j == 0 || !in_ranges(kPyCased, s[j - 1])) return false;
  size_t k = i + 1;
  while (k < s.size() && in_ranges(kPyCaseIgnorable, s[k])) ++k;
  return k == s.size() || !in_ranges(kPyCased, s[k]);
}

}  // namespace

U32 lower(std::u32string_view s) {
  U32 out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const char32_t c = s[i];
    if (c == 0x3A3) {
      out += final_sigma(s, i) ? U'\u03C2' : U'\u03C3';
      continue;
    }
    if (c < 0x80) {
      out += (c >= 'A' && c <= 'Z') ? c + 32 : c;
      continue;
    }
    const auto* it = std::lower_bound(std::begin(kPyLower), std::end(kPyLower), static_cast<uint32_t>(c),
                                      [](const LowerEntry& e, uint32_t v) { return e.cp < v; });
    if (it != std::end(kPyLower) && it->cp == c) {
      out += static_cast<char32_t>(it->to[0]);
      if (it->to[1]) out += static_cast<char32_t>(it->to[1]);
    } else {
      out += c;
    }
  }
  return out;
}

std::vector<U32> split(std::u32string_view s) {
  std::vector<U32> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_space(s[i])) ++i;
    size_t j = i;
    while (j < s.size() && !is_space(s[j])) ++j;
    if (j > i) out.emplace_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

U32 join_split(std::u32string_view s, std::u32string_view sep) {
  U32 out;
  bool first = true;
  for (const auto& w : split(s)) {
    if (!first) out += sep;
    out += w;
    first = false;
  }
  return out;
}

std::vector<U32> find_digit_runs(std::u32string_view s) {
  std::vector<U32> out;
  size_t i = 0;
  while (i < s.size()) {
    if (!is_decimal(s[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < s.size() && is_decimal(s[j])) ++j;
    out.emplace_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

std::vector<U32> split_lines(std::u32string_view s) {
  size_t b = 0;
  while (b < s.size() && s[b] == U'\n') ++b;
  s = s.substr(b);
  std::vector<U32> out;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == U'\n') {
      out.emplace_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  return out;
}

double round2(double x) {
  char buf[512];
  std::snprintf(buf, sizeof buf, "%.2f", x);
  return std::strtod(buf, nullptr);
}

std::string repr(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  if (x == 0) return std::signbit(x) ? "-0.0" : "0.0";
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, x, std::chars_format::scientific);
  const std::string sci(buf, r.ptr);  // [-]d[.ddd]e[+-]XX
  const size_t e = sci.find('e');
  const bool neg = sci[0] == '-';
  std::string digits;
  for (size_t i = neg ? 1 : 0; i < e; ++i)
    if (sci[i] != '.') digits += sci[i];
  const int exp10 = std::atoi(sci.c_str() + e + 1);
  const int decpt = exp10 + 1;
  std::string out = neg ? "-" : "";
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) {
      out.append("0.").append(static_cast<size_t>(-decpt), '0').append(digits);
    } else if (static_cast<size_t>(decpt) >= digits.size()) {
      out.append(digits).append(static_cast<size_t>(decpt) - digits.size(), '0').append(".0");
    } else {
      out.append(digits, 0, static_cast<size_t>(decpt)).append(".").append(digits, static_cast<size_t>(decpt));
    }
    return out;
  }
  out.append(digits, 0, 1);
  if (digits.size() > 1) out.append(".").append(digits, 1);
  char eb[16];
  std::snprintf(eb, sizeof eb, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
  return out + eb;
}

}  // namespace kvlab::datasets::py
