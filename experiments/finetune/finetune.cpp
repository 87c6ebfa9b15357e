// Fine-tuning experiment (kvlab issue 7 item 4; methods.md 3.6 evaluation setup, 3.8 traces):
// fine-tunes a base model folder (HF layout, e.g. models/kvlab-tiny) on one datasets/finetune
// task with any registered optimizer (adamw; sgc, mesgc, cesgc, galore once merged) over the
// chosen projections (methods.md 3.5: q,k,v,o,gate,up,down; embeddings and head excluded), or
// with LoRA adapters (adapter: lora; the optimizer then updates the adapters only), and measures
// held-out quality before and after, the loss curve, optimizer-state bytes, trainable parameters
// and the process's peak resident memory (VmHWM).
//
// One step: B examples (seeded epoch order), right-padded to the longest (causal attention: the
// padding never reaches earlier positions), loss = token mean CE over the scored positions
// (the answer for QA/classification; every token for lm); clip to clip_norm over the optimizer's
// blocks; lr from the warmup-cosine schedule; optimizer.step.
// Held-out metrics: exact_match tasks report accuracy (greedy decoding of up to gen_tokens
// tokens after the prompt, first word normalised, compared with the accepted answers) and the
// answer loss (teacher forced, nats/token); lm reports held-out perplexity on unseen passages of
// the fine-tuning book and on the original domain.
// VmHWM is reset at the start (/proc/self/clear_refs "5") when the kernel allows; it counts the
// whole process, including the inference copy of the model the harness loaded.
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "baselines/lora/lora.h"
#include "datasets/finetune/finetune_tasks.h"
#include "experiments/common/experiment.h"
#include "framework/core/error.h"
#include "framework/core/rng.h"
#include "framework/core/timer.h"
#include "framework/model/llama_train.h"
#include "framework/model/tokenizer.h"
#include "framework/optim/optimizer.h"
#include "framework/train/clip.h"
#include "framework/train/schedule.h"

namespace kvlab::experiments {

namespace {

using Json = nlohmann::json;

// Peak resident set (VmHWM) in bytes, or -1 when /proc is unavailable.
int64_t peak_rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return -1;
}
bool reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  if (!f) return false;
  f << "5";
  return static_cast<bool>(f.flush());
}

// "k=v,k=v" -> pairs (empty string: none); errors name task.optimizer_args.
std::vector<std::pair<std::string, std::string>> parse_args(const std::string& s) {
  std::vector<std::pair<std::string, std::string>> out;
  if (s.find_first_not_of(" \t") == std::string::npos) return out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const size_t eq = item.find('=');
    auto trim = [](std::string x) {
      const size_t a = x.find_first_not_of(" \t"), b = x.find_last_not_of(" \t");
      return a == std::string::npos ? std::string() : x.substr(a, b - a + 1);
    };
    if (eq == std::string::npos || trim(item.substr(0, eq)).empty())
      fail("task.optimizer_args: '", item,
           "' is not KEY=VALUE (write e.g. weight_decay=0,beta2=0.99)");
    out.push_back({trim(item.substr(0, eq)), trim(item.substr(eq + 1))});
  }
  return out;
}

// ".self_attn.q_proj.weight" for "q" or "q_proj" (methods.md 3.5 module names); errors name `key`.
std::string hf_weight_suffix(const std::string& name, const std::string& key) {
  const std::string s = name.ends_with("_proj") ? name.substr(0, name.size() - 5) : name;
  static const char* const kShort[model::kLoraTargets] = {"q", "k", "v", "o", "gate", "up", "down"};
  for (int i = 0; i < model::kLoraTargets; ++i)
    if (s == kShort[i])
      return str(".", model::lora_target_hf(static_cast<model::LoraTarget>(i)), ".weight");
  fail(key, ": unknown module '", name, "' (q,k,v,o,gate,up,down",
       key == "task.train_modules" ? " or all)" : ")");
}

// One tokenized example: ids [n], scored positions t with t + 1 >= answer_start.
struct Tok {
  std::vector<int32_t> ids;
  int64_t answer_start = 1;
  const datasets::FtExample* ex = nullptr;
};

struct Batch {
  int64_t B = 0, T = 0;
  std::vector<int32_t> tokens, targets;
  int64_t scored = 0;
};

