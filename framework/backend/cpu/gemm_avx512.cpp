// AVX-512 packed SGEMM behind gemm_nt (design in gemm.h). Called only after the run-time ISA
// check in gemm.cpp.
// GCC 12 false positives inside avx512fintrin.h (see kernels_avx512.cpp).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "framework/backend/cpu/gemm.h"

namespace kvlab::cpu::detail {
namespace {

constexpr int kMR = 14;         // rows of C per microkernel (broadcast dimension, from A)
constexpr int kNR = 32;         // columns of C per microkernel (two zmm, from B)
constexpr int64_t kKC = 384;    // max K slice: A micro-panel 14*384*4 = 21 KiB (L1 is 48 KiB)
constexpr int64_t kNC = 512;    // B block columns: 512*384*4 = 768 KiB (L2 is 2 MiB)

__mmask16 mask_n(int n) {  // first n (0..16) lanes
  return n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u);
}

// In-register transpose: on return r[j] holds column j of the input rows r[0..15].
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // Now, within 128-bit lane L, r[4i + j] = column 4L + j of rows 4i..4i+3.
  for (int i = 0; i < 4; ++i) {
    r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  // Transpose the 4x4 grid of 128-bit lanes.
  __m512 o[16];
  for (int j = 0; j < 4; ++j) {
    const __m512 a = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
    const __m512 b = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);
    const __m512 c = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
    const __m512 d = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
    o[j] = _mm512_shuffle_f32x4(a, c, 0x88);
    o[8 + j] = _mm512_shuffle_f32x4(a, c, 0xDD);
    o[4 + j] = _mm512_shuffle_f32x4(b, d, 0x88);
    o[12 + j] = _mm512_shuffle_f32x4(b, d, 0xDD);
  }
  for (int j = 0; j < 16; ++j) r[j] = o[j];
}

// Loads the first popcount(m) elements at p (never touching the others) as f32.
template <DType D>
inline __m512 load_f32(const void* p, __mmask16 m) {
  if constexpr (D == DType::kF32) {
    return _mm512_maskz_loadu_ps(m, p);
  } else if constexpr (D == DType::kBF16) {
    const __m512i u = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
  } else {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
  }
}

// Packs rows [0, W) x columns [0, kc) of a row-major matrix (row r at base + r * ld elements of
// dtype D) K-major: dst[k * W + r] = f32(src[r, k]). Rows >= rows_valid are written as zeros.
// W is kMR or kNR; processed in groups of 16 rows through transpose16.
template <DType D, int W>
void pack_panel(const void* base, int64_t ld, int rows_valid, int64_t kc, float* dst) {
  constexpr int64_t esz = D == DType::kF32 ? 4 : 2;
  const char* b = static_cast<const char*>(base);
  for (int g = 0; g < W; g += 16) {
    const int gw = std::min(16, W - g);
    const __mmask16 store_mask = mask_n(gw);
    for (int64_t k = 0; k < kc; k += 16) {
      const int cnt = static_cast<int>(std::min<int64_t>(16, kc - k));
      const __mmask16 lm = mask_n(cnt);
      __m512 r[16];
      for (int i = 0; i < 16; ++i) {
        const int row = g + i;
        r[i] = (i < gw && row < rows_valid) ? load_f32<D>(b + (row * ld + k) * esz, lm)
                                             : _mm512_setzero_ps();
      }
      transpose16(r);
      float* d = dst + k * W + g;
      if (gw == 16) {
        for (int j = 0; j < cnt; ++j) _mm512_storeu_ps(d + j * W, r[j]);
      } else {
        for (int j = 0; j < cnt; ++j) _mm512_mask_storeu_ps(d + j * W, store_mask, r[j]);
      }
    }
  }
}

