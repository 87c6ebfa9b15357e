#include "datasets/longbench/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "datasets/longbench/jieba.h"
#include "datasets/longbench/py_text.h"
#include "framework/core/error.h"
#include "framework/core/params.h"

namespace kvlab::datasets::longbench {
namespace {

using py::U32;

// string.punctuation.
bool is_ascii_punct(char32_t c) {
  return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
         (c >= 0x7B && c <= 0x7E);
}

// normalize_zh_answer's cn_punctuation (benchmarks.md 1.7; '《' absent, '》' present).
const std::u32string kZhPunct =
    U"！？｡。＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､、〃》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟〰〾〿–—‘’‛“”„‟…‧﹏.";

// re.sub(r"\b(a|an|the)\b", " ", s) on str: \b uses Unicode word characters.
U32 remove_articles(const U32& s) {
  U32 out;
  const size_t n = s.size();
  auto word_at = [&](size_t i) { return i < n && py::is_word(s[i]); };
  size_t p = 0;
  while (p < n) {
    const bool boundary_before = p == 0 || !py::is_word(s[p - 1]);
    if (boundary_before && word_at(p)) {
      static const std::u32string_view kAlts[] = {U"a", U"an", U"the"};
      size_t matched = 0;
      for (auto alt : kAlts) {
        if (s.compare(p, alt.size(), alt) == 0 && !word_at(p + alt.size())) {
          matched = alt.size();
          break;
        }
      }
      if (matched) {
        out += U' ';
        p += matched;
        continue;
      }
    }
    out += s[p++];
  }
  return out;
}

// metrics.py f1_score: Counter intersection; 0 when nothing overlaps.
double f1_tokens(const std::vector<U32>& pred, const std::vector<U32>& gt) {
  std::map<U32, long> cp, cg;
  for (const auto& t : pred) ++cp[t];
  for (const auto& t : gt) ++cg[t];
  long num_same = 0;
  for (const auto& [t, c] : cp) {
    const auto it = cg.find(t);
    if (it != cg.end()) num_same += std::min(c, it->second);
  }
  if (num_same == 0) return 0;
  const double precision = 1.0 * static_cast<double>(num_same) / static_cast<double>(pred.size());
  const double recall = 1.0 * static_cast<double>(num_same) / static_cast<double>(gt.size());
  return (2 * precision * recall) / (precision + recall);
}

U32 normalize_answer32(std::u32string_view s) {
  U32 low = py::lower(s);
  U32 no_punct;
  for (char32_t c : low)
    if (!is_ascii_punct(c)) no_punct += c;
  return py::join_split(remove_articles(no_punct), U" ");
}

U32 normalize_zh_answer32(std::u32string_view s) {
  U32 low = py::lower(s);
  U32 no_punct;
  for (char32_t c : low)
    if (!is_ascii_punct(c) && kZhPunct.find(c) == U32::npos) no_punct += c;
  return py::join_split(no_punct, U"");
}

// re.findall(pattern + r"(\d+)", gt)[0], with pattern a literal prefix.
U32 first_id_after(std::u32string_view gt, std::u32string_view prefix, const char* metric) {
  size_t pos = 0;
  while ((pos = gt.find(prefix, pos)) != std::u32string_view::npos) {
    size_t j = pos + prefix.size();
    size_t k = j;
    while (k < gt.size() && py::is_decimal(gt[k])) ++k;
    if (k > j) return U32(gt.substr(j, k - j));
    ++pos;
  }
  fail(metric, ": the ground truth '", py::encode(gt), "' has no '", py::encode(prefix),
       "<digits>' (Python raises IndexError here)");
}

double id_fraction(std::u32string_view pred, const U32& target) {
  const auto numbers = py::find_digit_runs(pred);
  long right = 0;
  for (const auto& n : numbers) right += (n == target);
  return numbers.empty() ? 0.0 : static_cast<double>(right) / static_cast<double>(numbers.size());
}

// --- pltrdy rouge 1.0.1 ---

// [" ".join(_.split()) for _ in text.split(".") if len(_) > 0], then sentence.split(" ").
std::vector<std::vector<U32>> rouge_sentences(std::u32string_view text) {
  std::vector<std::vector<U32>> out;
  size_t start = 0;
  for (size_t i = 0; i <= text.size(); ++i) {
    if (i < text.size() && text[i] != U'.') continue;
    std::u32string_view piece = text.substr(start, i - start);
    start = i + 1;
    if (piece.empty()) continue;
    const U32 sent = py::join_split(piece, U" ");
    std::vector<U32> words;
    size_t ws = 0;
    for (size_t k = 0; k <= sent.size(); ++k) {
      if (k == sent.size() || sent[k] == U' ') {
        words.emplace_back(sent.substr(ws, k - ws));
        ws = k + 1;
      }
    }
    out.push_back(std::move(words));
  }
  return out;
}

}  // namespace

std::string normalize_answer(std::string_view s) { return py::encode(normalize_answer32(py::decode(s))); }
std::string normalize_zh_answer(std::string_view s) {
  return py::encode(normalize_zh_answer32(py::decode(s)));
}

double qa_f1_score(std::string_view pred, std::string_view gt) {
  return f1_tokens(py::split(normalize_answer32(py::decode(pred))),
                   py::split(normalize_answer32(py::decode(gt))));
}

double qa_f1_zh_score(std::string_view pred, std::string_view gt) {
  const Jieba& jb = Jieba::shared();
  auto tokens = [&](std::string_view s) {
    std::vector<U32> out;
    for (const auto& t : jb.cut32(py::decode(s))) {
      U32 n = normalize_zh_answer32(t);
      if (!n.empty()) out.push_back(std::move(n));
    }
    return out;
  };
  return f1_tokens(tokens(pred), tokens(gt));
}

bool rouge_l_f(std::string_view hyp_text, std::string_view ref_text, int max_calls, double& f) {
  const auto hyp = rouge_sentences(py::decode(hyp_text));
  const auto ref = rouge_sentences(py::decode(ref_text));
  if (hyp.empty() || ref.empty()) return false;  // ValueError("Collections must contain ...")
  // Words to ids; m and n are the unique word counts (exclusive=True).
  std::unordered_map<U32, int> ids;
  auto to_ids = [&](const std::vector<std::vector<U32>>& sents, std::unordered_set<int>& uniq) {
    std::vector<std::vector<int>> out;
    for (const auto& s : sents) {
      std::vector<int> v;
      for (const auto& w : s) {
        const int id = ids.emplace(w, static_cast<int>(ids.size())).first->second;
        v.push_back(id);
        uniq.insert(id);
      }
      out.push_back(std::move(v));
    }
    return out;
  };
  std::unordered_set<int> ref_uniq, hyp_uniq;
  const auto x_sents = to_ids(ref, ref_uniq);
  const auto y_sents = to_ids(hyp, hyp_uniq);
  const double m = static_cast<double>(ref_uniq.size());
  const double n = static_cast<double>(hyp_uniq.size());
  std::unordered_set<int> lcs_union;
  std::vector<int> table;
  for (const auto& x : x_sents) {      // for ref_s in reference_sentences (_union_lcs)
    for (const auto& y : y_sents) {    // for eval_s in evaluated_sentences
      // _recon_lcs(reference_words, evaluated_words): _lcs table, then the recursive walk.
      const size_t lx = x.size(), ly = y.size(), w = ly + 1;
      table.assign((lx + 1) * w, 0);
      for (size_t i = 1; i <= lx; ++i)
        for (size_t j = 1; j <= ly; ++j)
          table[i * w + j] = x[i - 1] == y[j - 1] ? table[(i - 1) * w + j - 1] + 1
                                                  : std::max(table[(i - 1) * w + j], table[i * w + j - 1]);
      size_t i = lx, j = ly;
      long calls = 1;
      while (i != 0 && j != 0) {
        if (x[i - 1] == y[j - 1]) {
          lcs_union.insert(x[i - 1]);
          --i, --j;
        } else if (table[(i - 1) * w + j] > table[i * w + j - 1]) {
          --i;
        } else {
          --j;
        }
        ++calls;
      }
      if (max_calls > 0 && calls > max_calls) return false;  // RecursionError
    }
  }
  const double llcs = static_cast<double>(lcs_union.size());
  const double r_lcs = llcs / m;
  const double p_lcs = llcs / n;
  f = 2.0 * ((p_lcs * r_lcs) / (p_lcs + r_lcs + 1e-8));
  return true;
}

double rouge_score(std::string_view pred, std::string_view gt, const MetricFlavour& fl) {
  double f = 0;
  // try: Rouge().get_scores([pred], [gt], avg=True)["rouge-l"]["f"]  except: return 0.0
  if (!rouge_l_f(pred, gt, fl.rouge_recursion ? fl.rouge_recursion_calls : 0, f)) return 0.0;
  return f;
}

double rouge_zh_score(std::string_view pred, std::string_view gt, const MetricFlavour& fl) {
  const Jieba& jb = Jieba::shared();
  auto joined = [&](std::string_view s) {
    std::string out;
    bool first = true;
    for (const auto& t : jb.cut(s)) {
      if (!first) out += ' ';
      out += t;
      first = false;
    }
    return out;
  };
  double f = 0;
  // rouge_zh_score calls rouge_score: one more Python frame below the walk.
  const int calls = fl.rouge_recursion ? fl.rouge_recursion_calls - 1 : 0;
  if (!rouge_l_f(joined(pred), joined(gt), calls, f)) return 0.0;
  return f;
}

double classification_score(std::string_view pred8, std::string_view gt8,
                            const std::vector<std::string>& all_classes) {
  const U32 pred = py::decode(pred8), gt = py::decode(gt8);
  std::vector<U32> matches;
  for (const auto& c : all_classes) {
    U32 c32 = py::decode(c);
    if (py::contains(pred, c32)) matches.push_back(std::move(c32));
  }
  // for match_term in em_match_list: ... em_match_list.remove(match_term)
  // The list iterator advances by index, so the element after a removed one is skipped.
  for (size_t idx = 0; idx < matches.size(); ++idx) {
    const U32 term = matches[idx];
    if (py::contains(gt, term) && term != gt) {
      matches.erase(std::find(matches.begin(), matches.end(), term));
    }
  }
  if (std::find(matches.begin(), matches.end(), gt) != matches.end())
    return 1.0 / static_cast<double>(matches.size());
  return 0.0;
}

double retrieval_score(std::string_view pred, std::string_view gt) {
  return id_fraction(py::decode(pred), first_id_after(py::decode(gt), U"Paragraph ", "retrieval_score"));
}
double retrieval_zh_score(std::string_view pred, std::string_view gt) {
  return id_fraction(py::decode(pred), first_id_after(py::decode(gt), U"段落", "retrieval_zh_score"));
}
double count_score(std::string_view pred, std::string_view gt) {
  return id_fraction(py::decode(pred), py::decode(gt));
}

// --- difflib.SequenceMatcher(None, a, b), autojunk=True (CPython 3.11 Lib/difflib.py) ---
double difflib_ratio(std::u32string_view a, std::u32string_view b) {
  // __chain_b: b2j, then purge "popular" elements when len(b) >= 200.
  std::unordered_map<char32_t, std::vector<int>> b2j;
  for (size_t i = 0; i < b.size(); ++i) b2j[b[i]].push_back(static_cast<int>(i));
  if (b.size() >= 200) {
    const size_t ntest = b.size() / 100 + 1;
    for (auto it = b2j.begin(); it != b2j.end();)
      it = it->second.size() > ntest ? b2j.erase(it) : std::next(it);
  }
  // find_longest_match; bjunk is empty (isjunk=None), so the junk-extension loops never run and
  // the first two extend over popular elements too.
  auto longest = [&](int alo, int ahi, int blo, int bhi, int& bi, int& bj, int& bs) {
    bi = alo, bj = blo, bs = 0;
    std::unordered_map<int, int> j2len, newj2len;
    for (int i = alo; i < ahi; ++i) {
      newj2len.clear();
      const auto it = b2j.find(a[i]);
      if (it != b2j.end()) {
        for (int j : it->second) {
          if (j < blo) continue;
          if (j >= bhi) break;
          const auto pj = j2len.find(j - 1);
          const int k = (pj == j2len.end() ? 0 : pj->second) + 1;
          newj2len[j] = k;
          if (k > bs) bi = i - k + 1, bj = j - k + 1, bs = k;
        }
      }
      std::swap(j2len, newj2len);
    }
    while (bi > alo && bj > blo && a[bi - 1] == b[bj - 1]) --bi, --bj, ++bs;
    while (bi + bs < ahi && bj + bs < bhi && a[bi + bs] == b[bj + bs]) ++bs;
  };
  // get_matching_blocks: only the total size matters for ratio().
  long matches = 0;
  struct Q {
    int alo, ahi, blo, bhi;
  };
  std::vector<Q> queue{{0, static_cast<int>(a.size()), 0, static_cast<int>(b.size())}};
  while (!queue.empty()) {
    const Q q = queue.back();
    queue.pop_back();
    int i, j, k;
    longest(q.alo, q.ahi, q.blo, q.bhi, i, j, k);
    if (k) {
      matches += k;
      if (q.alo < i && q.blo < j) queue.push_back({q.alo, i, q.blo, j});
      if (i + k < q.ahi && j + k < q.bhi) queue.push_back({i + k, q.ahi, j + k, q.bhi});
    }
  }
  const size_t length = a.size() + b.size();
  return length ? 2.0 * static_cast<double>(matches) / static_cast<double>(length) : 1.0;
}

namespace {
// python-Levenshtein 0.12 ratio(): (lensum - indel distance) / lensum, substitution weight 2.
double levenshtein_ratio(std::u32string_view a, std::u32string_view b) {
  const size_t lensum = a.size() + b.size();
  if (lensum == 0) return 1.0;
  // Indel distance = la + lb - 2 * LCS.
  std::vector<int> prev(b.size() + 1, 0), cur(b.size() + 1, 0);
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
    std::swap(prev, cur);
  }
  const size_t ldist = lensum - 2 * static_cast<size_t>(prev[b.size()]);
  return static_cast<double>(lensum - ldist) / static_cast<double>(lensum);
}
}  // namespace

