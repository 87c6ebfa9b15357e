#include "datasets/synthetic/tasks.h"

#include <algorithm>
#include <map>
#include <set>

#include "framework/core/error.h"

namespace kvlab::datasets {

namespace {

// ---- wording (train and held-out sets are disjoint; tests/datasets checks it) -------------------

const std::map<std::string, std::vector<Template>>& train_templates() {
  static const std::map<std::string, std::vector<Template>> t = {
      {"passkey",
       {{"There is an important number hidden in the text below. Find it and remember it.",
         "The secret code is {v}. Keep it in mind: {v}.", "What is the secret code?",
         "The secret code is"},
        {"A secret code is buried somewhere in the following passage. Memorize it; you will be asked for it.",
         "Remember this: the access number is {v}.", "Which access number was given?",
         "The access number is"},
        {"Read the text and keep track of the key number mentioned in it.",
         "The combination for the lock is {v}. Do not forget {v}.",
         "What is the combination for the lock?", "The combination is"},
        {"Somewhere in this document a key number appears. Remember it for later.",
         "Here is the hidden key: {v}. Memorize {v}.", "What was the hidden key?",
         "The hidden key was"},
        {"Look for a number in the following text; you will need it at the end.",
         "Important: the number to remember is {v}.", "Tell me the number to remember.",
         "The number to remember is"},
        {"The text below contains one password. Find it.", "The password for today is {v}.",
         "What is today's password?", "Today's password is"}}},
      {"needle",
       {{"Some facts are hidden in the following text. Remember them; you will be asked about one of them.",
         "The special number for {k} is {v}.", "What is the special number for {k}?",
         "The special number for {k} is"},
        {"Read the passage below carefully and note any numbers attached to names.",
         "Remember that {k} is associated with the value {v}.",
         "Which value is associated with {k}?", "The value associated with {k} is"},
        {"The following document contains records. Memorize the codes they list.",
         "In the records, the code of {k} is listed as {v}.", "What code is listed for {k}?",
         "The code listed for {k} is"},
        {"Hidden in this text are identification numbers. Keep them in mind.",
         "The item {k} carries the identification number {v}.",
         "What identification number does {k} carry?", "The identification number of {k} is"},
        {"Pay attention to the notes placed inside the text below.", "Note: {k} maps to {v}.",
         "What does {k} map to?", "The answer for {k} is"}}},
      {"kv",
       {{"Below is a list of keys, each followed by its value.", "{k}: {v}",
         "What is the value of key {k}?", "The value of key {k} is"},
        {"Here is a table of identifiers and their values.", "{k} -> {v}",
         "Which value does {k} point to?", "{k} points to"}}},
      {"copy",
       {{"Repeat the following words exactly.", "", "", "Repetition:"},
        {"Read these words; then write them again in the same order.", "", "", "Again:"}}},
      {"recall",
       {{"Each word below is followed by its partner.", "", "", "The partner of {k} is"},
        {"Remember which word comes right after each key word.", "", "",
         "The word after {k} is"}}},
  };
  return t;
}

const std::map<std::string, std::vector<Template>>& heldout_templates() {
  static const std::map<std::string, std::vector<Template>> t = {
      {"passkey",
       {{"There is an important info hidden inside a lot of irrelevant text. Find it and memorize "
         "them. I will quiz you about the important information there.",  // LongLoRA (3.4)
         "The pass key is {v}. Remember it. {v} is the pass key.", "What is the pass key?",
         "The pass key is"},
        {"Pay close attention to the following text; one figure in it matters.",
         "Write this down: the vault code equals {v}.", "What does the vault code equal?",
         "The vault code equals"},
        {"Among the sentences that follow, a single token of importance is hidden.",
         "The magic token you are looking for is {v}.", "Which magic token were you told about?",
         "The magic token is"}}},
      {"needle",
       {{"A special magic number is hidden within the following text. Make sure to memorize it. "
         "I will quiz you about the number afterwards.",  // RULER (3.3)
         "One of the special magic numbers for {k} is: {v}.",
         "What is the special magic number for {k} mentioned in the provided text?",
         "The special magic number for {k} mentioned in the provided text is"},
        {"Scattered through this story are figures that belong to people and things.",
         "A hidden figure belongs to {k}, and that figure is {v}.",
         "Which figure belongs to {k}?", "The figure that belongs to {k} is"},
        {"You will later be questioned about a detail of this text.",
         "Whoever asks about {k} should be told {v}.",
         "What should someone asking about {k} be told?", "They should be told"}}},
      {"kv",
       {{"JSON data:", "\"{k}\": \"{v}\",",
         "Key: \"{k}\". What is the corresponding value?", "The corresponding value is"}}},
      {"copy", {{"Copy this sequence word for word.", "", "", "Copy:"}}},
      {"recall", {{"Study the pairs of words listed below.", "", "", "Paired with {k} is"}}},
  };
  return t;
}

// RULER's noise haystack (benchmarks.md 3.3), one sentence per unit.
const char* const kNoise[] = {"The grass is green.", "The sky is blue.", "The sun is yellow.",
                              "Here we go.", "There and back again."};

const char* const kAdjectives[] = {
    "quiet",  "bright", "hollow", "silver", "ancient", "frozen",  "gentle", "hidden", "golden",
    "rapid",  "lonely", "crimson", "distant", "humble", "narrow", "patient", "proud",  "rusty",
    "sacred", "shy",    "stormy", "tender", "velvet", "wild",    "wooden", "brave",  "calm",
    "clever", "dusty",  "eager",  "fierce", "grand",  "jolly",   "keen",   "lucky",  "merry",
    "noble",  "odd",    "plain",  "quick",  "rare",   "sharp",   "silent", "sturdy", "sweet",
    "tidy",   "vast",   "warm",   "weary",  "young"};
const char* const kNouns[] = {
    "lantern", "river",  "falcon", "harbor", "meadow", "anchor", "candle", "castle",  "comet",
    "desert",  "engine", "feather", "forest", "garden", "glacier", "hammer", "island", "jacket",
    "kettle",  "ladder", "marble", "mirror", "needle", "orchard", "pebble", "pillar", "quarry",
    "ribbon",  "saddle", "shadow", "shovel", "spider", "statue", "tavern", "thistle", "tower",
    "tunnel",  "valley", "violin", "wagon",  "walnut", "willow", "window", "wizard", "badger",
    "beacon",  "bridge", "cabin",  "cellar", "compass"};

std::string subst(std::string s, const std::string& k, const std::string& v) {
  for (const auto& [ph, val] : {std::pair<std::string, const std::string*>{"{k}", &k}, {"{v}", &v}})
    for (size_t p = s.find(ph); p != std::string::npos; p = s.find(ph, p + val->size()))
      s.replace(p, ph.size(), *val);
  return s;
}

std::string digits(Rng& rng, int n) {
  std::string s(1, static_cast<char>('1' + rng.below(9)));
  for (int i = 1; i < n; ++i) s += static_cast<char>('0' + rng.below(10));
  return s;
}

std::string hex(Rng& rng, int n) {
  static const char* h = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < n; ++i) s += h[rng.below(16)];
  return s;
}

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\n");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t\n") - a + 1);
}

