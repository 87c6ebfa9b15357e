#include "datasets/longbench/longbench.h"

#include <cstdio>
#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "framework/core/error.h"
#include "framework/core/file_io.h"
#include "framework/core/params.h"
#include "framework/model/tokenizer.h"

namespace kvlab::datasets::longbench {
namespace {

// config/dataset2prompt.json @ THUDM/LongBench 2e00731f (benchmarks.md 1.4), byte-exact: typos
// ("asconcisely"), qasper's "\n\n Answer", trailing ": " and "below. \n" kept.
const std::map<std::string, std::string>& prompt_table() {
  static const std::map<std::string, std::string> t = {
    {"narrativeqa", "You are given a story, which can be either a novel or a movie script, and a question. Answer the question asconcisely as you can, using a single phrase if possible. Do not provide any explanation.\n\nStory: {context}\n\nNow, answer the question based on the story asconcisely as you can, using a single phrase if possible. Do not provide any explanation.\n\nQuestion: {input}\n\nAnswer:"},
    {"qasper", "You are given a scientific article and a question. Answer the question as concisely as you can, using a single phrase or sentence if possible. If the question cannot be answered based on the information in the article, write \"unanswerable\". If the question is a yes/no question, answer \"yes\", \"no\", or \"unanswerable\". Do not provide any explanation.\n\nArticle: {context}\n\n Answer the question based on the above article as concisely as you can, using a single phrase or sentence if possible. If the question cannot be answered based on the information in the article, write \"unanswerable\". If the question is a yes/no question, answer \"yes\", \"no\", or \"unanswerable\". Do not provide any explanation.\n\nQuestion: {input}\n\nAnswer:"},
    {"multifieldqa_en", "Read the following text and answer briefly.\n\n{context}\n\nNow, answer the following question based on the above text, only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:"},
    {"multifieldqa_zh", "阅读以下文字并用中文简短回答：\n\n{context}\n\n现在请基于上面的文章回答下面的问题，只告诉我答案，不要输出任何其他字词。\n\n问题：{input}\n回答："},
    {"hotpotqa", "Answer the question based on the given passages. Only give me the answer and do not output any other words.\n\nThe following are given passages.\n{context}\n\nAnswer the question based on the given passages. Only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:"},
    {"2wikimqa", "Answer the question based on the given passages. Only give me the answer and do not output any other words.\n\nThe following are given passages.\n{context}\n\nAnswer the question based on the given passages. Only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:"},
    {"musique", "Answer the question based on the given passages. Only give me the answer and do not output any other words.\n\nThe following are given passages.\n{context}\n\nAnswer the question based on the given passages. Only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:"},
    {"dureader", "请基于给定的文章回答下述问题。\n\n文章：{context}\n\n请基于上述文章回答下面的问题。\n\n问题：{input}\n回答："},
    {"gov_report", "You are given a report by a government agency. Write a one-page summary of the report.\n\nReport:\n{context}\n\nNow, write a one-page summary of the report.\n\nSummary:"},
    {"qmsum", "You are given a meeting transcript and a query containing a question or instruction. Answer the query in one or more sentences.\n\nTranscript:\n{context}\n\nNow, answer the query based on the above meeting transcript in one or more sentences.\n\nQuery: {input}\nAnswer:"},
    {"multi_news", "You are given several news passages. Write a one-page summary of all news. \n\nNews:\n{context}\n\nNow, write a one-page summary of all the news.\n\nSummary:"},
    {"vcsum", "下面有一段会议记录，请你阅读后，写一段总结，总结会议的内容。\n会议记录：\n{context}\n\n会议总结："},
    {"trec", "Please determine the type of the question below. Here are some examples of questions.\n\n{context}\n{input}"},
    {"triviaqa", "Answer the question based on the given passage. Only give me the answer and do not output any other words. The following are some examples.\n\n{context}\n\n{input}"},
    {"samsum", "Summarize the dialogue into a few short sentences. The following are some examples.\n\n{context}\n\n{input}"},
    {"lsht", "请判断给定新闻的类别，下面是一些例子。\n\n{context}\n{input}"},
    {"passage_count", "There are some paragraphs below sourced from Wikipedia. Some of them may be duplicates. Please carefully read these paragraphs and determine how many unique paragraphs there are after removing duplicates. In other words, how many non-repeating paragraphs are there in total?\n\n{context}\n\nPlease enter the final count of unique paragraphs after removing duplicates. The output format should only contain the number, such as 1, 2, 3, and so on.\n\nThe final answer is: "},
    {"passage_retrieval_en", "Here are 30 paragraphs from Wikipedia, along with an abstract. Please determine which paragraph the abstract is from.\n\n{context}\n\nThe following is an abstract.\n\n{input}\n\nPlease enter the number of the paragraph that the abstract is from. The answer format must be like \"Paragraph 1\", \"Paragraph 2\", etc.\n\nThe answer is: "},
    {"passage_retrieval_zh", "以下是若干段落文字，以及其中一个段落的摘要。请确定给定的摘要出自哪一段。\n\n{context}\n\n下面是一个摘要\n\n{input}\n\n请输入摘要所属段落的编号。答案格式必须是\"段落1\"，\"段落2\"等格式\n\n答案是："},
    {"lcc", "Please complete the code given below. \n{context}Next line of code:\n"},
    {"repobench-p", "Please complete the code given below. \n{context}{input}Next line of code:\n"},
  };
  return t;
}

struct Row {
  const char* name;
  const char* category;
  const char* language;
  const char* metric;
  int max_gen;
  bool chat, first_line, in_e;
};

// benchmarks.md 1.3 (dataset2metric, dataset2maxlen, pred.py's chat exclusions, eval.py's
// first-line tasks, the LongBench-E list).
constexpr Row kRows[] = {
    {"narrativeqa", "single-doc QA", "en", "qa_f1_score", 128, true, false, false},
    {"qasper", "single-doc QA", "en", "qa_f1_score", 128, true, false, true},
    {"multifieldqa_en", "single-doc QA", "en", "qa_f1_score", 64, true, false, true},
    {"multifieldqa_zh", "single-doc QA", "zh", "qa_f1_zh_score", 64, true, false, false},
    {"hotpotqa", "multi-doc QA", "en", "qa_f1_score", 32, true, false, true},
    {"2wikimqa", "multi-doc QA", "en", "qa_f1_score", 32, true, false, true},
    {"musique", "multi-doc QA", "en", "qa_f1_score", 32, true, false, false},
    {"dureader", "multi-doc QA", "zh", "rouge_zh_score", 128, true, false, false},
    {"gov_report", "summarization", "en", "rouge_score", 512, true, false, true},
    {"qmsum", "summarization", "en", "rouge_score", 512, true, false, false},
    {"multi_news", "summarization", "en", "rouge_score", 512, true, false, true},
    {"vcsum", "summarization", "zh", "rouge_zh_score", 512, true, false, false},
    {"trec", "few-shot", "en", "classification_score", 64, false, true, true},
    {"triviaqa", "few-shot", "en", "qa_f1_score", 32, false, true, true},
    {"samsum", "few-shot", "en", "rouge_score", 128, false, true, true},
    {"lsht", "few-shot", "zh", "classification_score", 64, false, true, false},
    {"passage_count", "synthetic", "en", "count_score", 32, true, false, true},
    {"passage_retrieval_en", "synthetic", "en", "retrieval_score", 32, true, false, true},
    {"passage_retrieval_zh", "synthetic", "zh", "retrieval_zh_score", 32, true, false, false},
    {"lcc", "code", "code", "code_sim_score", 64, false, false, true},
    {"repobench-p", "code", "code", "code_sim_score", 64, false, false, true},
};

std::vector<std::string> task_names() {
  std::vector<std::string> out;
  for (const auto& r : kRows) out.emplace_back(r.name);
  return out;
}

std::string type_name(const nlohmann::json& v) {
  if (v.is_null()) return "null";
  if (v.is_string()) return "a string";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number_integer() || v.is_number_unsigned()) return "an integer";
  if (v.is_number()) return "a number";
  if (v.is_array()) return "a list";
  return "an object";
}

}  // namespace

