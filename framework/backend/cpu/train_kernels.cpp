// Training kernels (see train_kernels.h): RMSNorm, SwiGLU, attention backward, cross-entropy.
#include "framework/backend/cpu/train_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "framework/backend/cpu/cpu_features.h"
#include "framework/backend/cpu/kernel_table.h"
#include "framework/core/error.h"

namespace kvlab::cpu {

namespace {
constexpr int64_t kBc = 64;  // keys per backward tile (K^T, V^T tiles of D x 64 stay in L1)
}

void rmsnorm_fwd(const float* x, int64_t T, int64_t C, const float* w, float eps, float* y,
                 float* rstd, ThreadPool& pool) {
  const detail::KernelTable& kt = detail::active_table();
  const bool simd = active_isa() == Isa::kAvx512;
  pool.parallel_for(T, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* xr = x + t * C;
      kt.rmsnorm_row(xr, C, w, DType::kF32, eps, y + t * C);
      float ss = 0.f;
      if (simd) {
        ss = detail::sumsq_avx512(xr, C);
      } else {
        for (int64_t c = 0; c < C; ++c) ss += xr[c] * xr[c];
      }
      rstd[t] = 1.0f / std::sqrt(ss / static_cast<float>(C) + eps);
    }
  });
}

void rmsnorm_bwd(const float* dy, const float* x, const float* w, const float* rstd, int64_t T,
                 int64_t C, float* dx_acc, float* dw_acc, float* ws, ThreadPool& pool) {
  if (active_isa() != Isa::kAvx512) {
    rmsnorm_bwd_ref(dy, x, w, rstd, T, C, dx_acc, dw_acc, ws, pool);
    return;
  }
  const int nt = pool.threads();
  std::fill(ws, ws + nt * C, 0.f);
  pool.parallel_for(T, [&](int64_t t0, int64_t t1, int worker) {
    float* dw = ws + worker * C;
    for (int64_t t = t0; t < t1; ++t)
      detail::rmsnorm_bwd_row_avx512(dy + t * C, x + t * C, w, rstd[t], C, dx_acc + t * C, dw);
  });
  for (int i = 0; i < nt; ++i)
    for (int64_t c = 0; c < C; ++c) dw_acc[c] += ws[i * C + c];
}

void rmsnorm_bwd_ref(const float* dy, const float* x, const float* w, const float* rstd, int64_t T,
                     int64_t C, float* dx_acc, float* dw_acc, float* ws, ThreadPool& pool) {
  const int nt = pool.threads();
  std::fill(ws, ws + nt * C, 0.f);
  pool.parallel_for(T, [&](int64_t t0, int64_t t1, int worker) {
    float* dw = ws + worker * C;
    for (int64_t t = t0; t < t1; ++t) {
      const float* dyr = dy + t * C;
      const float* xr = x + t * C;
      float* dxr = dx_acc + t * C;
      const float r = rstd[t];
      float dot = 0.f;  // sum_c dy w x
      for (int64_t c = 0; c < C; ++c) dot += dyr[c] * w[c] * xr[c];
      const float k = r * r * r * dot / static_cast<float>(C);
      for (int64_t c = 0; c < C; ++c) {
        dxr[c] += r * dyr[c] * w[c] - k * xr[c];
        dw[c] += dyr[c] * xr[c] * r;
      }
    }
  });
  for (int i = 0; i < nt; ++i)
    for (int64_t c = 0; c < C; ++c) dw_acc[c] += ws[i * C + c];
}

void swiglu_bwd(const float* g, const float* u, const float* dh, float* dg, float* du, int64_t n) {
  if (active_isa() == Isa::kAvx512) {
    detail::swiglu_bwd_avx512(g, u, dh, dg, du, n);
    return;
  }
  swiglu_bwd_ref(g, u, dh, dg, du, n);
}

void swiglu_bwd_ref(const float* g, const float* u, const float* dh, float* dg, float* du,
                    int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i], ui = u[i], d = dh[i];
    const float s = 1.f / (1.f + std::exp(-gi));
    const float silu = gi * s;
    dg[i] = d * ui * s * (1.f + gi * (1.f - s));
    du[i] = d * silu;
  }
}

