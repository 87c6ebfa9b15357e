// SYNTHETIC LongBench-format samples from public-domain text (see synthetic.h).
#include "datasets/longbench/synthetic.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "framework/core/error.h"
#include "framework/core/params.h"
#include "framework/core/rng.h"

namespace kvlab::datasets::longbench {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

int64_t count_words(const std::string& s) {
  int64_t n = 0;
  bool in = false;
  for (char c : s) {
    if (is_space(c)) {
      in = false;
    } else if (!in) {
      in = true;
      ++n;
    }
  }
  return n;
}

struct Sentence {
  std::string text;
  size_t paragraph = 0;
  int64_t words = 0;
};

// Paragraphs split on blank lines, sentences after '.', '?' or '!' followed by a space.
std::vector<Sentence> split_sentences(const std::string& source) {
  std::vector<Sentence> out;
  size_t pos = 0, para = 0;
  while (pos < source.size()) {
    size_t end = source.find("\n\n", pos);
    if (end == std::string::npos) end = source.size();
    std::string p = source.substr(pos, end - pos);
    for (char& c : p)
      if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    size_t s = 0;
    for (size_t i = 0; i < p.size(); ++i) {
      const bool stop = (p[i] == '.' || p[i] == '?' || p[i] == '!') && (i + 1 == p.size() || p[i + 1] == ' ');
      if (!stop) continue;
      std::string t = p.substr(s, i + 1 - s);
      const size_t b = t.find_first_not_of(' ');
      if (b != std::string::npos) {
        t = t.substr(b);
        const int64_t w = count_words(t);
        if (w >= 4 && w <= 60) out.push_back({t, para, w});
      }
      s = i + 1;
    }
    ++para;
    pos = end + 2;
  }
  return out;
}

uint64_t mix(uint64_t h, uint64_t x) { return h ^ (x + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2)); }

uint64_t sample_seed(uint64_t seed, const std::string& task, int i) {
  uint64_t h = mix(0x73796e74686c62ull, seed);
  for (unsigned char c : task) h = mix(h, c);
  return mix(h, static_cast<uint64_t>(i));
}

// Consecutive sentences from a random start, grouped into the source's paragraphs, until about
// `words` words.
std::vector<std::string> excerpt(const std::vector<Sentence>& ss, int64_t words, Rng& rng) {
  std::vector<std::string> paras;
  size_t i = rng.below(ss.size());
  int64_t got = 0;
  size_t last_para = SIZE_MAX;
  for (size_t taken = 0; got < words && taken < ss.size(); ++taken, i = (i + 1) % ss.size()) {
    if (ss[i].paragraph != last_para || paras.empty()) {
      paras.emplace_back();
      last_para = ss[i].paragraph;
    } else {
      paras.back() += ' ';
    }
    paras.back() += ss[i].text;
    got += ss[i].words;
  }
  return paras;
}

std::string join(const std::vector<std::string>& xs, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < xs.size(); ++i) {
    if (i) out += sep;
    out += xs[i];
  }
  return out;
}

std::string numbered(const std::vector<std::string>& paras) {
  std::string out;
  for (size_t i = 0; i < paras.size(); ++i) {
    if (i) out += "\n\n";
    out += "Paragraph " + std::to_string(i + 1) + ": " + paras[i];
  }
  return out;
}

template <class T>
const T& pick(const std::vector<T>& xs, Rng& rng) {
  return xs[rng.below(xs.size())];
}

const std::vector<std::string> kFirst = {"Edwin",  "Martha", "Silas",  "Agnes", "Tobias", "Clara",
                                         "Jasper", "Hester", "Ambrose", "Lydia", "Gideon", "Rosalind"};
const std::vector<std::string> kLast = {"Harlow", "Penrose", "Whitcombe", "Ashby",  "Thorne", "Marlowe",
                                        "Fenwick", "Carrow", "Lindqvist", "Oakes", "Bramwell", "Dunmore"};
const std::vector<std::string> kRoles = {"keeper of the old mill",     "captain of the river boat",
                                         "teacher at the village school", "owner of the corner bakery",
                                         "guard at the north gate",    "doctor of the harbour town",
                                         "clerk of the county court",  "master of the glass works"};
const std::vector<std::string> kObjects = {"silver key", "brass compass", "sealed letter", "blue lantern",
                                           "copper ring", "painted map"};
const std::vector<std::string> kPlaces = {"hollow oak tree", "chapel bell tower", "cellar of the inn",
                                          "boathouse by the lake", "attic of the granary", "garden well"};

