// LongBench tasks: the 21-task table, byte-exact prompt details (benchmarks.md 1.4), the JSONL
// reader and its errors, pred.py's middle truncation, eval.py scoring through a task, and the
// `kvlab score` command.
#include <gtest/gtest.h>

#include <fstream>

#include "datasets/longbench/longbench.h"
#include "datasets/longbench/py_text.h"
#include "framework/core/error.h"
#include "framework/model/model_init.h"
#include "framework/model/tokenizer.h"
#include "tests/support/temp_dir.h"

namespace kvlab::cli {
int cmd_score(int argc, char** argv, int first);  // framework/cli/cmd_score.cpp
}

namespace kvlab::datasets::longbench {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

void write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

TEST(LongBenchTasks, TableMatchesSpec) {
  ASSERT_EQ(tasks().size(), 21u);
  int in_e = 0, chat = 0, first_line = 0;
  for (const auto& t : tasks()) {
    in_e += t.in_e, chat += t.chat, first_line += t.first_line;
    EXPECT_NE(t.prompt.find("{context}"), std::string::npos) << t.name;
  }
  EXPECT_EQ(in_e, 13);
  EXPECT_EQ(chat, 15);
  EXPECT_EQ(first_line, 4);
  EXPECT_EQ(task_info("gov_report").max_gen, 512);
  EXPECT_EQ(task_info("lsht").metric, "classification_score");
  EXPECT_EQ(task_info("qasper_e").name, "qasper");
  EXPECT_NE(error_of([] { task_info("narrativeqa_e"); }).find("no LongBench-E"), std::string::npos);
  EXPECT_NE(error_of([] { task_info("hotpot_qa"); }).find("did you mean 'hotpotqa'"), std::string::npos);
}

TEST(LongBenchTasks, PromptsAreByteExact) {
  EXPECT_NE(task_info("narrativeqa").prompt.find("asconcisely"), std::string::npos);
  EXPECT_NE(task_info("qasper").prompt.find("{context}\n\n Answer the question"), std::string::npos);
  const std::string pc = task_info("passage_count").prompt;
  EXPECT_EQ(pc.substr(pc.size() - 21), "The final answer is: ");
  const std::string pr = task_info("passage_retrieval_en").prompt;
  EXPECT_EQ(pr.substr(pr.size() - 15), "The answer is: ");
  EXPECT_EQ(task_info("lcc").prompt, "Please complete the code given below. \n{context}Next line of code:\n");
  EXPECT_EQ(task_info("repobench-p").prompt,
            "Please complete the code given below. \n{context}{input}Next line of code:\n");
  EXPECT_NE(task_info("multi_news").prompt.find("all news. \n\n"), std::string::npos);
  EXPECT_EQ(task_info("trec").prompt,
            "Please determine the type of the question below. Here are some examples of questions.\n\n{context}\n{input}");
  EXPECT_EQ(task_info("passage_retrieval_zh").prompt.substr(0, 6), "以下");
  Sample s;
  s.context = "CTX {input}";
  s.input = "Q";
  // str.format substitutes once: a "{input}" inside the context stays literal.
  EXPECT_EQ(fill_prompt("a{context}b{input}c", s), "aCTX {input}bQc");
  EXPECT_EQ(prompt_hash().size(), 16u);
}

TEST(LongBenchReader, ReadsOfficialFields) {
  testing::TempDir dir("lb");
  write(dir.sub("trec.jsonl"),
        "{\"input\": \"What is X?\", \"context\": \"Q: a\\nType: Entity\", \"answers\": [\"Entity\"], "
        "\"length\": 12, \"dataset\": \"trec\", \"language\": \"en\", \"all_classes\": [\"Entity\", "
        "\"Human\", \"Location\"], \"_id\": \"abc\"}\n"
        "\n"
        "{\"input\": \"Who?\", \"context\": \"c\", \"answers\": [\"Human\"], \"length\": 5000, \"dataset\": "
        "\"trec\", \"language\": \"en\", \"all_classes\": [\"Entity\", \"Human\"], \"_id\": \"def\"}\n");
  LongBenchTask t(dir.path().string(), "trec");
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t.sample(0).id, "abc");
  EXPECT_EQ(t.sample(1).line, 3u);
  EXPECT_EQ(t.sample(1).length, 5000);
  // all_classes from the last line, as eval.py.
  EXPECT_EQ(t.all_classes(), (std::vector<std::string>{"Entity", "Human"}));
  EXPECT_EQ(t.prompt(0), "Please determine the type of the question below. Here are some examples of "
                         "questions.\n\nQ: a\nType: Entity\nWhat is X?");
  EXPECT_EQ(t.max_new_tokens(), 64);
  // trec: first line only; classification over all_classes.
  EXPECT_EQ(t.score("\nHuman\nEntity", 1), 1.0);
  EXPECT_EQ(t.score("Entity Human", 1), 0.5);
  EXPECT_EQ(t.flavour().prompt_hash, prompt_hash());
}