namespace detail {

// Per query row t in [c0, t_end): visible keys c < min(n_keys, t - c0 + 1);
// s = q.k, p = exp(scale s - lse), dp = dO.v, ds = scale p (dp - Delta);
// dv[c] += p dO, dk[c] += ds q, dq[t] += ds k[c].
void attn_bwd_tile_scalar(const AttnBwdTile& a) {
  const int64_t D = a.D, n = a.n_keys;
  std::fill(a.dk, a.dk + kBc * D, 0.f);
  std::fill(a.dv, a.dv + kBc * D, 0.f);
  for (int64_t t = a.c0; t < a.t_end; ++t) {
    const float* qt = a.q + t * a.q_stride;
    const float* ot = a.dout + t * a.q_stride;
    float* dqt = a.dq + t * a.q_stride;
    const float l = a.lse[t * a.lse_stride], dl = a.delta[t * a.lse_stride];
    const int64_t e = std::min(n, t - a.c0 + 1);
    for (int64_t c = 0; c < e; ++c) {
      float s = 0.f, dp = 0.f;
      for (int64_t d = 0; d < D; ++d) {
        s += qt[d] * a.kt[d * kBc + c];
        dp += ot[d] * a.vt[d * kBc + c];
      }
      const float p = std::exp(a.scale * s - l);
      const float ds = a.scale * p * (dp - dl);
      const float* kc = a.k + c * a.k_stride;
      for (int64_t d = 0; d < D; ++d) {
        a.dv[c * D + d] += p * ot[d];
        a.dk[c * D + d] += ds * qt[d];
        dqt[d] += ds * kc[d];
      }
    }
  }
}

}  // namespace detail

void attention_fwd(const float* q, const float* k, const float* v, int64_t B, int64_t T,
                   const AttentionShape& sh, float* out, float* lse, ThreadPool& pool) {
  const int64_t H = sh.H, G = sh.G, D = sh.D;
  KVLAB_CHECK(H > 0 && G > 0 && D > 0 && H % G == 0) << "attention_fwd: H=" << H << " G=" << G;
  const int64_t grp = H / G, HD = H * D, GD = G * D;
  if (!(active_isa() == Isa::kAvx512 && D % 16 == 0 && D <= 128)) {
    std::vector<int32_t> pos(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) pos[static_cast<size_t>(t)] = static_cast<int32_t>(t);
    for (int64_t b = 0; b < B; ++b) {
      const KvView kv{k + b * T * GD, v + b * T * GD, T, D, GD, pos.data()};
      attention(q + b * T * HD, T, pos.data(), kv, sh, out + b * T * HD, lse + b * T * H, pool);
    }
    return;
  }
  pool.parallel_tasks(B * H, [&](int64_t task, int) {
    const int64_t b = task / H, h = task % H, g = h / grp;
    thread_local std::vector<float> buf;
    buf.resize(static_cast<size_t>(kBc * D + 2 * T));
    float* kt = buf.data();
    float* m = kt + kBc * D;
    float* l = m + T;
    std::fill(m, m + T, -std::numeric_limits<float>::infinity());
    std::fill(l, l + T, 0.f);
    const float* kb = k + b * T * GD + g * D;
    const float* vb = v + b * T * GD + g * D;
    float* ob = out + b * T * HD + h * D;
    for (int64_t t = 0; t < T; ++t) std::fill(ob + t * HD, ob + t * HD + D, 0.f);
    detail::AttnBwdTile a{};
    a.q = q + b * T * HD + h * D;
    a.dq = ob;  // accumulator rows
    a.q_stride = HD;
    a.kt = kt;
    a.k_stride = GD;
    a.t_end = T;
    a.D = D;
    a.scale = sh.scale;
    for (int64_t c0 = 0; c0 < T; c0 += kBc) {
      const int64_t n = std::min(kBc, T - c0);
      for (int64_t d = 0; d < D; ++d)
        for (int64_t c = 0; c < kBc; ++c) kt[d * kBc + c] = c < n ? kb[(c0 + c) * GD + d] : 0.f;
      a.k = vb + c0 * GD;  // value rows
      a.c0 = c0;
      a.n_keys = n;
      detail::attn_fwd_tile_avx512(a, m, l);
    }
    float* lb = lse + b * T * H + h;
    for (int64_t t = 0; t < T; ++t) {
      const float inv = 1.f / l[t];
      for (int64_t d = 0; d < D; ++d) ob[t * HD + d] *= inv;
      lb[t * H] = m[t] + std::log(l[t]);
    }
  });
}

int64_t attention_bwd_ws_floats(int64_t B, int64_t T, const AttentionShape& sh) {
  return B * T * sh.H + 2 * B * sh.H * T * sh.D;
}