const std::vector<TaskInfo>& tasks() {
  static const std::vector<TaskInfo> t = [] {
    std::vector<TaskInfo> out;
    for (const auto& r : kRows)
      out.push_back({r.name, r.category, r.language, r.metric, r.max_gen, r.chat, r.first_line, r.in_e,
                     prompt_table().at(r.name)});
    return out;
  }();
  return t;
}

const TaskInfo& task_info(const std::string& name) {
  std::string base = name;
  const bool e = base.size() > 2 && base.compare(base.size() - 2, 2, "_e") == 0;
  if (e) base.resize(base.size() - 2);
  for (const auto& t : tasks()) {
    if (t.name != base) continue;
    if (e && !t.in_e) fail("LongBench task '", base, "' has no LongBench-E version '", name, "'");
    return t;
  }
  const auto hint = did_you_mean(base, task_names());
  std::string list;
  for (const auto& n : task_names()) list += (list.empty() ? "" : ", ") + n;
  fail("unknown LongBench task '", name, "'", hint ? "; did you mean '" + *hint + "'?" : std::string(),
       " (tasks: ", list, ")");
}

std::string prompt_hash() {
  uint64_t h = 1469598103934665603ull;
  for (const auto& t : tasks()) {
    for (const std::string* s : {&t.name, &t.prompt}) {
      for (unsigned char c : *s) h = (h ^ c) * 1099511628211ull;
      h = (h ^ 0xFFu) * 1099511628211ull;
    }
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::vector<Sample> read_jsonl(const std::string& path) {
  if (!std::filesystem::exists(path))
    fail("LongBench data file not found: ", path,
         " (expected <data_dir>/<task>.jsonl from the official data.zip or THUDM/LongBench)");
  const std::string text = read_file(path);
  std::vector<Sample> out;
  size_t pos = 0, lineno = 0;
  if (text.compare(0, 3, "\xEF\xBB\xBF") == 0) pos = 3;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    const std::string_view line(text.data() + pos, nl - pos);
    pos = nl + 1;
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    auto where = [&] { return kvlab::str(path, ":", lineno); };
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      fail(where(), ": malformed JSON: ", e.what());
    }
    if (!j.is_object()) fail(where(), ": expected a JSON object, got ", type_name(j));
    Sample s;
    s.line = lineno;
    auto req_str = [&](const char* key, std::string& dst) {
      if (!j.contains(key)) fail(where(), ": missing key '", key, "'");
      if (!j[key].is_string()) fail(where(), ": key '", key, "' must be a string, got ", type_name(j[key]));
      dst = j[key].get<std::string>();
    };
    auto opt_str = [&](const char* key, std::string& dst) {
      if (!j.contains(key) || j[key].is_null()) return;
      if (!j[key].is_string()) fail(where(), ": key '", key, "' must be a string, got ", type_name(j[key]));
      dst = j[key].get<std::string>();
    };
    auto str_list = [&](const char* key) {
      const auto& v = j[key];
      if (!v.is_array()) fail(where(), ": key '", key, "' must be a list of strings, got ", type_name(v));
      std::vector<std::string> out;
      for (size_t i = 0; i < v.size(); ++i) {
        if (!v[i].is_string())
          fail(where(), ": key '", key, "[", i, "]' must be a string, got ", type_name(v[i]));
        out.push_back(v[i].get<std::string>());
      }
      return out;
    };
    req_str("input", s.input);
    req_str("context", s.context);
    if (!j.contains("answers")) fail(where(), ": missing key 'answers'");
    s.answers = str_list("answers");
    if (j.contains("length") && !j["length"].is_null()) {
      if (!j["length"].is_number_integer())
        fail(where(), ": key 'length' must be an integer, got ", type_name(j["length"]));
      s.length = j["length"].get<int64_t>();
    }
    opt_str("dataset", s.dataset);
    opt_str("language", s.language);
    opt_str("_id", s.id);
    if (j.contains("all_classes") && !j["all_classes"].is_null()) s.all_classes = str_list("all_classes");
    out.push_back(std::move(s));
  }
  return out;
}