// C[0..mr, 0..32) (masked by m0/m1 on columns) = (accumulate ? C : 0) + a . b over kc, where
// a = packed A micro-panel [kc][kMR], b = packed B micro-panel [kc][kNR].
inline void microkernel(int64_t kc, const float* __restrict a, const float* __restrict b,
                        float* __restrict c, int64_t ldc, int mr, __mmask16 m0, __mmask16 m1,
                        bool accumulate) {
  __m512 c0[kMR], c1[kMR];
#pragma GCC unroll 14
  for (int i = 0; i < kMR; ++i) {
    c0[i] = _mm512_setzero_ps();
    c1[i] = _mm512_setzero_ps();
  }
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_load_ps(b);
    const __m512 b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 14
    for (int i = 0; i < kMR; ++i) {
      const __m512 av = _mm512_set1_ps(a[i]);
      c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
      c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
    }
    a += kMR;
    b += kNR;
  }
#pragma GCC unroll 14
  for (int i = 0; i < kMR; ++i) {
    if (i < mr) {
      float* ci = c + i * ldc;
      if (accumulate) {
        c0[i] = _mm512_add_ps(c0[i], _mm512_maskz_loadu_ps(m0, ci));
        c1[i] = _mm512_add_ps(c1[i], _mm512_maskz_loadu_ps(m1, ci + 16));
      }
      _mm512_mask_storeu_ps(ci, m0, c0[i]);
      _mm512_mask_storeu_ps(ci + 16, m1, c1[i]);
    }
  }
}

// 64-byte aligned per-thread scratch.
float* scratch(std::vector<float>& v, size_t n) {
  if (v.size() < n + 16) v.resize(n + 16);
  const auto p = reinterpret_cast<uintptr_t>(v.data());
  return reinterpret_cast<float*>((p + 63) & ~static_cast<uintptr_t>(63));
}

// Packs a K-major source panel: dst[k * W + j] = src[k * ld + j] for k < kc, j < cols_valid,
// zeros for j >= cols_valid. The source is already [K, W]-shaped (A^T or B^T of the nt form), so
// packing is a plain copy of W contiguous floats per k (the transpose of pack_panel).
template <int W>
void pack_kmajor(const float* src, int64_t ld, int cols_valid, int64_t kc, float* dst) {
  static_assert(W == kMR || W == kNR, "panel width");
  if constexpr (W == kMR) {
    const __mmask16 m = mask_n(cols_valid);
    for (int64_t k = 0; k < kc; ++k)
      _mm512_mask_storeu_ps(dst + k * W, mask_n(W), _mm512_maskz_loadu_ps(m, src + k * ld));
  } else {
    const __mmask16 m0 = mask_n(cols_valid), m1 = mask_n(std::max(0, cols_valid - 16));
    for (int64_t k = 0; k < kc; ++k) {
      _mm512_store_ps(dst + k * W, _mm512_maskz_loadu_ps(m0, src + k * ld));
      _mm512_store_ps(dst + k * W + 16, _mm512_maskz_loadu_ps(m1, src + k * ld + 16));
    }
  }
}

