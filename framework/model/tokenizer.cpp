// Tokenizer from a Hugging Face tokenizer.json (see tokenizer.h). Encode pipeline, in the order
// of transformers.js's Tokenizer.encode_text (the reference, tests/tokenizer):
//   1. split the raw text on added tokens whose normalized=false (leftmost, then longest match),
//      honouring lstrip/rstrip (neighbouring whitespace dropped) and single_word;
//   2. each remaining section: normalizer (NFC, Prepend, Replace, Sequence), then a second split
//      on normalized added tokens;
//   3. pre-tokenizer (Split regex Isolated, ByteLevel, Metaspace, Sequence) -> pieces;
//   4. BPE per piece (TokenizerImpl::bpe below): ignore_merges, word cache, heap merge by rank,
//      byte_fallback, unk, fuse_unk.
// Decode runs the decoder chain (ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace).
// Text must be valid UTF-8 (an Error names the byte offset otherwise).
#include "framework/core/utf8.h"
#include "framework/model/tokenizer.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cctype>
#include <cstdio>
#include <functional>
#include <mutex>
#include <queue>
#include <unordered_map>

#include "framework/core/error.h"
#include "framework/core/file_io.h"

namespace kvlab::model::detail {

size_t utf8_char_len(unsigned char c);

struct ByteLevelMap {
  std::array<std::string, 256> byte_to_str;        // byte -> UTF-8 of its GPT-2 symbol
  std::unordered_map<uint32_t, uint8_t> cp_to_byte;  // GPT-2 symbol code point -> byte
};

// A compiled PCRE2 pattern (UTF, UCP). Thread-safe: match data is per call.
class Regex {
 public:
  Regex(const std::string& pattern, bool literal, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // fn(begin, end) for each non-overlapping match, left to right; byte offsets into s.
  void for_each_match(std::string_view s, const std::function<void(size_t, size_t)>& fn) const;

 private:
  pcre2_code* code_ = nullptr;
};

struct AddedToken {
  std::string content;
  std::string match;  // what is searched: content, or normalize(content) when normalized
  int32_t id = 0;
  bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = false;
};

struct NormalizerStep {
  enum Kind { kNfc, kPrepend, kReplace } kind = kNfc;
  std::string text;                // Prepend: prefix; Replace: replacement
  std::shared_ptr<Regex> pattern;  // Replace
};

struct PreTokStep {
  enum Kind { kSplit, kByteLevel, kMetaspace } kind = kSplit;
  enum Prepend { kAlways, kFirst, kNever } prepend = kAlways;  // Metaspace
  std::shared_ptr<Regex> regex;  // Split pattern; ByteLevel GPT-2 regex (null: use_regex false)
  std::string text;              // Metaspace replacement
  bool add_prefix_space = false;  // ByteLevel
  bool split = true;              // Metaspace
};

struct DecoderStep {
  enum Kind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip, kMetaspace } kind = kByteLevel;
  std::string text;  // Replace: replacement; Strip: content; Metaspace: replacement
  std::shared_ptr<Regex> pattern;
  int64_t start = 0, stop = 0;  // Strip counts; Metaspace: start = 1 strips the first space
};

struct Segment {
  std::string text;
  int32_t added = -1;  // index into added tokens, or -1 for plain text
};

using Matcher = std::array<std::vector<int32_t>, 256>;  // first byte -> added, longest first

inline uint64_t merge_key(int32_t a, int32_t b) {
  return (uint64_t{static_cast<uint32_t>(a)} << 32) | static_cast<uint32_t>(b);
}

struct TokenizerImpl {
  std::string path;
  // Model vocabulary and the id space (ids < vocab_size; has_id marks used ids).
  std::unordered_map<std::string, int32_t> vocab;
  int64_t vocab_size = 0;
  std::vector<std::string> id_to_token;
  std::vector<uint8_t> has_id, special;
  std::vector<AddedToken> added;
  std::unordered_map<std::string, int32_t> added_by_content;  // content/match -> added index
  Matcher raw_matcher, norm_matcher;
  std::vector<NormalizerStep> normalizers;
  std::vector<PreTokStep> pretoks;
  std::vector<DecoderStep> decoders;
  bool has_decoder = false;
  // BPE: (left id, right id) -> (rank, merged id).
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;
  bool byte_fallback = false, fuse_unk = false, ignore_merges = false;
  std::string unk_token;
  std::optional<int32_t> unk_id;
  std::array<int32_t, 256> byte_ids{};  // <0xXX> ids, -1 where absent
  // True when no vocab token holds '▁' (U+2581) after another character than '▁': no merge can
  // then cross such a position, so a piece is cut there into independent words (SentencePiece
  // families without a pre-tokenizer would otherwise run BPE on a whole section, uncached).
  bool split_at_metaspace = false;
  // Word cache: piece -> ids, for pieces shorter than kMaxCachedPiece bytes.
  static constexpr size_t kMaxCachedPiece = 256;
  static constexpr size_t kMaxCacheEntries = 1 << 18;
  mutable std::mutex cache_mu;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  std::string normalize(std::string s) const;
  std::vector<std::string> pre_tokenize(std::string s, size_t section_index) const;
  void build_matchers();
  std::vector<Segment> split_added(std::string_view text, const Matcher& matcher) const;
  void bpe(std::string_view word, std::vector<int32_t>& out) const;
  void bpe_cached(std::string_view word, std::vector<int32_t>& out) const;
  void encode_pieces(const std::vector<std::string>& pieces, std::vector<int32_t>& out) const;
};

inline const std::string kMetaspace = "\xE2\x96\x81";  // U+2581 '▁'


// ---- BPE ---------------------------------------------------------------------------------------

// Merges one piece. Symbols start as code points (id -1 when the character is not in the vocab);
// a min-heap on (rank, position) applies the best merge first, lazily skipping stale entries.
// Cost O(n log n) in the piece's characters n.
void TokenizerImpl::bpe(std::string_view word, std::vector<int32_t>& out) const {
  struct Sym {
    int32_t id;
    int32_t prev, next;
    uint32_t begin, len;  // bytes of word
  };
  std::vector<Sym> syms;
  syms.reserve(word.size());
  std::string ch;
  for (size_t i = 0; i < word.size();) {
    const size_t n = std::min(utf8_char_len(static_cast<unsigned char>(word[i])), word.size() - i);
    ch.assign(word.substr(i, n));
    const auto it = vocab.find(ch);
    const int32_t k = static_cast<int32_t>(syms.size());
    syms.push_back({it == vocab.end() ? -1 : it->second, k - 1, k + 1, static_cast<uint32_t>(i),
                    static_cast<uint32_t>(n)});
    i += n;
  }
  if (syms.empty()) return;
  syms.back().next = -1;
  struct Cand {
    int32_t rank, pos, left, right;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push = [&](int32_t pos) {
    const int32_t nx = syms[pos].next;
    if (nx < 0 || syms[pos].id < 0 || syms[nx].id < 0) return;
    const auto it = merges.find(merge_key(syms[pos].id, syms[nx].id));
    if (it != merges.end()) heap.push({it->second.first, pos, syms[pos].id, syms[nx].id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(syms.size()); ++i) push(i);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    Sym& l = syms[c.pos];
    // Stale: the left symbol merged (id changed or removed) or its right neighbour changed.
    if (l.id != c.left || l.next < 0 || syms[l.next].id != c.right) continue;
    Sym& r = syms[l.next];
    l.id = merges.at(merge_key(c.left, c.right)).second;
    l.len += r.len;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = c.pos;
    r.id = -2;  // removed
    if (l.prev >= 0) push(l.prev);
    push(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = syms[i].next) {
    const Sym& s = syms[i];
    if (s.id >= 0) {
      out.push_back(s.id);
      continue;
    }
    bool all_bytes = byte_fallback;
    for (uint32_t b = 0; all_bytes && b < s.len; ++b)
      all_bytes = byte_ids[static_cast<unsigned char>(word[s.begin + b])] >= 0;
    if (all_bytes) {
      for (uint32_t b = 0; b < s.len; ++b)
        out.push_back(byte_ids[static_cast<unsigned char>(word[s.begin + b])]);
    } else if (unk_id) {
      out.push_back(*unk_id);
    }  // else: dropped, as transformers.js and tokenizers do without an unk token
  }
}

void TokenizerImpl::bpe_cached(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (word.size() >= kMaxCachedPiece) {
    bpe(word, out);
    return;
  }
  const std::string key(word);
  {
    std::lock_guard<std::mutex> lock(cache_mu);
    const auto it = cache.find(key);
    if (it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  bpe(word, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  std::lock_guard<std::mutex> lock(cache_mu);
  if (cache.size() >= kMaxCacheEntries) cache.clear();
  cache.emplace(key, std::move(ids));
}

void TokenizerImpl::encode_pieces(const std::vector<std::string>& pieces,
                                  std::vector<int32_t>& out) const {
  const size_t first = out.size();
  for (const auto& p : pieces) {
    if (p.empty()) continue;
    if (ignore_merges) {  // a whole piece present in the vocab is emitted directly (Llama-3)
      const auto it = vocab.find(p);
      if (it != vocab.end()) {
        out.push_back(it->second);
        continue;
      }
    }
    if (!split_at_metaspace) {
      bpe_cached(p, out);
      continue;
    }
    size_t start = 0;
    for (size_t pos = p.find(kMetaspace, 1); pos != std::string::npos;
         pos = p.find(kMetaspace, pos + kMetaspace.size())) {
      if (pos >= kMetaspace.size() &&
          p.compare(pos - kMetaspace.size(), kMetaspace.size(), kMetaspace) == 0)
        continue;  // inside a run of '▁'
      bpe_cached(std::string_view(p).substr(start, pos - start), out);
      start = pos;
    }
    bpe_cached(std::string_view(p).substr(start), out);
  }
  if (fuse_unk && unk_id) {  // consecutive unknowns of one section collapse into one
    size_t w = first;
    for (size_t i = first; i < out.size(); ++i) {
      if (out[i] == *unk_id && w > first && out[w - 1] == *unk_id) continue;
      out[w++] = out[i];
    }
    out.resize(w);
  }
}

}  // namespace kvlab::model::detail

namespace kvlab::model {

using json = nlohmann::json;
using detail::TokenizerImpl;

namespace detail {

size_t utf8_char_len(unsigned char c) {
  return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

std::optional<size_t> invalid_utf8_offset(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    if (c < 0x80) { ++i; continue; }
    size_t len;
    uint32_t cp, min;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; min = 0x10000; }
    else return i;
    if (i + len > n) return i;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::nullopt;
}

uint32_t decode_utf8_at(std::string_view s, size_t i, size_t* len) {
  const auto c = static_cast<unsigned char>(s[i]);
  const size_t n = utf8_char_len(c);
  uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < n && i + k < s.size(); ++k)
    cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  *len = n;
  return cp;
}

const ByteLevelMap& byte_level_map() {
  // GPT-2 bytes_to_unicode: printable bytes ! .. ~, ¡ .. ¬, ® .. ÿ map to themselves; the other
  // 68 bytes map, in byte order, to U+0100, U+0101, ...
  static const ByteLevelMap m = [] {
    ByteLevelMap r;
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      const uint32_t cp = keep ? b : next++;
      append_utf8(cp, r.byte_to_str[b]);
      r.cp_to_byte[cp] = static_cast<uint8_t>(b);
    }
    return r;
  }();
  return m;
}

// ---- Regex (PCRE2, UTF + UCP) ------------------------------------------------------------------

Regex::Regex(const std::string& pattern, bool literal, const std::string& where) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  const uint32_t opts = literal ? (PCRE2_UTF | PCRE2_LITERAL) : (PCRE2_UTF | PCRE2_UCP);
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), opts, &err,
                        &err_off, nullptr);
  if (!code_) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof(buf));
    fail(where, ": cannot compile regex '", pattern, "' at offset ", err_off, ": ",
         reinterpret_cast<const char*>(buf));
  }
  // JIT is a speed-up only: pcre2_match uses it when compiled and the interpreter otherwise,
  // with identical results.
  pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);
}