bool is_sentence_end(const std::string& t, size_t i) {
  const char c = t[i];
  return c == '.' || c == '!' || c == '?';
}

}  // namespace

// ---- Example ------------------------------------------------------------------------------------

std::vector<int32_t> Example::ids() const {
  std::vector<int32_t> out;
  for (const auto& s : segments) out.insert(out.end(), s.ids.begin(), s.ids.end());
  return out;
}
std::vector<uint8_t> Example::answer_mask() const {
  std::vector<uint8_t> out;
  for (const auto& s : segments) out.insert(out.end(), s.ids.size(), s.role == Role::kAnswer);
  return out;
}
std::vector<int32_t> Example::prompt_ids() const {
  std::vector<int32_t> out;
  for (const auto& s : segments) {
    if (s.role == Role::kAnswer) break;
    out.insert(out.end(), s.ids.begin(), s.ids.end());
  }
  return out;
}
std::vector<int32_t> Example::answer_ids() const {
  std::vector<int32_t> out;
  for (const auto& s : segments)
    if (s.role == Role::kAnswer) out.insert(out.end(), s.ids.begin(), s.ids.end());
  return out;
}
std::string Example::text() const {
  std::string out;
  for (const auto& s : segments) out += s.text;
  return out;
}
int64_t Example::size() const {
  int64_t n = 0;
  for (const auto& s : segments) n += static_cast<int64_t>(s.ids.size());
  return n;
}

const std::vector<Template>& templates(const std::string& task, const std::string& wording) {
  const std::string t = task == "multikey" ? "needle" : task;
  const auto& sets = wording == "train"     ? train_templates()
                     : wording == "heldout" ? heldout_templates()
                                            : (fail("wording '", wording, "': expected train or heldout"),
                                               train_templates());
  const auto it = sets.find(t);
  if (it == sets.end()) fail("no templates for task '", task, "'");
  return it->second;
}

