#include "datasets/needle/needle.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <deque>
#include <iterator>
#include <set>
#include <sstream>

#include "datasets/synthetic/tasks.h"
#include "datasets/text/text_source.h"
#include "framework/core/error.h"

namespace kvlab::datasets::needle {

namespace {

// RULER's noise haystack (benchmarks.md 3.3 and 3.4), one sentence per unit.
const char* const kNoise[] = {"The grass is green.", "The sky is blue.", "The sun is yellow.",
                              "Here we go.", "There and back again."};

// Keys: adjective-noun pairs (RULER draws them from wonderwords' lists; kvlab ships its own).
const char* const kAdjectives[] = {
    "quiet",  "bright", "hollow", "silver",  "ancient", "frozen", "gentle", "hidden", "golden",
    "rapid",  "lonely", "crimson", "distant", "humble", "narrow", "patient", "proud", "rusty",
    "sacred", "stormy", "tender", "velvet",  "wild",    "wooden", "brave",  "calm",   "clever",
    "dusty",  "eager",  "fierce", "grand",   "jolly",   "lucky",  "merry",  "noble",  "sturdy"};
const char* const kNouns[] = {
    "anchor", "badger", "candle", "dragon", "falcon", "garden", "harbor", "island", "jacket",
    "kettle", "ladder", "marble", "mirror", "orchard", "pebble", "pillar", "quarry", "rabbit",
    "saddle", "tunnel", "violin", "wagon",  "walrus", "beacon", "castle", "desert", "engine",
    "forest", "glacier", "hammer", "lantern", "meadow", "oyster", "parrot", "river", "tower"};

const char* const kSandwichNeedle =
    "The best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.";
const char* const kSandwichAnswer = "eat a sandwich and sit in Dolores Park on a sunny day.";

std::string subst(std::string s, const std::string& k, const std::string& v) {
  for (const auto& [ph, val] : {std::pair<std::string, std::string>{"{k}", k}, {"{v}", v}}) {
    for (size_t p = s.find(ph); p != std::string::npos; p = s.find(ph, p + val.size()))
      s.replace(p, ph.size(), val);
  }
  return s;
}

bool py_space(unsigned char c) { return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f); }

std::string py_strip(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && py_space(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && py_space(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::vector<std::string> py_split(const std::string& s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && py_space(static_cast<unsigned char>(s[i]))) ++i;
    size_t j = i;
    while (j < s.size() && !py_space(static_cast<unsigned char>(s[j]))) ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item = py_strip(item);
    out.push_back(item);
  }
  return out;
}

std::string seven_digits(Rng& rng) { return std::to_string(1000000 + rng.below(9000000)); }

}  // namespace

// ---- variants -------------------------------------------------------------------------------------

Variant parse_variant(const std::string& name) {
  const auto names = variant_names();
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] == name) return static_cast<Variant>(i);
  fail("unknown needle variant '", name, "' (known: single, multikey, multivalue, passkey, sandwich)");
}
std::string variant_name(Variant v) { return variant_names()[static_cast<size_t>(v)]; }
std::vector<std::string> variant_names() {
  return {"single", "multikey", "multivalue", "passkey", "sandwich"};
}

// ---- haystack -------------------------------------------------------------------------------------

std::vector<std::string> split_sentences(const std::string& t) {
  std::vector<std::string> out;
  size_t b = 0;
  auto emit = [&](size_t e) {
    size_t x = b, y = e;
    while (x < y && std::isspace(static_cast<unsigned char>(t[x]))) ++x;
    while (y > x && std::isspace(static_cast<unsigned char>(t[y - 1]))) --y;
    if (y > x) {
      std::string s = t.substr(x, y - x);
      std::replace(s.begin(), s.end(), '\n', ' ');
      std::replace(s.begin(), s.end(), '\r', ' ');
      out.push_back(std::move(s));
    }
    b = e;
  };
  for (size_t i = 0; i < t.size(); ++i) {
    const char c = t[i];
    if (c == '.' || c == '!' || c == '?') {
      size_t j = i + 1;
      while (j < t.size() && (t[j] == '"' || t[j] == '\'' || t[j] == ')' || t[j] == ']')) ++j;
      if (j >= t.size() || std::isspace(static_cast<unsigned char>(t[j]))) {
        emit(j);
        i = j > i ? j - 1 : i;
      }
    } else if (c == '\n' && i + 1 < t.size() && t[i + 1] == '\n') {
      emit(i);
    }
  }
  emit(t.size());
  return out;
}

