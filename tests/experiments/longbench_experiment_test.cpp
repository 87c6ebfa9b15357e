// The longbench experiment and kvlab's SYNTHETIC LongBench-format samples
// (datasets/longbench/synthetic.h), on a random tiny model (byte-level tokenizer).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <set>

#include "datasets/longbench/longbench.h"
#include "datasets/longbench/synthetic.h"
#include "framework/core/error.h"
#include "tests/experiments/experiment_support.h"
#include "tests/support/temp_dir.h"

namespace kvlab::datasets::longbench {
namespace {

// Distinct sentences, five to a paragraph (no package needed).
std::string source_text() {
  const char* const a[] = {"river", "mill", "lantern", "orchard", "bridge", "tower", "meadow"};
  const char* const b[] = {"morning", "storm", "harvest", "winter", "festival"};
  std::string s;
  for (int i = 0; i < 400; ++i) {
    s += "Sentence number " + std::to_string(i) + " tells of the " + a[i % 7] + " in the " + b[i % 5] +
         " and nothing else.";
    s += (i % 5 == 4) ? "\n\n" : " ";
  }
  return s;
}

std::string source_spec() {
  static const std::string path = [] {
    const auto p = std::filesystem::temp_directory_path() /
                   ("kvlab_lb_source_" + std::to_string(::getpid()) + ".txt");
    std::ofstream(p) << source_text();
    return p.string();
  }();
  return "file:" + path;
}

// Paragraph texts of a "Paragraph N: ..." context, in order.
std::vector<std::string> paragraphs(const std::string& ctx) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < ctx.size()) {
    size_t end = ctx.find("\n\n", pos);
    if (end == std::string::npos) end = ctx.size();
    const std::string p = ctx.substr(pos, end - pos);
    const std::string prefix = "Paragraph " + std::to_string(out.size() + 1) + ": ";
    EXPECT_EQ(p.rfind(prefix, 0), 0u) << p;
    out.push_back(p.substr(prefix.size()));
    pos = end + 2;
  }
  return out;
}

TEST(SyntheticLongBench, DeterministicAndLabelled) {
  SyntheticOptions o;
  o.samples = 3;
  o.context_words = 200;
  o.seed = 7;
  const std::string src = source_text();
  for (const auto& t : synthetic_tasks()) {
    EXPECT_EQ(t.name.rfind("synthetic_", 0), 0u);
    EXPECT_NE(t.prompt.find("SYNTHETIC"), std::string::npos);
    const auto a = make_synthetic(t.name, src, o), b = make_synthetic(t.name, src, o);
    ASSERT_EQ(a.size(), 3u);
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].context, b[i].context);
      EXPECT_EQ(a[i].input, b[i].input);
      EXPECT_EQ(a[i].answers, b[i].answers);
      EXPECT_EQ(a[i].id, b[i].id);
      EXPECT_EQ(a[i].dataset, t.name);
      EXPECT_GT(a[i].length, 150);
    }
    SyntheticOptions o2 = o;
    o2.seed = 8;
    EXPECT_NE(make_synthetic(t.name, src, o2)[0].context, a[0].context) << t.name;
  }
  EXPECT_THROW(make_synthetic("synthetic_qaa", src, o), Error);
}

TEST(SyntheticLongBench, AnswersAreInTheContext) {
  SyntheticOptions o;
  o.samples = 8;
  o.context_words = 300;
  const std::string src = source_text();
  for (const auto& s : make_synthetic("synthetic_qa", src, o)) {
    ASSERT_FALSE(s.answers.empty());
    EXPECT_NE(s.context.find(s.answers[0]), std::string::npos) << s.input;
    EXPECT_DOUBLE_EQ(score_sample("qa_f1_score", s.answers[0], s.answers, {}, false), 1.0);
  }
  for (const auto& s : make_synthetic("synthetic_retrieval", src, o)) {
    const auto ps = paragraphs(s.context);
    int found = 0, where = 0;
    for (size_t k = 0; k < ps.size(); ++k)
      if (ps[k].find(s.input) != std::string::npos) ++found, where = static_cast<int>(k + 1);
    EXPECT_EQ(found, 1) << s.input;
    EXPECT_EQ(s.answers, std::vector<std::string>{"Paragraph " + std::to_string(where)});
    EXPECT_DOUBLE_EQ(score_sample("retrieval_score", s.answers[0], s.answers, {}, false), 1.0);
  }
  for (const auto& s : make_synthetic("synthetic_count", src, o)) {
    const auto ps = paragraphs(s.context);
    const std::set<std::string> uniq(ps.begin(), ps.end());
    EXPECT_EQ(s.answers, std::vector<std::string>{std::to_string(uniq.size())});
    EXPECT_DOUBLE_EQ(score_sample("count_score", s.answers[0], s.answers, {}, false), 1.0);
  }
}