std::vector<std::string> task_names() {
  return {"passkey", "needle", "multikey", "kv", "copy", "recall"};
}

// ---- TaskGenerator ------------------------------------------------------------------------------

TaskGenerator::TaskGenerator(const model::Tokenizer& tok, std::vector<Document> haystack,
                             std::string wording)
    : tok_(tok), docs_(std::move(haystack)), wording_(std::move(wording)) {
  templates("passkey", wording_);  // validates the wording
  // Sentences: end at . ! ? (plus closing quotes/brackets) followed by whitespace, or at a blank
  // line; 2..2000 bytes.
  for (size_t d = 0; d < docs_.size(); ++d) {
    const std::string& t = docs_[d].text;
    size_t b = 0;
    auto emit = [&](size_t e) {
      size_t x = b;
      while (x < e && std::isspace(static_cast<unsigned char>(t[x]))) ++x;
      size_t y = e;
      while (y > x && std::isspace(static_cast<unsigned char>(t[y - 1]))) --y;
      if (y - x >= 2 && y - x <= 2000) sentences_.push_back({static_cast<int32_t>(d), x, y});
      b = e;
    };
    for (size_t i = 0; i < t.size(); ++i) {
      if (is_sentence_end(t, i)) {
        size_t j = i + 1;
        while (j < t.size() && (t[j] == '"' || t[j] == '\'' || t[j] == ')')) ++j;
        if (j >= t.size() || std::isspace(static_cast<unsigned char>(t[j]))) {
          emit(j);
          i = j;
        }
      } else if (t[i] == '\n' && i + 1 < t.size() && t[i + 1] == '\n') {
        emit(i);
      }
    }
    emit(t.size());
  }
  // Word pool: single vocabulary tokens " word" (2+ lowercase ASCII letters), else built-ins.
  for (int64_t id = 0; id < tok_.vocab_size(); ++id) {
    if (tok_.is_special(static_cast<int32_t>(id))) continue;
    const std::string s = tok_.decode({static_cast<int32_t>(id)});
    if (s.size() < 3 || s[0] != ' ') continue;
    bool ok = true;
    for (size_t i = 1; i < s.size() && ok; ++i) ok = s[i] >= 'a' && s[i] <= 'z';
    if (ok) word_pool_.push_back({static_cast<int32_t>(id)});
  }
  if (word_pool_.size() < 64) {
    word_pool_.clear();
    for (const char* w : kAdjectives) word_pool_.push_back(encode(std::string(" ") + w));
    for (const char* w : kNouns) word_pool_.push_back(encode(std::string(" ") + w));
  }
}

std::string TaskGenerator::random_key(Rng& rng) const {
  const size_t na = std::size(kAdjectives), nn = std::size(kNouns);
  return std::string(kAdjectives[rng.below(na)]) + "-" + kNouns[rng.below(nn)];
}

std::vector<std::vector<int32_t>> TaskGenerator::random_words(Rng& rng, size_t n) const {
  KVLAB_CHECK(n <= word_pool_.size()) << "asked for " << n << " distinct words of " << word_pool_.size();
  std::set<size_t> used;
  std::vector<std::vector<int32_t>> out;
  while (out.size() < n) {
    const size_t i = rng.below(word_pool_.size());
    if (used.insert(i).second) out.push_back(word_pool_[i]);
  }
  return out;
}

std::vector<std::vector<int32_t>> TaskGenerator::haystack(Rng& rng, int64_t n, bool noise) {
  std::vector<std::vector<int32_t>> out;
  if (n <= 0) return out;
  if (!noise && sentences_.empty()) fail("task generator: the haystack documents hold no sentences");
  size_t i = noise ? 0 : rng.below(sentences_.size());
  int64_t total = 0;
  while (total < n) {
    std::string s;
    if (noise) {
      s = std::string(" ") + kNoise[i % std::size(kNoise)];
    } else {
      const Sentence& st = sentences_[i % sentences_.size()];
      s = " " + docs_[st.doc].text.substr(st.begin, st.end - st.begin);
      std::replace(s.begin(), s.end(), '\n', ' ');
    }
    ++i;
    auto ids = encode(s);
    last_cut_ = total + static_cast<int64_t>(ids.size()) > n;
    if (last_cut_) ids.resize(static_cast<size_t>(n - total));
    total += static_cast<int64_t>(ids.size());
    out.push_back(std::move(ids));
  }
  return out;
}

