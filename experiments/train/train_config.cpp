#include "experiments/train/train_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <set>
#include <sstream>

#include "datasets/synthetic/tasks.h"
#include "framework/core/error.h"
#include "framework/harness/config_tree.h"
#include "framework/model/model_init.h"
#include "framework/optim/optimizer.h"

namespace kvlab::experiments {

namespace {

using T = ParamDecl::Type;

// Declarations of every scalar key, by section (the single source of types, defaults, ranges).
const std::vector<ParamDecl>& top_decls() {
  static const std::vector<ParamDecl> d = {
      {"name", T::kString, std::string("train"), {}, {}, {}, "label of the run"},
      {"output", T::kString, std::string(""), {}, {}, {}, "output folder (default results/train/<name>)"},
      {"seed", T::kInt, int64_t{0}, 0.0, {}, {}, "seed of model init, data and eval examples"},
      {"threads", T::kInt, int64_t{1}, 0.0, 1024.0, {}, "threads (0: all hardware threads)"},
      {"steps", T::kInt, int64_t{0}, 1.0, 1e12, {}, "optimizer steps (required)"},
      {"grad_accum", T::kInt, int64_t{1}, 1.0, 4096.0, {}, "micro-batches per optimizer step"},
      {"clip_norm", T::kFloat, 1.0, 0.0, {}, {}, "global gradient-norm clipping (0: off)"},
      {"eval_every", T::kInt, int64_t{0}, 0.0, {}, {}, "evaluate every k steps (0: off)"},
      {"ckpt_every", T::kInt, int64_t{100}, 0.0, {}, {}, "checkpoint every k steps (0: at the end and on stop only)"},
      {"keep_checkpoints", T::kInt, int64_t{3}, 1.0, 1000.0, {}, "newest checkpoints kept"},
      {"export_every", T::kInt, int64_t{0}, 0.0, {}, {}, "bf16 export every k steps (0: at the end only)"},
      {"log_every", T::kInt, int64_t{10}, 1.0, {}, {}, "plain progress line every k steps"},
  };
  return d;
}

const std::vector<ParamDecl>& model_decls() {
  static const std::vector<ParamDecl> d = {
      {"preset", T::kString, std::string(""), {}, {}, {}, "a `kvlab model init` preset; other keys override it"},
      {"hidden", T::kInt, int64_t{0}, 1.0, 65536.0, {}, "C"},
      {"layers", T::kInt, int64_t{0}, 1.0, 1024.0, {}, "L"},
      {"heads", T::kInt, int64_t{0}, 1.0, 1024.0, {}, "H"},
      {"kv_heads", T::kInt, int64_t{0}, 1.0, 1024.0, {}, "G (default H)"},
      {"head_dim", T::kInt, int64_t{0}, 2.0, 1024.0, {}, "D (default C / H)"},
      {"intermediate", T::kInt, int64_t{0}, 1.0, 1048576.0, {}, "SwiGLU width F"},
      {"rope_theta", T::kFloat, 10000.0, 1.0, {}, {}, "RoPE base"},
      {"max_position", T::kInt, int64_t{4096}, 2.0, 1048576.0, {}, "max_position_embeddings"},
      {"tie", T::kBool, true, {}, {}, {}, "tie lm_head to the embedding"},
      {"rms_norm_eps", T::kFloat, 1e-5, 0.0, 1.0, {}, "RMSNorm epsilon"},
      {"init_std", T::kFloat, 0.02, 0.0, 1.0, {}, "std of the random init of matrices"},
  };
  return d;
}

const std::vector<ParamDecl>& tokenizer_decls() {
  static const std::vector<ParamDecl> d = {
      {"path", T::kString, std::string(""), {}, {}, {}, "an existing tokenizer.json"},
      {"vocab_size", T::kInt, int64_t{4096}, 264.0, 262144.0, {}, "train a BPE of this size on the training split"},
      {"min_frequency", T::kInt, int64_t{2}, 1.0, {}, {}, "BPE: stop when the best pair is rarer"},
  };
  return d;
}

// data: and each stage (stages add name and steps).
const std::vector<ParamDecl>& data_decls() {
  static const std::vector<ParamDecl> d = {
      {"seq_len", T::kInt, int64_t{512}, 2.0, 1048576.0, {}, "T, tokens per row"},
      {"batch", T::kInt, int64_t{4}, 1.0, 65536.0, {}, "B, rows per micro-batch"},
      {"min_tokens", T::kInt, int64_t{64}, 1.0, {}, {}, "shortest piece (corpus chunk or task example)"},
      {"max_tokens", T::kInt, int64_t{0}, 0.0, {}, {}, "longest piece (0: seq_len)"},
      {"answer_weight", T::kFloat, 5.0, 0.0, {}, {}, "loss weight of answer tokens"},
      {"text_weight", T::kFloat, 1.0, 0.0, {}, {}, "loss weight of other tokens"},
  };
  return d;
}

const std::vector<ParamDecl>& stage_extra_decls() {
  static const std::vector<ParamDecl> d = {
      {"name", T::kString, std::string(""), {}, {}, {}, "stage label (default stageN)"},
      {"steps", T::kInt, int64_t{0}, 1.0, {}, {}, "steps of this stage (the last: optional)"},
  };
  return d;
}

const std::vector<ParamDecl>& eval_decls() {
  static const std::vector<ParamDecl> d = {
      {"batches", T::kInt, int64_t{4}, 0.0, 10000.0, {}, "held-out corpus rows for the eval loss"},
      {"seq_len", T::kInt, int64_t{512}, 2.0, 1048576.0, {}, "tokens per held-out row"},
      {"examples", T::kInt, int64_t{4}, 0.0, 10000.0, {}, "retrieval examples per task and length"},
  };
  return d;
}

std::vector<std::string> names_of(const std::vector<ParamDecl>& d, std::vector<std::string> extra = {}) {
  for (const auto& p : d) extra.push_back(p.name);
  return extra;
}

struct Parser {
  std::string file;
  std::vector<std::string> overridden;  // key paths given with --set (their lines mean nothing)

