// Random Llama-family models in the Hugging Face folder layout (DESIGN.md section 4,
// `kvlab model init`): config.json, generation_config.json, model.safetensors and a byte-level
// BPE tokenizer.json (256 byte tokens, no merges, <|begin_of_text|> = 256, <|end_of_text|> = 257).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "framework/core/dtype.h"
#include "framework/model/config.h"

namespace kvlab::model {

struct InitOptions {
  ModelConfig config;
  DType dtype = DType::kBF16;  // storage dtype of every tensor: f32, bf16 or f16
  uint64_t seed = 0;
  double init_std = 0.02;  // std of weights and biases; norm weights are 1 + 0.1 * normal
};

// Writes out_dir/{config.json, generation_config.json, model.safetensors, tokenizer.json}
// (each file atomically; out_dir is created if missing). bos_token_id = 256 and
// eos_token_id = 257 replace the config's; vocab_size must be >= 258. Values come from one
// kvlab::Rng(seed) stream in a fixed tensor order, so the same options give byte-identical files.
// Cost: one normal draw per parameter (an 8B-shaped layer: ~0.2 G draws, a few seconds).
void write_random_model(const InitOptions& opts, const std::string& out_dir);

// "tiny", "small", "llama3-8b-layer", "qwen2-tiny"; anything else is an error listing these.
ModelConfig preset_config(const std::string& name);
std::vector<std::string> preset_names();

// The tokenizer.json text write_random_model writes (GPT-2 bytes_to_unicode vocabulary).
std::string byte_level_tokenizer_json();

}  // namespace kvlab::model
