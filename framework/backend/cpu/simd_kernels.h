// Internal: the inner kernels written once over a SIMD traits type V and instantiated per ISA
// (kernels_scalar.cpp, kernels_avx2.cpp, kernels_avx512.cpp). Everything here has internal
// linkage (anonymous namespace), so code compiled with AVX flags never leaks into baseline
// translation units through the linker. Include only after the traits type and <cmath>,
// <cstring>, <limits>, kernel_table.h.
//
// V provides: R (register type), W (lanes), zero, set1, load, store, add, sub, mul, div, max,
// fma(a, b, c) = a * b + c, hsum, hmax, load_bf16, load_f16 (W elements), exp (0 for x < -87.3).
// libm is called through __builtin_* (never an inline std:: wrapper that could be emitted as a
// weak symbol with AVX code and picked by the linker for baseline code).

namespace kvlab::cpu::detail {
namespace {

inline float tail_bf16(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

template <DType DT>
inline float load_one(const void* w, int64_t k) {
  if constexpr (DT == DType::kF32) return static_cast<const float*>(w)[k];
  if constexpr (DT == DType::kBF16) return tail_bf16(static_cast<const uint16_t*>(w)[k]);
  if constexpr (DT == DType::kF16) return f16_to_f32(static_cast<const uint16_t*>(w)[k]);
  return 0.f;
}

template <class V, DType DT>
inline typename V::R load_w(const void* w, int64_t k) {
  if constexpr (DT == DType::kF32) return V::load(static_cast<const float*>(w) + k);
  if constexpr (DT == DType::kBF16) return V::load_bf16(static_cast<const uint16_t*>(w) + k);
  if constexpr (DT == DType::kF16) return V::load_f16(static_cast<const uint16_t*>(w) + k);
}

template <class V>
inline float dot(const float* a, const float* b, int64_t n) {
  constexpr int W = V::W;
  typename V::R s0 = V::zero(), s1 = V::zero();
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    s0 = V::fma(V::load(a + i), V::load(b + i), s0);
    s1 = V::fma(V::load(a + i + W), V::load(b + i + W), s1);
  }
  for (; i + W <= n; i += W) s0 = V::fma(V::load(a + i), V::load(b + i), s0);
  float s = V::hsum(V::add(s0, s1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// One output row n for TT tokens: y[t] = x[t, :] . w_row.
template <class V, DType DT, int TT>
inline void gemv_row(const float* x, int64_t K, const void* wrow, float* out) {
  constexpr int W = V::W;
  typename V::R acc[TT][2];
  for (int t = 0; t < TT; ++t) acc[t][0] = acc[t][1] = V::zero();
  int64_t k = 0;
  for (; k + 2 * W <= K; k += 2 * W) {
    const auto w0 = load_w<V, DT>(wrow, k);
    const auto w1 = load_w<V, DT>(wrow, k + W);
    for (int t = 0; t < TT; ++t) {
      acc[t][0] = V::fma(V::load(x + t * K + k), w0, acc[t][0]);
      acc[t][1] = V::fma(V::load(x + t * K + k + W), w1, acc[t][1]);
    }
  }
  for (; k + W <= K; k += W) {
    const auto w0 = load_w<V, DT>(wrow, k);
    for (int t = 0; t < TT; ++t) acc[t][0] = V::fma(V::load(x + t * K + k), w0, acc[t][0]);
  }
  for (int t = 0; t < TT; ++t) out[t] = V::hsum(V::add(acc[t][0], acc[t][1]));
  for (; k < K; ++k) {
    const float wk = load_one<DT>(wrow, k);
    for (int t = 0; t < TT; ++t) out[t] += x[t * K + k] * wk;
  }
}

template <class V, DType DT>
void gemv_dt(const float* x, int64_t T, int64_t K, const void* w, int64_t ld, int64_t n0,
             int64_t n1, const float* bias, float* y, int64_t ldy) {
  constexpr int64_t es = static_cast<int64_t>(dtype_size(DT));
  for (int64_t t0 = 0; t0 < T; t0 += 4) {
    const int64_t tt = T - t0 < 4 ? T - t0 : 4;
    const float* xt = x + t0 * K;
    for (int64_t n = n0; n < n1; ++n) {
      const void* wrow = static_cast<const char*>(w) + n * ld * es;
      float out[4];
      switch (tt) {
        case 1: gemv_row<V, DT, 1>(xt, K, wrow, out); break;
        case 2: gemv_row<V, DT, 2>(xt, K, wrow, out); break;
        case 3: gemv_row<V, DT, 3>(xt, K, wrow, out); break;
        default: gemv_row<V, DT, 4>(xt, K, wrow, out); break;
      }
      const float b = bias ? bias[n] : 0.f;
      for (int64_t t = 0; t < tt; ++t) y[(t0 + t) * ldy + n] = out[t] + b;
    }
  }
}

template <class V>
void gemv(const float* x, int64_t T, int64_t K, const void* w, DType wt, int64_t ld, int64_t n0,
          int64_t n1, const float* bias, float* y, int64_t ldy) {
  switch (wt) {
    case DType::kF32: gemv_dt<V, DType::kF32>(x, T, K, w, ld, n0, n1, bias, y, ldy); return;
    case DType::kBF16: gemv_dt<V, DType::kBF16>(x, T, K, w, ld, n0, n1, bias, y, ldy); return;
    case DType::kF16: gemv_dt<V, DType::kF16>(x, T, K, w, ld, n0, n1, bias, y, ldy); return;
    default: return;  // dtype validated by the caller
  }
}

template <class V, DType DT>
void convert_dt(const void* w, int64_t ld, int64_t n0, int64_t n1, int64_t K, float* dst) {
  constexpr int W = V::W;
  constexpr int64_t es = static_cast<int64_t>(dtype_size(DT));
  for (int64_t n = n0; n < n1; ++n) {
    const void* row = static_cast<const char*>(w) + n * ld * es;
    float* d = dst + (n - n0) * K;
    int64_t k = 0;
    for (; k + W <= K; k += W) V::store(d + k, load_w<V, DT>(row, k));
    for (; k < K; ++k) d[k] = load_one<DT>(row, k);
  }
}

template <class V>
void convert_rows(const void* w, DType wt, int64_t ld, int64_t n0, int64_t n1, int64_t K,
                  float* dst) {
  switch (wt) {
    case DType::kF32: convert_dt<V, DType::kF32>(w, ld, n0, n1, K, dst); return;
    case DType::kBF16: convert_dt<V, DType::kBF16>(w, ld, n0, n1, K, dst); return;
    case DType::kF16: convert_dt<V, DType::kF16>(w, ld, n0, n1, K, dst); return;
    default: return;
  }
}

template <class V, DType DT>
void rmsnorm_dt(const float* x, int64_t C, const void* w, float eps, float* y) {
  constexpr int W = V::W;
  typename V::R s0 = V::zero(), s1 = V::zero();
  int64_t i = 0;
  for (; i + 2 * W <= C; i += 2 * W) {
    const auto a = V::load(x + i), b = V::load(x + i + W);
    s0 = V::fma(a, a, s0);
    s1 = V::fma(b, b, s1);
  }
  for (; i + W <= C; i += W) {
    const auto a = V::load(x + i);
    s0 = V::fma(a, a, s0);
  }
  float ss = V::hsum(V::add(s0, s1));
  for (; i < C; ++i) ss += x[i] * x[i];
  const float r = 1.0f / __builtin_sqrtf(ss / static_cast<float>(C) + eps);
  const auto vr = V::set1(r);
  i = 0;
  for (; i + W <= C; i += W) V::store(y + i, V::mul(V::mul(V::load(x + i), vr), load_w<V, DT>(w, i)));
  for (; i < C; ++i) y[i] = (x[i] * r) * load_one<DT>(w, i);
}

template <class V>
void rmsnorm_row(const float* x, int64_t C, const void* w, DType wt, float eps, float* y) {
  switch (wt) {
    case DType::kF32: rmsnorm_dt<V, DType::kF32>(x, C, w, eps, y); return;
    case DType::kBF16: rmsnorm_dt<V, DType::kBF16>(x, C, w, eps, y); return;
    case DType::kF16: rmsnorm_dt<V, DType::kF16>(x, C, w, eps, y); return;
    default: return;
  }
}

template <class V>
void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  constexpr int W = V::W;
  const auto one = V::set1(1.f);
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    const auto g = V::load(gate + i);
    const auto e = V::exp(V::sub(V::zero(), g));
    V::store(out + i, V::mul(V::div(g, V::add(one, e)), V::load(up + i)));
  }
  for (; i < n; ++i) out[i] = gate[i] / (1.f + __builtin_expf(-gate[i])) * up[i];
}

// x1' = x1 cos - x2 sin, x2' = x2 cos + x1 sin (no FMA: matches HF's separate mul and add).
template <class V>
void rope_head(float* x, int64_t half, const float* c, const float* s) {
  constexpr int W = V::W;
  float* x2 = x + half;
  int64_t i = 0;
  for (; i + W <= half; i += W) {
    const auto a = V::load(x + i), b = V::load(x2 + i);
    const auto cv = V::load(c + i), sv = V::load(s + i);
    V::store(x + i, V::sub(V::mul(a, cv), V::mul(b, sv)));
    V::store(x2 + i, V::add(V::mul(b, cv), V::mul(a, sv)));
  }
  for (; i < half; ++i) {
    const float a = x[i], b = x2[i];
    x[i] = a * c[i] - b * s[i];
    x2[i] = b * c[i] + a * s[i];
  }
}

// acc[0:D] += sum_j p[j] * v[j * stride + 0:D] for j < e, register-blocked over D.
template <class V>
inline void accumulate_pv(float* acc, const float* p, const float* v, int64_t stride, int e,
                          int64_t D) {
  constexpr int W = V::W;
  int64_t d = 0;
  for (; d + 4 * W <= D; d += 4 * W) {
    auto a0 = V::load(acc + d), a1 = V::load(acc + d + W);
    auto a2 = V::load(acc + d + 2 * W), a3 = V::load(acc + d + 3 * W);
    const float* vr = v + d;
    for (int j = 0; j < e; ++j, vr += stride) {
      const auto pj = V::set1(p[j]);
      a0 = V::fma(pj, V::load(vr), a0);
      a1 = V::fma(pj, V::load(vr + W), a1);
      a2 = V::fma(pj, V::load(vr + 2 * W), a2);
      a3 = V::fma(pj, V::load(vr + 3 * W), a3);
    }
    V::store(acc + d, a0);
    V::store(acc + d + W, a1);
    V::store(acc + d + 2 * W, a2);
    V::store(acc + d + 3 * W, a3);
  }
  for (; d + W <= D; d += W) {
    auto a0 = V::load(acc + d);
    const float* vr = v + d;
    for (int j = 0; j < e; ++j, vr += stride) a0 = V::fma(V::set1(p[j]), V::load(vr), a0);
    V::store(acc + d, a0);
  }
  for (; d < D; ++d) {
    float a = acc[d];
    for (int j = 0; j < e; ++j) a += p[j] * v[j * stride + d];
    acc[d] = a;
  }
}

// Online softmax over keys [s0, s1) in tiles of kAttnTile (FlashAttention-2 style): per tile and
// query row, logits of the visible prefix (k_pos <= q_pos), one rescale of (l, acc) when the max
// grows, exp in SIMD, then acc += P V with acc held in registers. The K/V tile stays in L1/L2
// across the R rows. Cost per key and row: 2 D flops for QK, 2 D for PV.
template <class V>
void attn_block(const AttnBlockArgs& a) {
  constexpr int W = V::W;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const int64_t D = a.D, rs = a.row_stride;
  for (int64_t b0 = a.s0; b0 < a.s1; b0 += kAttnTile) {
    const int n = static_cast<int>(a.s1 - b0 < kAttnTile ? a.s1 - b0 : kAttnTile);
    const int npad = (n + W - 1) / W * W;
    const float* kt = a.k + b0 * rs;
    const float* vt = a.v + b0 * rs;
    const int32_t* kp = a.k_pos + b0;
    for (int r = 0; r < a.R; ++r) {
      const int32_t qp = a.q_pos[r];
      int e = n;
      while (e > 0 && kp[e - 1] > qp) --e;
      if (e == 0) continue;
      float* sc = a.scratch + static_cast<int64_t>(r) * (kAttnTile + 16);
      const float* q = a.q[r];
      float mx = kNegInf;
      for (int j = 0; j < e; ++j) {
        const float x = dot<V>(q, kt + j * rs, D) * a.scale;
        sc[j] = x;
        mx = x > mx ? x : mx;
      }
      for (int j = e; j < npad; ++j) sc[j] = kNegInf;
      float* acc = a.acc + static_cast<int64_t>(r) * D;
      const float m_old = a.m[r];
      const float m_new = mx > m_old ? mx : m_old;
      if (m_new > m_old && a.l[r] != 0.f) {
        const float c = __builtin_expf(m_old - m_new);
        a.l[r] *= c;
        const auto cv = V::set1(c);
        int64_t d = 0;
        for (; d + W <= D; d += W) V::store(acc + d, V::mul(V::load(acc + d), cv));
        for (; d < D; ++d) acc[d] *= c;
      }
      a.m[r] = m_new;
      const auto mv = V::set1(m_new);
      auto sum = V::zero();
      for (int j = 0; j < npad; j += W) {
        const auto p = V::exp(V::sub(V::load(sc + j), mv));
        V::store(sc + j, p);
        sum = V::add(sum, p);
      }
      a.l[r] += V::hsum(sum);
      accumulate_pv<V>(acc, sc, vt, rs, e, D);
    }
  }
}

template <class V>
KernelTable make_table(Isa isa) {
  return KernelTable{isa,          &gemv<V>,    &convert_rows<V>, &rmsnorm_row<V>,
                     &swiglu<V>,   &rope_head<V>, &attn_block<V>};
}

}  // namespace
}  // namespace kvlab::cpu::detail