  std::string where(const YAML::Node& n, const std::string& key) const {
    return harness::detail::where(file, n, key);
  }

  // A key: value pair: the key's line, or "(--set)" when the value came from an override.
  template <typename KV>
  std::string at(const KV& kv, const std::string& key) const {
    for (const auto& o : overridden)
      if (key == o || key.rfind(o + ".", 0) == 0) return str(file, " (--set): ", key);
    return where(kv.first, key);
  }

  void check_keys(const YAML::Node& map, const std::string& prefix,
                  const std::vector<std::string>& allowed) const {
    harness::detail::check_keys(file, map, prefix, allowed);
  }

  YAML::Node map_node(const YAML::Node& n, const std::string& key) const {
    if (!n.IsMap()) fail(where(n, key), ": expected a map of keys");
    return n;
  }

  // Sets every scalar key of `map` found in `decls` (type and range checked by ParamValues);
  // keys in `skip` are left to the caller. Records the keys given.
  void fill(const YAML::Node& map, const std::string& prefix, const std::vector<ParamDecl>& decls,
            const std::vector<std::string>& skip, ParamValues& values,
            std::set<std::string>* given = nullptr) const {
    check_keys(map, prefix, names_of(decls, skip));
    for (const auto& kv : map) {
      const std::string k = kv.first.as<std::string>();
      if (std::find(skip.begin(), skip.end(), k) != skip.end()) continue;
      const std::string w = at(kv, prefix + k);
      if (!kv.second.IsScalar()) fail(w, ": expected a single value");
      values.set_from_string(k, kv.second.Scalar(), w);
      if (given) given->insert(k);
    }
  }

