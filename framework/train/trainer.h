// The training loop (DESIGN.md section 1, train/; issue "Training loop and kvlab-tiny", item 2).
// It knows a TrainModel, an Optimizer and two small interfaces defined here — a BatchSource
// (where micro-batches come from) and an Evaluator (periodic held-out measurements) — and
// nothing of datasets, YAML or the command line (experiments/train wires those in).
//
// One optimizer step s (0-based):
//   zero_grad; for a in [0, A): forward_backward(data.next(s)) (grads accumulate);
//   grads *= 1/A (A > 1: the gradient of the mean of the A micro-batch losses);
//   clip to clip_norm (global L2, clip.h; 0 = only measured); lr = lr_at(schedule, s);
//   optimizer.step(blocks, lr); trace; then, counting s + 1 steps done: eval, export,
//   checkpoint (every k steps, at the last step, and when stopped).
// The step's loss is the mean over micro-batches of forward_backward's mean weighted CE.
//
// Resume: the checkpoint of step n (checkpoint.h) holds parameters, optimizer state and the
// loop state {step n, tokens seen, data source state, seed, threads, grad_accum, fingerprint};
// resume() loads the newest one, after which run() takes exactly the steps an uninterrupted run
// would have taken: same seed and threads give the same losses bit for bit (every op is
// deterministic for a fixed thread count).
//
// Trace (TraceSink, one row per step): train/step, train/loss, train/lr, train/grad_norm,
// train/tokens_per_s, train/tokens_seen, train/step_seconds, train/seq_len; the memory
// accounting of methods.md 3.8: optim/state_bytes (Optimizer::state_bytes() after the step,
// exact), optim/trainable_params (sum of the optimizer's block sizes), mem/peak_rss_bytes (the
// process's VmHWM); then whatever Optimizer::trace() writes (e.g. optim/sgc/...); eval/<name>
// and eval/step per evaluation. The caller decides the file (experiments/train: one file per
// run segment).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "framework/core/trace_sink.h"
#include "framework/model/llama_train.h"
#include "framework/optim/optimizer.h"
#include "framework/train/schedule.h"

namespace kvlab::train {

// One micro-batch, row-major [B, T]: targets < 0 are ignored, weights scale each row's loss.
struct TrainBatch {
  int64_t B = 0, T = 0;
  std::vector<int32_t> tokens, targets;  // [B, T]
  std::vector<float> weights;            // [B, T] (empty: all 1)
};

// Where micro-batches come from. next(step) is called grad_accum times per optimizer step with
// that step's 0-based index (a curriculum switches stages on it). state() after n steps,
// restored into a fresh source, must make it yield exactly what the original yields next.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual TrainBatch next(int64_t step) = 0;
  virtual std::string state() const = 0;
  virtual void restore(const std::string& state) = 0;
  // A short label for progress lines (e.g. the curriculum stage of `step`); "" for none.
  virtual std::string label(int64_t step) const { return ""; }
};

struct EvalValue {
  std::string name;  // traced as eval/<name>
  double value = 0;
  std::string unit;  // e.g. "nats/token", "fraction"
};

// Periodic evaluation on the current weights. Must not change the parameters (forward only).
class Evaluator {
 public:
  virtual ~Evaluator() = default;
  // e.g. {"heldout_loss", 3.1, "nats/token"}, {"passkey_acc", 0.25, "fraction"}.
  virtual std::vector<EvalValue> evaluate(model::TrainModel& m) = 0;
};