std::string fill_prompt(const std::string& tmpl, const Sample& s) {
  std::string out;
  out.reserve(tmpl.size() + s.context.size() + s.input.size());
  size_t i = 0;
  while (i < tmpl.size()) {
    if (tmpl.compare(i, 9, "{context}") == 0) {
      out += s.context;
      i += 9;
    } else if (tmpl.compare(i, 7, "{input}") == 0) {
      out += s.input;
      i += 7;
    } else {
      out += tmpl[i++];
    }
  }
  return out;
}

std::string truncate_middle(const std::string& prompt, const model::Tokenizer& tok, int64_t max_length,
                            std::optional<int32_t> bos) {
  KVLAB_CHECK(max_length > 0) << "LongBench max_length must be positive, got " << max_length;
  std::vector<int32_t> ids;
  if (bos) ids.push_back(*bos);
  const auto body = tok.encode(prompt);
  ids.insert(ids.end(), body.begin(), body.end());
  if (static_cast<int64_t>(ids.size()) <= max_length) return prompt;
  const auto half = static_cast<size_t>(max_length / 2);  // int(max_length / 2)
  const std::vector<int32_t> head(ids.begin(), ids.begin() + half);
  const std::vector<int32_t> tail(ids.end() - half, ids.end());
  return tok.decode(head, true) + tok.decode(tail, true);
}

LongBenchTask::LongBenchTask(const std::string& data_dir, const std::string& name, MetricFlavour flavour)
    : info_(&task_info(name)), name_(name), flavour_(std::move(flavour)) {
  is_e_ = name != info_->name;
  path_ = (std::filesystem::path(data_dir) / (name + ".jsonl")).string();
  samples_ = read_jsonl(path_);
  if (samples_.empty()) fail(path_, ": no samples");
  if (samples_.back().all_classes) all_classes_ = *samples_.back().all_classes;
  if (info_->metric == "classification_score" && all_classes_.empty())
    fail(path_, ":", samples_.back().line, ": task '", info_->name,
         "' is scored by classification_score and needs 'all_classes' on the last line");
  flavour_.prompt_hash = prompt_hash();
}

std::string LongBenchTask::prompt(size_t i) const { return fill_prompt(info_->prompt, sample(i)); }

std::string LongBenchTask::prompt(size_t i, const model::Tokenizer& tok, int64_t max_length,
                                  std::optional<int32_t> bos) const {
  return truncate_middle(prompt(i), tok, max_length, bos);
}

double LongBenchTask::score(std::string_view prediction, const Sample& s) const {
  return score_sample(info_->metric, prediction, s.answers, all_classes_, info_->first_line, flavour_);
}

}  // namespace kvlab::datasets::longbench