  // mix: {source: weight}; entries replace those of `mix` (a stage's mix overrides data's).
  void fill_mix(const YAML::Node& n, const std::string& key,
                std::vector<std::pair<std::string, double>>& mix) const {
    if (!n.IsMap()) fail(where(n, key), ": expected a map of source: weight");
    std::vector<std::string> allowed = {"corpus"};
    for (const auto& t : datasets::task_names()) allowed.push_back(t);
    check_keys(n, key + ".", allowed);
    for (const auto& kv : n) {
      const std::string k = kv.first.as<std::string>();
      const std::string w = at(kv, key + "." + k);
      if (!kv.second.IsScalar()) fail(w, ": expected a number");
      double v = 0;
      try {
        size_t used = 0;
        v = std::stod(kv.second.Scalar(), &used);
        if (used != kv.second.Scalar().size()) throw std::invalid_argument("");
      } catch (...) {
        fail(w, ": expected a number, got '", kv.second.Scalar(), "'");
      }
      if (!(v >= 0) || !std::isfinite(v)) fail(w, ": must be a finite number >= 0, got ", v);
      auto it = std::find_if(mix.begin(), mix.end(), [&](const auto& p) { return p.first == k; });
      if (it != mix.end()) it->second = v;
      else mix.emplace_back(k, v);
    }
    double total = 0;
    for (const auto& [k, v] : mix) total += v;
    if (!(total > 0)) fail(where(n, key), ": the mix weights sum to 0");
  }
};

std::vector<int64_t> int_list(const Parser& p, const YAML::Node& n, const std::string& key,
                              int64_t lo, int64_t hi) {
  std::vector<YAML::Node> items;
  if (n.IsScalar()) items.push_back(n);
  else if (n.IsSequence()) for (const auto& x : n) items.push_back(x);
  else fail(p.where(n, key), ": expected a list of integers");
  std::vector<int64_t> out;
  for (const auto& x : items) {
    if (!x.IsScalar()) fail(p.where(x, key), ": expected an integer");
    try {
      size_t used = 0;
      const long long v = std::stoll(x.Scalar(), &used);
      if (used != x.Scalar().size()) throw std::invalid_argument("");
      if (v < lo || v > hi) fail(p.where(x, key), ": ", v, " is out of range [", lo, ", ", hi, "]");
      out.push_back(v);
    } catch (const Error&) {
      throw;
    } catch (...) {
      fail(p.where(x, key), ": expected an integer, got '", x.Scalar(), "'");
    }
  }
  if (out.empty()) fail(p.where(n, key), ": the list is empty");
  return out;
}

datasets::StreamConfig stream_from(const ParamValues& v,
                                   const std::vector<std::pair<std::string, double>>& mix) {
  datasets::StreamConfig s;
  s.seq_len = v.get_int("seq_len");
  s.batch = v.get_int("batch");
  s.min_tokens = v.get_int("min_tokens");
  s.max_tokens = v.get_int("max_tokens");
  s.answer_weight = static_cast<float>(v.get_float("answer_weight"));
  s.text_weight = static_cast<float>(v.get_float("text_weight"));
  s.mix = mix;
  return s;
}

}  // namespace

TrainConfig load_train_config(const std::string& file, const std::vector<std::string>& overrides) {
  const YAML::Node root = harness::detail::load_yaml(file, overrides);
  Parser p{file, {}};
  for (const auto& ov : overrides) p.overridden.push_back(ov.substr(0, ov.find('=')));
  TrainConfig c;
  c.file = file;

  // ---- top-level scalars ----
  const std::vector<std::string> blocks = {"model", "tokenizer", "data", "stages", "optimizer", "schedule", "eval"};
  ParamValues top(top_decls());
  std::set<std::string> top_given;
  p.fill(root, "", top_decls(), blocks, top, &top_given);
  if (!top_given.count("steps")) fail(file, ": missing required key 'steps'");
  for (const char* k : {"model", "data"})
    if (!root[k]) fail(file, ": missing required key '", k, "'");
  c.name = top.get_string("name");
  for (char ch : c.name)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.'))
      fail(p.where(root["name"], "name"), ": use letters, digits, '-', '_' or '.' (it names a folder)");
  c.output = top.get_string("output");
  if (c.output.empty()) c.output = "results/train/" + c.name;
  c.seed = top.get_int("seed");
  c.threads = top.get_int("threads");
  c.steps = top.get_int("steps");
  c.grad_accum = top.get_int("grad_accum");
  c.clip_norm = top.get_float("clip_norm");
  c.eval_every = top.get_int("eval_every");
  c.ckpt_every = top.get_int("ckpt_every");
  c.keep_checkpoints = top.get_int("keep_checkpoints");
  c.export_every = top.get_int("export_every");
  c.log_every = top.get_int("log_every");

  // ---- model ----
  {
    const YAML::Node m = p.map_node(root["model"], "model");
    ParamValues v(model_decls());
    std::set<std::string> given;
    p.fill(m, "model.", model_decls(), {}, v, &given);
    const std::string preset = v.get_string("preset");
    model::ModelConfig mc;
    if (!preset.empty()) {
      try {
        mc = model::preset_config(preset);
      } catch (const Error& e) {
        fail(p.where(m["preset"], "model.preset"), ": ", e.what());
      }
    } else {
      for (const char* k : {"hidden", "layers", "heads", "intermediate"})
        if (!given.count(k))
          fail(p.where(m, "model"), ": missing '", k, "' (give a preset or hidden, layers, heads, intermediate)");
      mc = model::preset_config("tiny");  // Llama defaults; every shape field is set below
      mc.rope.theta = v.get_float("rope_theta");
      mc.max_position_embeddings = v.get_int("max_position");
      mc.tie_word_embeddings = v.get_bool("tie");
      mc.rms_norm_eps = v.get_float("rms_norm_eps");
      mc.num_key_value_heads = 0;
      mc.head_dim = 0;
    }
    if (given.count("hidden")) mc.hidden_size = v.get_int("hidden");
    if (given.count("layers")) mc.num_hidden_layers = v.get_int("layers");
    if (given.count("heads")) mc.num_attention_heads = v.get_int("heads");
    if (given.count("kv_heads")) mc.num_key_value_heads = v.get_int("kv_heads");
    if (given.count("head_dim")) mc.head_dim = v.get_int("head_dim");
    if (given.count("intermediate")) mc.intermediate_size = v.get_int("intermediate");
    if (given.count("rope_theta")) mc.rope.theta = v.get_float("rope_theta");
    if (given.count("max_position")) mc.max_position_embeddings = v.get_int("max_position");
    if (given.count("tie")) mc.tie_word_embeddings = v.get_bool("tie");
    if (given.count("rms_norm_eps")) mc.rms_norm_eps = v.get_float("rms_norm_eps");
    if (mc.num_key_value_heads == 0) mc.num_key_value_heads = mc.num_attention_heads;
    if (mc.head_dim == 0) {
      if (mc.hidden_size % mc.num_attention_heads)
        fail(p.where(m, "model.head_dim"), ": hidden ", mc.hidden_size, " is not a multiple of heads ",
             mc.num_attention_heads, "; give head_dim");
      mc.head_dim = mc.hidden_size / mc.num_attention_heads;
    }
    mc.rope.head_dim = mc.head_dim;
    mc.vocab_size = 4096;  // for validate() only; train_run.cpp sets it from the tokenizer
    try {
      mc.validate(p.where(m, "model"));
    } catch (const Error& e) {
      fail(e.what());
    }
    c.model = mc;
    c.init_std = v.get_float("init_std");
  }

  // ---- tokenizer ----
  if (root["tokenizer"]) {
    const YAML::Node t = p.map_node(root["tokenizer"], "tokenizer");
    ParamValues v(tokenizer_decls());
    std::set<std::string> given;
    p.fill(t, "tokenizer.", tokenizer_decls(), {}, v, &given);
    c.tokenizer_path = v.get_string("path");
    c.tokenizer_vocab = v.get_int("vocab_size");
    c.tokenizer_min_frequency = v.get_int("min_frequency");
    if (!c.tokenizer_path.empty() && (given.count("vocab_size") || given.count("min_frequency")))
      fail(p.where(t, "tokenizer"), ": give either path or vocab_size/min_frequency (to train one), not both");
  }

  // ---- data and stages ----
  const YAML::Node d = p.map_node(root["data"], "data");
  ParamValues base(data_decls());
  p.fill(d, "data.", data_decls(), {"mix"}, base);
  std::vector<std::pair<std::string, double>> base_mix = datasets::StreamConfig{}.mix;
  if (d["mix"]) {
    // data.mix lists the sources used: unlisted ones get weight 0.
    for (auto& [k, w] : base_mix) w = 0;
    p.fill_mix(d["mix"], "data.mix", base_mix);
  }
  if (root["stages"]) {
    const YAML::Node s = root["stages"];
    if (!s.IsSequence() || s.size() == 0) fail(p.where(s, "stages"), ": expected a non-empty list of stages");
    std::vector<ParamDecl> sdecls = data_decls();
    for (const auto& x : stage_extra_decls()) sdecls.push_back(x);
    int64_t sum = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      const std::string key = str("stages.", i);
      const YAML::Node sn = p.map_node(s[i], key);
      ParamValues v(sdecls);
      for (const auto& [k, val] : base.values()) v.set(k, val, key);
      std::set<std::string> given;
      p.fill(sn, key + ".", sdecls, {"mix"}, v, &given);
      auto mix = base_mix;
      if (sn["mix"]) p.fill_mix(sn["mix"], key + ".mix", mix);
      TrainStage st;
      st.name = v.get_string("name").empty() ? str("stage", i) : v.get_string("name");
      st.stream = stream_from(v, mix);
      const bool last = i + 1 == s.size();
      if (!given.count("steps")) {
        if (!last) fail(p.where(sn, key), ": missing 'steps' (only the last stage may omit it)");
        st.steps = c.steps - sum;
        if (st.steps < 1)
          fail(p.where(sn, key), ": the stages before it take ", sum, " of the ", c.steps, " steps; none left");
      } else {
        st.steps = v.get_int("steps");
        if (last && sum + st.steps != c.steps)
          fail(p.where(sn["steps"], key + ".steps"), ": the stages' steps sum to ", sum + st.steps,
               ", not steps = ", c.steps, " (omit the last stage's steps to run it to the end)");
      }
      sum += st.steps;
      if (!last && sum >= c.steps)
        fail(p.where(sn["steps"], key + ".steps"), ": the stages' steps reach ", sum,
             " before the last stage; steps = ", c.steps);
      c.stages.push_back(st);
    }
  } else {
    c.stages.push_back({"main", c.steps, stream_from(base, base_mix)});
  }
  for (size_t i = 0; i < c.stages.size(); ++i) {
    const auto& sc = c.stages[i].stream;
    const std::string key = root["stages"] ? str("stages.", i) : std::string("data");
    const YAML::Node at = root["stages"] ? root["stages"][i] : d;
    if (sc.seq_len > c.model.max_position_embeddings)
      fail(p.where(at, key + ".seq_len"), ": ", sc.seq_len, " is above model.max_position = ",
           c.model.max_position_embeddings);
    if (sc.max_tokens > 0 && sc.min_tokens > sc.max_tokens)
      fail(p.where(at, key + ".min_tokens"), ": min_tokens ", sc.min_tokens, " > max_tokens ", sc.max_tokens);
    if (sc.min_tokens > sc.seq_len)
      fail(p.where(at, key + ".min_tokens"), ": min_tokens ", sc.min_tokens, " > seq_len ", sc.seq_len);
  }

