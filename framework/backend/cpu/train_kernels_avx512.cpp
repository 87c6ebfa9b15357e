// AVX-512 inner tile of attention_bwd (train_kernels.h), D % 16 == 0, D <= 128. Called only
// after the run-time ISA check in attention_bwd.
//
// One query row against a tile of 64 keys: S and dP are computed vectorised over keys from the
// transposed tiles K^T, V^T [D, 64] (broadcast q[d], 4 FMAs per d: no horizontal sums); then per
// visible key c: dV[c] += p dO, dK[c] += ds q, dQ += ds K[c] with q, dO, dQ held in ND = D/16
// registers. 10 D flops per (row, key).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "framework/backend/cpu/avx512_math.h"
#include "framework/backend/cpu/train_kernels.h"

namespace kvlab::cpu::detail {
namespace {

constexpr int kBc = 64;

// Backward, R rows t0.. that see all 64 keys of a full tile: K^T, V^T, dK, dV and K loads are
// shared by the R rows. S and dP are formed in two passes over d (R x 4 accumulators each, so
// R = 4 fits the 32 zmm registers); the pointers are read once into locals (stores through
// float* would otherwise make the compiler reload them from `a` for every key). Rows are folded
// into dK/dV in row order, so the result does not depend on R.
// kMasked: rows of a diagonal (or ragged last) tile, row t seeing keys c < min(n_keys,
// t - c0 + 1): p and dS are zero past that (the products they feed add exact zeros) and the key
// loop stops at the last row's limit, so the rows give the same values as one at a time.
template <int ND, int R, bool kMasked = false>
inline void bwd_rows_full(const AttnBwdTile& a, int64_t t0) {
  constexpr int D = ND * 16;
  alignas(64) float pbuf[R][kBc], dsbuf[R][kBc];
  const __m512 vscale = _mm512_set1_ps(a.scale);
  const float* const kt = a.kt;
  const float* const vt = a.vt;
  const float* const kb = a.k;
  const int64_t ks = a.k_stride;
  float* const dvb = a.dv;
  float* const dkb = a.dk;
  const float *qt[R], *ot[R];
  for (int r = 0; r < R; ++r) {
    qt[r] = a.q + (t0 + r) * a.q_stride;
    ot[r] = a.dout + (t0 + r) * a.q_stride;
  }
  {
    __m512 sv[R][4];
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < 4; ++j) sv[r][j] = _mm512_setzero_ps();
    for (int d = 0; d < D; ++d) {
      const float* kr = kt + d * kBc;
      for (int j = 0; j < 4; ++j) {
        const __m512 kk = _mm512_loadu_ps(kr + 16 * j);
        for (int r = 0; r < R; ++r)
          sv[r][j] = _mm512_fmadd_ps(_mm512_set1_ps(qt[r][d]), kk, sv[r][j]);
      }
    }
    for (int r = 0; r < R; ++r) {
      const __m512 lv = _mm512_set1_ps(a.lse[(t0 + r) * a.lse_stride]);
      for (int j = 0; j < 4; ++j) {
        __m512 p = exp512(_mm512_fmsub_ps(vscale, sv[r][j], lv));
        if constexpr (kMasked) {
          const int64_t vis = t0 + r - a.c0 + 1 < a.n_keys ? t0 + r - a.c0 + 1 : a.n_keys;
          const int64_t left = vis - 16 * j;  // visible keys in this chunk of 16
          const __mmask16 k = left >= 16  ? static_cast<__mmask16>(0xFFFF)
                              : left <= 0 ? static_cast<__mmask16>(0)
                                          : static_cast<__mmask16>((1u << left) - 1u);
          p = _mm512_maskz_mov_ps(k, p);
        }
        _mm512_store_ps(pbuf[r] + 16 * j, p);
      }
    }
  }
  {
    __m512 dp[R][4];
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < 4; ++j) dp[r][j] = _mm512_setzero_ps();
    for (int d = 0; d < D; ++d) {
      const float* vr = vt + d * kBc;
      for (int j = 0; j < 4; ++j) {
        const __m512 vv = _mm512_loadu_ps(vr + 16 * j);
        for (int r = 0; r < R; ++r)
          dp[r][j] = _mm512_fmadd_ps(_mm512_set1_ps(ot[r][d]), vv, dp[r][j]);
      }
    }
    for (int r = 0; r < R; ++r) {
      const __m512 dl = _mm512_set1_ps(a.delta[(t0 + r) * a.lse_stride]);
      for (int j = 0; j < 4; ++j) {
        const __m512 p = _mm512_load_ps(pbuf[r] + 16 * j);
        _mm512_store_ps(dsbuf[r] + 16 * j,
                        _mm512_mul_ps(_mm512_mul_ps(p, vscale), _mm512_sub_ps(dp[r][j], dl)));
      }
    }
  }
  __m512 qv[R][ND], ov[R][ND], dqv[R][ND];
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < ND; ++i) {
      qv[r][i] = _mm512_loadu_ps(qt[r] + 16 * i);
      ov[r][i] = _mm512_loadu_ps(ot[r] + 16 * i);
      dqv[r][i] = _mm512_setzero_ps();
    }
  int64_t n_c = kBc;
  if constexpr (kMasked) {
    const int64_t last = t0 + R - 1 - a.c0 + 1;  // keys seen by the last row
    n_c = last < a.n_keys ? last : a.n_keys;
  }
  for (int64_t c = 0; c < n_c; ++c) {
    float* dvr = dvb + c * D;
    float* dkr = dkb + c * D;
    const float* kc = kb + c * ks;
    for (int i = 0; i < ND; ++i) {
      __m512 dvv = _mm512_loadu_ps(dvr + 16 * i), dkv = _mm512_loadu_ps(dkr + 16 * i);
      const __m512 kv = _mm512_loadu_ps(kc + 16 * i);
      for (int r = 0; r < R; ++r) {
        const __m512 pc = _mm512_set1_ps(pbuf[r][c]), dsc = _mm512_set1_ps(dsbuf[r][c]);
        dvv = _mm512_fmadd_ps(pc, ov[r][i], dvv);
        dkv = _mm512_fmadd_ps(dsc, qv[r][i], dkv);
        dqv[r][i] = _mm512_fmadd_ps(dsc, kv, dqv[r][i]);
      }
      _mm512_storeu_ps(dvr + 16 * i, dvv);
      _mm512_storeu_ps(dkr + 16 * i, dkv);
    }
  }
  for (int r = 0; r < R; ++r) {
    float* dqt = a.dq + (t0 + r) * a.q_stride;
    for (int i = 0; i < ND; ++i)
      _mm512_storeu_ps(dqt + 16 * i, _mm512_add_ps(_mm512_loadu_ps(dqt + 16 * i), dqv[r][i]));
  }
}