int fuzz_ratio(std::string_view a8, std::string_view b8, CodeSimBackend backend) {
  // @check_for_none @check_for_equivalence @check_empty_string, in that order.
  if (a8 == b8) return 100;
  if (a8.empty() || b8.empty()) return 0;
  const U32 a = py::decode(a8), b = py::decode(b8);
  const double r = backend == CodeSimBackend::kDifflib ? difflib_ratio(a, b) : levenshtein_ratio(a, b);
  // utils.intr(100 * m.ratio()) = int(round(x)): ties to even.
  return static_cast<int>(std::nearbyint(100 * r));
}

double code_sim_score(std::string_view pred, std::string_view gt, const MetricFlavour& fl) {
  U32 line;
  for (const auto& l : py::split_lines(py::decode(pred))) {
    if (l.find(U'`') == U32::npos && l.find(U'#') == U32::npos && l.find(U"//") == U32::npos) {
      line = l;
      break;
    }
  }
  return fuzz_ratio(py::encode(line), gt, fl.code_sim) / 100.0;
}

// --- eval.py ---

std::vector<std::string> metric_names() {
  return {"qa_f1_score",     "qa_f1_zh_score",     "rouge_score", "rouge_zh_score",
          "classification_score", "retrieval_score", "retrieval_zh_score", "count_score",
          "code_sim_score"};
}