  // ---- optimizer ----
  {
    const YAML::Node o = root["optimizer"];
    if (o && o.IsScalar()) {
      c.optimizer = o.Scalar();
    } else if (o) {
      p.map_node(o, "optimizer");
      if (o["name"]) {
        if (!o["name"].IsScalar()) fail(p.where(o["name"], "optimizer.name"), ": expected a name");
        c.optimizer = o["name"].Scalar();
      }
    }
    try {
      c.optimizer_params = ParamValues(optim::OptimizerRegistry::instance().find(c.optimizer).params);
    } catch (const Error& e) {
      fail(p.where(o && o.IsMap() && o["name"] ? o["name"] : (o ? o : root), "optimizer.name"), ": ", e.what());
    }
    if (o && o.IsMap()) p.fill(o, "optimizer.", c.optimizer_params.decls(), {"name"}, c.optimizer_params);
  }

  // ---- schedule ----
  {
    std::vector<ParamDecl> sd;
    for (const auto& x : train::schedule_param_decls())
      if (x.name != "total_steps") sd.push_back(x);
    ParamValues v(train::schedule_param_decls());
    if (root["schedule"]) {
      const YAML::Node s = p.map_node(root["schedule"], "schedule");
      if (s["total_steps"])
        fail(p.where(s["total_steps"], "schedule.total_steps"), ": set by the top-level 'steps'");
      p.fill(s, "schedule.", sd, {}, v);
    }
    v.set("total_steps", c.steps, file);
    if (v.get_int("warmup_steps") > c.steps)
      fail(p.where(root["schedule"]["warmup_steps"], "schedule.warmup_steps"), ": ", v.get_int("warmup_steps"),
           " is more than steps = ", c.steps);
    if (v.get_float("min_lr") > v.get_float("lr"))
      fail(p.where(root["schedule"]["min_lr"], "schedule.min_lr"), ": ", v.get_float("min_lr"),
           " is above lr = ", v.get_float("lr"));
    c.schedule = train::schedule_from(v);
    train::validate(c.schedule);
  }