Batch make_batch(const std::vector<const Tok*>& xs) {
  Batch b;
  b.B = static_cast<int64_t>(xs.size());
  for (const Tok* x : xs) b.T = std::max<int64_t>(b.T, static_cast<int64_t>(x->ids.size()));
  b.tokens.assign(static_cast<size_t>(b.B * b.T), 0);
  b.targets.assign(static_cast<size_t>(b.B * b.T), -1);
  for (int64_t i = 0; i < b.B; ++i) {
    const Tok& x = *xs[static_cast<size_t>(i)];
    const int64_t n = static_cast<int64_t>(x.ids.size());
    for (int64_t t = 0; t < n; ++t)
      b.tokens[static_cast<size_t>(i * b.T + t)] = x.ids[static_cast<size_t>(t)];
    for (int64_t t = std::max<int64_t>(0, x.answer_start - 1); t + 1 < n; ++t) {
      b.targets[static_cast<size_t>(i * b.T + t)] = x.ids[static_cast<size_t>(t + 1)];
      ++b.scored;
    }
  }
  return b;
}

class Runner {
 public:
  Runner(const RunContext& ctx) : ctx_(ctx), p_(ctx.task) {}
  Json run();

 private:
  Tok tokenize(const datasets::FtExample& e) const;
  double mean_loss(model::TrainModel& m, const std::vector<Tok>& xs);
  double accuracy(model::TrainModel& m, const std::vector<Tok>& xs);
  Json evaluate(model::TrainModel& m, const std::string& when);

  const RunContext& ctx_;
  const ParamValues& p_;
  const model::Tokenizer* tok_ = nullptr;
  datasets::FtTask task_;
  std::vector<Tok> train_, heldout_, original_;
  std::vector<int32_t> bos_;
  int64_t max_len_ = 0;
};

Tok Runner::tokenize(const datasets::FtExample& e) const {
  Tok t;
  t.ex = &e;
  std::vector<int32_t> prompt = e.prompt.empty() ? std::vector<int32_t>{} : tok_->encode(e.prompt);
  std::vector<int32_t> answer = tok_->encode(e.answer);
  const int64_t room = max_len_ - static_cast<int64_t>(bos_.size());
  if (static_cast<int64_t>(answer.size()) > room) answer.resize(static_cast<size_t>(room));
  const int64_t keep = std::max<int64_t>(0, room - static_cast<int64_t>(answer.size()));
  if (static_cast<int64_t>(prompt.size()) > keep)  // keep the end of a long prompt
    prompt.erase(prompt.begin(), prompt.end() - keep);
  t.ids = bos_;
  t.ids.insert(t.ids.end(), prompt.begin(), prompt.end());
  t.answer_start = std::max<int64_t>(1, static_cast<int64_t>(t.ids.size()));
  t.ids.insert(t.ids.end(), answer.begin(), answer.end());
  return t;
}

// Token-mean CE over the scored positions of every example (nats/token).
double Runner::mean_loss(model::TrainModel& m, const std::vector<Tok>& xs) {
  const int64_t eb = p_.get_int("eval_batch");
  double sum = 0;
  int64_t count = 0;
  for (size_t i = 0; i < xs.size(); i += static_cast<size_t>(eb)) {
    std::vector<const Tok*> group;
    for (size_t j = i; j < std::min(xs.size(), i + static_cast<size_t>(eb)); ++j)
      group.push_back(&xs[j]);
    const Batch b = make_batch(group);
    if (b.scored == 0) continue;
    sum += m.forward_loss(b.tokens.data(), b.targets.data(), nullptr, b.B, b.T) *
           static_cast<double>(b.scored);
    count += b.scored;
  }
  return count ? sum / static_cast<double>(count) : 0.0;
}

