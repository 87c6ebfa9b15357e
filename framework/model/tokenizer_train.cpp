#include "framework/model/tokenizer_train.h"
#include "framework/model/tokenizer.h"

#include <algorithm>
#include <queue>

#include <nlohmann/json.hpp>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "framework/core/error.h"

namespace kvlab::model {

namespace {

constexpr int kBytes = 256;

inline uint64_t pair_key(int32_t a, int32_t b) {
  return (uint64_t{static_cast<uint32_t>(a)} << 32) | static_cast<uint32_t>(b);
}
inline int32_t key_left(uint64_t k) { return static_cast<int32_t>(k >> 32); }
inline int32_t key_right(uint64_t k) { return static_cast<int32_t>(k & 0xffffffffu); }

pcre2_code* as_code(void* p) { return static_cast<pcre2_code*>(p); }

struct HeapEntry {
  int64_t count;
  uint64_t key;
};
// Max-heap order: larger count first; equal counts: smaller (left, right) first.
struct HeapLess {
  bool operator()(const HeapEntry& x, const HeapEntry& y) const {
    if (x.count != y.count) return x.count < y.count;
    return x.key > y.key;
  }
};

}  // namespace

std::vector<std::string> default_special_tokens() {
  return {"<|begin_of_text|>", "<|end_of_text|>", "<|pad|>",        "<|sep|>",
          "<|reserved_0|>",    "<|reserved_1|>",  "<|reserved_2|>", "<|reserved_3|>"};
}

// ---- pre-token counting -------------------------------------------------------------------------

PreTokenCounter::PreTokenCounter(std::string pattern) : pattern_(std::move(pattern)) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern_.data()), pattern_.size(),
                                   PCRE2_UTF | PCRE2_UCP, &err, &err_off, nullptr);
  if (!code) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof(buf));
    fail("tokenizer train: cannot compile the pre-tokenizer regex at offset ", err_off, ": ",
         reinterpret_cast<const char*>(buf));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // speed only; results are identical
  code_ = code;
}

PreTokenCounter::~PreTokenCounter() {
  if (code_) pcre2_code_free(as_code(code_));
}

// Split with behaviour Isolated, as Tokenizer's pre-tokenizer does: matches and the gaps between
// them are pieces.
void PreTokenCounter::add(std::string_view text, std::string_view name) {
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(as_code(code_), nullptr);
  KVLAB_CHECK(md != nullptr) << "pcre2_match_data_create_from_pattern failed";
  struct Guard {
    pcre2_match_data* md;
    ~Guard() { pcre2_match_data_free(md); }
  } guard{md};
  auto piece = [&](size_t b, size_t e) {
    if (e <= b) return;
    ++counts_[std::string(text.substr(b, e - b))];
    ++pre_tokens_;
  };
  size_t off = 0, last = 0;
  uint32_t flags = 0;  // the first call validates the UTF-8 of the whole text
  while (off <= text.size()) {
    const int rc = pcre2_match(as_code(code_), reinterpret_cast<PCRE2_SPTR>(text.data()),
                               text.size(), off, flags, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(rc, buf, sizeof(buf));
      fail("tokenizer train: ", name, ": ", reinterpret_cast<const char*>(buf),
           rc <= PCRE2_ERROR_UTF8_ERR1 && rc >= PCRE2_ERROR_UTF8_ERR21 ? " (text is not valid UTF-8)"
                                                                       : "");
    }
    flags = PCRE2_NO_UTF_CHECK;
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t b = ov[0], e = ov[1];
    piece(last, b);
    piece(b, e);
    last = e;
    if (e > b) {
      off = e;
    } else {  // empty match: step one UTF-8 character
      if (e >= text.size()) break;
      size_t n = 1;
      while (e + n < text.size() && (static_cast<unsigned char>(text[e + n]) & 0xC0) == 0x80) ++n;
      off = e + n;
    }
  }
  piece(last, text.size());
  bytes_ += static_cast<int64_t>(text.size());
}

// ---- training -----------------------------------------------------------------------------------