  // ---- eval ----
  if (root["eval"]) {
    const YAML::Node e = p.map_node(root["eval"], "eval");
    ParamValues v(eval_decls());
    p.fill(e, "eval.", eval_decls(), {"lengths", "tasks"}, v);
    c.eval.batches = v.get_int("batches");
    c.eval.seq_len = v.get_int("seq_len");
    c.eval.examples = v.get_int("examples");
    if (e["lengths"]) c.eval.lengths = int_list(p, e["lengths"], "eval.lengths", 16, c.model.max_position_embeddings);
    if (e["tasks"]) {
      const YAML::Node t = e["tasks"];
      if (!t.IsSequence()) fail(p.where(t, "eval.tasks"), ": expected a list of task names");
      c.eval.tasks.clear();
      const auto names = datasets::task_names();
      for (const auto& x : t) {
        if (!x.IsScalar()) fail(p.where(x, "eval.tasks"), ": expected a task name");
        const std::string n = x.Scalar();
        if (std::find(names.begin(), names.end(), n) == names.end()) {
          std::string msg = str(p.where(x, "eval.tasks"), ": unknown task '", n, "'");
          if (auto s = did_you_mean(n, names)) msg += str(" (did you mean '", *s, "'?)");
          fail(msg, "; tasks: passkey, needle, multikey, kv, copy, recall");
        }
        c.eval.tasks.push_back(n);
      }
    }
    if (c.eval.seq_len > c.model.max_position_embeddings)
      fail(p.where(e["seq_len"], "eval.seq_len"), ": ", c.eval.seq_len, " is above model.max_position = ",
           c.model.max_position_embeddings);
  }
  return c;
}

