// Llama-family training model on CPU: f32 master parameters, forward with saved activations,
// and the full backward (DESIGN.md section 1, model/). The forward is the inference forward of
// llama.h (same logits on the same f32 weights); the backward is hand-written:
//   embedding (scatter-add) -> L x [RMSNorm -> q,k,v (+bias) -> RoPE -> causal GQA attention
//   (recomputing FlashAttention-2 backward, never T x T) -> o_proj -> residual -> RMSNorm ->
//   SwiGLU MLP -> residual] -> RMSNorm -> lm_head (tied or not) -> fused cross-entropy.
// GEMMs go to OpenBLAS (cblas_sgemm); attention and elementwise ops run on the ThreadPool.
// Activation buffers are sized for the largest B*T seen and reused (no allocation per step).
//
// Loss: mean weighted cross-entropy  L = sum_i w_i CE_i / sum_i w_i  over rows i with
// targets[i] >= 0 (w = loss_weight, or 1 when null). With all weights 1 this is PyTorch's
// cross_entropy(ignore_index < 0, reduction="mean").
//
// Memory: saved activations per layer ~ B T (4 C + 2 (H + 2 G) D + 2 F + H) floats
// (6 layers, C 256, F 640, B T = 8192: ~0.6 GB); parameters and gradients 2 x 4 bytes each.
//
// LoRA (Hu et al. 2021, arXiv:2106.09685; kvlab issue 7 item 2; methods.md 3.4-3.5): enable_lora()
// adds to each chosen projection y = x W^T (W [out, in]) the adapter path
//   y += (alpha / r) * drop(x) A^T B^T,   A [r, in], B [out, r],
// as PEFT's LoraLayer does (dropout on the adapter input only, train only). The base becomes
// frozen: its gradient buffer is released and backward computes no base gradient (only dx flows
// through the frozen weights); lora_params() are the only trainable tensors. Saved per adapted
// projection and layer: us = (alpha/r) drop(x) A^T [N, r]. Extra cost per projection ~6 N r (in +
// out) flops in forward + backward. export_hf() writes merged weights W + (alpha/r) B A.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "framework/backend/cpu/kernels.h"
#include "framework/core/dtype.h"
#include "framework/core/tensor.h"
#include "framework/core/thread_pool.h"
#include "framework/model/config.h"

