// kvlab model init | tokenize | logits | generate | ppl.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <cblas.h>
#include <nlohmann/json.hpp>

#include "framework/cli/args.h"
#include "framework/cli/commands.h"
#include "framework/core/error.h"
#include "framework/core/file_io.h"
#include "framework/core/timer.h"
#include "framework/io/h5_file.h"
#include "framework/model/generate.h"
#include "framework/model/llama.h"
#include "framework/model/model_init.h"
#include "kvlab/build_info.h"

namespace kvlab::cli {

namespace {

OptionSpec threads_option() {
  return {"threads", "N", "worker threads (0: all hardware threads)", "0"};
}
OptionSpec model_option() {
  return {"model", "DIR", "model folder (config.json, model.safetensors, tokenizer.json)", "", true};
}

std::shared_ptr<const model::Model> load_model(const Args& a) {
  return model::Model::load(a.get("model"));
}

const model::Tokenizer& need_tokenizer(const model::Model& m) {
  if (!m.tokenizer()) fail(m.dir(), ": no tokenizer.json in the model folder");
  return *m.tokenizer();
}

// Parses "1,2,3" into ids.
std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    char* end = nullptr;
    const long v = std::strtol(item.c_str(), &end, 10);
    if (*end || v < 0 || v > INT32_MAX) fail("--tokens: '", item, "' is not a token id");
    ids.push_back(static_cast<int32_t>(v));
  }
  return ids;
}

// Text -> ids with an optional BOS (the first of config's bos_token_ids).
std::vector<int32_t> encode_text(const model::Model& m, const std::string& text, bool bos) {
  std::vector<int32_t> ids;
  if (bos) {
    if (m.config().bos_token_ids.empty()) fail(m.dir(), ": --bos given but config.json has no bos_token_id");
    ids.push_back(static_cast<int32_t>(m.config().bos_token_ids[0]));
  }
  const auto t = need_tokenizer(m).encode(text);
  ids.insert(ids.end(), t.begin(), t.end());
  return ids;
}

kv::KvFactory full_cache() {
  const auto& reg = kv::KvRegistry::instance();
  return kv::make_kv_factory("full_cache", ParamValues(reg.find("full_cache").params));
}

}  // namespace

