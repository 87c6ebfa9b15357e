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

class TrainModel {
 public:
  // Random init: one kvlab::Rng(seed) stream in model_init's tensor order, every matrix and bias
  // normal(0, init_std), every norm weight exactly 1. mlp_bias is rejected.
  TrainModel(const ModelConfig& cfg, uint64_t seed, double init_std, ThreadPool& pool);
  // Loads config.json + model.safetensors (or a sharded index) from `dir`, converting bf16/f16/f32
  // weights to f32. Errors name the folder and tensor.
  static std::unique_ptr<TrainModel> load(const std::string& dir, ThreadPool& pool);
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
  void zero_grad();

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
  void export_hf(const std::string& dir, DType dtype) const;

 private:
  struct Layer;
  struct Acts;
  TrainModel(const ModelConfig& cfg, ThreadPool& pool);
  void build_params();
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
};

}  // namespace kvlab::model