namespace kvlab::model {

// One trainable tensor: HF name, f32 values and gradient (same shape, row-major).
// is_matrix: a 2-D weight (embeddings, projections, head) as opposed to norm weights and biases
// (optimizers such as GaLore/SGC treat matrices differently; weight decay usually skips vectors).
struct TrainParam {
  std::string name;
  float* data = nullptr;
  float* grad = nullptr;
  std::vector<int64_t> shape;
  bool is_matrix = false;
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

// The adapted projections (PEFT target_modules of a Llama): q,k,v,o of self_attn and gate, up,
// down of the MLP. Names accepted in LoraConfig::targets: "q" or "q_proj", ..., "gate" or
// "gate_proj".
enum class LoraTarget { kQ = 0, kK, kV, kO, kGate, kUp, kDown };
constexpr int kLoraTargets = 7;
const char* lora_target_hf(LoraTarget t);  // "self_attn.q_proj", ..., "mlp.down_proj"

struct LoraConfig {
  int64_t rank = 8;        // r >= 1
  double alpha = 16;       // scale = alpha / r (PEFT lora_alpha; not rsLoRA)
  double dropout = 0;      // on the adapter input, in [0, 1); train (forward_backward) only
  std::vector<std::string> targets = {"q", "k", "v", "o", "gate", "up", "down"};
  uint64_t seed = 0;       // A init stream and the dropout masks
};

// Dropout keep decision of element (row, col) of the adapter input of `target` in `layer` on the
// `call`-th forward_backward (0-based, counted from enable_lora()): with
// mix = splitmix64's finaliser (z += 0x9e3779b97f4a7c15; z ^= z>>30; z *= 0xbf58476d1ce4e5b9;
// z ^= z>>27; z *= 0x94d049bb133111eb; z ^= z>>31),
//   key = mix(mix(mix(seed) ^ call) ^ (8 layer + target)),
//   keep  <=>  (mix(key ^ (row * in + col)) >> 40) >= llround(dropout * 2^24);
// kept elements are multiplied by f32(1 / (1 - dropout)). Stated here so a reference (the torch
// golden) can reproduce the masks exactly; independent of the thread count.
uint64_t lora_mask_key(uint64_t seed, uint64_t call, int64_t layer, LoraTarget target);
inline bool lora_keep(uint64_t key, uint64_t flat, uint64_t threshold);

class TrainModel {
 public:
  // Random init: one kvlab::Rng(seed) stream in model_init's tensor order, every matrix and bias
  // normal(0, init_std), every norm weight exactly 1. mlp_bias is rejected.
  TrainModel(const ModelConfig& cfg, uint64_t seed, double init_std, ThreadPool& pool);
  // Loads config.json + model.safetensors (or a sharded index) from `dir`, converting bf16/f16/f32
  // weights to f32. Errors name the folder and tensor.
  // base_grads = false: no gradient buffer for the base parameters is ever allocated (for a
  // model that will only be fine-tuned through LoRA adapters; enable_lora() must follow before
  // any forward_backward).
  static std::unique_ptr<TrainModel> load(const std::string& dir, ThreadPool& pool,
                                          bool base_grads = true);
  ~TrainModel();
  TrainModel(const TrainModel&) = delete;
  TrainModel& operator=(const TrainModel&) = delete;

  const ModelConfig& config() const { return cfg_; }
  // Every parameter, in HF order (embed, layers 0..L-1, final norm, lm_head when untied).
  // Pointers stay valid for the model's lifetime. Parameters (and gradients) are contiguous:
  // params()[0].data .. + num_params().
  std::vector<TrainParam>& params() { return params_; }
  const std::vector<TrainParam>& params() const { return params_; }
  int64_t num_params() const { return static_cast<int64_t>(data_.size()); }
  // Zeroes every gradient held: base gradients (when not frozen) and adapter gradients.
  void zero_grad();

  // ---- LoRA ----
  // Adds zero-initialised adapters (B = 0; A ~ U(-1/sqrt(in), 1/sqrt(in)), PEFT's
  // kaiming_uniform_(a=sqrt(5)) bound, from Rng(seed) in lora_params() order) to `targets` in
  // every layer and freezes the base (frees its gradients; params()[i].grad becomes null).
  // Errors (kvlab::Error naming the field): rank < 1, alpha <= 0, dropout outside [0, 1),
  // unknown / duplicate / empty targets, LoRA already enabled.
  void enable_lora(const LoraConfig& c);
  bool lora_enabled() const { return lora_on_; }
  const LoraConfig& lora_config() const { return lora_cfg_; }
  double lora_scale() const;  // alpha / r
  // Adapter tensors, layer by layer, targets in LoraTarget order, A then B:
  // "model.layers.<i>.<self_attn.q_proj>.lora_A.weight" [r, in], "...lora_B.weight" [out, r]
  // (PEFT's names without the "base_model.model." prefix). is_matrix = true.
  std::vector<TrainParam>& lora_params() { return lora_params_; }
  const std::vector<TrainParam>& lora_params() const { return lora_params_; }
  // True when the base has no gradients (after enable_lora or load(.., base_grads = false)).
  bool base_frozen() const { return grad_.size() == 0; }
  // Parameters an optimizer updates: the adapters when LoRA is on, else every parameter.
  int64_t trainable_params() const;
  // Folds every adapter into its base weight, W += (alpha/r) B A (f32, one GEMM per adapter),
  // and removes the adapters: afterwards forward == the adapter forward up to f32 rounding
  // (no dropout). The base stays frozen.
  void merge_lora();