TEST(LongBenchReader, ErrorsNameFileLineAndKey) {
  testing::TempDir dir("lb");
  const std::string ok = "{\"input\": \"q\", \"context\": \"c\", \"answers\": [\"a\"]}\n";
  struct Case {
    std::string line, expect;
  };
  const Case cases[] = {
      {"{\"input\": \"q\", \"context\": \"c\", \"answers\": [\"a\"]", "malformed JSON"},
      {"[1, 2]", "expected a JSON object, got a list"},
      {"{\"context\": \"c\", \"answers\": [\"a\"]}", "missing key 'input'"},
      {"{\"input\": 3, \"context\": \"c\", \"answers\": [\"a\"]}", "key 'input' must be a string, got an integer"},
      {"{\"input\": \"q\", \"context\": \"c\", \"answers\": \"a\"}", "key 'answers' must be a list of strings"},
      {"{\"input\": \"q\", \"context\": \"c\", \"answers\": [\"a\", 1]}", "key 'answers[1]' must be a string"},
      {"{\"input\": \"q\", \"context\": \"c\", \"answers\": [\"a\"], \"length\": \"9\"}", "key 'length' must be an integer"},
      {"{\"input\": \"q\", \"context\": \"c\", \"answers\": [\"a\"], \"all_classes\": [1]}", "key 'all_classes[0]'"},
  };
  for (const auto& c : cases) {
    const std::string path = dir.sub("hotpotqa.jsonl");
    write(path, ok + ok + c.line + "\n" + ok);
    const std::string e = error_of([&] { read_jsonl(path); });
    EXPECT_NE(e.find(path + ":3: "), std::string::npos) << e;
    EXPECT_NE(e.find(c.expect), std::string::npos) << e;
  }
  const std::string missing = error_of([&] { LongBenchTask(dir.path().string(), "musique"); });
  EXPECT_NE(missing.find("musique.jsonl"), std::string::npos) << missing;
  // Classification tasks need all_classes.
  write(dir.sub("lsht.jsonl"), ok);
  EXPECT_NE(error_of([&] { LongBenchTask(dir.path().string(), "lsht"); }).find("all_classes"), std::string::npos);
}

