// LoRA baseline (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models",
// arXiv:2106.09685), the PEFT-style comparison of methods.md section 3 (kvlab issue 7 item 2).
// "LoRA is a model adapter plus an optimizer" (DESIGN.md section 2): the adapter lives in the
// training model (framework/model/llama_train.h: enable_lora, merge_lora, merged export); this
// folder holds its declared parameters, the mapping to model::LoraConfig, the optimizer-side
// blocks (adapters only; the frozen base gets neither gradients nor state) and the state-memory
// formulas of methods.md 3.4.
//
// State memory per adapted m x n matrix (methods.md 3.4): AdamW over the adapters holds
//   2 * 4 * r * (m + n) bytes (two f32 moments), and trains r * (m + n) parameters.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "framework/core/params.h"
#include "framework/model/llama_train.h"
#include "framework/optim/optimizer.h"

namespace kvlab::baselines {

// Declarations: rank, alpha, dropout, target_modules (comma list), seed. `prefix` is put before
// every name (the finetune experiment declares them as lora_rank, lora_alpha, ... in its task
// block).
std::vector<ParamDecl> lora_param_decls(const std::string& prefix = "");
// Reads the declared values (with the same prefix) into the model's adapter config.
model::LoraConfig lora_config_from(const ParamValues& v, const std::string& prefix = "");
// "q,k,v" -> {"q", "k", "v"} (spaces trimmed; empty items are an error naming `key`).
std::vector<std::string> split_modules(const std::string& list, const std::string& key);

// The optimizer's blocks for a LoRA model: one per adapter tensor (weight decay on, as PEFT +
// transformers' Trainer apply it to lora_A/lora_B). Requires m.lora_enabled().
std::vector<optim::ParamBlock> lora_blocks(model::TrainModel& m);

// methods.md 3.4, for one adapted matrix W [m, n] at rank r.
inline int64_t lora_trainable_floats(int64_t m, int64_t n, int64_t r) { return r * (m + n); }
inline int64_t lora_adamw_state_bytes(int64_t m, int64_t n, int64_t r) {
  return 2 * 4 * r * (m + n);
}
// Sums of the two over every matrix the model's LoRA config adapts (the model's shapes).
int64_t lora_trainable_floats(const model::ModelConfig& cfg, const model::LoraConfig& c);
int64_t lora_adamw_state_bytes(const model::ModelConfig& cfg, const model::LoraConfig& c);

}  // namespace kvlab::baselines