  // B sequences of T tokens, row-major [B, T] (positions 0..T-1 in each). targets [B, T]
  // (< 0 ignored), loss_weight [B, T] or null. Returns the mean weighted cross-entropy (see the
  // header) and ADDS its gradient into every grad buffer. Returns 0 (no gradient) when no row
  // has a target. Cost ~6 * params * B T flops in GEMMs + ~7 B T^2 H D in attention per layer.
  double forward_backward(const int32_t* tokens, const int32_t* targets,
                          const float* loss_weight, int64_t B, int64_t T);
  // The same loss without saving anything for backward (evaluation).
  double forward_loss(const int32_t* tokens, const int32_t* targets, const float* loss_weight,
                      int64_t B, int64_t T);
  // Logits [B, T, V] (tests and evaluation).
  void forward_logits(const int32_t* tokens, int64_t B, int64_t T, float* logits);

  // Writes dir/config.json and dir/model.safetensors (HF names, tensors in `dtype`: f32, bf16 or
  // f16; torch_dtype set accordingly). The folder is created if missing; files are atomic.
  // With LoRA on, adapted weights are written merged (W + (alpha/r) B A, computed in f32 into a
  // copy; the model is unchanged).
  void export_hf(const std::string& dir, DType dtype) const;

 private:
  struct Layer;
  struct Acts;
  struct Adapter;
  TrainModel(const ModelConfig& cfg, ThreadPool& pool, bool base_grads = true);
  void build_params(bool base_grads);
  void ensure_lora(int64_t rows, int64_t slots);
  // y [N, out] += scale drop(x) A^T B^T; saves us [N, r]. `train`: dropout applies.
  void lora_fwd(const Adapter& ad, int64_t layer, const float* x, float* y, int64_t N, float* us,
                bool train);
  // Adds dA, dB from dy [N, out]; dx_acc [N, in] += d(adapter path)/dx.
  void lora_bwd(const Adapter& ad, int64_t layer, const float* x, const float* us,
                const float* dy, float* dx_acc, int64_t N);
  void merged_weight(const Adapter& ad, float* w) const;  // w [out, in] += scale B A
  // Runs the forward over N = B*T rows; saves per-layer activations when `save`; leaves the
  // final normed hidden state [N, C] in acts' xnf.
  void forward(const int32_t* tokens, int64_t B, int64_t T, bool save);
  double head_loss(const int32_t* targets, const float* loss_weight, int64_t N, bool grad);
  void backward(const int32_t* tokens, int64_t B, int64_t T);
  void ensure(int64_t B, int64_t T, bool save);

  ModelConfig cfg_;
  ThreadPool& pool_;
  std::unique_ptr<cpu::Rope> rope_;
  Buffer data_, grad_;
  std::vector<TrainParam> params_;
  std::vector<Layer> layers_;
  float *embed_ = nullptr, *dembed_ = nullptr, *final_norm_ = nullptr, *dfinal_norm_ = nullptr;
  float *head_ = nullptr, *dhead_ = nullptr;  // the embedding when tied
  std::unique_ptr<Acts> acts_;
  // LoRA state (empty when off).
  bool lora_on_ = false;
  LoraConfig lora_cfg_;
  Buffer lora_data_, lora_grad_;
  std::vector<TrainParam> lora_params_;
  std::vector<std::vector<Adapter>> adapters_;  // [L][kLoraTargets]
  uint64_t lora_calls_ = 0;                     // forward_backward calls since enable_lora
  bool lora_train_ = false;                     // inside forward_backward (dropout on)
};

inline bool lora_keep(uint64_t key, uint64_t flat, uint64_t threshold) {
  uint64_t z = (key ^ flat) + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return (z >> 40) >= threshold;
}

}  // namespace kvlab::model