TEST(SyntheticLongBench, JsonlRoundTrip) {
  testing::TempDir dir("kvlab_lb_rt");
  SyntheticOptions o;
  o.samples = 2;
  const auto paths = write_synthetic_dir(dir.path().string(), source_text(), o);
  ASSERT_EQ(paths.size(), synthetic_tasks().size());
  for (const auto& t : synthetic_tasks()) {
    const auto want = make_synthetic(t.name, source_text(), o);
    const auto got = read_jsonl((dir.path() / (t.name + ".jsonl")).string());
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].context, want[i].context);
      EXPECT_EQ(got[i].input, want[i].input);
      EXPECT_EQ(got[i].answers, want[i].answers);
      EXPECT_EQ(got[i].length, want[i].length);
      EXPECT_EQ(got[i].line, i + 1);
      EXPECT_FALSE(got[i].all_classes.has_value());
    }
  }
}

void check_results(const nlohmann::json& r, const std::vector<std::string>& tasks, int64_t n) {
  ASSERT_TRUE(r.contains("tasks")) << r.dump(1);
  EXPECT_EQ(r["tasks"].size(), tasks.size());
  double sum = 0;
  for (const auto& t : tasks) {
    ASSERT_TRUE(r["tasks"].contains(t)) << t;
    const double s = r["tasks"][t]["score"].get<double>();
    EXPECT_GE(s, 0.0);
    EXPECT_LE(s, 100.0);
    EXPECT_EQ(r["tasks"][t]["n"].get<int64_t>(), n);
    sum += s;
  }
  EXPECT_DOUBLE_EQ(r["average"].get<double>(), sum / static_cast<double>(tasks.size()));
  EXPECT_EQ(r["headline"], "average");
  EXPECT_NE(r["flavour"].get<std::string>().find("longbench-official"), std::string::npos);
  EXPECT_GT(r["kv_memory"]["device_bytes"].get<double>(), 0.0);
}

TEST(LongBenchExperiment, SyntheticOnTinyModel) {
  const auto r = kvlab::testing::run_experiment("longbench", {{"data_dir", "synthetic"},
                                                              {"synthetic_source", source_spec()},
                                                              {"synthetic_samples", "2"},
                                                              {"synthetic_words", "120"},
                                                              {"max_length", "256"}});
  check_results(r, {"synthetic_qa", "synthetic_retrieval", "synthetic_count"}, 2);
  EXPECT_NE(r["data"].get<std::string>().find("not LongBench"), std::string::npos);
}

// The method's own trace() reaches the run's trace, once per layer, for the last sample of the
// last task (tokens seen = prompt + generated - 1: the last token is never fed).
TEST(LongBenchExperiment, HandsTheMethodTraceOfTheLastSample) {
  kvlab::testing::SeriesSink sink;
  kvlab::testing::run_experiment("longbench",
                                 {{"data_dir", "synthetic"},
                                  {"synthetic_source", source_spec()},
                                  {"synthetic_samples", "2"},
                                  {"synthetic_words", "120"},
                                  {"max_length", "256"}},
                                 &sink, 0, kvlab::testing::trace_probe_factory());
  const std::string last = "tasks/synthetic_count";
  const double want = sink.series[last + "/prompt_tokens"].back() +
                      sink.series[last + "/generated_tokens"].back() - 1;
  const int64_t L = kvlab::testing::tiny_model()->config().num_hidden_layers;
  for (int64_t l = 0; l < L; ++l) {
    const auto& s = sink.series["probe/layer_0" + std::to_string(l) + "/tokens_seen"];
    ASSERT_EQ(s.size(), 1u) << "layer " << l;
    EXPECT_EQ(s[0], want) << "layer " << l;
  }
  EXPECT_EQ(sink.attributes["tasks:method_trace_sample"], last + "/0001");
}

