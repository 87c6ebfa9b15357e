#include "experiments/train/train_run.h"

#include <cblas.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>

#include "datasets/text/corpus.h"
#include "experiments/train/curriculum_source.h"
#include "experiments/train/train_eval.h"
#include "framework/core/error.h"
#include "framework/core/file_io.h"
#include "framework/core/thread_pool.h"
#include "framework/core/timer.h"
#include "framework/io/trace_h5.h"
#include "framework/model/tokenizer.h"
#include "framework/model/tokenizer_train.h"

namespace kvlab::experiments {

namespace fs = std::filesystem;

namespace {

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

}  // namespace

TrainRunResult run_training(const TrainConfig& cfg, const TrainRunOptions& opt,
                            const std::atomic<bool>* stop) {
  TrainRunResult out;
  const fs::path dir = cfg.output;
  out.out_dir = dir.string();
  fs::create_directories(dir);
  std::ofstream logf(dir / "log.txt", std::ios::app);
  auto say = [&](const std::string& line) {
    if (!opt.quiet) std::fprintf(stderr, "%s\n", line.c_str());
    logf << utc_now() << " " << line << "\n";
    logf.flush();
  };

  int threads = static_cast<int>(cfg.threads);
  if (threads == 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ThreadPool::set_global_threads(threads);
  openblas_set_num_threads(threads);
  ThreadPool& pool = ThreadPool::global();

  // ---- tokenizer ----
  std::string tok_path = cfg.tokenizer_path;
  if (tok_path.empty()) {
    tok_path = (dir / "tokenizer.json").string();
    if (!fs::exists(tok_path)) {
      Timer t;
      model::BpeTrainOptions bo;
      bo.vocab_size = cfg.tokenizer_vocab;
      bo.min_frequency = cfg.tokenizer_min_frequency;
      std::vector<std::string> texts;
      for (auto& d : datasets::corpus_split("train")) texts.push_back(std::move(d.text));
      const model::BpeModel bpe = model::train_bpe(texts, bo);
      write_file_atomic(tok_path, model::bpe_tokenizer_json(bpe));
      say(str("trained a BPE tokenizer of ", bpe.tokens.size(), " tokens on the training split in ",
              static_cast<int64_t>(t.seconds()), " s: ", tok_path));
    }
  }
  const model::Tokenizer tok = model::Tokenizer::load(tok_path);
  const auto bos = tok.token_to_id("<|begin_of_text|>"), eos = tok.token_to_id("<|end_of_text|>");
  if (!bos || !eos) fail(tok_path, ": the tokenizer has no <|begin_of_text|> / <|end_of_text|>");

  // ---- model, optimizer ----
  model::ModelConfig mc = cfg.model;
  mc.vocab_size = tok.vocab_size();
  mc.bos_token_ids = {*bos};
  mc.eos_token_ids = {*eos};
  mc.torch_dtype = "bfloat16";
  mc.validate(cfg.file + ": model");
  model::TrainModel model(mc, static_cast<uint64_t>(cfg.seed), cfg.init_std, pool);
  auto optimizer = optim::OptimizerRegistry::instance().find(cfg.optimizer).make(cfg.optimizer_params);

  // ---- data, eval ----
  CurriculumSource source(tok, datasets::corpus_split("train"), cfg.stages, static_cast<uint64_t>(cfg.seed));
  std::unique_ptr<TrainEvaluator> evaluator;
  if (cfg.eval_every > 0)
    evaluator = std::make_unique<TrainEvaluator>(tok, datasets::corpus_split("heldout"), cfg.eval,
                                                 static_cast<uint64_t>(cfg.seed));

  // ---- trainer ----
  const std::string resolved = cfg.resolved_yaml();
  train::TrainerOptions to;
  to.steps = cfg.steps;
  to.grad_accum = cfg.grad_accum;
  to.clip_norm = cfg.clip_norm;
  to.schedule = cfg.schedule;
  to.eval_every = cfg.eval_every;
  to.ckpt_every = cfg.ckpt_every;
  to.export_every = cfg.export_every;
  to.keep_checkpoints = cfg.keep_checkpoints;
  to.log_every = cfg.log_every;
  to.out_dir = dir.string();
  to.export_files = {tok_path};
  to.seed = static_cast<uint64_t>(cfg.seed);
  to.threads = threads;
  // The fingerprint ignores the keys that may change between segments without changing the
  // numbers: output, intervals of eval/checkpoint/export/log.
  {
    TrainConfig f = cfg;
    f.output.clear();
    f.eval_every = f.ckpt_every = f.export_every = f.log_every = f.keep_checkpoints = 0;
    f.threads = 0;
    to.fingerprint = train::fingerprint_of(f.resolved_yaml());
  }
  to.stop_after = opt.max_steps;
  to.progress = opt.quiet ? "off" : opt.progress;
  train::Trainer trainer(model, *optimizer, source, to);
  trainer.set_log(say);
  if (evaluator) trainer.set_evaluator(evaluator.get());

  const int64_t start = trainer.resume();
  const fs::path cfg_path = dir / "config.resolved.yaml";
  if (!fs::exists(cfg_path)) {
    write_file_atomic(cfg_path.string(), resolved);
  } else if (read_file(cfg_path.string()) != resolved) {
    const fs::path p = dir / str("config.resolved.from-step-", start, ".yaml");
    write_file_atomic(p.string(), resolved);
    say(str("note: the config differs from ", cfg_path.string(), "; this segment's is in ", p.string()));
  }
  say(str("train ", cfg.name, ": ", model.num_params(), " parameters (",
          mc.num_hidden_layers, " layers, C ", mc.hidden_size, ", H ", mc.num_attention_heads, "/G ",
          mc.num_key_value_heads, " x D ", mc.head_dim, ", F ", mc.intermediate_size, ", V ",
          mc.vocab_size, "), ", cfg.stages.size(), " stage(s), output ", dir.string()));

  out.trace_path = (start == 0 ? dir / "trace.h5" : dir / str("trace-from-step-", start, ".h5")).string();
  io::H5TraceSink trace(out.trace_path);
  trace.set_attribute("/", "config_resolved_yaml", resolved);
  trace.set_attribute("/", "start_step", std::to_string(start));
  trace.set_attribute("/", "threads", std::to_string(threads));
  trace.set_attribute("/", "num_params", std::to_string(model.num_params()));
  trainer.set_trace(&trace, [&trace] { trace.flush(); });

  out.result = trainer.run(stop);
  if (out.result.finished) {
    trainer.export_now();
    say(str("exported bf16 weights to ", (dir / "export").string()));
    write_file_atomic((dir / "COMPLETE").string(), utc_now() + "\n");
  }
  trace.set_attribute("/", "end_step", std::to_string(out.result.end_step));
  trace.close();
  return out;
}

}  // namespace kvlab::experiments