template <int ND>
void tile(const AttnBwdTile& a) {
  constexpr int D = ND * 16;
  // No std:: templates here: an inline instantiation compiled with AVX-512 could be picked by
  // the linker for baseline code (see simd_kernels.h).
  __builtin_memset(a.dk, 0, sizeof(float) * kBc * D);
  __builtin_memset(a.dv, 0, sizeof(float) * kBc * D);
  alignas(64) float pbuf[kBc], dsbuf[kBc];
  const __m512 vscale = _mm512_set1_ps(a.scale);
  const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  constexpr int R = ND <= 2 ? 4 : (ND <= 4 ? 2 : 1);
  // Rows that see only part of the tile: R at a time with masks while R of them remain.
  const int64_t first_full = a.n_keys == kBc ? a.c0 + kBc - 1 : a.t_end;
  const int64_t part_end = first_full < a.t_end ? first_full : a.t_end;
  int64_t t_start = a.c0;
  if constexpr (R > 1)
    for (; t_start + R <= part_end; t_start += R) bwd_rows_full<ND, R, true>(a, t_start);
  for (int64_t t = t_start; t < a.t_end; ++t) {
    if (a.n_keys == kBc && t >= a.c0 + kBc - 1) {
      for (; t + R <= a.t_end; t += R) bwd_rows_full<ND, R>(a, t);
      for (; t < a.t_end; ++t) bwd_rows_full<ND, 1>(a, t);
      break;
    }
    const float* qt = a.q + t * a.q_stride;
    const float* ot = a.dout + t * a.q_stride;
    float* dqt = a.dq + t * a.q_stride;
    const int64_t vis_keys = t - a.c0 + 1 < a.n_keys ? t - a.c0 + 1 : a.n_keys;
    const int e = static_cast<int>(vis_keys);
    const int nc = (e + 15) / 16;
    __m512 s[4], dp[4];
    for (int j = 0; j < 4; ++j) s[j] = dp[j] = _mm512_setzero_ps();
    if (nc == 4) {
      for (int d = 0; d < D; ++d) {
        const __m512 qd = _mm512_set1_ps(qt[d]), od = _mm512_set1_ps(ot[d]);
        const float* kr = a.kt + d * kBc;
        const float* vr = a.vt + d * kBc;
        for (int j = 0; j < 4; ++j) {
          s[j] = _mm512_fmadd_ps(qd, _mm512_loadu_ps(kr + 16 * j), s[j]);
          dp[j] = _mm512_fmadd_ps(od, _mm512_loadu_ps(vr + 16 * j), dp[j]);
        }
      }
    } else {
      for (int d = 0; d < D; ++d) {
        const __m512 qd = _mm512_set1_ps(qt[d]), od = _mm512_set1_ps(ot[d]);
        const float* kr = a.kt + d * kBc;
        const float* vr = a.vt + d * kBc;
        for (int j = 0; j < nc; ++j) {
          s[j] = _mm512_fmadd_ps(qd, _mm512_loadu_ps(kr + 16 * j), s[j]);
          dp[j] = _mm512_fmadd_ps(od, _mm512_loadu_ps(vr + 16 * j), dp[j]);
        }
      }
    }
    const __m512 l = _mm512_set1_ps(a.lse[t * a.lse_stride]);
    const __m512 dl = _mm512_set1_ps(a.delta[t * a.lse_stride]);
    for (int j = 0; j < nc; ++j) {
      const __mmask16 vis =
          _mm512_cmplt_epi32_mask(_mm512_add_epi32(lane, _mm512_set1_epi32(16 * j)),
                                  _mm512_set1_epi32(e));
      const __m512 p = _mm512_maskz_mov_ps(vis, exp512(_mm512_fmsub_ps(vscale, s[j], l)));
      _mm512_store_ps(pbuf + 16 * j, p);
      _mm512_store_ps(dsbuf + 16 * j, _mm512_mul_ps(_mm512_mul_ps(p, vscale),
                                                    _mm512_sub_ps(dp[j], dl)));
    }
    __m512 qv[ND], ov[ND], dqv[ND];
    for (int i = 0; i < ND; ++i) {
      qv[i] = _mm512_loadu_ps(qt + 16 * i);
      ov[i] = _mm512_loadu_ps(ot + 16 * i);
      dqv[i] = _mm512_setzero_ps();
    }
    for (int c = 0; c < e; ++c) {
      const __m512 pc = _mm512_set1_ps(pbuf[c]), dsc = _mm512_set1_ps(dsbuf[c]);
      float* dvr = a.dv + c * D;
      float* dkr = a.dk + c * D;
      const float* kc = a.k + c * a.k_stride;
      for (int i = 0; i < ND; ++i) {
        _mm512_storeu_ps(dvr + 16 * i, _mm512_fmadd_ps(pc, ov[i], _mm512_loadu_ps(dvr + 16 * i)));
        _mm512_storeu_ps(dkr + 16 * i, _mm512_fmadd_ps(dsc, qv[i], _mm512_loadu_ps(dkr + 16 * i)));
        dqv[i] = _mm512_fmadd_ps(dsc, _mm512_loadu_ps(kc + 16 * i), dqv[i]);
      }
    }
    for (int i = 0; i < ND; ++i)
      _mm512_storeu_ps(dqt + 16 * i, _mm512_add_ps(_mm512_loadu_ps(dqt + 16 * i), dqv[i]));
  }
}