double score_one(const std::string& metric, std::string_view pred, std::string_view gt,
                 const std::vector<std::string>& all_classes, const MetricFlavour& fl) {
  if (metric == "qa_f1_score") return qa_f1_score(pred, gt);
  if (metric == "qa_f1_zh_score") return qa_f1_zh_score(pred, gt);
  if (metric == "rouge_score") return rouge_score(pred, gt, fl);
  if (metric == "rouge_zh_score") return rouge_zh_score(pred, gt, fl);
  if (metric == "classification_score") return classification_score(pred, gt, all_classes);
  if (metric == "retrieval_score") return retrieval_score(pred, gt);
  if (metric == "retrieval_zh_score") return retrieval_zh_score(pred, gt);
  if (metric == "count_score") return count_score(pred, gt);
  if (metric == "code_sim_score") return code_sim_score(pred, gt, fl);
  check_metric_name(metric);
  fail("unreachable: metric '", metric, "'");
}

void check_metric_name(const std::string& metric) {
  const auto names = metric_names();
  if (std::find(names.begin(), names.end(), metric) != names.end()) return;
  const auto hint = did_you_mean(metric, names);
  fail("unknown LongBench metric '", metric, "'", hint ? "; did you mean '" + *hint + "'?" : std::string(),
       " (known: qa_f1_score, qa_f1_zh_score, rouge_score, rouge_zh_score, classification_score, "
       "retrieval_score, retrieval_zh_score, count_score, code_sim_score)");
}