Regex::~Regex() {
  if (code_) pcre2_code_free(code_);
}

void Regex::for_each_match(std::string_view s,
                           const std::function<void(size_t, size_t)>& fn) const {
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
  KVLAB_CHECK(md != nullptr) << "pcre2_match_data_create_from_pattern failed";
  struct Guard {
    pcre2_match_data* md;
    ~Guard() { pcre2_match_data_free(md); }
  } guard{md};
  size_t off = 0;
  while (off <= s.size()) {
    // The text was validated as UTF-8 once; NO_UTF_CHECK keeps repeated matching O(n).
    const int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), off,
                               PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(rc, buf, sizeof(buf));
      fail("tokenizer regex match failed at byte ", off, ": ", reinterpret_cast<const char*>(buf));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t b = ov[0], e = ov[1];
    if (e < b) fail("tokenizer regex: \\K in lookaround is not supported");
    fn(b, e);
    if (e > b) {
      off = e;
    } else {  // empty match: step one character, as JS String.matchAll does
      if (e >= s.size()) break;
      off = e + utf8_char_len(static_cast<unsigned char>(s[e]));
    }
  }
}

}  // namespace detail

namespace {

using detail::AddedToken;
using detail::DecoderStep;
using detail::NormalizerStep;
using detail::PreTokStep;

const json& require(const json& obj, const char* key, const std::string& where) {
  if (!obj.is_object() || !obj.contains(key))
    fail(where, ": missing key '", key, "'");
  return obj.at(key);
}

bool get_bool(const json& obj, const char* key, bool dflt, const std::string& where) {
  if (!obj.contains(key) || obj.at(key).is_null()) return dflt;
  const json& v = obj.at(key);
  if (!v.is_boolean()) fail(where, ".", key, ": expected a boolean, got ", v.type_name());
  return v.get<bool>();
}

std::string get_string(const json& obj, const char* key, const std::string& where) {
  const json& v = require(obj, key, where);
  if (!v.is_string()) fail(where, ".", key, ": expected a string, got ", v.type_name());
  return v.get<std::string>();
}

int32_t get_id(const json& v, const std::string& where) {
  if (!v.is_number_integer()) fail(where, ": expected an integer id, got ", v.type_name());
  const int64_t id = v.get<int64_t>();
  if (id < 0 || id >= (int64_t{1} << 31) - 1) fail(where, ": id ", id, " out of range");
  return static_cast<int32_t>(id);
}

// A Replace/Split "pattern": {"String": s} (literal) or {"Regex": r}.
std::shared_ptr<detail::Regex> parse_pattern(const json& p, const std::string& where) {
  if (!p.is_object()) fail(where, ".pattern: expected an object with String or Regex");
  if (p.contains("String") && p.at("String").is_string()) {
    const auto s = p.at("String").get<std::string>();
    if (s.empty()) fail(where, ".pattern.String: empty pattern");
    return std::make_shared<detail::Regex>(s, true, where + ".pattern.String");
  }
  if (p.contains("Regex") && p.at("Regex").is_string())
    return std::make_shared<detail::Regex>(p.at("Regex").get<std::string>(), false,
                                           where + ".pattern.Regex");
  fail(where, ".pattern: expected {\"String\": ...} or {\"Regex\": ...}");
}

void parse_normalizer(const json& n, const std::string& where, std::vector<NormalizerStep>& out) {
  if (n.is_null()) return;
  const std::string type = get_string(n, "type", where);
  NormalizerStep s;
  if (type == "Sequence") {
    const json& list = require(n, "normalizers", where);
    if (!list.is_array()) fail(where, ".normalizers: expected an array");
    for (size_t i = 0; i < list.size(); ++i)
      parse_normalizer(list[i], str(where, ".normalizers[", i, "]"), out);
    return;
  } else if (type == "NFC") {
    s.kind = NormalizerStep::kNfc;
  } else if (type == "Prepend") {
    s.kind = NormalizerStep::kPrepend;
    s.text = get_string(n, "prepend", where);
  } else if (type == "Replace") {
    s.kind = NormalizerStep::kReplace;
    s.pattern = parse_pattern(require(n, "pattern", where), where);
    s.text = get_string(n, "content", where);
  } else {
    fail(where, ".type: unsupported normalizer '", type,
         "' (supported: Sequence, NFC, Prepend, Replace)");
  }
  out.push_back(std::move(s));
}

void parse_pre_tokenizer(const json& p, const std::string& where, std::vector<PreTokStep>& out) {
  if (p.is_null()) return;
  const std::string type = get_string(p, "type", where);
  PreTokStep s;
  if (type == "Sequence") {
    const json& list = require(p, "pretokenizers", where);
    if (!list.is_array()) fail(where, ".pretokenizers: expected an array");
    for (size_t i = 0; i < list.size(); ++i)
      parse_pre_tokenizer(list[i], str(where, ".pretokenizers[", i, "]"), out);
    return;
  } else if (type == "Split") {
    s.kind = PreTokStep::kSplit;
    s.regex = parse_pattern(require(p, "pattern", where), where);
    const std::string behavior = get_string(p, "behavior", where);
    if (behavior != "Isolated")
      fail(where, ".behavior: unsupported Split behavior '", behavior, "' (supported: Isolated)");
    if (get_bool(p, "invert", false, where)) fail(where, ".invert: true is not supported");
  } else if (type == "ByteLevel") {
    s.kind = PreTokStep::kByteLevel;
    s.add_prefix_space = get_bool(p, "add_prefix_space", false, where);
    if (get_bool(p, "use_regex", true, where)) {
      // GPT-2's pre-tokenizer regex (tokenizers ByteLevel, use_regex = true).
      static const std::string kGpt2 =
          R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
      s.regex = std::make_shared<detail::Regex>(kGpt2, false, where + " (GPT-2 regex)");
    }
  } else if (type == "Metaspace") {
    s.kind = PreTokStep::kMetaspace;
    s.text = p.contains("replacement") ? get_string(p, "replacement", where) : "\u2581";
    if (s.text.empty()) fail(where, ".replacement: empty");
    std::string scheme = "always";
    if (p.contains("prepend_scheme")) {
      scheme = get_string(p, "prepend_scheme", where);
    } else if (p.contains("add_prefix_space")) {
      scheme = get_bool(p, "add_prefix_space", true, where) ? "always" : "never";
    }
    if (scheme == "always") s.prepend = PreTokStep::kAlways;
    else if (scheme == "first") s.prepend = PreTokStep::kFirst;
    else if (scheme == "never") s.prepend = PreTokStep::kNever;
    else fail(where, ".prepend_scheme: '", scheme, "' is not one of always, first, never");
    s.split = get_bool(p, "split", true, where);
  } else {
    fail(where, ".type: unsupported pre_tokenizer '", type,
         "' (supported: Sequence, Split, ByteLevel, Metaspace)");
  }
  out.push_back(std::move(s));
}

void parse_decoder(const json& d, const std::string& where, std::vector<DecoderStep>& out) {
  const std::string type = get_string(d, "type", where);
  DecoderStep s;
  if (type == "Sequence") {
    const json& list = require(d, "decoders", where);
    if (!list.is_array()) fail(where, ".decoders: expected an array");
    for (size_t i = 0; i < list.size(); ++i)
      parse_decoder(list[i], str(where, ".decoders[", i, "]"), out);
    return;
  } else if (type == "ByteLevel") {
    s.kind = DecoderStep::kByteLevel;
  } else if (type == "Replace") {
    s.kind = DecoderStep::kReplace;
    s.pattern = parse_pattern(require(d, "pattern", where), where);
    s.text = get_string(d, "content", where);
  } else if (type == "ByteFallback") {
    s.kind = DecoderStep::kByteFallback;
  } else if (type == "Fuse") {
    s.kind = DecoderStep::kFuse;
  } else if (type == "Strip") {
    s.kind = DecoderStep::kStrip;
    s.text = get_string(d, "content", where);
    if (s.text.empty()) fail(where, ".content: empty");
    const json& a = require(d, "start", where);
    const json& b = require(d, "stop", where);
    if (!a.is_number_unsigned() || !b.is_number_unsigned())
      fail(where, ": start/stop must be non-negative integers");
    s.start = static_cast<int64_t>(std::min<uint64_t>(a.get<uint64_t>(), 1u << 30));
    s.stop = static_cast<int64_t>(std::min<uint64_t>(b.get<uint64_t>(), 1u << 30));
  } else if (type == "Metaspace") {
    s.kind = DecoderStep::kMetaspace;
    s.text = d.contains("replacement") ? get_string(d, "replacement", where) : "\u2581";
    if (s.text.empty()) fail(where, ".replacement: empty");
    bool strip = true;
    if (d.contains("prepend_scheme")) strip = get_string(d, "prepend_scheme", where) != "never";
    else strip = get_bool(d, "add_prefix_space", true, where);
    s.start = strip ? 1 : 0;
  } else {
    fail(where, ".type: unsupported decoder '", type,
         "' (supported: Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace)");
  }
  out.push_back(std::move(s));
}

std::string replace_all(std::string_view s, const detail::Regex& re, const std::string& with) {
  std::string out;
  size_t prev = 0;
  re.for_each_match(s, [&](size_t b, size_t e) {
    out.append(s.substr(prev, b - prev));
    out += with;
    prev = e;
  });
  out.append(s.substr(prev));
  return out;
}

bool is_word_byte(unsigned char c) {
  // single_word boundary test: ASCII alphanumerics, '_' and any non-ASCII byte count as word
  // characters (approximation of Unicode \w; the reference implementation ignores single_word).
  return std::isalnum(c) || c == '_' || c >= 0x80;
}

bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

}  // namespace