// Forward, R rows t0..t0+R-1 that see all 64 keys of the tile: the K^T and V loads are shared
// by the R rows (R * 4 + R * ND accumulators in registers).
template <int ND, int R>
inline void fwd_rows_full(const AttnBwdTile& a, int64_t t0, float* m, float* l) {
  constexpr int D = ND * 16;
  alignas(64) float pbuf[R][kBc];
  const __m512 vscale = _mm512_set1_ps(a.scale);
  __m512 s[R][4];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < 4; ++j) s[r][j] = _mm512_setzero_ps();
  const float* qt[R];
  for (int r = 0; r < R; ++r) qt[r] = a.q + (t0 + r) * a.q_stride;
  for (int d = 0; d < D; ++d) {
    const float* kr = a.kt + d * kBc;
    const __m512 k0 = _mm512_loadu_ps(kr), k1 = _mm512_loadu_ps(kr + 16);
    const __m512 k2 = _mm512_loadu_ps(kr + 32), k3 = _mm512_loadu_ps(kr + 48);
    for (int r = 0; r < R; ++r) {
      const __m512 qd = _mm512_set1_ps(qt[r][d]);
      s[r][0] = _mm512_fmadd_ps(qd, k0, s[r][0]);
      s[r][1] = _mm512_fmadd_ps(qd, k1, s[r][1]);
      s[r][2] = _mm512_fmadd_ps(qd, k2, s[r][2]);
      s[r][3] = _mm512_fmadd_ps(qd, k3, s[r][3]);
    }
  }
  __m512 av[R][ND];
  for (int r = 0; r < R; ++r) {
    const int64_t t = t0 + r;
    __m512 mx = _mm512_mul_ps(s[r][0], vscale);
    for (int j = 0; j < 4; ++j) {
      s[r][j] = _mm512_mul_ps(s[r][j], vscale);
      mx = _mm512_max_ps(mx, s[r][j]);
    }
    const float tile_max = _mm512_reduce_max_ps(mx);
    const float m_old = m[t];
    const float m_new = m_old > tile_max ? m_old : tile_max;
    const __m512 mn = _mm512_set1_ps(m_new);
    __m512 lsum = _mm512_setzero_ps();
    for (int j = 0; j < 4; ++j) {
      const __m512 p = exp512(_mm512_sub_ps(s[r][j], mn));
      lsum = _mm512_add_ps(lsum, p);
      _mm512_store_ps(pbuf[r] + 16 * j, p);
    }
    const float alpha = m_old == -__builtin_inff() ? 0.f
                        : _mm512_cvtss_f32(exp512(_mm512_set1_ps(m_old - m_new)));
    l[t] = l[t] * alpha + _mm512_reduce_add_ps(lsum);
    m[t] = m_new;
    const __m512 va = _mm512_set1_ps(alpha);
    const float* acc = a.dq + t * a.q_stride;
    for (int i = 0; i < ND; ++i) av[r][i] = _mm512_mul_ps(va, _mm512_loadu_ps(acc + 16 * i));
  }
  for (int c = 0; c < kBc; ++c) {
    const float* vc = a.k + c * a.k_stride;
    __m512 vv[ND];
    for (int i = 0; i < ND; ++i) vv[i] = _mm512_loadu_ps(vc + 16 * i);
    for (int r = 0; r < R; ++r) {
      const __m512 pc = _mm512_set1_ps(pbuf[r][c]);
      for (int i = 0; i < ND; ++i) av[r][i] = _mm512_fmadd_ps(pc, vv[i], av[r][i]);
    }
  }
  for (int r = 0; r < R; ++r) {
    float* acc = a.dq + (t0 + r) * a.q_stride;
    for (int i = 0; i < ND; ++i) _mm512_storeu_ps(acc + 16 * i, av[r][i]);
  }
}