// Greedy decoding of up to gen_tokens tokens per prompt (a full forward per token: no KV cache in
// the training model; stops once a first word is complete), scored by exact match.
double Runner::accuracy(model::TrainModel& m, const std::vector<Tok>& xs) {
  const int64_t gen = p_.get_int("gen_tokens"), V = m.config().vocab_size;
  int64_t correct = 0;
  std::vector<float> logits;
  for (const Tok& x : xs) {
    std::vector<int32_t> ids(x.ids.begin(), x.ids.begin() + x.answer_start);
    std::vector<int32_t> out;
    for (int64_t g = 0; g < gen; ++g) {
      const int64_t T = static_cast<int64_t>(ids.size());
      logits.resize(static_cast<size_t>(T * V));
      m.forward_logits(ids.data(), 1, T, logits.data());
      const float* row = logits.data() + (T - 1) * V;
      const int32_t next = static_cast<int32_t>(std::max_element(row, row + V) - row);
      ids.push_back(next);
      out.push_back(next);
      const std::string text = tok_->decode(out, true);
      const size_t a = text.find_first_not_of(" \t\n");
      if (a != std::string::npos && text.find_first_of(" \t\n", a) != std::string::npos) break;
    }
    const std::string pred = datasets::normalize_answer(tok_->decode(out, true));
    for (const auto& want : x.ex->answers) correct += pred == want;
  }
  return xs.empty() ? 0.0 : static_cast<double>(correct) / static_cast<double>(xs.size());
}

Json Runner::evaluate(model::TrainModel& m, const std::string& when) {
  Json r;
  const double loss = mean_loss(m, heldout_);
  if (task_.metric == "perplexity") {
    r["heldout_loss"] = loss;
    r["heldout_perplexity"] = std::exp(loss);
    const double ol = mean_loss(m, original_);
    r["original_loss"] = ol;
    r["original_perplexity"] = std::exp(ol);
  } else {
    r["heldout_answer_loss"] = loss;
    r["heldout_accuracy"] = accuracy(m, heldout_);
  }
  if (ctx_.trace)
    for (const auto& [k, v] : r.items())
      ctx_.trace->append_scalar("eval_" + when + "/" + k, v.get<double>(),
                                k.find("accuracy") != std::string::npos     ? "fraction"
                                : k.find("perplexity") != std::string::npos ? "1"
                                                                            : "nats/token");
  return r;
}