std::string prepare_prediction(std::string_view pred, bool first_line, const MetricFlavour& fl) {
  U32 p = py::decode(pred);
  if (fl.strip == PredStrip::kKvpressLstrip) {
    // kvpress: prediction.lstrip() for every task, then .split("\n")[0] for the few-shot ones.
    size_t b = 0;
    while (b < p.size() && py::is_space(p[b])) ++b;
    p.erase(0, b);
    if (first_line) p = p.substr(0, p.find(U'\n'));
    return py::encode(p);
  }
  if (!first_line) return std::string(pred);
  return py::encode(py::split_lines(p).front());  // pred.lstrip('\n').split('\n')[0]
}

double score_sample(const std::string& metric, std::string_view pred,
                    const std::vector<std::string>& answers,
                    const std::vector<std::string>& all_classes, bool first_line,
                    const MetricFlavour& fl) {
  const std::string p = prepare_prediction(pred, first_line, fl);
  double score = 0.;
  for (const auto& gt : answers) {
    const double s = score_one(metric, p, gt, all_classes, fl);
    if (s > score) score = s;  // max(score, s) keeps score unless s > score
  }
  return score;
}

double aggregate(const std::vector<double>& scores, double* unrounded) {
  KVLAB_CHECK(!scores.empty()) << "LongBench aggregate of no samples (eval.py divides by zero)";
  double total = 0.;
  for (double s : scores) total += s;
  const double v = 100 * total / static_cast<double>(scores.size());
  if (unrounded) *unrounded = v;
  return py::round2(v);
}