void attention_bwd(const float* q, const float* k, const float* v, const float* o,
                   const float* lse, const float* dout, int64_t B, int64_t T,
                   const AttentionShape& sh, float* dq, float* dk, float* dv, float* ws,
                   ThreadPool& pool) {
  const int64_t H = sh.H, G = sh.G, D = sh.D;
  KVLAB_CHECK(H > 0 && G > 0 && D > 0 && H % G == 0) << "attention_bwd: H=" << H << " G=" << G;
  const int64_t grp = H / G, HD = H * D, GD = G * D;
  float* delta = ws;                    // [B, T, H]
  float* dkh = ws + B * T * H;          // [B, H, T, D]
  float* dvh = dkh + B * H * T * D;     // [B, H, T, D]
  const bool simd = active_isa() == Isa::kAvx512 && D % 16 == 0 && D <= 128;

  // Delta[b, t, h] = dO . O; dq = 0.
  pool.parallel_for(B * T, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t h = 0; h < H; ++h) {
        const float* a = dout + r * HD + h * D;
        const float* b = o + r * HD + h * D;
        float s = 0.f;
        for (int64_t d = 0; d < D; ++d) s += a[d] * b[d];
        delta[r * H + h] = s;
      }
    std::fill(dq + r0 * HD, dq + r1 * HD, 0.f);
  });

  pool.parallel_tasks(B * H, [&](int64_t task, int) {
    const int64_t b = task / H, h = task % H, g = h / grp;
    thread_local std::vector<float> tile;
    tile.resize(static_cast<size_t>(4 * kBc * D));
    float* kt = tile.data();
    float* vt = kt + kBc * D;
    float* dkt = vt + kBc * D;
    float* dvt = dkt + kBc * D;
    const float* kb = k + b * T * GD + g * D;
    const float* vb = v + b * T * GD + g * D;
    detail::AttnBwdTile a{};
    a.q = q + b * T * HD + h * D;
    a.dout = dout + b * T * HD + h * D;
    a.dq = dq + b * T * HD + h * D;
    a.q_stride = HD;
    a.lse = lse + b * T * H + h;
    a.delta = delta + b * T * H + h;
    a.lse_stride = H;
    a.kt = kt;
    a.vt = vt;
    a.k_stride = GD;
    a.t_end = T;
    a.D = D;
    a.scale = sh.scale;
    a.dk = dkt;
    a.dv = dvt;
    float* dk_out = dkh + (b * H + h) * T * D;
    float* dv_out = dvh + (b * H + h) * T * D;
    for (int64_t c0 = 0; c0 < T; c0 += kBc) {
      const int64_t n = std::min(kBc, T - c0);
      for (int64_t d = 0; d < D; ++d)
        for (int64_t c = 0; c < kBc; ++c) {
          kt[d * kBc + c] = c < n ? kb[(c0 + c) * GD + d] : 0.f;
          vt[d * kBc + c] = c < n ? vb[(c0 + c) * GD + d] : 0.f;
        }
      a.k = kb + c0 * GD;
      a.c0 = c0;
      a.n_keys = n;
      if (simd) detail::attn_bwd_tile_avx512(a);
      else detail::attn_bwd_tile_scalar(a);
      std::memcpy(dk_out + c0 * D, dkt, static_cast<size_t>(n * D) * sizeof(float));
      std::memcpy(dv_out + c0 * D, dvt, static_cast<size_t>(n * D) * sizeof(float));
    }
  });

  // dk[b, t, g] = sum over the grp query heads of g of the per-head partials.
  pool.parallel_for(B * T, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / T, t = r % T;
      for (int64_t g = 0; g < G; ++g) {
        float* dkr = dk + r * GD + g * D;
        float* dvr = dv + r * GD + g * D;
        std::fill(dkr, dkr + D, 0.f);
        std::fill(dvr, dvr + D, 0.f);
        for (int64_t j = 0; j < grp; ++j) {
          const int64_t off = ((b * H + g * grp + j) * T + t) * D;
          for (int64_t d = 0; d < D; ++d) {
            dkr[d] += dkh[off + d];
            dvr[d] += dvh[off + d];
          }
        }
      }
    }
  });
}