// Blocked driver shared by gemm_nt / gemm_tn / gemm_nn: C[M, N] (+)= sum_k a(m, k) b(n, k).
// pack_a(r0, rows_valid, pc, kc, dst) packs rows r0.. of the A operand over k in [pc, pc + kc)
// into a kMR-wide K-major panel; pack_b(c0, cols_valid, pc, kc, dst) the same for a kNR-wide
// panel of B. The task partition and the K slicing depend only on (M, N, K, threads), so each
// entry point is deterministic for a given thread count.
template <class PackA, class PackB>
void gemm_driver(int64_t M, int64_t N, int64_t K, const PackA& pack_a, const PackB& pack_b,
                 float* C, int64_t ldc, ThreadPool& pool, bool accumulate) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    if (accumulate) return;
    for (int64_t m = 0; m < M; ++m) std::fill(C + m * ldc, C + m * ldc + N, 0.f);
    return;
  }
  // Balanced K slices of at most kKC.
  const int64_t n_kc = (K + kKC - 1) / kKC;
  const int64_t kc_step = (K + n_kc - 1) / n_kc;

  // Tasks: nN ranges of N panels x nM ranges of M panels. With one thread, a single task (no
  // repacking). Otherwise ~4 tasks per thread for dynamic balance (other processes share the
  // cores), but N ranges of at least 8 panels (256 columns) and M ranges of at least 8 panels
  // (112 rows) so that each packed B block is reused by >= 112 rows and each packed A slice by
  // >= 256 columns.
  const int64_t n_panels = (N + kNR - 1) / kNR, m_panels = (M + kMR - 1) / kMR;
  const int64_t threads = pool.threads();
  const int64_t want = threads == 1 ? 1 : threads * 4;
  const int64_t nN = std::clamp<int64_t>(n_panels / 8, 1, want);
  const int64_t nM = std::clamp<int64_t>((want + nN - 1) / nN, 1, std::max<int64_t>(1, m_panels / 8));

  pool.parallel_tasks(nN * nM, [&](int64_t t, int) {
    const int64_t tn = t % nN, tm = t / nN;
    const int64_t np0 = n_panels * tn / nN, np1 = n_panels * (tn + 1) / nN;
    const int64_t mp0 = m_panels * tm / nM, mp1 = m_panels * (tm + 1) / nM;
    const int64_t n0 = np0 * kNR, n1 = std::min(N, np1 * kNR);
    const int64_t m0 = mp0 * kMR, m1 = std::min(M, mp1 * kMR);
    const int64_t mpn = mp1 - mp0;
    thread_local std::vector<float> abuf, bbuf;
    float* ap = scratch(abuf, static_cast<size_t>(mpn * kMR * kc_step));
    float* bp = scratch(bbuf, static_cast<size_t>(kNC * kc_step));
    for (int64_t pc = 0; pc < K; pc += kc_step) {
      const int64_t kc = std::min(kc_step, K - pc);
      for (int64_t ip = 0; ip < mpn; ++ip) {
        const int64_t r0 = m0 + ip * kMR;
        pack_a(r0, static_cast<int>(std::min<int64_t>(kMR, m1 - r0)), pc, kc, ap + ip * kMR * kc);
      }
      for (int64_t nb = n0; nb < n1; nb += kNC) {
        const int64_t nbe = std::min(n1, nb + kNC);
        const int64_t jpn = (nbe - nb + kNR - 1) / kNR;
        for (int64_t jp = 0; jp < jpn; ++jp) {
          const int64_t c0 = nb + jp * kNR;
          pack_b(c0, static_cast<int>(std::min<int64_t>(kNR, nbe - c0)), pc, kc,
                 bp + jp * kNR * kc);
        }
        for (int64_t ip = 0; ip < mpn; ++ip) {
          const int64_t r0 = m0 + ip * kMR;
          const int mr = static_cast<int>(std::min<int64_t>(kMR, m1 - r0));
          for (int64_t jp = 0; jp < jpn; ++jp) {
            const int64_t c0 = nb + jp * kNR;
            const int cols = static_cast<int>(std::min<int64_t>(kNR, nbe - c0));
            microkernel(kc, ap + ip * kMR * kc, bp + jp * kNR * kc, C + r0 * ldc + c0, ldc, mr,
                        mask_n(cols), mask_n(std::max(0, cols - 16)), accumulate || pc > 0);
          }
        }
      }
    }
  });
}

using PackB = void (*)(const void*, int64_t, int, int64_t, float*);

}  // namespace

void gemm_nt_avx512(const float* A, int64_t lda, int64_t M, const MatRef& B, float* C, int64_t ldc,
                    ThreadPool& pool, bool accumulate) {
  const PackB pack_b = B.dtype == DType::kF32    ? &pack_panel<DType::kF32, kNR>
                       : B.dtype == DType::kBF16 ? &pack_panel<DType::kBF16, kNR>
                                                 : &pack_panel<DType::kF16, kNR>;
  const int64_t esz = static_cast<int64_t>(dtype_size(B.dtype));
  const char* bd = static_cast<const char*>(B.data);
  gemm_driver(
      M, B.rows, B.cols,
      [&](int64_t r0, int rows, int64_t pc, int64_t kc, float* dst) {
        pack_panel<DType::kF32, kMR>(A + r0 * lda + pc, lda, rows, kc, dst);
      },
      [&](int64_t c0, int cols, int64_t pc, int64_t kc, float* dst) {
        pack_b(bd + (c0 * B.ld + pc) * esz, B.ld, cols, kc, dst);
      },
      C, ldc, pool, accumulate);
}