std::vector<int32_t> TaskGenerator::corpus_tokens(Rng& rng, int64_t n) {
  std::vector<int32_t> out;
  for (auto& s : haystack(rng, n, false)) out.insert(out.end(), s.begin(), s.end());
  return out;
}

Example TaskGenerator::with_haystack(const std::string& task, Rng& rng, int64_t target_tokens,
                                     const std::string& intro,
                                     const std::vector<std::string>& needles,
                                     std::vector<double> depths, size_t asked,
                                     const std::string& tail, const std::string& answer,
                                     bool noise) {
  Example ex;
  ex.task = task;
  auto seg = [&](std::string text, Role role) {
    Segment s{std::move(text), {}, role};
    s.ids = encode(s.text);
    return s;
  };
  Segment intro_seg = seg(intro + "\n", Role::kText);
  std::vector<Segment> needle_segs;
  for (const auto& n : needles) needle_segs.push_back(seg(" " + n, Role::kNeedle));
  Segment tail_seg = seg(tail, Role::kText);
  Segment answer_seg = seg(" " + answer, Role::kAnswer);
  Segment end_seg = seg(".", Role::kText);
  int64_t fixed = static_cast<int64_t>(intro_seg.ids.size() + tail_seg.ids.size() +
                                       answer_seg.ids.size() + end_seg.ids.size());
  for (const auto& s : needle_segs) fixed += static_cast<int64_t>(s.ids.size());
  const int64_t budget = std::max<int64_t>(0, target_tokens - fixed);
  const auto hay = haystack(rng, budget, noise);
  // Sentence boundaries b = 0..m at token offsets pos[b]; needle j goes to the boundary nearest
  // depths[j] * budget (earlier boundary on a tie).
  std::vector<int64_t> pos{0};
  for (const auto& h : hay) pos.push_back(pos.back() + static_cast<int64_t>(h.size()));
  // The end is a boundary only if the last sentence was not cut.
  size_t n_bounds = pos.size();
  if (!hay.empty() && last_cut_) n_bounds = pos.size() - 1;
  std::vector<size_t> at(needles.size());
  for (size_t j = 0; j < needles.size(); ++j) {
    const double want = depths[j] * static_cast<double>(budget);
    size_t best = 0;
    for (size_t b = 1; b < n_bounds; ++b)
      if (std::abs(static_cast<double>(pos[b]) - want) < std::abs(static_cast<double>(pos[best]) - want))
        best = b;
    at[j] = best;
  }
  std::vector<size_t> order(needles.size());
  for (size_t j = 0; j < order.size(); ++j) order[j] = j;
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return at[x] < at[y]; });

  ex.segments.push_back(std::move(intro_seg));
  Segment text{"", {}, Role::kText};
  auto flush = [&] {
    if (!text.ids.empty()) ex.segments.push_back(std::move(text));
    text = Segment{"", {}, Role::kText};
  };
  size_t next = 0;
  int64_t context_before_asked = 0, context = 0;
  for (size_t b = 0; b <= hay.size(); ++b) {
    while (next < order.size() && at[order[next]] == b) {
      flush();
      if (order[next] == asked) context_before_asked = context;
      context += static_cast<int64_t>(needle_segs[order[next]].ids.size());
      ex.segments.push_back(needle_segs[order[next]]);
      ++next;
    }
    if (b < hay.size()) {
      text.text += tok_.decode(hay[b]);
      text.ids.insert(text.ids.end(), hay[b].begin(), hay[b].end());
      context += static_cast<int64_t>(hay[b].size());
    }
  }
  flush();
  ex.segments.push_back(std::move(tail_seg));
  ex.segments.push_back(std::move(answer_seg));
  ex.segments.push_back(std::move(end_seg));
  ex.answer = trim(answer);
  ex.depth = context > 0 ? static_cast<double>(context_before_asked) / static_cast<double>(context) : 0;
  return ex;
}

Example TaskGenerator::passkey(Rng& rng, int64_t target_tokens, double depth) {
  const auto& ts = templates("passkey", wording_);
  const Template& intro = ts[rng.below(ts.size())];
  const Template& t = ts[rng.below(ts.size())];
  const std::string v = digits(rng, 5);
  if (depth < 0) depth = rng.uniform();
  const bool noise = sentences_.empty() || rng.uniform() < 0.5;
  return with_haystack("passkey", rng, target_tokens, intro.intro, {subst(t.fact, "", v)}, {depth},
                       0, "\n" + t.question + " " + t.prefix, v, noise);
}