Json Runner::run() {
  // Everything that can be refused is checked before any work.
  const std::string opt_name = p_.get_string("optimizer");
  const auto& om = optim::OptimizerRegistry::instance().find(opt_name);
  ParamValues opt_values(om.params);
  for (const auto& [k, v] : parse_args(p_.get_string("optimizer_args")))
    opt_values.set_from_string(k, v, "task.optimizer_args (optimizer " + opt_name + ")");
  const bool lora = p_.get_string("adapter") == "lora";
  const model::LoraConfig lc = baselines::lora_config_from(p_, "lora_");
  train::WarmupCosine sched;
  sched.max_lr = p_.get_float("lr");
  sched.min_lr = p_.get_float("min_lr");
  sched.warmup_steps = p_.get_int("warmup_steps");
  sched.total_steps = p_.get_int("steps");
  if (sched.warmup_steps > sched.total_steps)
    fail("task.warmup_steps = ", sched.warmup_steps, " exceeds task.steps = ", sched.total_steps);
  if (sched.min_lr > sched.max_lr)
    fail("task.min_lr = ", sched.min_lr, " exceeds task.lr = ", sched.max_lr);
  train::validate(sched);
  tok_ = ctx_.model->tokenizer();
  if (!tok_) fail(ctx_.model->dir(), ": the finetune experiment needs a tokenizer.json");
  if (!ctx_.model->config().bos_token_ids.empty())
    bos_.push_back(static_cast<int32_t>(ctx_.model->config().bos_token_ids[0]));
  max_len_ = p_.get_int("max_len");

  // Weights handed to the optimizer without an adapter: HF name suffixes of train_modules.
  const std::string tm = p_.get_string("train_modules");
  std::vector<std::string> hf;
  if (tm != "all")
    for (const auto& t : baselines::split_modules(tm, "task.train_modules"))
      hf.push_back(hf_weight_suffix(t, "task.train_modules"));

  const bool rss_reset = reset_peak_rss();
  const int64_t rss_start = peak_rss_bytes();
  datasets::FtTaskOptions to;
  to.task = p_.get_string("dataset");
  to.seed = static_cast<uint64_t>(p_.get_int("split_seed"));
  to.n_train = p_.get_int("n_train");
  to.n_heldout = p_.get_int("n_heldout");
  to.heldout_fraction = p_.get_float("heldout_fraction");
  to.text = p_.get_string("text");
  to.original = p_.get_string("original");
  to.passage_chars = p_.get_int("passage_chars");
  task_ = datasets::build_finetune_task(to);
  for (const auto& e : task_.train) train_.push_back(tokenize(e));
  for (const auto& e : task_.heldout) heldout_.push_back(tokenize(e));
  for (const auto& e : task_.original) original_.push_back(tokenize(e));
  if (train_.empty()) fail("task.dataset ", to.task, ": no training examples");

  auto m = model::TrainModel::load(ctx_.model->dir(), *ctx_.pool, /*base_grads=*/!lora);
  std::vector<optim::ParamBlock> blocks;
  std::string trained;
  if (lora) {
    m->enable_lora(lc);
    blocks = baselines::lora_blocks(*m);
    trained = "lora adapters on " + p_.get_string("lora_target_modules");
  } else {
    for (auto& p : m->params()) {
      bool take = tm == "all";
      for (const auto& h : hf) take = take || p.name.ends_with(h);
      if (take) blocks.push_back({p.name, p.data, p.grad, p.shape, p.is_matrix});
    }
    trained = tm;
  }
  int64_t trainable = 0;
  for (const auto& b : blocks) trainable += b.numel();
  auto opt = om.make(opt_values);

  Json before = evaluate(*m, "before");
  // Training.
  const int64_t steps = p_.get_int("steps"), B = p_.get_int("batch");
  const int64_t eval_every = p_.get_int("eval_every");
  const double clip = p_.get_float("clip_norm");
  Rng rng(ctx_.seed ^ 0xF17E7u);
  std::vector<size_t> order;
  size_t cursor = 0;
  std::vector<double> losses;
  Timer timer;
  for (int64_t s = 0; s < steps; ++s) {
    std::vector<const Tok*> group;
    while (static_cast<int64_t>(group.size()) < B) {
      if (cursor == order.size()) {  // new epoch: a fresh seeded permutation
        order.resize(train_.size());
        for (size_t i = 0; i < order.size(); ++i) order[i] = i;
        for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
        cursor = 0;
      }
      group.push_back(&train_[order[cursor++]]);
    }
    const Batch b = make_batch(group);
    m->zero_grad();
    const double loss = m->forward_backward(b.tokens.data(), b.targets.data(), nullptr, b.B, b.T);
    std::vector<std::span<float>> grads;
    for (auto& bl : blocks)
      grads.emplace_back(const_cast<float*>(bl.grad), static_cast<size_t>(bl.numel()));
    const train::ClipResult c = clip > 0 ? train::clip_grad_norm(grads, clip)
                                         : train::ClipResult{train::global_grad_norm(grads)};
    if (!std::isfinite(loss) || !std::isfinite(c.total_norm))
      fail("finetune diverged at step ", s + 1, ": loss ", loss, ", gradient norm ", c.total_norm);
    const double lr = train::lr_at(sched, s);
    opt->step(blocks, lr);
    losses.push_back(loss);
    if (ctx_.trace) {
      ctx_.trace->append_scalar("train/step", static_cast<double>(s + 1), "steps");
      ctx_.trace->append_scalar("train/loss", loss, "nats/token");
      ctx_.trace->append_scalar("train/lr", lr, "1");
      ctx_.trace->append_scalar("train/grad_norm", c.total_norm, "1");
      ctx_.trace->append_scalar("train/optimizer_state_bytes",
                                static_cast<double>(opt->state_bytes()), "bytes");
    }
    if (eval_every > 0 && (s + 1) % eval_every == 0 && ctx_.trace) {
      ctx_.trace->append_scalar("eval/step", static_cast<double>(s + 1), "steps");
      ctx_.trace->append_scalar("eval/heldout_loss", mean_loss(*m, heldout_), "nats/token");
    }
  }
  const double train_s = timer.seconds();
  Json after = evaluate(*m, "after");
  const int64_t rss_peak = peak_rss_bytes();

  auto mean_of = [&](size_t a, size_t e) {
    double x = 0;
    for (size_t i = a; i < e; ++i) x += losses[i];
    return e > a ? x / static_cast<double>(e - a) : 0.0;
  };
  const size_t w = std::max<size_t>(1, std::min<size_t>(10, losses.size() / 4));
  // methods.md 3.4 reference: full AdamW (2 f32 moments per element) on the matrices this run
  // trains, i.e. the blocks themselves, or with LoRA the base matrices the adapters sit on.
  int64_t adamw_ref = 0;
  if (lora) {
    for (const auto& p : m->params())
      for (const auto& t : lc.targets)
        if (p.name.ends_with(hf_weight_suffix(t, "task.lora_target_modules")))
          adamw_ref += 2 * 4 * p.numel();
  } else {
    for (const auto& b : blocks) adamw_ref += 2 * 4 * b.numel();
  }
  Json res = {
      {"dataset", task_.name},
      {"metric", task_.metric},
      {"n_train", static_cast<int64_t>(train_.size())},
      {"n_heldout", static_cast<int64_t>(heldout_.size())},
      {"pool_train", task_.pool_train},
      {"pool_heldout", task_.pool_heldout},
      {"optimizer", opt_name},
      {"optimizer_args", p_.get_string("optimizer_args")},
      {"adapter", lora ? "lora" : "none"},
      {"trained", trained},
      {"steps", steps},
      {"trainable_params", trainable},
      {"model_params", m->num_params()},
      {"optimizer_state_bytes", opt->state_bytes()},
      {"adamw_state_bytes_full_ft", adamw_ref},
      {"train_seconds", train_s},
      {"loss_first", mean_of(0, w)},
      {"loss_last", mean_of(losses.size() - w, losses.size())},
      {"peak_rss_bytes", rss_peak},
      {"peak_rss_bytes_at_start", rss_start},
      {"peak_rss_reset", rss_reset},
      {"before", before},
      {"after", after},
  };
  if (lora) {
    res["lora"] = {{"rank", lc.rank},
                   {"alpha", lc.alpha},
                   {"dropout", lc.dropout},
                   {"target_modules", p_.get_string("lora_target_modules")},
                   {"formula_state_bytes", baselines::lora_adamw_state_bytes(m->config(), lc)},
                   {"formula_trainable", baselines::lora_trainable_floats(m->config(), lc)}};
  }
  for (const auto& [k, v] : after.items()) res[k] = v;  // headline numbers at top level
  for (const auto& [k, v] : before.items()) res[k + "_before"] = v;
  if (ctx_.trace) {
    TraceSink& tr = *ctx_.trace;
    tr.append_scalar("final/optimizer_state_bytes", static_cast<double>(opt->state_bytes()),
                     "bytes");
    tr.append_scalar("final/trainable_params", static_cast<double>(trainable), "params");
    tr.append_scalar("final/peak_rss_bytes", static_cast<double>(rss_peak), "bytes");
    tr.append_scalar("final/train_seconds", train_s, "s");
    tr.set_attribute("train/loss", "description",
                     "token-mean cross-entropy of the scored positions of each step's batch");
    opt->trace(tr);
  }
  return res;
}