void gemm_tn_avx512(const float* A, int64_t lda, const float* B, int64_t ldb, int64_t M, int64_t N,
                    int64_t K, float* C, int64_t ldc, ThreadPool& pool, bool accumulate) {
  // C[N, K] over the reduction index m < M: the nt form with A' = A^T [N, M], B' = B^T [K, M].
  gemm_driver(
      N, K, M,
      [&](int64_t r0, int rows, int64_t pc, int64_t kc, float* dst) {
        pack_kmajor<kMR>(A + pc * lda + r0, lda, rows, kc, dst);
      },
      [&](int64_t c0, int cols, int64_t pc, int64_t kc, float* dst) {
        pack_kmajor<kNR>(B + pc * ldb + c0, ldb, cols, kc, dst);
      },
      C, ldc, pool, accumulate);
}

void gemm_nn_avx512(const float* A, int64_t lda, const float* B, int64_t ldb, int64_t M, int64_t N,
                    int64_t K, float* C, int64_t ldc, ThreadPool& pool, bool accumulate) {
  // C[M, K] over the reduction index n < N: the nt form with B' = B^T [K, N].
  gemm_driver(
      M, K, N,
      [&](int64_t r0, int rows, int64_t pc, int64_t kc, float* dst) {
        pack_panel<DType::kF32, kMR>(A + r0 * lda + pc, lda, rows, kc, dst);
      },
      [&](int64_t c0, int cols, int64_t pc, int64_t kc, float* dst) {
        pack_kmajor<kNR>(B + pc * ldb + c0, ldb, cols, kc, dst);
      },
      C, ldc, pool, accumulate);
}

void transpose_f32_avx512(const float* src, int64_t lds, int64_t r0, int64_t r1, int64_t cols,
                          float* dst, int64_t ldd) {
  for (int64_t r = r0; r < r1; r += 16) {
    const int nr = static_cast<int>(std::min<int64_t>(16, r1 - r));
    const __mmask16 sm = mask_n(nr);
    for (int64_t c = 0; c < cols; c += 16) {
      const int nc = static_cast<int>(std::min<int64_t>(16, cols - c));
      const __mmask16 lm = mask_n(nc);
      __m512 t[16];
      for (int i = 0; i < 16; ++i)
        t[i] = i < nr ? _mm512_maskz_loadu_ps(lm, src + (r + i) * lds + c) : _mm512_setzero_ps();
      transpose16(t);
      float* d = dst + c * ldd + r;
      if (nr == 16) {
        for (int j = 0; j < nc; ++j) _mm512_storeu_ps(d + j * ldd, t[j]);
      } else {
        for (int j = 0; j < nc; ++j) _mm512_mask_storeu_ps(d + j * ldd, sm, t[j]);
      }
    }
  }
}

int64_t fma_peak_loop(int64_t iters, float* sink) {
  constexpr int kAcc = 24;  // > FMA latency (4) x ports (2): every FMA unit stays busy
  __m512 acc[kAcc];
  for (int i = 0; i < kAcc; ++i) acc[i] = _mm512_set1_ps(1e-3f * static_cast<float>(i));
  const __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 24
    for (int i = 0; i < kAcc; ++i) acc[i] = _mm512_fmadd_ps(acc[i], b, c);
  }
  __m512 s = acc[0];
  for (int i = 1; i < kAcc; ++i) s = _mm512_add_ps(s, acc[i]);
  *sink += _mm512_reduce_add_ps(s);
  return iters * kAcc * 16 * 2;
}

}  // namespace kvlab::cpu::detail