BpeModel train_bpe(const PreTokenCounter& counter, const BpeTrainOptions& opts) {
  const int64_t n_special = static_cast<int64_t>(opts.special_tokens.size());
  if (opts.vocab_size < kBytes + n_special)
    fail("tokenizer train: vocab_size (", opts.vocab_size, ") must be >= ", kBytes + n_special,
         " (256 byte tokens + ", n_special, " special tokens)");
  if (opts.vocab_size > (int64_t{1} << 30)) fail("tokenizer train: vocab_size is too large");
  if (opts.min_frequency < 1) fail("tokenizer train: min_frequency must be >= 1");

  BpeModel m;
  m.pattern = counter.pattern();
  std::unordered_map<std::string, int32_t> token_id;
  for (int b = 0; b < kBytes; ++b) {
    m.tokens.emplace_back(1, static_cast<char>(b));
    m.special.push_back(0);
    token_id.emplace(m.tokens.back(), b);
  }
  for (const auto& s : opts.special_tokens) {
    if (s.empty()) fail("tokenizer train: empty special token");
    for (size_t i = kBytes; i < m.tokens.size(); ++i)
      if (m.tokens[i] == s) fail("tokenizer train: special token '", s, "' given twice");
    m.tokens.push_back(s);
    m.special.push_back(1);
  }

  // Words in byte order of their text (deterministic, independent of hash order).
  std::vector<const std::pair<const std::string, int64_t>*> entries;
  entries.reserve(counter.counts().size());
  for (const auto& e : counter.counts()) entries.push_back(&e);
  std::sort(entries.begin(), entries.end(),
            [](const auto* x, const auto* y) { return x->first < y->first; });
  const size_t n_words = entries.size();
  std::vector<std::vector<int32_t>> words(n_words);
  std::vector<int64_t> freq(n_words);
  for (size_t w = 0; w < n_words; ++w) {
    for (unsigned char c : entries[w]->first) words[w].push_back(c);
    freq[w] = entries[w]->second;
  }

  // Pair counts over all words (weighted by word frequency) and pair -> words holding it (may
  // list a word that no longer holds the pair; checked on use).
  std::unordered_map<uint64_t, int64_t> pair_count;
  std::unordered_map<uint64_t, std::vector<int32_t>> where;
  auto note_where = [&](uint64_t k, int32_t w) {
    auto& v = where[k];
    if (v.empty() || v.back() != w) v.push_back(w);
  };
  for (size_t w = 0; w < n_words; ++w) {
    const auto& s = words[w];
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      const uint64_t k = pair_key(s[i], s[i + 1]);
      pair_count[k] += freq[w];
      note_where(k, static_cast<int32_t>(w));
    }
  }
  std::priority_queue<HeapEntry, std::vector<HeapEntry>, HeapLess> heap;
  {
    std::vector<uint64_t> keys;
    keys.reserve(pair_count.size());
    for (const auto& [k, c] : pair_count) keys.push_back(k);
    std::sort(keys.begin(), keys.end());
    for (uint64_t k : keys) heap.push({pair_count[k], k});
  }

  std::vector<uint64_t> touched;
  while (static_cast<int64_t>(m.tokens.size()) < opts.vocab_size && !heap.empty()) {
    const HeapEntry top = heap.top();
    heap.pop();
    const auto it = pair_count.find(top.key);
    const int64_t cur = it == pair_count.end() ? 0 : it->second;
    if (cur != top.count) {  // stale: counts of old pairs only fall, so re-insert and retry
      if (cur > 0) heap.push({cur, top.key});
      continue;
    }
    if (cur < opts.min_frequency) break;
    const int32_t a = key_left(top.key), b = key_right(top.key);
    const std::string merged = m.tokens[a] + m.tokens[b];
    int32_t c;
    if (const auto t = token_id.find(merged); t != token_id.end()) {
      c = t->second;
    } else {
      c = static_cast<int32_t>(m.tokens.size());
      m.tokens.push_back(merged);
      m.special.push_back(0);
      token_id.emplace(merged, c);
    }
    m.merges.push_back({a, b, c, cur});

    std::vector<int32_t> holders = std::move(where[top.key]);
    where.erase(top.key);
    touched.clear();
    for (int32_t w : holders) {
      auto& s = words[w];
      bool has = false;
      for (size_t i = 0; i + 1 < s.size() && !has; ++i) has = s[i] == a && s[i + 1] == b;
      if (!has) continue;
      const int64_t f = freq[w];
      for (size_t i = 0; i + 1 < s.size(); ++i) pair_count[pair_key(s[i], s[i + 1])] -= f;
      // Left-to-right, non-overlapping replacement of (a, b) by c.
      size_t o = 0;
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          s[o++] = c;
          ++i;
        } else {
          s[o++] = s[i];
        }
      }
      s.resize(o);
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        const uint64_t k = pair_key(s[i], s[i + 1]);
        pair_count[k] += f;
        if (s[i] == c || s[i + 1] == c) {
          note_where(k, w);
          touched.push_back(k);
        }
      }
    }
    pair_count.erase(top.key);
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (uint64_t k : touched) heap.push({pair_count[k], k});
  }
  return m;
}

BpeModel train_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& opts) {
  PreTokenCounter counter(opts.pattern);
  for (size_t i = 0; i < texts.size(); ++i) counter.add(texts[i], str("text ", i));
  return train_bpe(counter, opts);
}

// ---- tokenizer.json -----------------------------------------------------------------------------

std::string bpe_tokenizer_json(const BpeModel& m) {
  using OJson = nlohmann::ordered_json;
  std::array<std::string, kBytes> bc;
  for (int b = 0; b < kBytes; ++b) bc[b] = gpt2_byte_char(b);
  auto visible = [&](const std::string& raw) {
    std::string s;
    for (unsigned char ch : raw) s += bc[ch];
    return s;
  };
  OJson vocab = OJson::object();
  OJson added = OJson::array();
  for (size_t id = 0; id < m.tokens.size(); ++id) {
    if (m.special[id]) {
      added.push_back(OJson{{"id", id},
                            {"content", m.tokens[id]},
                            {"single_word", false},
                            {"lstrip", false},
                            {"rstrip", false},
                            {"normalized", false},
                            {"special", true}});
    } else {
      vocab[visible(m.tokens[id])] = id;
    }
  }
  OJson merges = OJson::array();
  for (const auto& mg : m.merges)
    merges.push_back(visible(m.tokens[mg.left]) + " " + visible(m.tokens[mg.right]));

  const OJson byte_level = {{"type", "ByteLevel"},
                            {"add_prefix_space", false},
                            {"trim_offsets", true},
                            {"use_regex", false}};
  OJson j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = added;
  j["normalizer"] = nullptr;
  // An empty pattern (e.g. model_init's merge-free byte vocabulary) needs no regex split.
  if (m.pattern.empty()) {
    j["pre_tokenizer"] = byte_level;
  } else {
    j["pre_tokenizer"] = {
        {"type", "Sequence"},
        {"pretokenizers",
         OJson::array({OJson{{"type", "Split"},
                             {"pattern", {{"Regex", m.pattern}}},
                             {"behavior", "Isolated"},
                             {"invert", false}},
                       byte_level})}};
  }
  j["post_processor"] = nullptr;
  j["decoder"] = byte_level;
  j["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", false},
                {"vocab", vocab},
                {"merges", merges}};
  return j.dump(2) + "\n";
}

}  // namespace kvlab::model