Sample base_sample(const std::string& task, int i, uint64_t seed) {
  Sample s;
  s.dataset = task;
  s.language = "en";
  char id[40];
  std::snprintf(id, sizeof id, "synthetic-%016llx",
                static_cast<unsigned long long>(sample_seed(seed, task, i) ^ 0x5a5a5a5a5a5a5a5aull));
  s.id = id;
  s.line = static_cast<size_t>(i + 1);
  return s;
}

Sample make_qa(const std::vector<Sentence>& ss, const SyntheticOptions& opt, int i) {
  Rng rng(sample_seed(opt.seed, "synthetic_qa", i));
  Sample s = base_sample("synthetic_qa", i, opt.seed);
  std::vector<std::string> paras = excerpt(ss, opt.context_words, rng);
  std::string fact;
  if (rng.below(2) == 0) {
    const std::string& role = pick(kRoles, rng);
    const std::string name = pick(kFirst, rng) + " " + pick(kLast, rng);
    fact = "The " + role + " was named " + name + ".";
    s.input = "What was the name of the " + role + "?";
    s.answers = {name};
  } else {
    const std::string& obj = pick(kObjects, rng);
    const std::string& place = pick(kPlaces, rng);
    fact = "The " + obj + " was hidden in the " + place + ".";
    s.input = "Where was the " + obj + " hidden?";
    s.answers = {"the " + place, place};
  }
  // Planted at a paragraph boundary: the first sentence of a random paragraph.
  const size_t at = rng.below(paras.size() + 1);
  paras.insert(paras.begin() + static_cast<std::ptrdiff_t>(at), fact);
  s.context = join(paras, "\n\n");
  return s;
}

Sample make_retrieval(const std::vector<Sentence>& ss, const SyntheticOptions& opt, int i) {
  Rng rng(sample_seed(opt.seed, "synthetic_retrieval", i));
  Sample s = base_sample("synthetic_retrieval", i, opt.seed);
  const int n = std::clamp(opt.context_words / 80, 3, 30);
  const int64_t per = std::max<int64_t>(opt.context_words / n, 20);
  for (int attempt = 0; attempt < 50; ++attempt) {
    std::vector<std::string> paras;
    for (int p = 0; p < n; ++p) paras.push_back(join(excerpt(ss, per, rng), " "));
    const size_t k = rng.below(paras.size());
    // Candidate sentences of paragraph k: whole sentences found in no other paragraph.
    std::vector<std::string> cands;
    for (const Sentence& x : ss) {
      if (x.words < 6 || paras[k].find(x.text) == std::string::npos) continue;
      bool unique = true;
      for (size_t q = 0; q < paras.size() && unique; ++q)
        if (q != k && paras[q].find(x.text) != std::string::npos) unique = false;
      if (unique && std::find(cands.begin(), cands.end(), x.text) == cands.end()) cands.push_back(x.text);
    }
    if (cands.empty()) continue;
    s.input = pick(cands, rng);
    s.context = numbered(paras);
    s.answers = {"Paragraph " + std::to_string(k + 1)};
    return s;
  }
  fail("synthetic_retrieval: the source text has too few distinct sentences of 6+ words");
}

Sample make_count(const std::vector<Sentence>& ss, const SyntheticOptions& opt, int i) {
  Rng rng(sample_seed(opt.seed, "synthetic_count", i));
  Sample s = base_sample("synthetic_count", i, opt.seed);
  const int n = std::clamp(opt.context_words / 40, 2, 40);
  const int64_t per = std::max<int64_t>(opt.context_words / n, 10);
  const int unique = static_cast<int>((n + 1) / 2 + rng.below(static_cast<uint64_t>(n - (n + 1) / 2 + 1)));
  std::vector<std::string> paras;
  for (int attempt = 0; static_cast<int>(paras.size()) < unique; ++attempt) {
    if (attempt > 50 * n) fail("synthetic_count: the source text is too short for distinct paragraphs");
    std::string p = join(excerpt(ss, per, rng), " ");
    if (std::find(paras.begin(), paras.end(), p) == paras.end()) paras.push_back(std::move(p));
  }
  std::vector<std::string> all = paras;
  while (static_cast<int>(all.size()) < n) all.push_back(pick(paras, rng));
  for (size_t a = all.size(); a > 1; --a) std::swap(all[a - 1], all[rng.below(a)]);  // Fisher-Yates
  s.context = numbered(all);
  s.input = "";
  s.answers = {std::to_string(unique)};
  return s;
}

}  // namespace