// Forward: for each row t >= c0, s = scale q.K^T over the tile's visible keys, then the online
// softmax update m' = max(m, max s), alpha = e^(m - m'), l = alpha l + sum e^(s - m'),
// acc = alpha acc + sum_c e^(s_c - m') v_c (acc is the out row, t >= c0 only).
template <int ND>
void fwd_tile(const AttnBwdTile& a, float* m, float* l) {
  constexpr int D = ND * 16;
  alignas(64) float pbuf[kBc];
  const __m512 vscale = _mm512_set1_ps(a.scale);
  const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  const __m512 ninf = _mm512_set1_ps(-__builtin_inff());
  constexpr int R = ND <= 2 ? 4 : (ND <= 4 ? 2 : 1);
  for (int64_t t = a.c0; t < a.t_end; ++t) {
    // Rows that see the whole (full) tile go R at a time.
    if (a.n_keys == kBc && t >= a.c0 + kBc - 1) {
      for (; t + R <= a.t_end; t += R) fwd_rows_full<ND, R>(a, t, m, l);
      for (; t < a.t_end; ++t) fwd_rows_full<ND, 1>(a, t, m, l);
      break;
    }
    const float* qt = a.q + t * a.q_stride;
    float* acc = a.dq + t * a.q_stride;
    const int64_t vis_keys = t - a.c0 + 1 < a.n_keys ? t - a.c0 + 1 : a.n_keys;
    const int e = static_cast<int>(vis_keys);
    const int nc = (e + 15) / 16;
    __m512 s[4];
    for (int j = 0; j < 4; ++j) s[j] = _mm512_setzero_ps();
    if (nc == 4) {
      for (int d = 0; d < D; ++d) {
        const __m512 qd = _mm512_set1_ps(qt[d]);
        const float* kr = a.kt + d * kBc;
        for (int j = 0; j < 4; ++j) s[j] = _mm512_fmadd_ps(qd, _mm512_loadu_ps(kr + 16 * j), s[j]);
      }
    } else {
      for (int d = 0; d < D; ++d) {
        const __m512 qd = _mm512_set1_ps(qt[d]);
        const float* kr = a.kt + d * kBc;
        for (int j = 0; j < nc; ++j) s[j] = _mm512_fmadd_ps(qd, _mm512_loadu_ps(kr + 16 * j), s[j]);
      }
    }
    __m512 mx = ninf;
    for (int j = 0; j < nc; ++j) {
      const __mmask16 vis =
          _mm512_cmplt_epi32_mask(_mm512_add_epi32(lane, _mm512_set1_epi32(16 * j)),
                                  _mm512_set1_epi32(e));
      s[j] = _mm512_mask_mov_ps(ninf, vis, _mm512_mul_ps(s[j], vscale));
      mx = _mm512_max_ps(mx, s[j]);
    }
    const float m_old = m[t];
    const float m_new = m_old > _mm512_reduce_max_ps(mx) ? m_old : _mm512_reduce_max_ps(mx);
    const __m512 mn = _mm512_set1_ps(m_new);
    __m512 lsum = _mm512_setzero_ps();
    for (int j = 0; j < nc; ++j) {
      const __m512 p = exp512(_mm512_sub_ps(s[j], mn));  // -inf - m -> 0
      lsum = _mm512_add_ps(lsum, p);
      _mm512_store_ps(pbuf + 16 * j, p);
    }
    const float alpha = m_old == -__builtin_inff() ? 0.f
                        : _mm512_cvtss_f32(exp512(_mm512_set1_ps(m_old - m_new)));
    l[t] = l[t] * alpha + _mm512_reduce_add_ps(lsum);
    m[t] = m_new;
    __m512 av[ND];
    const __m512 va = _mm512_set1_ps(alpha);
    for (int i = 0; i < ND; ++i) av[i] = _mm512_mul_ps(va, _mm512_loadu_ps(acc + 16 * i));
    for (int c = 0; c < e; ++c) {
      const __m512 pc = _mm512_set1_ps(pbuf[c]);
      const float* vc = a.k + c * a.k_stride;  // value rows passed in a.k for the forward
      for (int i = 0; i < ND; ++i) av[i] = _mm512_fmadd_ps(pc, _mm512_loadu_ps(vc + 16 * i), av[i]);
    }
    for (int i = 0; i < ND; ++i) _mm512_storeu_ps(acc + 16 * i, av[i]);
  }
}

}  // namespace

