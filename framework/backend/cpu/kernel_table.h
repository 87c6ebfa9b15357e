// Internal: the per-ISA inner kernels behind the public API in kernels.h. One table per ISA,
// each built from simd_kernels.h in its own translation unit (kernels_scalar.cpp,
// kernels_avx2.cpp, kernels_avx512.cpp); active_table() picks one (cpu_features.cpp).
#pragma once

#include <cstdint>

#include "framework/backend/cpu/cpu_features.h"
#include "framework/core/dtype.h"

namespace kvlab::cpu::detail {

// Keys per attention tile: K and V tiles of kAttnTile x D f32 stay in L1/L2 while every query
// row of the block reuses them.
inline constexpr int kAttnTile = 64;

// Online-softmax state of R query rows over a range of keys: running max m[R], running sum
// l[R] (of exp(logit - m)), and unnormalised output acc[R, D].
struct AttnBlockArgs {
  const float* const* q;    // [R] pointers to query rows (D floats each)
  const int32_t* q_pos;     // [R] positions of the query rows
  int R = 0;
  const float* k = nullptr;  // key (s, d) at k[s * row_stride + d] (one KV head)
  const float* v = nullptr;
  int64_t row_stride = 0;
  const int32_t* k_pos = nullptr;  // [S] non-decreasing
  int64_t s0 = 0, s1 = 0;          // key range [s0, s1)
  int64_t D = 0;
  float scale = 0.f;
  float* m = nullptr;    // [R] in/out
  float* l = nullptr;    // [R] in/out
  float* acc = nullptr;  // [R, D] in/out
  float* scratch = nullptr;  // [R, kAttnTile + 16] logits / probabilities
};

struct KernelTable {
  Isa isa;
  // y[t, n] = x[t, :] . w[n, :] (+ bias[n]) for rows n in [n0, n1), t < T (T <= 4 is the
  // intended use). w: rows of K elements of dtype `wt`, leading dimension ld. y stride ldy.
  void (*gemv)(const float* x, int64_t T, int64_t K, const void* w, DType wt, int64_t ld,
               int64_t n0, int64_t n1, const float* bias, float* y, int64_t ldy);
  // dst[r, :K] = f32(w[n0 + r, :K]) for r < n1 - n0; dst rows contiguous (stride K).
  void (*convert_rows)(const void* w, DType wt, int64_t ld, int64_t n0, int64_t n1, int64_t K,
                       float* dst);
  // One RMSNorm row: y = x * rsqrt(mean(x^2) + eps) * w; w f32/bf16/f16.
  void (*rmsnorm_row)(const float* x, int64_t C, const void* w, DType wt, float eps, float* y);
  void (*swiglu)(const float* gate, const float* up, float* out, int64_t n);
  // One head: x[i], x[i + half] rotated by (cos[i], sin[i]) for i < half.
  void (*rope_head)(float* x, int64_t half, const float* cos, const float* sin);
  // Folds keys [s0, s1) into the online-softmax state (see AttnBlockArgs).
  void (*attn_block)(const AttnBlockArgs& a);
};

const KernelTable& table_scalar();
const KernelTable& table_avx2();
const KernelTable& table_avx512();
// The table for active_isa().
const KernelTable& active_table();

}  // namespace kvlab::cpu::detail