TEST(LongBenchExperiment, ReadsADataDirAndLimitsSamples) {
  testing::TempDir dir("kvlab_lb_dir");
  SyntheticOptions o;
  o.samples = 3;
  o.context_words = 100;
  write_synthetic_dir(dir.path().string(), source_text(), o);
  // An official task's file too (LongBench format), scored with qa_f1_score.
  std::ofstream(dir.sub("qasper.jsonl"))
      << R"({"input": "Who?", "context": "Ann wrote it.", "answers": ["Ann"], "length": 5, "dataset": "qasper", "language": "en", "all_classes": null, "_id": "x"})"
      << "\n";
  const auto r = kvlab::testing::run_experiment(
      "longbench", {{"data_dir", dir.path().string()},
                    {"tasks", "synthetic_retrieval,qasper"},
                    {"samples", "2"},
                    {"max_length", "200"}});
  ASSERT_TRUE(r["tasks"].contains("qasper"));
  EXPECT_EQ(r["tasks"]["qasper"]["n"], 1);
  EXPECT_EQ(r["tasks"]["synthetic_retrieval"]["n"], 2);
  EXPECT_GE(r["tasks"]["qasper"]["score"].get<double>(), 0.0);
  EXPECT_LE(r["tasks"]["qasper"]["score"].get<double>(), 100.0);
}

void expect_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(LongBenchExperiment, MalformedJsonlNamesFileAndLine) {
  testing::TempDir dir("kvlab_lb_bad");
  std::ofstream(dir.sub("qasper.jsonl"))
      << R"({"input": "q", "context": "c", "answers": ["a"]})" << "\n"
      << R"({"input": "q", "context": "c", "answers": ["a"])" << "\n";  // line 2: truncated
  std::ofstream(dir.sub("hotpotqa.jsonl"))
      << R"({"input": "q", "context": "c", "answers": ["a"]})" << "\n\n"
      << R"({"input": "q", "context": "c"})" << "\n";  // line 3: no answers
  const std::string d = dir.path().string();
  expect_error([&] { kvlab::testing::run_experiment("longbench", {{"data_dir", d}, {"tasks", "qasper"}, {"max_length", "64"}}); },
               dir.sub("qasper.jsonl") + ":2");
  expect_error([&] { kvlab::testing::run_experiment("longbench", {{"data_dir", d}, {"tasks", "hotpotqa"}, {"max_length", "64"}}); },
               dir.sub("hotpotqa.jsonl") + ":3");
}

TEST(LongBenchExperiment, TasksCheckedAtConfigTime) {
  const auto& e = experiments::ExperimentRegistry::instance().find("longbench");
  ParamValues v(e.params);
  expect_error([&] { v.set_from_string("tasks", "qasper,hotpotq", "cfg.yaml:3: task.tasks"); }, "hotpotqa");
  expect_error([&] { v.set_from_string("tasks", "synthetic_qaa", "cfg.yaml:3: task.tasks"); }, "synthetic_qa");
  expect_error([&] { v.set_from_string("tasks", "qasper,,trec", "cfg.yaml:3: task.tasks"); }, "empty task name");
  expect_error([&] { v.set_from_string("tasks", "narrativeqa_e", "cfg.yaml:3: task.tasks"); }, "LongBench-E");
  v.set_from_string("tasks", "qasper_e, trec, synthetic_count", "cfg.yaml:3: task.tasks");
  // Official tasks have no shipped copy.
  expect_error([&] { kvlab::testing::run_experiment("longbench", {{"tasks", "qasper"}}); }, "data_dir");
}

}  // namespace
}  // namespace kvlab::datasets::longbench
