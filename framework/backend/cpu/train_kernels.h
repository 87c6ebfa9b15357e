// CPU training kernels: the backward passes of the ops in kernels.h (and the forward variants
// that save what the backward needs). Each has a plain reference (suffix _ref) where the fast
// path is not itself the plain loop. All arithmetic in f32 unless stated.
// Letters: B batch, T tokens, H query heads, G KV heads, D head dim, C model dim, V vocab.
// Gradients named d*_acc are ACCUMULATED (+=); others are overwritten.
#pragma once

#include <cstdint>

#include "framework/backend/cpu/kernels.h"
#include "framework/core/thread_pool.h"

namespace kvlab::cpu {

// ---- RMSNorm: y = x * r * w, r = 1/sqrt(mean(x^2) + eps), per row of x[T, C] ----
// Forward that also saves rstd[T] = r. w f32 [C].
void rmsnorm_fwd(const float* x, int64_t T, int64_t C, const float* w, float eps, float* y,
                 float* rstd, ThreadPool& pool);
// dx_acc[t] += r (dy*w) - r^3/C * x * sum_c(dy*w*x);  dw_acc[c] += sum_t dy[t,c] x[t,c] r[t].
// dw_acc is reduced over per-worker partials (ws: threads * C floats). Cost ~8 T C flops.
// AVX-512 rows where active (same formula, vector sums), else the plain loop rmsnorm_bwd_ref.
void rmsnorm_bwd(const float* dy, const float* x, const float* w, const float* rstd, int64_t T,
                 int64_t C, float* dx_acc, float* dw_acc, float* ws, ThreadPool& pool);
void rmsnorm_bwd_ref(const float* dy, const float* x, const float* w, const float* rstd, int64_t T,
                     int64_t C, float* dx_acc, float* dw_acc, float* ws, ThreadPool& pool);

// ---- SwiGLU: h = silu(g) * u, silu(g) = g s(g), s = sigmoid ----
// dg = dh u s(g) (1 + g (1 - s(g))), du = dh silu(g). Overwrites dg, du (may alias g, u).
// AVX-512 when active (exp512, ~2 ulp), else the plain loop swiglu_bwd_ref (std::exp). Cost ~20 n
// flops, one exp per element.
void swiglu_bwd(const float* g, const float* u, const float* dh, float* dg, float* du, int64_t n);
void swiglu_bwd_ref(const float* g, const float* u, const float* dh, float* dg, float* du,
                    int64_t n);

// ---- Causal GQA attention forward for training ----
// Same result as cpu::attention over B sequences at positions 0..T-1: out [B, T, H, D] and
// lse [B, T, H] from q [B, T, H, D], k, v [B, T, G, D]. Parallel over (b, query head); keys in
// tiles of 64 (K^T, V tiles in L1), per query row an online softmax vectorised over the tile's
// keys. Falls back to cpu::attention per sequence without AVX-512 or when D % 16 != 0.
// Cost: 4 D flops per visible (query, key) pair and head.
void attention_fwd(const float* q, const float* k, const float* v, int64_t B, int64_t T,
                   const AttentionShape& sh, float* out, float* lse, ThreadPool& pool);

// ---- Causal GQA attention backward (FlashAttention-2 style, recomputing) ----
// Sequences b < B of T tokens at positions 0..T-1. q, o, dout, dq: [B, T, H, D]; k, v, dk, dv:
// [B, T, G, D]; lse: [B, T, H] from cpu::attention (natural log of sum exp(scale q.k)).
// Recomputes P = exp(scale q.k - lse) tile by tile (keys in tiles of 64); never stores T x T.
//   Delta[t] = dout[t] . o[t];  dV += P^T dO;  dP = dO V^T;  dS = P (dP - Delta);
//   dQ = scale dS K;  dK = scale dS^T Q.
// dq, dk, dv are overwritten. Parallel over (b, query head); per-head dK/dV partials live in
// ws (attention_bwd_ws_floats) and are summed over the H/G heads of each KV head.
// Cost: 10 D flops per visible (query, key) pair and head (forward: 4 D), ~5 T^2 H D per sequence.
// Full-tile rows go 4 at a time for D <= 32 (2 for D <= 64): 1.4-1.5x faster than 2 at a time
// for kvlab-tiny (D 32) at T 512 and 2048 (experiments/microbench/train_bench, one thread).
int64_t attention_bwd_ws_floats(int64_t B, int64_t T, const AttentionShape& sh);
void attention_bwd(const float* q, const float* k, const float* v, const float* o,
                   const float* lse, const float* dout, int64_t B, int64_t T,
                   const AttentionShape& sh, float* dq, float* dk, float* dv, float* ws,
                   ThreadPool& pool);
// Plain reference: full softmax rows in f64, one (b, h) at a time.
void attention_bwd_ref(const float* q, const float* k, const float* v, const float* dout,
                       int64_t B, int64_t T, const AttentionShape& sh, float* dq, float* dk,
                       float* dv);

// ---- Cross-entropy, fused with log-softmax and its gradient, row by row ----
// logits[T, V] in, overwritten with dloss/dlogits = coef[t] (softmax - onehot(target)) where
// coef[t] = weight[t] * inv_norm (rows with target < 0 get zeros). Returns sum over rows with
// target >= 0 of weight[t] * (logsumexp - logit[target]) (weight null = 1), in f64.
// grad = false computes the loss only and leaves logits as they were.
// AVX-512 path (when active): per row one max pass, one pass e = exp(z - m) (exp512, stored into
// the row when grad) summed in f64, one scaling pass z = e * coef / sum: one exp per element
// instead of two. cross_entropy_rows_ref is the plain loop (f64 exp for the sum, f32 std::exp for
// the gradient). Both are deterministic for a given thread count (per-worker f64 partials).
double cross_entropy_rows(float* logits, const int32_t* targets, const float* weight, int64_t T,
                          int64_t V, double inv_norm, bool grad, ThreadPool& pool);
double cross_entropy_rows_ref(float* logits, const int32_t* targets, const float* weight, int64_t T,
                              int64_t V, double inv_norm, bool grad, ThreadPool& pool);

namespace detail {
// Inner tile of attention_bwd for one (sequence, query head, key tile): see train_kernels.cpp.
// attention_fwd reuses it: dq = output accumulator rows, k = value rows, kt = K^T tile.
struct AttnBwdTile {
  const float* q;     // q[t * q_stride + d] (this head)
  const float* dout;  // same layout as q
  float* dq;          // same layout as q (accumulated)
  int64_t q_stride;
  const float* lse;   // lse[t * lse_stride]
  const float* delta; // delta[t * lse_stride]
  int64_t lse_stride;
  const float* kt;    // [D, Bc] transposed key tile
  const float* vt;    // [D, Bc] transposed value tile
  const float* k;     // key rows k[c * k_stride + d], c < n_keys (tile-relative)
  int64_t k_stride;
  int64_t c0, n_keys;  // tile covers key positions [c0, c0 + n_keys); n_keys <= 64
  int64_t t_end;       // query rows [c0, t_end)
  int64_t D;
  float scale;
  float* dk;  // [64, D] tile accumulators (overwritten with the tile's totals)
  float* dv;  // [64, D]
};
void attn_bwd_tile_scalar(const AttnBwdTile& a);
// Forward: folds a key tile into per-row online-softmax states m[t], l[t], acc = out rows.
void attn_fwd_tile_avx512(const AttnBwdTile& a, float* m, float* l);
void attn_bwd_tile_avx512(const AttnBwdTile& a);  // D % 16 == 0 only
// RMSNorm: sum_c x[c]^2 of one row; one row of rmsnorm_bwd (dx_acc, dw partial accumulated).
float sumsq_avx512(const float* x, int64_t C);
void rmsnorm_bwd_row_avx512(const float* dy, const float* x, const float* w, float r, int64_t C,
                            float* dx_acc, float* dw);
// Cross-entropy row helpers: *m = max_i z[i]; returns sum_i exp(z[i] - *m) accumulated in f64;
// store: z[i] = exp(z[i] - *m) (f32). V >= 1.
double xent_row_sumexp_avx512(float* z, int64_t V, float* m, bool store);
// z[i] *= c for i < n.
void scale_avx512(float* z, int64_t n, float c);
void swiglu_bwd_avx512(const float* g, const float* u, const float* dh, float* dg, float* du,
                       int64_t n);
}  // namespace detail

}  // namespace kvlab::cpu