namespace {
inline __mmask16 first_lanes(int64_t n) {  // first min(n, 16) lanes
  return n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u);
}
}  // namespace

float sumsq_avx512(const float* x, int64_t C) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= C; i += 32) {
    const __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
    s0 = _mm512_fmadd_ps(a, a, s0);
    s1 = _mm512_fmadd_ps(b, b, s1);
  }
  for (; i < C; i += 16) {
    const __m512 a = _mm512_maskz_loadu_ps(first_lanes(C - i), x + i);
    s0 = _mm512_fmadd_ps(a, a, s0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

// dot = sum_c dy w x;  dx_acc += r dy w - (r^3 dot / C) x;  dw += dy x r.  ~8 C flops.
void rmsnorm_bwd_row_avx512(const float* dy, const float* x, const float* w, float r, int64_t C,
                            float* dx_acc, float* dw) {
  __m512 d0 = _mm512_setzero_ps();
  for (int64_t i = 0; i < C; i += 16) {
    const __mmask16 k = first_lanes(C - i);
    d0 = _mm512_fmadd_ps(
        _mm512_mul_ps(_mm512_maskz_loadu_ps(k, dy + i), _mm512_maskz_loadu_ps(k, w + i)),
        _mm512_maskz_loadu_ps(k, x + i), d0);
  }
  const float dot = _mm512_reduce_add_ps(d0);
  const __m512 rv = _mm512_set1_ps(r), kv = _mm512_set1_ps(r * r * r * dot / static_cast<float>(C));
  for (int64_t i = 0; i < C; i += 16) {
    const __mmask16 k = first_lanes(C - i);
    const __m512 dyv = _mm512_maskz_loadu_ps(k, dy + i), xv = _mm512_maskz_loadu_ps(k, x + i);
    const __m512 wv = _mm512_maskz_loadu_ps(k, w + i);
    const __m512 dx = _mm512_fnmadd_ps(kv, xv, _mm512_mul_ps(_mm512_mul_ps(rv, dyv), wv));
    _mm512_mask_storeu_ps(dx_acc + i, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, dx_acc + i), dx));
    _mm512_mask_storeu_ps(
        dw + i, k, _mm512_fmadd_ps(_mm512_mul_ps(dyv, xv), rv, _mm512_maskz_loadu_ps(k, dw + i)));
  }
}