int set_threads(int threads) {
  if (threads < 0) fail("--threads must be >= 0");
  if (threads == 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ThreadPool::set_global_threads(threads);
  openblas_set_num_threads(threads);
  return threads;
}

int cmd_model_init(int argc, char** argv, int first) {
  Args a("model init", "Writes a random model (config.json, model.safetensors, tokenizer.json) for tests and speed runs.",
         {{"config", "SHAPE.json", "a config.json giving the shape"},
          {"preset", "NAME", "a named shape: tiny, small, llama3-8b-layer, qwen2-tiny"},
          {"dtype", "T", "weight dtype: f32, bf16 or f16", "bf16"},
          {"seed", "S", "random seed", "0"},
          {"std", "X", "standard deviation of the weights", "0.02"},
          {"out", "DIR", "output folder", "", true}});
  if (!a.parse(argc, argv, first)) return 0;
  if (a.has("config") == a.has("preset")) fail("kvlab model init: give exactly one of --config and --preset");
  model::InitOptions o;
  o.config = a.has("config") ? model::load_model_config(a.get("config")) : model::preset_config(a.get("preset"));
  o.dtype = parse_dtype(a.get("dtype"), "--dtype");
  o.seed = static_cast<uint64_t>(a.get_int("seed"));
  o.init_std = a.get_float("std");
  model::write_random_model(o, a.get("out"));
  std::fprintf(stderr, "wrote %s\n", a.get("out").c_str());
  return 0;
}

int cmd_tokenize(int argc, char** argv, int first) {
  Args a("tokenize", "Prints the token ids of a text as a JSON array (no BOS unless --bos).",
         {{"model", "DIR", "model folder or a tokenizer.json", "", true},
          {"text", "STR", "text to encode", "", true},
          {"bos", "", "prepend the BOS token"}});
  if (!a.parse(argc, argv, first)) return 0;
  const std::string path = a.get("model");
  const std::string tok_path = path.size() >= 5 && path.substr(path.size() - 5) == ".json" ? path : path + "/tokenizer.json";
  const auto tok = model::Tokenizer::load(tok_path);
  std::vector<int32_t> ids;
  if (a.flag("bos")) {
    const auto cfg = model::load_model_config(path + "/config.json");
    if (cfg.bos_token_ids.empty()) fail(path, "/config.json: no bos_token_id for --bos");
    ids.push_back(static_cast<int32_t>(cfg.bos_token_ids[0]));
  }
  const auto t = tok.encode(a.get("text"));
  ids.insert(ids.end(), t.begin(), t.end());
  std::printf("%s\n", nlohmann::json(ids).dump().c_str());
  return 0;
}

int cmd_logits(int argc, char** argv, int first) {
  Args a("logits", "Writes full-cache logits to HDF5: datasets tokens [T] int32 and logits [T, V] float32.",
         {model_option(),
          {"text", "STR", "text to encode (no BOS unless --bos)"},
          {"tokens", "IDS", "comma-separated token ids, e.g. 1,2,3"},
          {"bos", "", "prepend the BOS token to --text"},
          {"out", "FILE.h5", "output file", "", true},
          threads_option()});
  if (!a.parse(argc, argv, first)) return 0;
  if (a.has("text") == a.has("tokens")) fail("kvlab logits: give exactly one of --text and --tokens");
  const int threads = set_threads(static_cast<int>(a.get_int("threads")));
  auto m = load_model(a);
  const auto ids = a.has("text") ? encode_text(*m, a.get("text"), a.flag("bos")) : parse_ids(a.get("tokens"));
  if (ids.empty()) fail("kvlab logits: no tokens to run");
  const int64_t T = static_cast<int64_t>(ids.size()), V = m->config().vocab_size;
  std::vector<float> logits(T * V);
  model::Sequence seq(m, full_cache(), ThreadPool::global());
  seq.forward(ids, logits.data(), true);
  io::H5Writer w(a.get("out"));
  w.write_i32("tokens", ids.data(), {T});
  w.write_f32("logits", logits.data(), {T, V});
  w.set_attr("/", "model", m->dir());
  w.set_attr("/", "kvlab_version", KVLAB_VERSION);
  w.set_attr("/", "kvlab_commit", KVLAB_GIT_COMMIT);
  w.set_attr("/", "threads", std::to_string(threads));
  w.close();
  std::fprintf(stderr, "wrote %s: %lld tokens x %lld logits\n", a.get("out").c_str(),
               static_cast<long long>(T), static_cast<long long>(V));
  return 0;
}

int cmd_generate(int argc, char** argv, int first) {
  Args a("generate", "Generates a continuation of a prompt with the full cache; prints the text, and speed to stderr.",
         {model_option(),
          {"prompt", "STR", "prompt text (BOS is prepended when the model has one)", "", true},
          {"max-new-tokens", "N", "tokens to generate at most", "64"},
          {"temperature", "X", "0 = greedy; > 0 samples from softmax(logits / X)", "0"},
          {"top-p", "P", "nucleus sampling mass in (0, 1]", "1"},
          {"seed", "S", "sampling seed", "0"},
          {"no-bos", "", "do not prepend BOS"},
          {"json", "", "print a JSON object (text, ids, timings) instead of plain text"},
          threads_option()});
  if (!a.parse(argc, argv, first)) return 0;
  const int threads = set_threads(static_cast<int>(a.get_int("threads")));
  auto m = load_model(a);
  const bool bos = !a.flag("no-bos") && !m->config().bos_token_ids.empty();
  const auto prompt = encode_text(*m, a.get("prompt"), bos);
  model::SamplingOptions so;
  so.max_new_tokens = a.get_int("max-new-tokens");
  so.temperature = a.get_float("temperature");
  so.top_p = a.get_float("top-p");
  so.seed = static_cast<uint64_t>(a.get_int("seed"));
  if (so.max_new_tokens < 0) fail("--max-new-tokens must be >= 0");
  if (so.temperature < 0) fail("--temperature must be >= 0");
  if (!(so.top_p > 0 && so.top_p <= 1)) fail("--top-p must be in (0, 1]");
  model::Sequence seq(m, full_cache(), ThreadPool::global());
  const auto r = model::generate(seq, prompt, so);
  const std::string text = need_tokenizer(*m).decode(r.tokens, /*skip_special=*/true);
  const double prefill_tps = prompt.size() / std::max(r.prefill_seconds, 1e-9);
  const double decode_tps = r.tokens.size() / std::max(r.decode_seconds, 1e-9);
  if (a.flag("json")) {
    nlohmann::json j = {{"text", text}, {"ids", r.tokens}, {"prompt_tokens", prompt.size()},
                        {"stopped_on_eos", r.stopped_on_eos}, {"prefill_tok_s", prefill_tps},
                        {"decode_tok_s", decode_tps}, {"threads", threads}};
    // Generated bytes need not be valid UTF-8 (byte-level vocabularies): replace, don't throw.
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("%s\n", text.c_str());
    std::fprintf(stderr, "prompt %zu tokens (%.1f tok/s), generated %zu tokens (%.1f tok/s)%s\n",
                 prompt.size(), prefill_tps, r.tokens.size(), decode_tps,
                 r.stopped_on_eos ? ", stopped on EOS" : "");
  }
  return 0;
}

int cmd_ppl(int argc, char** argv, int first) {
  Args a("ppl", "Prints the perplexity of a text file under the model (full cache, teacher forcing).",
         {model_option(),
          {"text-file", "F", "text file", "", true},
          {"max-tokens", "N", "score at most the first N tokens (0: all)", "0"},
          {"no-bos", "", "do not prepend BOS"},
          {"json", "", "print a JSON object instead of a line"},
          threads_option()});
  if (!a.parse(argc, argv, first)) return 0;
  const int threads = set_threads(static_cast<int>(a.get_int("threads")));
  auto m = load_model(a);
  const bool bos = !a.flag("no-bos") && !m->config().bos_token_ids.empty();
  auto ids = encode_text(*m, read_file(a.get("text-file")), bos);
  const int64_t max_tokens = a.get_int("max-tokens");
  if (max_tokens < 0) fail("--max-tokens must be >= 0");
  if (max_tokens > 0 && static_cast<int64_t>(ids.size()) > max_tokens) ids.resize(max_tokens);
  model::Sequence seq(m, full_cache(), ThreadPool::global());
  Timer timer;
  const auto r = model::score_tokens(seq, ids);
  const double secs = timer.seconds();
  if (a.flag("json")) {
    nlohmann::json j = {{"perplexity", r.perplexity()}, {"tokens_scored", r.count()},
                        {"nll_mean", r.nll_sum / r.count()}, {"seconds", secs}, {"threads", threads}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("perplexity %.6f over %lld tokens\n", r.perplexity(), static_cast<long long>(r.count()));
  }
  return 0;
}

}  // namespace kvlab::cli
