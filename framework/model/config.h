// Model configuration read from a Hugging Face config.json (DESIGN.md section 4).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "framework/backend/cpu/kernels.h"

namespace kvlab::model {

struct ModelConfig {
  std::string architecture;       // "LlamaForCausalLM", "MistralForCausalLM" or "Qwen2ForCausalLM"
  std::string model_type;         // "llama", "mistral", "qwen2"
  int64_t hidden_size = 0;        // C
  int64_t intermediate_size = 0;  // MLP width
  int64_t num_hidden_layers = 0;  // L
  int64_t num_attention_heads = 0;  // H
  int64_t num_key_value_heads = 0;  // G (defaults to H)
  int64_t head_dim = 0;             // D (defaults to C / H)
  int64_t vocab_size = 0;           // V
  int64_t max_position_embeddings = 0;
  // Mistral sliding_window (Qwen2: only with use_sliding_window) when smaller than
  // max_position_embeddings; 0 = full attention. The engine may refuse a non-zero value.
  int64_t sliding_window = 0;
  double rms_norm_eps = 1e-6;
  cpu::RopeConfig rope;  // rope_theta + rope_scaling (none, linear, llama3)
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q,k,v (and o for llama's attention_bias) biases
  bool o_proj_bias = false;     // llama attention_bias=true also biases o_proj; qwen2 does not
  bool mlp_bias = false;
  std::vector<int64_t> bos_token_ids;  // may be empty
  std::vector<int64_t> eos_token_ids;  // may be empty; config.json may hold an int or a list
  std::string torch_dtype;             // as written ("bfloat16", "float32", ...), informational

  // Throws kvlab::Error naming `what` and the key when a field is inconsistent
  // (H % G != 0, head_dim odd, sizes <= 0, ...).
  void validate(const std::string& what) const;
};

// Parses config.json text; `path` names the file in errors. Unknown architectures, missing
// required keys, wrong types and unsupported rope_scaling types are errors naming the key.
// Required: architectures, hidden_size, intermediate_size, num_hidden_layers,
// num_attention_heads, vocab_size, max_position_embeddings, rms_norm_eps. Defaults (HF's):
// num_key_value_heads = H, head_dim = C / H, rope_theta = 10000, tie_word_embeddings = false,
// attention_bias = mlp_bias = false (Llama only; Qwen2 always q,k,v biases; Mistral none).
// The result is validated.
ModelConfig parse_model_config(const std::string& json_text, const std::string& path);
ModelConfig load_model_config(const std::string& path);
// Serialises back to config.json text (what `kvlab model init` writes).
std::string model_config_to_json(const ModelConfig& cfg);

}  // namespace kvlab::model