Haystack::Haystack(const model::Tokenizer& tok, const std::string& spec) : spec_(spec) {
  std::vector<std::string> sents;
  if (spec == "noise") {
    noise_ = true;
    for (const char* s : kNoise) sents.push_back(s);
  } else {
    sents = split_sentences(load_text(spec));
  }
  for (const auto& s : sents) {
    auto ids = tok.encode(" " + s);
    if (!ids.empty()) sentences_.push_back(std::move(ids));
  }
  if (sentences_.empty()) fail("haystack '", spec, "': the text holds no sentences");
}

// ---- prompts --------------------------------------------------------------------------------------

Prompt build_prompt(const model::Tokenizer& tok, const Haystack& hay, const PromptOptions& opt,
                    int64_t context_length, double depth_percent, Rng& rng) {
  if (!(depth_percent >= 0 && depth_percent <= 100)) fail("needle depth ", depth_percent, " is outside [0, 100]");
  if (opt.wording != "heldout" && opt.wording != "train")
    fail("needle wording '", opt.wording, "': expected heldout or train");
  const int n = std::max(1, opt.num_needles);
  Prompt p;
  p.depth_requested = depth_percent;
  std::string intro, tail;
  std::vector<double> depths{depth_percent};  // of p.needles, asked first

  auto key = [&] {
    return std::string(kAdjectives[rng.below(std::size(kAdjectives))]) + "-" +
           kNouns[rng.below(std::size(kNouns))];
  };
  switch (opt.variant) {
    case Variant::kSingle:
    case Variant::kMultiKey: {
      const Template& t = templates("needle", opt.wording)[0];
      intro = t.intro;
      std::set<std::string> used;
      const int count = opt.variant == Variant::kSingle ? 1 : n;
      std::vector<std::string> keys, values;
      while (static_cast<int>(keys.size()) < count) {
        std::string k = key();
        if (!used.insert(k).second) continue;
        keys.push_back(k);
        values.push_back(seven_digits(rng));
      }
      for (int i = 0; i < count; ++i) p.needles.push_back(subst(t.fact, keys[i], values[i]));
      for (int i = 1; i < count; ++i) depths.push_back(100.0 * rng.uniform());
      p.key = keys[0];
      p.answers = {values[0]};
      tail = "\n" + subst(t.question, p.key, "") + " " + subst(t.prefix, p.key, "");
      break;
    }
    case Variant::kMultiValue: {
      if (opt.wording != "heldout")
        fail("needle variant multivalue exists in RULER's (held-out) wording only");
      // RULER's template with type_needle_v = "numbers" and several values (benchmarks.md 3.3).
      const Template& t = templates("needle", "heldout")[0];
      intro = "Some special magic numbers are hidden within the following text. Make sure to "
              "memorize it. I will quiz you about the numbers afterwards.";
      p.key = key();
      std::set<std::string> used;
      while (static_cast<int>(p.answers.size()) < n) {
        std::string v = seven_digits(rng);
        if (used.insert(v).second) p.answers.push_back(v);
      }
      for (int i = 0; i < n; ++i) p.needles.push_back(subst(t.fact, p.key, p.answers[i]));
      for (int i = 1; i < n; ++i) depths.push_back(depth_percent + i * (100.0 - depth_percent) / n);
      tail = "\nWhat are all the special magic numbers for " + p.key +
             " mentioned in the provided text? The special magic numbers for " + p.key +
             " mentioned in the provided text are";
      break;
    }
    case Variant::kPasskey: {
      const Template& t = templates("passkey", opt.wording)[0];
      intro = t.intro;
      const std::string v = std::to_string(1 + rng.below(49999));  // randint(1, 50000)
      p.needles = {subst(t.fact, "", v)};
      p.answers = {v};
      tail = "\n" + t.question + " " + t.prefix;
      break;
    }
    case Variant::kSandwich: {
      intro = "This is a very long story book: <book>";
      p.needles = {kSandwichNeedle};
      p.answers = {"eat a sandwich and sit in dolores park on a sunny day"};
      tail = " </book>.\n Based on the content of the book, Question: The best thing to do in San "
             "Francisco is: \nAnswer:";
      p.expected = kSandwichAnswer;
      break;
    }
  }
  if (p.expected.empty()) {
    for (const auto& a : p.answers) {
      if (!p.expected.empty()) p.expected += ' ';
      p.expected += a;
    }
  }

  // Fixed parts.
  std::vector<int32_t> head;
  if (opt.bos_id >= 0) head.push_back(opt.bos_id);
  const auto intro_ids = tok.encode(intro + "\n");
  head.insert(head.end(), intro_ids.begin(), intro_ids.end());
  const auto tail_ids = tok.encode(tail);
  std::vector<std::vector<int32_t>> needle_ids;
  int64_t fixed = static_cast<int64_t>(head.size() + tail_ids.size());
  for (const auto& s : p.needles) {
    needle_ids.push_back(tok.encode(" " + s));
    fixed += static_cast<int64_t>(needle_ids.back().size());
  }
  const int64_t budget = context_length - fixed;
  if (budget < 1)
    fail("needle prompt: context_length ", context_length, " is too short: the instruction, ",
         p.needles.size(), " needle(s) and the question already take ", fixed, " tokens");

  // Haystack sentences from a seeded start (noise always starts at its first sentence), as many
  // as cover the budget; the excess is cut from the FRONT of the first one (whole sentences
  // dropped first), so the haystack ends on a complete sentence and every offset between
  // sentences, 0 and the end included, is a boundary.
  struct Piece {
    const std::vector<int32_t>* ids;
    int64_t skip;  // tokens cut from its front
  };
  std::deque<Piece> pieces;
  int64_t total = 0;
  size_t i = hay.noise() ? 0 : rng.below(hay.size());
  while (total < budget) {
    const auto& s = hay.sentence(i++);
    pieces.push_back({&s, 0});
    total += static_cast<int64_t>(s.size());
  }
  while (total - static_cast<int64_t>(pieces.front().ids->size()) >= budget) {
    total -= static_cast<int64_t>(pieces.front().ids->size());
    pieces.pop_front();
  }
  pieces.front().skip = total - budget;
  std::vector<int64_t> pos{0};  // boundary token offsets
  for (const auto& pc : pieces) {
    p.max_sentence_tokens = std::max<int64_t>(p.max_sentence_tokens, static_cast<int64_t>(pc.ids->size()));
    pos.push_back(pos.back() + static_cast<int64_t>(pc.ids->size()) - pc.skip);
  }
  KVLAB_CHECK(pos.back() == budget);
  const size_t n_bounds = pos.size();
  p.haystack_tokens = budget;

  // Boundary index per needle.
  std::vector<size_t> at(p.needles.size());
  for (size_t j = 0; j < at.size(); ++j) {
    const double want = std::clamp(depths[j], 0.0, 100.0) / 100.0 * static_cast<double>(budget);
    size_t best = 0;
    for (size_t b = 1; b < n_bounds; ++b)
      if (std::abs(static_cast<double>(pos[b]) - want) < std::abs(static_cast<double>(pos[best]) - want))
        best = b;
    at[j] = best;
  }
  p.depth_actual = 100.0 * static_cast<double>(pos[at[0]]) / static_cast<double>(budget);

  // Assemble: needles at the same boundary keep their order (asked first).
  p.ids = head;
  p.context_begin = static_cast<int64_t>(p.ids.size());
  p.needle_pos.assign(p.needles.size(), 0);
  p.needle_len.assign(p.needles.size(), 0);
  for (size_t b = 0; b <= pieces.size(); ++b) {
    for (size_t j = 0; j < at.size(); ++j) {
      if (at[j] != b) continue;
      p.needle_pos[j] = static_cast<int64_t>(p.ids.size());
      p.needle_len[j] = static_cast<int64_t>(needle_ids[j].size());
      p.ids.insert(p.ids.end(), needle_ids[j].begin(), needle_ids[j].end());
    }
    if (b < pieces.size()) {
      const auto& v = *pieces[b].ids;
      p.ids.insert(p.ids.end(), v.begin() + pieces[b].skip, v.end());
    }
  }
  p.context_end = static_cast<int64_t>(p.ids.size());
  p.ids.insert(p.ids.end(), tail_ids.begin(), tail_ids.end());
  KVLAB_CHECK(static_cast<int64_t>(p.ids.size()) == context_length)
      << "prompt has " << p.ids.size() << " tokens, wanted " << context_length;
  return p;
}