void attention_bwd_ref(const float* q, const float* k, const float* v, const float* dout,
                       int64_t B, int64_t T, const AttentionShape& sh, float* dq, float* dk,
                       float* dv) {
  const int64_t H = sh.H, G = sh.G, D = sh.D, grp = H / G, HD = H * D, GD = G * D;
  std::fill(dq, dq + B * T * HD, 0.f);
  std::fill(dk, dk + B * T * GD, 0.f);
  std::fill(dv, dv + B * T * GD, 0.f);
  std::vector<double> p(static_cast<size_t>(T)), dp(static_cast<size_t>(T));
  std::vector<double> dkd(static_cast<size_t>(T * D)), dvd(static_cast<size_t>(T * D));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / grp;
      auto Q = [&](int64_t t) { return q + (b * T + t) * HD + h * D; };
      auto dO = [&](int64_t t) { return dout + (b * T + t) * HD + h * D; };
      auto K = [&](int64_t s) { return k + (b * T + s) * GD + g * D; };
      auto Vv = [&](int64_t s) { return v + (b * T + s) * GD + g * D; };
      std::fill(dkd.begin(), dkd.end(), 0.0);
      std::fill(dvd.begin(), dvd.end(), 0.0);
      for (int64_t t = 0; t < T; ++t) {
        double m = -INFINITY;
        for (int64_t s = 0; s <= t; ++s) {
          double x = 0;
          for (int64_t d = 0; d < D; ++d) x += static_cast<double>(Q(t)[d]) * K(s)[d];
          p[s] = x * sh.scale;
          m = std::max(m, p[s]);
        }
        double z = 0;
        for (int64_t s = 0; s <= t; ++s) z += (p[s] = std::exp(p[s] - m));
        double delta = 0;
        for (int64_t s = 0; s <= t; ++s) {
          p[s] /= z;
          double x = 0;
          for (int64_t d = 0; d < D; ++d) x += static_cast<double>(dO(t)[d]) * Vv(s)[d];
          dp[s] = x;
          delta += p[s] * x;
        }
        for (int64_t s = 0; s <= t; ++s) {
          const double ds = p[s] * (dp[s] - delta) * sh.scale;
          for (int64_t d = 0; d < D; ++d) {
            dvd[s * D + d] += p[s] * dO(t)[d];
            dkd[s * D + d] += ds * Q(t)[d];
            dq[(b * T + t) * HD + h * D + d] += static_cast<float>(ds * K(s)[d]);
          }
        }
      }
      for (int64_t s = 0; s < T; ++s)
        for (int64_t d = 0; d < D; ++d) {
          dk[(b * T + s) * GD + g * D + d] += static_cast<float>(dkd[s * D + d]);
          dv[(b * T + s) * GD + g * D + d] += static_cast<float>(dvd[s * D + d]);
        }
    }
}

double cross_entropy_rows(float* logits, const int32_t* targets, const float* weight, int64_t T,
                          int64_t V, double inv_norm, bool grad, ThreadPool& pool) {
  if (active_isa() != Isa::kAvx512 || V < 1)
    return cross_entropy_rows_ref(logits, targets, weight, T, V, inv_norm, grad, pool);
  std::vector<double> part(static_cast<size_t>(pool.threads()), 0.0);
  pool.parallel_for(T, [&](int64_t t0, int64_t t1, int worker) {
    double acc = 0;
    for (int64_t t = t0; t < t1; ++t) {
      float* z = logits + t * V;
      const int32_t y = targets[t];
      if (y < 0) {
        if (grad) std::fill(z, z + V, 0.f);
        continue;
      }
      KVLAB_CHECK(y < V) << "cross_entropy: target " << y << " outside vocabulary [0, " << V << ")";
      const double w = weight ? weight[t] : 1.0;
      const float zy = z[y];
      float m = 0.f;
      // Same e = exp(z - m) values whether stored or not, so the loss does not depend on grad.
      const double sum = detail::xent_row_sumexp_avx512(z, V, &m, grad);
      acc += w * (m + std::log(sum) - zy);
      if (grad) {
        // softmax = e / sum; dlogits = coef (softmax - onehot), coef = w / norm.
        const double coef = w * inv_norm;
        detail::scale_avx512(z, V, static_cast<float>(coef / sum));
        z[y] -= static_cast<float>(coef);
      }
    }
    part[static_cast<size_t>(worker)] += acc;
  });
  double total = 0;
  for (double x : part) total += x;
  return total;
}

double cross_entropy_rows_ref(float* logits, const int32_t* targets, const float* weight, int64_t T,
                              int64_t V, double inv_norm, bool grad, ThreadPool& pool) {
  std::vector<double> part(static_cast<size_t>(pool.threads()), 0.0);
  pool.parallel_for(T, [&](int64_t t0, int64_t t1, int worker) {
    double acc = 0;
    for (int64_t t = t0; t < t1; ++t) {
      float* z = logits + t * V;
      const int32_t y = targets[t];
      if (y < 0) {
        if (grad) std::fill(z, z + V, 0.f);
        continue;
      }
      KVLAB_CHECK(y < V) << "cross_entropy: target " << y << " outside vocabulary [0, " << V << ")";
      const float w = weight ? weight[t] : 1.f;
      float m = z[0];
      for (int64_t i = 1; i < V; ++i) m = std::max(m, z[i]);
      double sum = 0;
      for (int64_t i = 0; i < V; ++i) sum += std::exp(static_cast<double>(z[i] - m));
      const double lse = m + std::log(sum);
      acc += w * (lse - z[y]);
      if (grad) {
        const float coef = static_cast<float>(w * inv_norm);
        const float flse = static_cast<float>(lse);
        for (int64_t i = 0; i < V; ++i) z[i] = coef * std::exp(z[i] - flse);
        z[y] -= coef;
      }
    }
    part[static_cast<size_t>(worker)] += acc;
  });
  double total = 0;
  for (double x : part) total += x;
  return total;
}

}  // namespace kvlab::cpu
