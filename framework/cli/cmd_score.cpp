// kvlab score: one LongBench metric on one prediction (benchmarks.md 1.7-1.8), printed as Python's
// repr of the float eval.py would add up, e.g. `kvlab score --metric qa_f1_score --prediction
// "The Eiffel Tower, in Paris." --answer "Eiffel Tower"` prints 0.6666666666666666.
#include <algorithm>
#include <cstdio>

#include "datasets/longbench/longbench.h"
#include "datasets/longbench/metrics.h"
#include "datasets/longbench/py_text.h"
#include "framework/cli/args.h"
#include "framework/core/params.h"
#include "framework/cli/commands.h"
#include "framework/core/error.h"

namespace kvlab::cli {

namespace lb = kvlab::datasets::longbench;

int cmd_score(int argc, char** argv, int first) {
  Args a("score",
         "Scores one prediction with a LongBench metric (the official metrics.py/eval.py, Python "
         "quirks included). Several --answer: the maximum over them, as eval.py does.",
         {{"metric", "NAME",
           "qa_f1, qa_f1_zh, rouge, rouge_zh, classification, retrieval, retrieval_zh, count, "
           "code_sim (the _score suffix of metrics.py may be given too), or --task", ""},
          {"task", "NAME", "a LongBench task (e.g. trec, lcc): its metric and first-line rule", ""},
          {"prediction", "STR", "the model's output", "", true},
          {"answer", "STR", "a ground-truth answer (repeatable)", "", true, true},
          {"all-classes", "A,B,...", "class labels for classification_score, comma-separated", ""},
          {"flavour", "NAME", "metric flavour: longbench-official, kvpress, kvcache-factory, sentencekv",
           "longbench-official"},
          {"first-line", "", "score only the first line (as eval.py does for trec/triviaqa/samsum/lsht)", ""},
          {"verbose", "", "also print the metric flavour on stderr", ""}});
  if (!a.parse(argc, argv, first)) return 0;
  const lb::MetricFlavour fl = lb::metric_flavour(a.get("flavour"));
  std::string metric;
  bool first_line = a.flag("first-line");
  if (a.has("task")) {
    const auto& t = lb::task_info(a.get("task"));
    metric = t.metric;
    first_line = first_line || t.first_line;
    if (a.has("metric") && a.get("metric") != metric && a.get("metric") + "_score" != metric)
      fail("--metric ", a.get("metric"), " contradicts --task ", a.get("task"), " (scored by ", metric, ")");
  } else if (a.has("metric")) {
    metric = a.get("metric");
    // Short names (qa_f1) and metrics.py's function names (qa_f1_score) both work.
    const auto names = lb::metric_names();
    if (std::find(names.begin(), names.end(), metric + "_score") != names.end()) metric += "_score";
    if (std::find(names.begin(), names.end(), metric) == names.end()) {
      std::vector<std::string> shorts;
      std::string known;
      for (const auto& n : names) {
        shorts.push_back(n.substr(0, n.size() - 6));
        known += (known.empty() ? "" : ", ") + shorts.back();
      }
      std::vector<std::string> candidates = shorts;
      candidates.insert(candidates.end(), names.begin(), names.end());
      const auto hint = did_you_mean(metric, candidates);
      fail("kvlab score: unknown metric '", metric, "'",
           hint ? str(" (did you mean '", *hint, "'?)") : std::string(), "; known: ", known);
    }
  } else {
    fail("kvlab score: give --metric NAME or --task NAME");
  }
  std::vector<std::string> classes;
  if (a.has("all-classes")) {
    const std::string s = a.get("all-classes");
    size_t start = 0;
    for (size_t i = 0; i <= s.size(); ++i) {
      if (i == s.size() || s[i] == ',') {
        classes.push_back(s.substr(start, i - start));
        start = i + 1;
      }
    }
  }
  if (metric == "classification_score" && classes.empty())
    fail("classification_score needs --all-classes A,B,... (the task's label set)");
  lb::check_metric_name(metric);
  const double v = lb::score_sample(metric, a.get("prediction"), a.get_all("answer"), classes, first_line, fl);
  std::printf("%s\n", datasets::py::repr(v).c_str());
  if (a.flag("verbose")) std::fprintf(stderr, "metric %s, flavour: %s\n", metric.c_str(), fl.describe().c_str());
  return 0;
}

}  // namespace kvlab::cli