// Three vector passes over a row held in L1/L2 (V = 4096: 16 KiB): max, then exp (exp512, the
// sum widened to f64 per vector so that V terms add no f32 rounding), optionally stored.
double xent_row_sumexp_avx512(float* z, int64_t V, float* m, bool store) {
  __m512 mx = _mm512_set1_ps(-__builtin_inff());
  int64_t i = 0;
  for (; i + 16 <= V; i += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(z + i));
  if (i < V)
    mx = _mm512_mask_max_ps(mx, first_lanes(V - i), mx,
                            _mm512_maskz_loadu_ps(first_lanes(V - i), z + i));
  const float mf = _mm512_reduce_max_ps(mx);
  *m = mf;
  const __m512 mv = _mm512_set1_ps(mf);
  __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
  for (i = 0; i < V; i += 16) {
    const __mmask16 k = first_lanes(V - i);
    // Masked-off lanes: exp512 of (0 - m) is finite but zeroed by the masked move.
    const __m512 e =
        _mm512_maskz_mov_ps(k, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, z + i), mv)));
    if (store) _mm512_mask_storeu_ps(z + i, k, e);
    s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
    s1 = _mm512_add_pd(
        s1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
  }
  return _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
}

void scale_avx512(float* z, int64_t n, float c) {
  const __m512 cv = _mm512_set1_ps(c);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = first_lanes(n - i);
    _mm512_mask_storeu_ps(z + i, k, _mm512_mul_ps(cv, _mm512_maskz_loadu_ps(k, z + i)));
  }
}

// dg = dh u s (1 + g (1 - s)), du = dh g s with s = 1 / (1 + exp(-g)); inputs of a vector are
// loaded before its outputs are stored (dg may alias g, du may alias u).
void swiglu_bwd_avx512(const float* g, const float* u, const float* dh, float* dg, float* du,
                       int64_t n) {
  const __m512 one = _mm512_set1_ps(1.f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = first_lanes(n - i);
    const __m512 gv = _mm512_maskz_loadu_ps(k, g + i);
    const __m512 uv = _mm512_maskz_loadu_ps(k, u + i);
    const __m512 d = _mm512_maskz_loadu_ps(k, dh + i);
    const __m512 s =
        _mm512_div_ps(one, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), gv))));
    const __m512 silu = _mm512_mul_ps(gv, s);
    const __m512 dgv = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(d, uv), s),
                                     _mm512_fmadd_ps(gv, _mm512_sub_ps(one, s), one));
    _mm512_mask_storeu_ps(dg + i, k, dgv);
    _mm512_mask_storeu_ps(du + i, k, _mm512_mul_ps(d, silu));
  }
}

void attn_fwd_tile_avx512(const AttnBwdTile& a, float* m, float* l) {
  switch (a.D) {
    case 16: fwd_tile<1>(a, m, l); return;
    case 32: fwd_tile<2>(a, m, l); return;
    case 48: fwd_tile<3>(a, m, l); return;
    case 64: fwd_tile<4>(a, m, l); return;
    case 80: fwd_tile<5>(a, m, l); return;
    case 96: fwd_tile<6>(a, m, l); return;
    case 112: fwd_tile<7>(a, m, l); return;
    case 128: fwd_tile<8>(a, m, l); return;
    default: return;  // D checked by the caller
  }
}

void attn_bwd_tile_avx512(const AttnBwdTile& a) {
  switch (a.D) {
    case 16: tile<1>(a); return;
    case 32: tile<2>(a); return;
    case 48: tile<3>(a); return;
    case 64: tile<4>(a); return;
    case 80: tile<5>(a); return;
    case 96: tile<6>(a); return;
    case 112: tile<7>(a); return;
    case 128: tile<8>(a); return;
    default: attn_bwd_tile_scalar(a); return;
  }
}

}  // namespace kvlab::cpu::detail