std::string TrainConfig::resolved_yaml() const {
  YAML::Emitter e;
  e.SetDoublePrecision(12);  // 0.1 prints as 0.1; still exact enough for the fingerprint
  e << YAML::BeginMap;
  e << YAML::Key << "name" << YAML::Value << name;
  e << YAML::Key << "output" << YAML::Value << output;
  e << YAML::Key << "seed" << YAML::Value << seed;
  e << YAML::Key << "threads" << YAML::Value << threads;
  e << YAML::Key << "steps" << YAML::Value << steps;
  e << YAML::Key << "grad_accum" << YAML::Value << grad_accum;
  e << YAML::Key << "clip_norm" << YAML::Value << clip_norm;
  e << YAML::Key << "eval_every" << YAML::Value << eval_every;
  e << YAML::Key << "ckpt_every" << YAML::Value << ckpt_every;
  e << YAML::Key << "keep_checkpoints" << YAML::Value << keep_checkpoints;
  e << YAML::Key << "export_every" << YAML::Value << export_every;
  e << YAML::Key << "log_every" << YAML::Value << log_every;
  e << YAML::Key << "model" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "hidden" << YAML::Value << model.hidden_size;
  e << YAML::Key << "layers" << YAML::Value << model.num_hidden_layers;
  e << YAML::Key << "heads" << YAML::Value << model.num_attention_heads;
  e << YAML::Key << "kv_heads" << YAML::Value << model.num_key_value_heads;
  e << YAML::Key << "head_dim" << YAML::Value << model.head_dim;
  e << YAML::Key << "intermediate" << YAML::Value << model.intermediate_size;
  e << YAML::Key << "rope_theta" << YAML::Value << model.rope.theta;
  e << YAML::Key << "max_position" << YAML::Value << model.max_position_embeddings;
  e << YAML::Key << "tie" << YAML::Value << model.tie_word_embeddings;
  e << YAML::Key << "rms_norm_eps" << YAML::Value << model.rms_norm_eps;
  e << YAML::Key << "init_std" << YAML::Value << init_std;
  e << YAML::EndMap;
  e << YAML::Key << "tokenizer" << YAML::Value << YAML::BeginMap;
  if (!tokenizer_path.empty()) {
    e << YAML::Key << "path" << YAML::Value << tokenizer_path;
  } else {
    e << YAML::Key << "vocab_size" << YAML::Value << tokenizer_vocab;
    e << YAML::Key << "min_frequency" << YAML::Value << tokenizer_min_frequency;
  }
  e << YAML::EndMap;
  e << YAML::Key << "stages" << YAML::Value << YAML::BeginSeq;
  for (const auto& s : stages) {
    e << YAML::BeginMap;
    e << YAML::Key << "name" << YAML::Value << s.name;
    e << YAML::Key << "steps" << YAML::Value << s.steps;
    e << YAML::Key << "seq_len" << YAML::Value << s.stream.seq_len;
    e << YAML::Key << "batch" << YAML::Value << s.stream.batch;
    e << YAML::Key << "min_tokens" << YAML::Value << s.stream.min_tokens;
    e << YAML::Key << "max_tokens" << YAML::Value << s.stream.max_tokens;
    e << YAML::Key << "answer_weight" << YAML::Value << s.stream.answer_weight;
    e << YAML::Key << "text_weight" << YAML::Value << s.stream.text_weight;
    e << YAML::Key << "mix" << YAML::Value << YAML::Flow << YAML::BeginMap;
    for (const auto& [k, w] : s.stream.mix) e << YAML::Key << k << YAML::Value << w;
    e << YAML::EndMap;
    e << YAML::EndMap;
  }
  e << YAML::EndSeq;
  e << YAML::Key << "optimizer" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "name" << YAML::Value << optimizer;
  for (const auto& [k, v] : optimizer_params.values())
    e << YAML::Key << k << YAML::Value << param_value_to_string(v);
  e << YAML::EndMap;
  e << YAML::Key << "schedule" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "lr" << YAML::Value << schedule.max_lr;
  e << YAML::Key << "min_lr" << YAML::Value << schedule.min_lr;
  e << YAML::Key << "warmup_steps" << YAML::Value << schedule.warmup_steps;
  e << YAML::Key << "warmup_start_factor" << YAML::Value << schedule.start_factor;
  e << YAML::EndMap;
  e << YAML::Key << "eval" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "batches" << YAML::Value << eval.batches;
  e << YAML::Key << "seq_len" << YAML::Value << eval.seq_len;
  e << YAML::Key << "examples" << YAML::Value << eval.examples;
  e << YAML::Key << "lengths" << YAML::Value << YAML::Flow << eval.lengths;
  e << YAML::Key << "tasks" << YAML::Value << YAML::Flow << eval.tasks;
  e << YAML::EndMap;
  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

}  // namespace kvlab::experiments