// ---- Impl methods: normalization, pre-tokenization, added-token splitting ----------------------

namespace detail {

std::string TokenizerImpl::normalize(std::string s) const {
  for (const auto& n : normalizers) {
    switch (n.kind) {
      case NormalizerStep::kNfc: s = nfc(s); break;
      case NormalizerStep::kPrepend: if (!s.empty()) s = n.text + s; break;
      case NormalizerStep::kReplace: s = replace_all(s, *n.pattern, n.text); break;
    }
  }
  return s;
}

std::vector<std::string> TokenizerImpl::pre_tokenize(std::string s, size_t section_index) const {
  std::vector<std::string> pieces;
  pieces.push_back(std::move(s));
  const auto& bmap = byte_level_map();
  for (const auto& step : pretoks) {
    std::vector<std::string> next;
    next.reserve(pieces.size());
    for (auto& p : pieces) {
      switch (step.kind) {
        case PreTokStep::kSplit: {  // Isolated: matches and the gaps between them are pieces
          size_t prev = 0;
          step.regex->for_each_match(p, [&](size_t b, size_t e) {
            if (b > prev) next.emplace_back(p.substr(prev, b - prev));
            if (e > b) next.emplace_back(p.substr(b, e - b));
            prev = e;
          });
          if (prev < p.size()) next.emplace_back(p.substr(prev));
          break;
        }
        case PreTokStep::kByteLevel: {
          if (step.add_prefix_space && (p.empty() || p[0] != ' ')) p.insert(p.begin(), ' ');
          auto map_bytes = [&](std::string_view w) {
            std::string m;
            m.reserve(w.size() * 2);
            for (const char c : w) m += bmap.byte_to_str[static_cast<unsigned char>(c)];
            next.push_back(std::move(m));
          };
          if (step.regex) {
            step.regex->for_each_match(p, [&](size_t b, size_t e) {
              if (e > b) map_bytes(std::string_view(p).substr(b, e - b));
            });
          } else {
            map_bytes(p);
          }
          break;
        }
        case PreTokStep::kMetaspace: {
          std::string r;
          r.reserve(p.size() + step.text.size());
          const bool prepend = step.prepend == PreTokStep::kAlways ||
                               (step.prepend == PreTokStep::kFirst && section_index == 0);
          if (prepend && p.rfind(step.text, 0) != 0 && !(p.size() && p[0] == ' '))
            r += step.text;
          for (const char c : p) {
            if (c == ' ') r += step.text; else r += c;
          }
          if (!step.split) {
            next.push_back(std::move(r));
            break;
          }
          // split = true: cut before every replacement (MergedWithNext).
          size_t start = 0;
          for (size_t pos = r.find(step.text, 1); pos != std::string::npos;
               pos = r.find(step.text, pos + step.text.size())) {
            if (pos > start) next.emplace_back(r.substr(start, pos - start));
            start = pos;
          }
          if (start < r.size()) next.emplace_back(r.substr(start));
          break;
        }
      }
    }
    pieces = std::move(next);
  }
  return pieces;
}

void TokenizerImpl::build_matchers() {
  for (auto& m : raw_matcher) m.clear();
  for (auto& m : norm_matcher) m.clear();
  for (size_t i = 0; i < added.size(); ++i) {
    auto& a = added[i];
    if (a.normalized && !normalizers.empty()) {
      a.match = normalize(a.content);
      if (a.match.empty()) fail(path, ": added token '", a.content, "' normalizes to nothing");
      norm_matcher[static_cast<unsigned char>(a.match[0])].push_back(static_cast<int32_t>(i));
      added_by_content.emplace(a.match, static_cast<int32_t>(i));
    } else {
      a.match = a.content;
      raw_matcher[static_cast<unsigned char>(a.match[0])].push_back(static_cast<int32_t>(i));
    }
    added_by_content.emplace(a.content, static_cast<int32_t>(i));
  }
  auto by_len = [&](int32_t x, int32_t y) {
    const auto lx = added[x].match.size(), ly = added[y].match.size();
    return lx != ly ? lx > ly : x < y;
  };
  for (auto& m : raw_matcher) std::sort(m.begin(), m.end(), by_len);
  for (auto& m : norm_matcher) std::sort(m.begin(), m.end(), by_len);
}

std::vector<Segment> TokenizerImpl::split_added(std::string_view text,
                                                const Matcher& matcher) const {
  std::vector<Segment> segs;
  size_t start = 0;
  for (size_t i = 0; i < text.size();) {
    const auto& cands = matcher[static_cast<unsigned char>(text[i])];
    int32_t hit = -1;
    for (const int32_t c : cands) {  // longest first
      const auto& a = added[c];
      if (text.compare(i, a.match.size(), a.match) != 0) continue;
      if (a.single_word) {
        const size_t e = i + a.match.size();
        if ((i > 0 && is_word_byte(static_cast<unsigned char>(text[i - 1]))) ||
            (e < text.size() && is_word_byte(static_cast<unsigned char>(text[e]))))
          continue;
      }
      hit = c;
      break;
    }
    if (hit < 0) {
      ++i;
      continue;
    }
    if (i > start) segs.push_back({std::string(text.substr(start, i - start)), -1});
    segs.push_back({std::string(), hit});
    i += added[hit].match.size();
    start = i;
  }
  if (start < text.size()) segs.push_back({std::string(text.substr(start)), -1});
  // lstrip / rstrip: whitespace next to the token belongs to it (dropped from the neighbour).
  for (size_t k = 0; k < segs.size(); ++k) {
    if (segs[k].added < 0) continue;
    const auto& a = added[segs[k].added];
    if (a.lstrip && k > 0 && segs[k - 1].added < 0) {
      auto& t = segs[k - 1].text;
      while (!t.empty() && is_ascii_space(t.back())) t.pop_back();
    }
    if (a.rstrip && k + 1 < segs.size() && segs[k + 1].added < 0) {
      auto& t = segs[k + 1].text;
      size_t n = 0;
      while (n < t.size() && is_ascii_space(t[n])) ++n;
      t.erase(0, n);
    }
  }
  return segs;
}

}  // namespace detail