TEST(LongBenchTruncation, KeepsHeadAndTail) {
  // Byte-level tokenizer: one token per byte, so token positions are byte positions.
  const auto tok = model::Tokenizer::from_json(model::byte_level_tokenizer_json(), "bytes.json");
  const auto bos = tok.token_to_id("<|begin_of_text|>");
  ASSERT_TRUE(bos.has_value());
  std::string prompt;
  for (int i = 0; i < 100; ++i) prompt += static_cast<char>('a' + i % 26);
  // Fits: unchanged (101 ids with BOS).
  EXPECT_EQ(truncate_middle(prompt, tok, 101, bos), prompt);
  // 101 ids > 20: half = 10 ids each side; the head's first id is BOS (skipped when decoding).
  EXPECT_EQ(truncate_middle(prompt, tok, 20, bos), prompt.substr(0, 9) + prompt.substr(90));
  // Odd max_length: half = int(21 / 2) = 10.
  EXPECT_EQ(truncate_middle(prompt, tok, 21, bos), prompt.substr(0, 9) + prompt.substr(90));
  // Without BOS.
  EXPECT_EQ(truncate_middle(prompt, tok, 20, std::nullopt), prompt.substr(0, 10) + prompt.substr(90));
  // Through a task: the filled prompt keeps the template's head and the question at the tail.
  testing::TempDir dir("lb");
  write(dir.sub("hotpotqa.jsonl"), "{\"input\": \"Which one?\", \"context\": \"" + std::string(5000, 'x') +
                                       "\", \"answers\": [\"a\"]}\n");
  LongBenchTask t(dir.path().string(), "hotpotqa");
  const std::string full = t.prompt(0);
  const std::string cut = t.prompt(0, tok, 400, bos);
  EXPECT_EQ(cut, full.substr(0, 199) + full.substr(full.size() - 200));
  EXPECT_EQ(cut.substr(cut.size() - 22), "on: Which one?\nAnswer:");
}

int run_score(std::vector<std::string> args, std::string& out) {
  args.insert(args.begin(), {"kvlab", "score"});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  ::testing::internal::CaptureStdout();
  int rc = -1;
  try {
    rc = cli::cmd_score(static_cast<int>(argv.size()), argv.data(), 2);
  } catch (...) {
    out = ::testing::internal::GetCapturedStdout();
    throw;
  }
  out = ::testing::internal::GetCapturedStdout();
  return rc;
}

TEST(LongBenchCli, ScorePrintsPythonRepr) {
  std::string out;
  EXPECT_EQ(run_score({"--metric", "qa_f1_score", "--prediction", "The Eiffel Tower, in Paris.", "--answer",
                       "Eiffel Tower"},
                      out),
            0);
  EXPECT_EQ(out, "0.6666666666666666\n");
  run_score({"--metric", "classification_score", "--prediction", "abcd", "--answer", "abcd", "--all-classes",
             "ab,abc,abcd"},
            out);
  EXPECT_EQ(out, "0.5\n");
  run_score({"--metric", "qa_f1_score", "--prediction", "Paris", "--answer", "London", "--answer", "paris"}, out);
  EXPECT_EQ(out, "1.0\n");
  run_score({"--task", "trec", "--prediction", "\nHuman\nEntity", "--answer", "Human", "--all-classes",
             "Entity,Human"},
            out);
  EXPECT_EQ(out, "1.0\n");
  run_score({"--metric", "count_score", "--prediction", "none", "--answer", "3"}, out);
  EXPECT_EQ(out, "0.0\n");
  const std::string e = error_of([&] {
    run_score({"--metric", "rouge_scor", "--prediction", "a", "--answer", "a"}, out);
  });
  EXPECT_NE(e.find("did you mean 'rouge_score'"), std::string::npos) << e;
}

TEST(LongBenchCli, PythonRepr) {
  EXPECT_EQ(py::repr(0.0), "0.0");
  EXPECT_EQ(py::repr(1.0), "1.0");
  EXPECT_EQ(py::repr(0.7999999950000002), "0.7999999950000002");
  EXPECT_EQ(py::repr(0.0001), "0.0001");
  EXPECT_EQ(py::repr(0.00001), "1e-05");
  EXPECT_EQ(py::repr(0.000015), "1.5e-05");
  EXPECT_EQ(py::repr(1e16), "1e+16");
  EXPECT_EQ(py::repr(123.0), "123.0");
}

}  // namespace
}  // namespace kvlab::datasets::longbench
