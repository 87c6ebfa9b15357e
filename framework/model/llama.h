// Llama-family decoder (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM) on CPU:
// embedding -> L x [RMSNorm -> q,k,v (+bias) -> RoPE -> KvCache append/attend -> o_proj ->
// residual -> RMSNorm -> SwiGLU MLP -> residual] -> RMSNorm -> lm_head.
// Weights stay mmapped in their stored dtype; activations are f32.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "framework/kv/kv_cache.h"
#include "framework/model/config.h"
#include "framework/model/safetensors.h"
#include "framework/model/tokenizer.h"

namespace kvlab::model {

struct LayerWeights {
  VecRef attn_norm, mlp_norm;                // [C]
  MatRef wq, wk, wv, wo;                     // [H*D, C], [G*D, C], [G*D, C], [C, H*D]
  std::optional<VecRef> bq, bk, bv, bo;      // attention biases when present
  MatRef w_gate, w_up, w_down;               // [F, C], [F, C], [C, F]
};

class Model {
 public:
  // Loads config.json, model.safetensors (or the sharded index) and, if present, tokenizer.json
  // from `dir`. Every tensor is checked for presence, dtype and shape, naming file and tensor.
  static std::shared_ptr<const Model> load(const std::string& dir);

  const ModelConfig& config() const { return cfg_; }
  const std::string& dir() const { return dir_; }
  // Null when the folder has no tokenizer.json.
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }
  const cpu::Rope& rope() const { return *rope_; }
  const LayerWeights& layer(int64_t i) const { return layers_[i]; }
  MatRef embedding() const { return embed_; }   // [V, C]
  MatRef lm_head() const { return lm_head_; }   // [V, C] (the embedding when tied)
  VecRef final_norm() const { return final_norm_; }
  // Bytes of weights as stored (mmapped, not copied).
  int64_t weight_bytes() const;

 private:
  Model() = default;
  std::string dir_;
  ModelConfig cfg_;
  SafeTensors st_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<cpu::Rope> rope_;
  std::vector<LayerWeights> layers_;
  MatRef embed_, lm_head_;
  VecRef final_norm_;
};

struct SequenceOptions {
  int64_t prefill_chunk = 512;  // tokens per forward chunk during prefill (bounds activations)
  int64_t max_context = 0;      // capacity hint for caches (0: max_position_embeddings)
};

// One sequence being processed: per-layer KV caches and the next position.
class Sequence {
 public:
  Sequence(std::shared_ptr<const Model> model, const kv::KvFactory& make_cache, ThreadPool& pool,
           SequenceOptions opt = {});

  // Feeds tokens at the next positions (chunked by prefill_chunk). Logits: if `all_logits`,
  // logits receives [T, V]; otherwise [V] for the last token only. logits may be null.
  void forward(std::span<const int32_t> tokens, float* logits, bool all_logits);
  // Calls end_prefill on every layer's cache.
  void end_prefill();
  int64_t length() const { return pos_; }
  MemoryReport memory() const;
  kv::KvCache& cache(int64_t layer) { return *caches_[layer]; }
  const Model& model() const { return *model_; }

 private:
  void forward_chunk(const int32_t* tokens, int64_t T, float* logits, bool all_logits);
  std::shared_ptr<const Model> model_;
  ThreadPool& pool_;
  SequenceOptions opt_;
  std::vector<std::unique_ptr<kv::KvCache>> caches_;
  int64_t pos_ = 0;
  // Activation scratch, sized for prefill_chunk tokens (reused across chunks).
  Buffer x_, xn_, q_, k_, v_, att_, gate_, up_;
  std::vector<int32_t> positions_;
};

}  // namespace kvlab::model