std::vector<ParamDecl> finetune_params() {
  using T = ParamDecl::Type;
  std::vector<ParamDecl> d;
  ParamDecl ds{"dataset",
               T::kChoice,
               std::string("kjv_section"),
               std::nullopt,
               std::nullopt,
               datasets::finetune_task_names(),
               "fine-tuning task (datasets/finetune): kjv_section (classification), kjv_genealogy "
               "and kjv_last_word (short-answer QA), lm (domain-shift language modelling)"};
  d.push_back(ds);
  d.push_back(
      {"n_train",
       T::kInt,
       int64_t{0},
       0.0,
       std::nullopt,
       {},
       "training examples: 0 = every example of the train split (full-data regime), e.g. 64 "
       "for the small-data regime"});
  d.push_back({"n_heldout",
               T::kInt,
               int64_t{256},
               0.0,
               std::nullopt,
               {},
               "held-out examples evaluated (0 = all)"});
  d.push_back({"heldout_fraction",
               T::kFloat,
               0.2,
               1e-6,
               0.999999,
               {},
               "share of the task's pool hashed into the held-out split"});
  d.push_back({"split_seed",
               T::kInt,
               int64_t{0},
               0.0,
               std::nullopt,
               {},
               "seeds the train/held-out split and the example samples (the run's seed orders "
               "the training batches)"});
  d.push_back({"text",
               T::kString,
               std::string("book:opticks"),
               std::nullopt,
               std::nullopt,
               {},
               "lm: the fine-tuning text (text_source spec; default Newton's Opticks)"});
  d.push_back({"original",
               T::kString,
               std::string("book:kjv/Ruth"),
               std::nullopt,
               std::nullopt,
               {},
               "lm: text of the original domain for the second held-out perplexity"});
  d.push_back({"passage_chars",
               T::kInt,
               int64_t{600},
               32.0,
               std::nullopt,
               {},
               "lm: passage length in characters"});
  ParamDecl opt{"optimizer",
                T::kString,
                std::string("adamw"),
                std::nullopt,
                std::nullopt,
                {},
                "optimizer registry name (adamw; sgc, mesgc, cesgc, galore where built in); with "
                "adapter: lora it updates the adapters"};
  opt.check = [](const ParamValue& v) {
    optim::OptimizerRegistry::instance().find(std::get<std::string>(v));
  };
  d.push_back(opt);
  ParamDecl args{"optimizer_args",
                 T::kString,
                 std::string(""),
                 std::nullopt,
                 std::nullopt,
                 {},
                 "the optimizer's declared parameters as KEY=VALUE,KEY=VALUE (e.g. "
                 "weight_decay=0 or k=4096,s=64,chunks=4); `kvlab help OPTIMIZER` lists them"};
  args.check = [](const ParamValue& v) { parse_args(std::get<std::string>(v)); };
  d.push_back(args);
  d.push_back({"adapter",
               T::kChoice,
               std::string("none"),
               std::nullopt,
               std::nullopt,
               {"none", "lora"},
               "none: the optimizer updates the train_modules weights; lora: frozen base, LoRA "
               "adapters (lora_*) trained, merged for export"});
  ParamDecl tm{"train_modules",
               T::kString,
               std::string("q,k,v,o,gate,up,down"),
               std::nullopt,
               std::nullopt,
               {},
               "adapter none: weights handed to the optimizer, among q,k,v,o,gate,up,down "
               "(methods.md 3.5), or all (every parameter incl. embeddings and norms)"};
  tm.check = [](const ParamValue& v) {
    const std::string s = std::get<std::string>(v);
    if (s != "all") baselines::split_modules(s, "train_modules");
  };
  d.push_back(tm);
  for (auto& x : baselines::lora_param_decls("lora_")) d.push_back(x);
  d.push_back({"steps", T::kInt, int64_t{200}, 1.0, std::nullopt, {}, "optimizer steps"});
  d.push_back({"batch", T::kInt, int64_t{8}, 1.0, std::nullopt, {}, "examples per step"});
  d.push_back({"lr", T::kFloat, 1e-3, 0.0, std::nullopt, {}, "peak learning rate"});
  d.push_back({"min_lr", T::kFloat, 1e-4, 0.0, std::nullopt, {}, "cosine floor at the last step"});
  d.push_back({"warmup_steps", T::kInt, int64_t{10}, 0.0, std::nullopt, {}, "linear warmup steps"});
  d.push_back({"clip_norm",
               T::kFloat,
               1.0,
               0.0,
               std::nullopt,
               {},
               "global gradient-norm clip over the trained blocks (0: off)"});
  d.push_back({"max_len",
               T::kInt,
               int64_t{256},
               8.0,
               std::nullopt,
               {},
               "tokens per example at most (a long prompt keeps its end)"});
  d.push_back({"gen_tokens",
               T::kInt,
               int64_t{8},
               1.0,
               64.0,
               {},
               "greedy tokens generated per held-out answer (stops after the first word)"});
  d.push_back({"eval_every",
               T::kInt,
               int64_t{0},
               0.0,
               std::nullopt,
               {},
               "held-out loss every k steps into the trace (0: before and after only)"});
  d.push_back({"eval_batch",
               T::kInt,
               int64_t{16},
               1.0,
               std::nullopt,
               {},
               "examples per forward in held-out loss evaluation"});
  return d;
}

}  // namespace

KVLAB_REGISTER_EXPERIMENT(
    finetune,
    (Experiment{"finetune",
                "Fine-tune a model folder on a public-domain task (datasets/finetune) with any "
                "registered optimizer or LoRA; held-out accuracy/perplexity before and after, loss "
                "curve, optimizer-state bytes, trainable parameters, peak memory.",
                finetune_params(), [](const RunContext& ctx) { return Runner(ctx).run(); }}));

}  // namespace kvlab::experiments