// ---- Tokenizer --------------------------------------------------------------------------------

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

struct Tokenizer::Impl : TokenizerImpl {};

Tokenizer Tokenizer::from_json(const std::string& json_text, const std::string& path) {
  auto impl = std::make_unique<Impl>();
  TokenizerImpl& t = *impl;
  t.path = path;
  try {
    const json root = json::parse(json_text);
    if (!root.is_object()) fail(path, ": expected a JSON object at the top level");
    const json& model = require(root, "model", path);
    const std::string mw = path + ": model";
    if (!model.is_object()) fail(mw, ": expected an object");
    const std::string type = model.contains("type") ? get_string(model, "type", mw) : "BPE";
    if (type != "BPE") fail(mw, ".type: unsupported model '", type, "' (supported: BPE)");
    if (model.contains("dropout") && !model.at("dropout").is_null() &&
        !(model.at("dropout").is_number() && model.at("dropout").get<double>() == 0.0))
      fail(mw, ".dropout: BPE dropout is not supported");
    for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      if (model.contains(k) && !model.at(k).is_null() &&
          !(model.at(k).is_string() && model.at(k).get<std::string>().empty()))
        fail(mw, ".", k, ": non-empty values are not supported");
    }
    t.byte_fallback = get_bool(model, "byte_fallback", false, mw);
    t.fuse_unk = get_bool(model, "fuse_unk", false, mw);
    t.ignore_merges = get_bool(model, "ignore_merges", false, mw);

    const json& vocab = require(model, "vocab", mw);
    if (!vocab.is_object()) fail(mw, ".vocab: expected an object token -> id");
    t.vocab.reserve(vocab.size());
    int64_t max_id = -1;
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      const int32_t id = get_id(it.value(), str(mw, ".vocab[\"", it.key(), "\"]"));
      t.vocab.emplace(it.key(), id);
      max_id = std::max<int64_t>(max_id, id);
    }
    const json added_json = root.contains("added_tokens") && !root.at("added_tokens").is_null()
                                ? root.at("added_tokens") : json::array();
    if (!added_json.is_array()) fail(path, ": added_tokens: expected an array");
    for (size_t i = 0; i < added_json.size(); ++i) {
      const std::string w = str(path, ": added_tokens[", i, "]");
      const json& a = added_json[i];
      AddedToken tok;
      tok.id = get_id(require(a, "id", w), w + ".id");
      tok.content = get_string(a, "content", w);
      if (tok.content.empty()) fail(w, ".content: empty added token");
      tok.special = get_bool(a, "special", false, w);
      tok.lstrip = get_bool(a, "lstrip", false, w);
      tok.rstrip = get_bool(a, "rstrip", false, w);
      tok.single_word = get_bool(a, "single_word", false, w);
      tok.normalized = get_bool(a, "normalized", !tok.special, w);
      max_id = std::max<int64_t>(max_id, tok.id);
      t.added.push_back(std::move(tok));
    }
    const size_t entries = t.vocab.size() + t.added.size();
    if (max_id >= static_cast<int64_t>(4 * entries + 1024))
      fail(path, ": ids are too sparse (largest id ", max_id, " for ", entries, " tokens)");
    t.vocab_size = max_id + 1;
    t.id_to_token.assign(static_cast<size_t>(t.vocab_size), std::string());
    t.has_id.assign(static_cast<size_t>(t.vocab_size), 0);
    t.special.assign(static_cast<size_t>(t.vocab_size), 0);
    for (const auto& [tok, id] : t.vocab) {
      if (t.has_id[id]) fail(mw, ".vocab: id ", id, " is used by two tokens ('", tok, "', '",
                             t.id_to_token[id], "')");
      t.id_to_token[id] = tok;
      t.has_id[id] = 1;
    }
    for (const auto& a : t.added) {
      t.id_to_token[a.id] = a.content;  // an added token may re-declare a vocabulary entry
      t.has_id[a.id] = 1;
      if (a.special) t.special[a.id] = 1;
    }

    if (model.contains("unk_token") && !model.at("unk_token").is_null()) {
      t.unk_token = get_string(model, "unk_token", mw);
      const auto it = t.vocab.find(t.unk_token);
      if (it == t.vocab.end()) fail(mw, ".unk_token: '", t.unk_token, "' is not in the vocab");
      t.unk_id = it->second;
    }
    t.split_at_metaspace = std::none_of(t.vocab.begin(), t.vocab.end(), [](const auto& kv) {
      const std::string& s = kv.first;
      for (size_t pos = s.find(detail::kMetaspace, 1); pos != std::string::npos;
           pos = s.find(detail::kMetaspace, pos + 1))
        if (pos < detail::kMetaspace.size() ||
            s.compare(pos - detail::kMetaspace.size(), detail::kMetaspace.size(),
                      detail::kMetaspace) != 0)
          return true;
      return false;
    });
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof(name), "<0x%02X>", b);
      const auto it = t.vocab.find(name);
      t.byte_ids[b] = it == t.vocab.end() ? -1 : it->second;
    }

    const json merges = model.contains("merges") && !model.at("merges").is_null()
                            ? model.at("merges") : json::array();
    if (!merges.is_array()) fail(mw, ".merges: expected an array");
    t.merges.reserve(merges.size());
    for (size_t r = 0; r < merges.size(); ++r) {
      const json& m = merges[r];
      std::string a, b;
      if (m.is_string()) {  // "a b"
        const auto s = m.get<std::string>();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
          fail(mw, ".merges[", r, "]: '", s, "' is not two tokens separated by one space");
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        a = m[0].get<std::string>();
        b = m[1].get<std::string>();
      } else {
        fail(mw, ".merges[", r, "]: expected \"a b\" or [\"a\", \"b\"]");
      }
      const auto ia = t.vocab.find(a), ib = t.vocab.find(b), im = t.vocab.find(a + b);
      if (ia == t.vocab.end() || ib == t.vocab.end() || im == t.vocab.end())
        fail(mw, ".merges[", r, "]: '", a, "' + '", b, "' or its result is not in the vocab");
      // First occurrence wins: a later duplicate has a worse rank and never applies.
      t.merges.emplace(detail::merge_key(ia->second, ib->second),
                       std::make_pair(static_cast<int32_t>(r), im->second));
    }

    if (root.contains("normalizer"))
      parse_normalizer(root.at("normalizer"), path + ": normalizer", t.normalizers);
    if (root.contains("pre_tokenizer"))
      parse_pre_tokenizer(root.at("pre_tokenizer"), path + ": pre_tokenizer", t.pretoks);
    if (root.contains("decoder") && !root.at("decoder").is_null()) {
      t.has_decoder = true;
      parse_decoder(root.at("decoder"), path + ": decoder", t.decoders);
    }
    t.build_matchers();
  } catch (const json::exception& e) {
    fail(path, ": invalid tokenizer.json: ", e.what());
  }
  return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::load(const std::string& path) {
  namespace fs = std::filesystem;
  std::string file = path;
  std::error_code ec;
  if (fs::is_directory(path, ec)) file = (fs::path(path) / "tokenizer.json").string();
  return from_json(read_file(file), file);
}