namespace {
// numpy's pairwise_sum for float64 (umath loops_utils), blocks of 8 lanes, PW_BLOCKSIZE 128.
double pairwise_sum(const double* a, size_t n) {
  if (n < 8) {
    double res = 0.;
    for (size_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    size_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  size_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}
}  // namespace

double aggregate_e(const std::vector<double>& scores, double* unrounded) {
  if (scores.empty()) {
    if (unrounded) *unrounded = std::numeric_limits<double>::quiet_NaN();
    return std::numeric_limits<double>::quiet_NaN();
  }
  // np.add.reduce over a contiguous float64 array: pairwise_sum over all elements (checked
  // against numpy 1.24 on random inputs by the golden script's cases).
  const double sum = pairwise_sum(scores.data(), scores.size());
  const double v = 100 * (sum / static_cast<double>(scores.size()));
  if (unrounded) *unrounded = v;
  return py::round2(v);
}

std::string length_bucket(long long length) {
  if (length < 4000) return "0-4k";
  if (length < 8000) return "4-8k";
  return "8k+";
}

// --- flavours ---

std::string MetricFlavour::describe() const {
  std::string jieba = "jieba-0.42.1-port hmm=on dict=" + Jieba::default_dir() + "/dict.txt";
  return kvlab::str(name, " code_sim=", code_sim == CodeSimBackend::kDifflib ? "difflib" : "levenshtein",
                    " strip=", strip == PredStrip::kOfficial ? "official" : "kvpress_lstrip",
                    " first_line=", strip == PredStrip::kOfficial ? "lstrip_nl" : "lstrip_all",
                    " rouge_recursion=", rouge_recursion ? std::to_string(rouge_recursion_calls) : "off",
                    " ", jieba, " chat=",
                    chat_template == ChatTemplate::kOfficial  ? "official"
                    : chat_template == ChatTemplate::kAllTasks ? "all_tasks"
                                                                : "none",
                    " max_length=", max_length, " prompts=", prompt_hash.empty() ? "-" : prompt_hash);
}

std::vector<std::string> metric_flavour_names() {
  return {"longbench-official", "kvpress", "kvcache-factory", "sentencekv"};
}

MetricFlavour metric_flavour(const std::string& name) {
  MetricFlavour f;
  f.name = name;
  if (name == "longbench-official") return f;
  if (name == "kvpress") {
    f.strip = PredStrip::kKvpressLstrip;
    return f;
  }
  if (name == "kvcache-factory") {
    f.code_sim = CodeSimBackend::kLevenshtein;
    return f;
  }
  if (name == "sentencekv") {
    f.chat_template = ChatTemplate::kAllTasks;
    return f;
  }
  const auto hint = did_you_mean(name, metric_flavour_names());
  fail("unknown LongBench metric flavour '", name, "'", hint ? "; did you mean '" + *hint + "'?" : std::string());
}

}  // namespace kvlab::datasets::longbench
