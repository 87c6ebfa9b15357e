// `kvlab train`'s work, from a validated TrainConfig: tokenizer (loaded, or trained on the
// training split into <output>/tokenizer.json), model (random init, or the newest checkpoint),
// optimizer (OptimizerRegistry), curriculum data, evaluation, trace, and the Trainer
// (framework/train/trainer.h).
//
// Output folder <output>/:
//   config.resolved.yaml         the resolved config of the first segment (a later segment with
//                                 another config writes config.resolved.from-step-N.yaml)
//   tokenizer.json               when trained here
//   checkpoints/step-N.safetensors   newest keep_checkpoints (params, optimizer, loop state)
//   trace.h5                     the first segment's per-step trace; a resumed segment writes
//   trace-from-step-N.h5         its own file (N = steps done when it started; its train/step
//                                 dataset says which steps it holds — a segment killed without
//                                 its final checkpoint overlaps the next one, which recomputes
//                                 those steps identically)
//   export/                      bf16 Hugging Face layout + tokenizer.json (export_every, end)
//   log.txt                      every progress and event line, with UTC time
//   COMPLETE                     written when the last step is done
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "experiments/train/train_config.h"
#include "framework/train/trainer.h"

namespace kvlab::experiments {

struct TrainRunOptions {
  int64_t max_steps = 0;        // stop (with a checkpoint) after this many steps; 0 = no limit
  std::string progress = "auto";
  bool quiet = false;           // no lines on stderr (tests); log.txt is still written
};

struct TrainRunResult {
  train::TrainResult result;
  std::string out_dir, trace_path;
};

TrainRunResult run_training(const TrainConfig& cfg, const TrainRunOptions& opt,
                            const std::atomic<bool>* stop);

}  // namespace kvlab::experiments