std::string gpt2_byte_char(int b) {
  KVLAB_CHECK(b >= 0 && b < 256) << "byte " << b;
  return detail::byte_level_map().byte_to_str[b];
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  const TokenizerImpl& t = *impl_;
  if (const auto bad = detail::invalid_utf8_offset(text))
    fail(t.path, ": encode: text is not valid UTF-8 at byte ", *bad);
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 8);
  const auto segs = t.split_added(text, t.raw_matcher);
  for (size_t k = 0; k < segs.size(); ++k) {
    const auto& seg = segs[k];
    if (seg.added >= 0) {
      ids.push_back(t.added[seg.added].id);
      continue;
    }
    if (seg.text.empty()) continue;
    const std::string norm = t.normalize(seg.text);
    if (norm.empty()) continue;
    const auto subs = t.split_added(norm, t.norm_matcher);
    for (const auto& sub : subs) {
      if (sub.added >= 0) {
        ids.push_back(t.added[sub.added].id);
        continue;
      }
      if (sub.text.empty()) continue;
      t.encode_pieces(t.pre_tokenize(sub.text, k), ids);
    }
  }
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  const TokenizerImpl& t = *impl_;
  std::vector<std::string> toks;
  std::vector<uint8_t> is_added;  // added tokens pass through the ByteLevel decoder verbatim
  toks.reserve(ids.size());
  for (const int32_t id : ids) {
    if (id < 0 || id >= t.vocab_size || !t.has_id[id])
      fail(t.path, ": decode: id ", id, " is not in the vocabulary (size ", t.vocab_size, ")");
    if (skip_special && t.special[id]) continue;
    toks.push_back(t.id_to_token[id]);
    is_added.push_back(t.added_by_content.count(t.id_to_token[id]) ? 1 : 0);
  }
  if (!t.has_decoder) {
    std::string out;
    for (size_t i = 0; i < toks.size(); ++i) out += (i ? " " : "") + toks[i];
    return out;
  }
  const auto& bmap = detail::byte_level_map();
  for (const auto& d : t.decoders) {
    std::vector<std::string> next;
    std::vector<uint8_t> next_added;
    switch (d.kind) {
      case DecoderStep::kByteLevel:
        for (size_t i = 0; i < toks.size(); ++i) {
          if (is_added[i]) continue;
          std::string bytes;
          const auto& s = toks[i];
          for (size_t p = 0; p < s.size();) {
            size_t len;
            const uint32_t cp = detail::decode_utf8_at(s, p, &len);
            const auto it = bmap.cp_to_byte.find(cp);
            if (it != bmap.cp_to_byte.end()) bytes += static_cast<char>(it->second);
            else bytes.append(s, p, len);  // not a byte symbol: kept as its UTF-8
            p += len;
          }
          toks[i] = std::move(bytes);
        }
        continue;
      case DecoderStep::kReplace:
        for (auto& s : toks) s = replace_all(s, *d.pattern, d.text);
        continue;
      case DecoderStep::kByteFallback: {
        // Runs of <0xXX> tokens become their raw bytes (kept even when not valid UTF-8).
        std::string run;
        bool in_run = false;
        for (size_t i = 0; i < toks.size(); ++i) {
          const auto& s = toks[i];
          unsigned v = 0;
          const bool is_byte = s.size() == 6 && s.compare(0, 3, "<0x") == 0 && s[5] == '>' &&
                               std::isxdigit(static_cast<unsigned char>(s[3])) &&
                               std::isxdigit(static_cast<unsigned char>(s[4])) &&
                               std::sscanf(s.c_str() + 3, "%2x", &v) == 1;
          if (is_byte) {
            run += static_cast<char>(v);
            in_run = true;
            continue;
          }
          if (in_run) {
            next.push_back(std::move(run));
            next_added.push_back(0);
            run.clear();
            in_run = false;
          }
          next.push_back(s);
          next_added.push_back(is_added[i]);
        }
        if (in_run) {
          next.push_back(std::move(run));
          next_added.push_back(0);
        }
        break;
      }
      case DecoderStep::kFuse: {
        std::string all;
        for (const auto& s : toks) all += s;
        next.push_back(std::move(all));
        next_added.push_back(0);
        break;
      }
      case DecoderStep::kStrip:
        for (auto& s : toks) {
          size_t b = 0, e = s.size();
          for (int64_t i = 0; i < d.start && s.compare(b, d.text.size(), d.text) == 0 &&
                              b + d.text.size() <= e; ++i)
            b += d.text.size();
          for (int64_t i = 0; i < d.stop && e >= b + d.text.size() &&
                              s.compare(e - d.text.size(), d.text.size(), d.text) == 0; ++i)
            e -= d.text.size();
          s = s.substr(b, e - b);
        }
        continue;
      case DecoderStep::kMetaspace:
        for (size_t i = 0; i < toks.size(); ++i) {
          std::string r;
          const auto& s = toks[i];
          for (size_t p = 0; p < s.size();) {
            if (s.compare(p, d.text.size(), d.text) == 0) {
              r += ' ';
              p += d.text.size();
            } else {
              r += s[p++];
            }
          }
          if (i == 0 && d.start && !r.empty() && r[0] == ' ') r.erase(0, 1);
          toks[i] = std::move(r);
        }
        continue;
    }
    toks = std::move(next);
    is_added = std::move(next_added);
  }
  std::string out;
  for (const auto& s : toks) out += s;
  return out;
}

int64_t Tokenizer::vocab_size() const { return impl_->vocab_size; }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  const std::string key(token);
  const auto a = impl_->added_by_content.find(key);
  if (a != impl_->added_by_content.end()) return impl_->added[a->second].id;
  const auto v = impl_->vocab.find(key);
  if (v != impl_->vocab.end()) return v->second;
  return std::nullopt;
}

std::string Tokenizer::id_to_token(int32_t id) const {
  if (id < 0 || id >= impl_->vocab_size) return {};
  return impl_->id_to_token[id];
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < impl_->vocab_size && impl_->special[id];
}

}  // namespace kvlab::model