Example TaskGenerator::needle(Rng& rng, int64_t target_tokens, double depth) {
  const auto& ts = templates("needle", wording_);
  const Template& intro = ts[rng.below(ts.size())];
  const Template& t = ts[rng.below(ts.size())];
  const std::string k = random_key(rng), v = digits(rng, 7);
  if (depth < 0) depth = rng.uniform();
  return with_haystack("needle", rng, target_tokens, intro.intro, {subst(t.fact, k, v)}, {depth}, 0,
                       "\n" + subst(t.question, k, v) + " " + subst(t.prefix, k, v), v,
                       sentences_.empty());
}

Example TaskGenerator::multikey(Rng& rng, int64_t target_tokens, int n_keys) {
  if (n_keys <= 0) n_keys = 2 + static_cast<int>(rng.below(5));
  const auto& ts = templates("needle", wording_);
  const Template& intro = ts[rng.below(ts.size())];
  const Template& t = ts[rng.below(ts.size())];
  std::set<std::string> keys;
  std::vector<std::string> facts, ks, vs;
  std::vector<double> depths;
  while (static_cast<int>(ks.size()) < n_keys) {
    const std::string k = random_key(rng);
    if (!keys.insert(k).second) continue;
    ks.push_back(k);
    vs.push_back(digits(rng, 7));
    facts.push_back(subst(t.fact, k, vs.back()));
    depths.push_back(rng.uniform());
  }
  const size_t asked = rng.below(ks.size());
  Example ex = with_haystack(
      "multikey", rng, target_tokens, intro.intro, facts, depths, asked,
      "\n" + subst(t.question, ks[asked], vs[asked]) + " " + subst(t.prefix, ks[asked], vs[asked]),
      vs[asked], sentences_.empty());
  return ex;
}

Example TaskGenerator::kv(Rng& rng, int64_t target_tokens) {
  const auto& ts = templates("kv", wording_);
  const Template& t = ts[rng.below(ts.size())];
  Example ex;
  ex.task = "kv";
  auto seg = [&](std::string text, Role role) {
    Segment s{std::move(text), {}, role};
    s.ids = encode(s.text);
    return s;
  };
  ex.segments.push_back(seg(t.intro, Role::kText));
  // Lines "\n" + fact until the next would not fit with the question (sized for the longest key).
  auto uuid = [&] { return hex(rng, 8) + "-" + hex(rng, 4); };
  const std::string probe = uuid();
  const int64_t reserve = static_cast<int64_t>(
      encode("\n" + subst(t.question, probe, probe) + " " + subst(t.prefix, probe, probe)).size() +
      encode(" " + probe).size() + encode(".").size());
  std::vector<std::pair<std::string, std::string>> kvs;
  std::vector<Segment> lines;
  int64_t used = ex.size();
  std::set<std::string> seen;
  while (true) {
    std::string k = uuid(), v = uuid();
    if (!seen.insert(k).second) continue;
    Segment line = seg("\n" + subst(t.fact, k, v), Role::kText);
    if (used + static_cast<int64_t>(line.ids.size()) + reserve > target_tokens && kvs.size() >= 1) break;
    used += static_cast<int64_t>(line.ids.size());
    kvs.emplace_back(std::move(k), std::move(v));
    lines.push_back(std::move(line));
  }
  const size_t asked = rng.below(kvs.size());
  int64_t before = 0, context = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i == asked) before = context;
    context += static_cast<int64_t>(lines[i].ids.size());
    lines[i].role = i == asked ? Role::kNeedle : Role::kText;
    ex.segments.push_back(std::move(lines[i]));
  }
  const auto& [k, v] = kvs[asked];
  ex.segments.push_back(seg("\n" + subst(t.question, k, v) + " " + subst(t.prefix, k, v), Role::kText));
  ex.segments.push_back(seg(" " + v, Role::kAnswer));
  ex.segments.push_back(seg(".", Role::kText));
  ex.answer = v;
  ex.depth = static_cast<double>(before) / static_cast<double>(std::max<int64_t>(1, context));
  return ex;
}