const std::vector<TaskInfo>& synthetic_tasks() {
  static const std::vector<TaskInfo> t = {
      {"synthetic_qa", "synthetic (kvlab)", "en", "qa_f1_score", 32, true, false, false,
       "SYNTHETIC task (kvlab, not LongBench). Read the following text and answer briefly.\n\n{context}\n\n"
       "Now, answer the following question based on the above text, only give me the answer and do not "
       "output any other words.\n\nQuestion: {input}\nAnswer:"},
      {"synthetic_retrieval", "synthetic (kvlab)", "en", "retrieval_score", 32, true, false, false,
       "SYNTHETIC task (kvlab, not LongBench). Here are some paragraphs from public-domain books, along "
       "with a sentence quoted from one of them. Please determine which paragraph the sentence is from."
       "\n\n{context}\n\nThe following is the quoted sentence.\n\n{input}\n\nPlease enter the number of "
       "the paragraph that the sentence is from. The answer format must be like \"Paragraph 1\", "
       "\"Paragraph 2\", etc.\n\nThe answer is: "},
      {"synthetic_count", "synthetic (kvlab)", "en", "count_score", 32, true, false, false,
       "SYNTHETIC task (kvlab, not LongBench). There are some paragraphs below taken from public-domain "
       "books. Some of them may be duplicates. Please carefully read these paragraphs and determine how "
       "many unique paragraphs there are after removing duplicates. In other words, how many "
       "non-repeating paragraphs are there in total?\n\n{context}{input}\n\nPlease enter the final count "
       "of unique paragraphs after removing duplicates. The output format should only contain the "
       "number, such as 1, 2, 3, and so on.\n\nThe final answer is: "},
  };
  return t;
}

bool is_synthetic_task(const std::string& name) {
  for (const auto& t : synthetic_tasks())
    if (t.name == name) return true;
  return false;
}

const TaskInfo& synthetic_task_info(const std::string& name) {
  std::vector<std::string> names;
  for (const auto& t : synthetic_tasks()) {
    if (t.name == name) return t;
    names.push_back(t.name);
  }
  const auto hint = did_you_mean(name, names);
  fail("unknown synthetic task '", name, "'", hint ? "; did you mean '" + *hint + "'?" : std::string());
}

std::vector<Sample> make_synthetic(const std::string& task, const std::string& source,
                                   const SyntheticOptions& opt) {
  synthetic_task_info(task);
  if (opt.samples < 1) fail("synthetic samples must be >= 1, got ", opt.samples);
  if (opt.context_words < 40) fail("synthetic context_words must be >= 40, got ", opt.context_words);
  const std::vector<Sentence> ss = split_sentences(source);
  if (ss.size() < 20) fail("synthetic LongBench samples: the source text has only ", ss.size(), " usable sentences (need 20)");
  std::vector<Sample> out;
  for (int i = 0; i < opt.samples; ++i) {
    Sample s = task == "synthetic_qa"          ? make_qa(ss, opt, i)
               : task == "synthetic_retrieval" ? make_retrieval(ss, opt, i)
                                               : make_count(ss, opt, i);
    int64_t w = count_words(s.input) + count_words(s.context);
    for (const auto& a : s.answers) w += count_words(a);
    s.length = w;
    out.push_back(std::move(s));
  }
  return out;
}

void write_jsonl(const std::string& path, const std::vector<Sample>& samples) {
  std::ofstream f(path, std::ios::binary);
  if (!f) fail("cannot write ", path);
  for (const Sample& s : samples) {
    nlohmann::ordered_json j;
    j["input"] = s.input;
    j["context"] = s.context;
    j["answers"] = s.answers;
    j["length"] = s.length;
    j["dataset"] = s.dataset;
    j["language"] = s.language;
    j["all_classes"] = s.all_classes ? nlohmann::ordered_json(*s.all_classes) : nlohmann::ordered_json(nullptr);
    j["_id"] = s.id;
    f << j.dump() << '\n';
  }
  if (!f) fail("error writing ", path);
}

std::vector<std::string> write_synthetic_dir(const std::string& dir, const std::string& source,
                                             const SyntheticOptions& opt) {
  std::filesystem::create_directories(dir);
  std::vector<std::string> paths;
  for (const auto& t : synthetic_tasks()) {
    const std::string p = (std::filesystem::path(dir) / (t.name + ".jsonl")).string();
    write_jsonl(p, make_synthetic(t.name, source, opt));
    paths.push_back(p);
  }
  return paths;
}

}  // namespace kvlab::datasets::longbench
