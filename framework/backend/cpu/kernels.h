// CPU kernels. Each op has a plain scalar reference (suffix _ref, always built) and a fast path
// dispatched at run time on the CPU's features (AVX-512 -> AVX2 -> scalar, see cpu_features.h).
// Kernels see only pointers, shapes and strides. All arithmetic accumulates in f32.
// Layout letters: T tokens, S cached keys, H query heads, G KV heads, D head dim, C model dim,
// N output features, K input features.
#pragma once

#include <cstdint>
#include <vector>

#include "framework/core/tensor.h"
#include "framework/core/thread_pool.h"

namespace kvlab::cpu {

// ---- linear: y[T, N] = x[T, K] . W[N, K]^T (+ bias[N]) ----
// W is a Hugging Face nn.Linear weight ([out, in], row-major) in its stored dtype (f32/bf16/f16);
// it is never converted whole: small T (decode, T <= 4) runs a GEMV kernel that converts in
// registers (memory-bound, reads W once); larger T runs kvlab's packed AVX-512 SGEMM (gemm.h:
// bf16/f16 -> f32 conversion fused into packing W's panels) when the CPU has AVX-512, and OpenBLAS
// sgemm on converted panels otherwise (Debian's OpenBLAS 0.3.21 picks SSE3 kernels on CPUs it does
// not recognise; results/reference/perf/ has the measurements).
// bias may be null. x and y must not alias. Rows of x and y are contiguous with stride K and N.
void linear(const float* x, int64_t T, const MatRef& w, const VecRef* bias, float* y,
            ThreadPool& pool);
void linear_ref(const float* x, int64_t T, const MatRef& w, const VecRef* bias, float* y);

// ---- RMSNorm: y[t, :] = x[t, :] / sqrt(mean(x[t, :]^2) + eps) * w  (HF LlamaRMSNorm) ----
// y may alias x.
void rmsnorm(const float* x, int64_t T, int64_t C, const VecRef& w, float eps, float* y);
void rmsnorm_ref(const float* x, int64_t T, int64_t C, const VecRef& w, float eps, float* y);

// ---- SwiGLU: out[i] = silu(gate[i]) * up[i], silu(z) = z / (1 + exp(-z)). out may alias gate.
void swiglu(const float* gate, const float* up, float* out, int64_t n);
void swiglu_ref(const float* gate, const float* up, float* out, int64_t n);

// ---- RoPE (HF "rotate_half" convention: dims i and i + D/2 form a pair) ----
struct RopeConfig {
  enum class Type { kDefault, kLinear, kLlama3 };
  int64_t head_dim = 0;   // D (even)
  double theta = 10000.0;  // rope_theta
  Type type = Type::kDefault;
  double factor = 1.0;                   // linear and llama3
  double low_freq_factor = 1.0;          // llama3
  double high_freq_factor = 4.0;         // llama3
  int64_t original_max_position = 8192;  // llama3: original_max_position_embeddings
};

// Precomputed inverse frequencies inv_freq[D/2], computed op by op in f32 exactly as HF
// transformers modeling_rope_utils does (default / linear / llama3; checked against torch).
class Rope {
 public:
  explicit Rope(const RopeConfig& cfg);
  const RopeConfig& config() const { return cfg_; }
  const std::vector<float>& inv_freq() const { return inv_freq_; }
  // Rotates x[T, n_heads, D] in place; token t sits at positions[t].
  // angle = float(position) * inv_freq[i] in f32, cos/sin in f32 (as HF does in f32).
  void apply(float* x, int64_t T, int64_t n_heads, const int32_t* positions) const;
  void apply_ref(float* x, int64_t T, int64_t n_heads, const int32_t* positions) const;
  // Inverse rotation (used by methods that re-rotate or store pre-RoPE keys).
  void unapply(float* x, int64_t T, int64_t n_heads, const int32_t* positions) const;

 private:
  RopeConfig cfg_;
  std::vector<float> inv_freq_;
};

// ---- attention ----
// Strided key/value storage: element (s, g, d) lives at base[g * head_stride + s * row_stride + d].
// Covers both token-major [S, G, D] (head_stride = D, row_stride = G*D) and head-major
// [G, S_cap, D] (head_stride = S_cap*D, row_stride = D) caches.
struct KvView {
  const float* k = nullptr;
  const float* v = nullptr;
  int64_t S = 0;            // number of cached tokens
  int64_t head_stride = 0;  // elements between KV heads
  int64_t row_stride = 0;   // elements between consecutive tokens
  const int32_t* pos = nullptr;  // [S] positions of the cached tokens (non-decreasing)
};

struct AttentionShape {
  int64_t H = 0;      // query heads
  int64_t G = 0;      // KV heads; H % G == 0, query head h reads KV head h / (H / G)
  int64_t D = 0;      // head dim
  float scale = 0.f;  // softmax scale, usually 1/sqrt(D)
};

// Causal GQA attention, numerically stable (online softmax, tiled over S):
// out[t, h, :] = sum_s p[t,h,s] v[s, h/(H/G), :], p = softmax over {s : kv.pos[s] <= q_pos[t]} of
// scale * q[t, h, :] . k[s, h/(H/G), :]. q, out: [T, H, D] contiguous. A query row with no
// visible key gets zeros. If lse is non-null it receives log-sum-exp of the scaled logits,
// [T, H] (natural log), so callers can recompute exact probabilities.
// Parallel over (t-tile, head) for prefill and over (head, S-split) for decode (T small), with a
// final merge of partial softmax states. Cost: 4*T*S*H*D flops; decode reads K and V once per
// KV head (query heads sharing a KV head are processed together).
void attention(const float* q, int64_t T, const int32_t* q_pos, const KvView& kv,
               const AttentionShape& shape, float* out, float* lse, ThreadPool& pool);
// Plain two-pass softmax reference, f64 accumulation.
void attention_ref(const float* q, int64_t T, const int32_t* q_pos, const KvView& kv,
                   const AttentionShape& shape, float* out, float* lse);

}  // namespace kvlab::cpu
