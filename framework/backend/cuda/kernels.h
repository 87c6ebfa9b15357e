// CUDA kernels: the CPU ops of framework/backend/cpu/kernels.h on device memory, each tested
// against its CPU scalar reference (tests/cuda/kernels_cuda.cpp). All pointers, including the
// data of a VecRef, are device pointers. Launches are asynchronous on `stream` and their launch
// errors are checked (KVLAB_CUDA_CHECK); faults during execution surface at the next
// synchronising call. All arithmetic is f32 with IEEE division and sqrt (no fast-math).
// Layout letters as in DESIGN.md: T tokens, S cached keys, H query heads, G KV heads, D head dim,
// C model dim.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "framework/backend/cpu/kernels.h"
#include "framework/core/tensor.h"

namespace kvlab::cuda {

// ---- RMSNorm: y[t, :] = x[t, :] / sqrt(mean(x[t, :]^2) + eps) * w, as cpu::rmsnorm ----
// x, y: [T, C] f32, y may alias x. w: [C] in f32, bf16 or f16. One block per row.
void rmsnorm(const float* x, int64_t T, int64_t C, const VecRef& w, float eps, float* y,
             cudaStream_t stream = nullptr);

// ---- RoPE, HF rotate_half convention (dims i and i + D/2 form a pair), as cpu::Rope::apply ----
// Rotates x[T, n_heads, D] in place; token t sits at positions[t] ([T] int32).
// inv_freq: [D/2] f32, uploaded from cpu::Rope::inv_freq() (computed on the CPU exactly as HF
// does). angle = float(position) * inv_freq[i] rounded to f32, then sincosf of that angle.
void rope_apply(float* x, int64_t T, int64_t n_heads, int64_t D, const int32_t* positions,
                const float* inv_freq, cudaStream_t stream = nullptr);

// ---- decode attention (T = 1, every cached key visible) ----
// Head-major f32 cache: key s of KV head g is at k[(g * S_cap + s) * D], likewise v.
struct DecodeKv {
  const float* k = nullptr;
  const float* v = nullptr;
  int64_t S = 0;      // cached keys, all visible to the query
  int64_t S_cap = 0;  // allocated keys per KV head (>= S)
};

// Same contract as cpu::attention with T = 1 and q_pos >= every key position:
// out[h, :] = sum_s softmax_s(scale * q[h, :] . k[g, s, :]) v[g, s, :], g = h / (H / G);
// q, out: [H, D]; lse (may be null): [H], natural-log log-sum-exp of the scaled logits.
// S = 0 gives zeros and lse = -inf.
// Split-K (flash-decoding): the keys are cut into decode_attention_splits(S) chunks of
// kDecodeSplitKeys; block (g, chunk) reads its K/V chunk once for the H/G query heads of KV head
// g and leaves a partial softmax state (m, l, acc[D]) per head; a merge kernel combines them:
// M = max m_i, l = sum l_i e^(m_i - M), out = sum acc_i e^(m_i - M) / l.
// Cost: 4 H S D flops; reads K and V once (2 G S D floats) plus H (D + 2) floats per chunk.
// The caller owns the workspace: at least decode_attention_workspace_bytes(H, D, S) bytes of
// device memory (style.md 4.6). Needs (H/G) * (D + kDecodeSplitKeys + 2) * 4 <= 48 KiB of shared
// memory (H/G <= 31 at D = 256, <= 47 at D = 128).
constexpr int64_t kDecodeSplitKeys = 128;
int64_t decode_attention_splits(int64_t S);
size_t decode_attention_workspace_bytes(int64_t H, int64_t D, int64_t S);
void decode_attention(const float* q, const DecodeKv& kv, const cpu::AttentionShape& shape,
                      float* out, float* lse, void* workspace, size_t workspace_bytes,
                      cudaStream_t stream = nullptr);

}  // namespace kvlab::cuda