// ---- scoring --------------------------------------------------------------------------------------

std::string ruler_clean(const std::string& prediction) {
  std::string s = py_strip(prediction);
  for (char& c : s)
    if (static_cast<unsigned char>(c) <= 0x1f) c = '\n';
  return py_strip(s);
}

double string_match_all(const std::string& prediction, const std::vector<std::string>& references) {
  if (references.empty()) return 0;
  const std::string pred = lower(ruler_clean(prediction));
  int hits = 0;
  for (const auto& r : references) hits += pred.find(lower(r)) != std::string::npos ? 1 : 0;
  return static_cast<double>(hits) / static_cast<double>(references.size());
}

double word_recall(const std::string& response, const std::string& expected) {
  const auto e = py_split(lower(expected));
  const std::set<std::string> want(e.begin(), e.end());
  if (want.empty()) return 0;
  const auto r = py_split(lower(response));
  const std::set<std::string> got(r.begin(), r.end());
  size_t hit = 0;
  for (const auto& w : want) hit += got.count(w);
  return static_cast<double>(hit) / static_cast<double>(want.size());
}

// ---- grid specs -----------------------------------------------------------------------------------

std::vector<double> parse_depths(const std::string& spec, const std::string& where) {
  auto bad = [&](const std::string& why) {
    fail(where, ": '", spec, "': ", why,
         " (expected linear:K, sigmoid:K or a list of percentages such as 0,50,100)");
  };
  std::vector<double> out;
  const bool lin = spec.rfind("linear:", 0) == 0, sig = spec.rfind("sigmoid:", 0) == 0;
  if (lin || sig) {
    const std::string ks = spec.substr(lin ? 7 : 8);
    size_t used = 0;
    int k = 0;
    try {
      k = std::stoi(ks, &used);
    } catch (...) {
      bad("K is not an integer");
    }
    if (used != ks.size() || k < 1) bad("K must be an integer >= 1");
    for (int i = 0; i < k; ++i) {
      // numpy linspace(0, 100, k): start + i * step, the last value exactly 100.
      double x = k == 1 ? 0.0 : (i == k - 1 ? 100.0 : 100.0 * i / (k - 1));
      x = std::nearbyint(x);  // gkamradt rounds (numpy round half to even, like nearbyint)
      if (sig && x != 0 && x != 100) {
        x = 100.0 / (1.0 + std::exp(0.1 * (x - 50)));
        x = std::nearbyint(x * 1000) / 1000;
      }
      out.push_back(x);
    }
  } else {
    for (const auto& item : split_list(spec)) {
      size_t used = 0;
      double d = -1;
      try {
        d = std::stod(item, &used);
      } catch (...) {
        bad("'" + item + "' is not a number");
      }
      if (used != item.size()) bad("'" + item + "' is not a number");
      if (!(d >= 0 && d <= 100)) bad("depth " + item + " is outside [0, 100]");
      out.push_back(d);
    }
  }
  if (out.empty()) bad("no depths");
  return out;
}

std::vector<int64_t> parse_lengths(const std::string& spec, const std::string& where) {
  std::vector<int64_t> out;
  for (const auto& item : split_list(spec)) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (...) {
      used = 0;
    }
    if (item.empty() || used != item.size() || v < 1)
      fail(where, ": '", item, "' is not a positive integer token count (expected e.g. 1024,2048,4096)");
    if (std::find(out.begin(), out.end(), v) != out.end()) fail(where, ": length ", v, " is listed twice");
    out.push_back(v);
  }
  if (out.empty()) fail(where, ": no context lengths");
  return out;
}

}  // namespace kvlab::datasets::needle
