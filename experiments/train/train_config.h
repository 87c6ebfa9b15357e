// The YAML of `kvlab train CONFIG` (configs/train/*.yaml), validated like `kvlab run`'s
// (framework/harness/run_config.h): every key is checked against a declaration before any work;
// unknown keys (with a "did you mean"), wrong types and out-of-range values stop with
// "FILE:LINE: key.path: ...". `--set a.b=value` overrides any key (stages.N.key for a stage).
//
//   name: kvlab-tiny              # label; output defaults to results/train/<name>
//   output: results/train/kvlab-tiny
//   seed: 0                       # model init, data and eval examples
//   threads: 1                    # 0: all hardware threads
//   steps: 20000                  # optimizer steps (the schedule's total_steps)
//   grad_accum: 1                 # micro-batches per step
//   clip_norm: 1.0                # global-norm clipping; 0 = off
//   eval_every: 500               # steps; 0 = off
//   ckpt_every: 200
//   keep_checkpoints: 3
//   export_every: 1000            # bf16 Hugging Face export into <output>/export; 0 = at the end only
//   log_every: 10                 # plain progress line every k steps
//   model: {preset: small, layers: 6, ...}   # or inline: hidden, layers, heads, kv_heads,
//                                 # head_dim, intermediate, rope_theta, max_position, tie,
//                                 # rms_norm_eps, init_std
//   tokenizer: {path: FILE}       # or {vocab_size: 4096, min_frequency: 2}: BPE trained on the
//                                 # training split, written to <output>/tokenizer.json
//   data: {seq_len, batch, min_tokens, max_tokens, answer_weight, text_weight,
//          mix: {corpus: 0.5, passkey: 0.1, needle: 0.1, multikey: 0.05, kv: 0.05, copy: 0.1, recall: 0.1}}
//   stages:                       # curriculum; each stage overrides data's keys (mix entries
//     - {name: copy, steps: 2000, seq_len: 256, mix: {copy: 0.5}, max_tokens: 128}
//     - {name: long, seq_len: 4096}   # the last stage runs to the end (its steps may be omitted)
//   optimizer: {name: adamw, weight_decay: 0.1, ...its declared parameters}
//   schedule: {lr: 1e-3, min_lr: 1e-4, warmup_steps: 200, warmup_start_factor: 0}
//   eval: {batches: 4, seq_len: 512, examples: 4, lengths: [512, 1024], tasks: [passkey, needle]}
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "datasets/synthetic/data_stream.h"
#include "framework/core/params.h"
#include "framework/model/config.h"
#include "framework/train/schedule.h"

namespace kvlab::experiments {

struct TrainStage {
  std::string name;
  int64_t steps = 0;                 // resolved: the last stage gets the remainder
  datasets::StreamConfig stream;     // seed filled in at run time (per stage)
};

struct TrainEvalConfig {
  int64_t batches = 4;               // held-out corpus batches (B 1, seq_len tokens each)
  int64_t seq_len = 512;
  int64_t examples = 4;              // per task and length; 0 = no retrieval check
  std::vector<int64_t> lengths = {512};
  std::vector<std::string> tasks = {"passkey", "needle"};
};

struct TrainConfig {
  std::string file;
  std::string name = "train", output;
  int64_t seed = 0, threads = 1, steps = 0, grad_accum = 1;
  double clip_norm = 1.0;
  int64_t eval_every = 0, ckpt_every = 100, keep_checkpoints = 3, export_every = 0, log_every = 10;
  model::ModelConfig model;          // vocab_size: the tokenizer's (set at run time)
  double init_std = 0.02;
  std::string tokenizer_path;        // "" = train one
  int64_t tokenizer_vocab = 4096, tokenizer_min_frequency = 2;
  std::vector<TrainStage> stages;    // at least one
  std::string optimizer = "adamw";
  ParamValues optimizer_params;
  train::WarmupCosine schedule;
  TrainEvalConfig eval;

  // Every setting resolved, as YAML (written to <output>/config.resolved.yaml).
  std::string resolved_yaml() const;
};

TrainConfig load_train_config(const std::string& file, const std::vector<std::string>& overrides);

}  // namespace kvlab::experiments