struct TrainerOptions {
  int64_t steps = 0;       // optimizer steps in the whole run (the schedule's total_steps)
  int64_t grad_accum = 1;  // micro-batches per step
  double clip_norm = 1.0;  // 0: no clipping (the norm is still traced)
  WarmupCosine schedule;
  int64_t eval_every = 0, ckpt_every = 0, export_every = 0;  // in steps; 0 = off
  int64_t keep_checkpoints = 3;
  int64_t log_every = 1;   // progress line every k steps (plain mode)
  std::string out_dir;     // checkpoints in out_dir/checkpoints, export in out_dir/export
  std::vector<std::string> export_files;  // copied into out_dir/export (e.g. tokenizer.json)
  uint64_t seed = 0;       // recorded in checkpoints; a resume with another seed is refused
  int threads = 1;         // recorded; a resume with another count is warned about
  std::string fingerprint; // of the settings that shape the run; a mismatch is warned about
  // Stop (with a checkpoint) after this many steps in this call of run(); 0 = no limit. Used by
  // tests and by `kvlab train --max-steps` to cut a run into segments.
  int64_t stop_after = 0;
  // Progress display: "auto" (a bar redrawn in place when stderr is a terminal, plain lines
  // otherwise), "bar", "plain" or "off".
  std::string progress = "auto";
};

struct StepRecord {
  int64_t step = 0;  // 1-based: steps done after this one
  double loss = 0, lr = 0, grad_norm = 0, tokens_per_s = 0, seconds = 0;
  int64_t tokens = 0, seq_len = 0;
  int64_t optimizer_state_bytes = 0;  // Optimizer::state_bytes() after the step
  int64_t trainable_params = 0;       // elements in the optimizer's blocks
  int64_t peak_rss_bytes = 0;         // VmHWM after the step (0 where /proc is unavailable)
};

struct TrainResult {
  int64_t start_step = 0, end_step = 0;  // steps done before and after run()
  bool interrupted = false;              // stopped by the stop flag (or stop_after)
  bool finished = false;                 // end_step == steps
  std::vector<StepRecord> records;       // one per step taken in this call
  std::string last_checkpoint;           // "" if none written in this call
  double tokens_per_s = 0;               // over this call
};

class Trainer {
 public:
  // The model, optimizer and source must outlive the trainer. Options are validated here
  // (kvlab::Error naming the field).
  Trainer(model::TrainModel& model, optim::Optimizer& opt, BatchSource& data,
          TrainerOptions opts);

  void set_trace(TraceSink* sink, std::function<void()> flush = {});
  void set_evaluator(Evaluator* e) { eval_ = e; }
  // Where progress and event lines go (default: stderr). Bar redraws always go to stderr.
  void set_log(std::function<void(const std::string&)> log) { log_ = std::move(log); }

  // If out_dir/checkpoints holds a checkpoint, restores the newest and returns its step (the
  // number of steps done); otherwise 0. Throws on a seed mismatch or an unreadable checkpoint.
  int64_t resume();
  int64_t step() const { return step_; }
  int64_t tokens_seen() const { return tokens_seen_; }

  // Trains from step() to opts.steps. `stop` (may be null) is polled after every step: when
  // set, the step in progress finishes, a checkpoint is written and run() returns with
  // interrupted = true. A non-finite loss or gradient norm throws (the last checkpoint stays).
  TrainResult run(const std::atomic<bool>* stop = nullptr);

  // Writes a checkpoint of the current state now; returns its path.
  std::string checkpoint();
  // Writes out_dir/export (bf16 Hugging Face layout + export_files + kvlab_export.json).
  void export_now();

  std::vector<optim::ParamBlock>& blocks() { return blocks_; }

 private:
  nlohmann::json loop_state() const;
  void say(const std::string& line);

  model::TrainModel& model_;
  optim::Optimizer& opt_;
  BatchSource& data_;
  TrainerOptions o_;
  std::vector<optim::ParamBlock> blocks_;
  TraceSink* trace_ = nullptr;
  std::function<void()> flush_;
  Evaluator* eval_ = nullptr;
  std::function<void(const std::string&)> log_;
  int64_t step_ = 0, tokens_seen_ = 0;
  double elapsed_s_ = 0;  // training seconds over all segments (from the loop state)
};

// Peak resident set size of this process so far (VmHWM in /proc/self/status), in bytes; 0 where
// it cannot be read (not Linux).
int64_t process_peak_rss_bytes();

// A 16-hex-digit FNV-1a fingerprint of a string (for TrainerOptions::fingerprint).
std::string fingerprint_of(const std::string& s);

}  // namespace kvlab::train