Example TaskGenerator::copy(Rng& rng, int64_t target_tokens) {
  const auto& ts = templates("copy", wording_);
  const Template& t = ts[rng.below(ts.size())];
  Example ex;
  ex.task = "copy";
  Segment intro{t.intro + "\n", {}, Role::kText};
  intro.ids = encode(intro.text);
  Segment tail{"\n" + t.prefix, {}, Role::kText};
  tail.ids = encode(tail.text);
  Segment end{".", encode("."), Role::kText};
  const int64_t fixed = static_cast<int64_t>(intro.ids.size() + tail.ids.size() + end.ids.size());
  // Words until 2 * words + fixed reaches the target.
  Segment seq{"", {}, Role::kText};
  while (true) {
    const auto w = word_pool_[rng.below(word_pool_.size())];
    if (fixed + 2 * static_cast<int64_t>(seq.ids.size() + w.size()) > target_tokens && !seq.ids.empty())
      break;
    seq.ids.insert(seq.ids.end(), w.begin(), w.end());
  }
  seq.text = tok_.decode(seq.ids);
  Segment ans{seq.text, seq.ids, Role::kAnswer};
  ex.segments = {std::move(intro), std::move(seq), std::move(tail), std::move(ans), std::move(end)};
  ex.answer = trim(ex.segments[3].text);
  ex.depth = 0;
  return ex;
}

Example TaskGenerator::recall(Rng& rng, int64_t target_tokens) {
  const auto& ts = templates("recall", wording_);
  const Template& t = ts[rng.below(ts.size())];
  Example ex;
  ex.task = "recall";
  Segment intro{t.intro + "\n", {}, Role::kText};
  intro.ids = encode(intro.text);
  const std::string probe_prefix = "\n" + subst(t.prefix, "xxxxxxxxxx", "");
  const int64_t fixed =
      static_cast<int64_t>(intro.ids.size() + encode(probe_prefix).size() + 2 + 1);
  // Pairs (key, value): keys distinct (so at most one pair per pool word), values drawn freely.
  const int64_t max_pairs = std::min<int64_t>(static_cast<int64_t>(word_pool_.size()),
                                              std::max<int64_t>(1, (target_tokens - fixed) / 2));
  std::vector<std::vector<int32_t>> words;
  int64_t n_pairs = 0, len = 0;
  {
    // Draw words two at a time while they fit.
    std::set<size_t> used_idx;
    while (n_pairs < max_pairs) {
      const size_t a = rng.below(word_pool_.size()), b = rng.below(word_pool_.size());
      if (used_idx.count(a)) continue;
      const int64_t add = static_cast<int64_t>(word_pool_[a].size() + word_pool_[b].size());
      if (fixed + len + add + static_cast<int64_t>(word_pool_[b].size()) > target_tokens && n_pairs > 0)
        break;
      used_idx.insert(a);
      words.push_back(word_pool_[a]);
      words.push_back(word_pool_[b]);
      len += add;
      ++n_pairs;
    }
  }
  const size_t asked = rng.below(static_cast<uint64_t>(n_pairs));
  Segment pairs{"", {}, Role::kText};
  int64_t before = 0;
  for (size_t i = 0; i < words.size(); ++i) {
    if (i == 2 * asked) before = static_cast<int64_t>(pairs.ids.size());
    pairs.ids.insert(pairs.ids.end(), words[i].begin(), words[i].end());
  }
  pairs.text = tok_.decode(pairs.ids);
  const std::string key = trim(tok_.decode(words[2 * asked]));
  Segment tail{"\n" + subst(t.prefix, key, ""), {}, Role::kText};
  tail.ids = encode(tail.text);
  Segment ans{tok_.decode(words[2 * asked + 1]), words[2 * asked + 1], Role::kAnswer};
  Segment end{".", encode("."), Role::kText};
  ex.depth = static_cast<double>(before) / static_cast<double>(std::max<size_t>(1, pairs.ids.size()));
  ex.answer = trim(ans.text);
  ex.segments = {std::move(intro), std::move(pairs), std::move(tail), std::move(ans), std::move(end)};
  return ex;
}

Example TaskGenerator::make(const std::string& task, Rng& rng, int64_t target_tokens) {
  if (task == "passkey") return passkey(rng, target_tokens);
  if (task == "needle") return needle(rng, target_tokens);
  if (task == "multikey") return multikey(rng, target_tokens);
  if (task == "kv") return kv(rng, target_tokens);
  if (task == "copy") return copy(rng, target_tokens);
  if (task == "recall") return recall(rng, target_tokens);
  fail("unknown synthetic task '", task, "' (known: passkey, needle, multikey, kv, copy, recall)");
}

}  // namespace kvlab::datasets
