// gemm_nt (packed AVX-512 SGEMM) against linear_ref (f64 accumulation) on odd shapes that hit
// every edge: M and N not multiples of the 14 x 32 tile, N across the 512-column B block, K
// across the 384 K slice, strided A / B / C, 1 and 2 threads.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "framework/backend/cpu/cpu_features.h"
#include "framework/backend/cpu/gemm.h"
#include "framework/backend/cpu/kernels.h"
#include "framework/core/error.h"

namespace kvlab::cpu {
namespace {

constexpr double kU = 0x1p-24;  // unit roundoff of f32

std::vector<float> randu(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// B [N, K] stored as dt with leading dimension ld; also |B| in the same dtype (sign bit cleared,
// exact) for the error bound.
struct Mat {
  std::vector<float> f, fabs_;
  std::vector<uint16_t> h, habs;
  MatRef ref, abs_ref;
};
Mat make_b(DType dt, int64_t N, int64_t K, int64_t ld, uint32_t seed) {
  Mat m;
  m.f = randu(static_cast<size_t>(N * ld), seed);
  m.fabs_ = m.f;
  for (auto& x : m.fabs_) x = std::fabs(x);
  if (dt == DType::kF32) {
    m.ref = MatRef{m.f.data(), dt, N, K, ld};
    m.abs_ref = MatRef{m.fabs_.data(), dt, N, K, ld};
  } else {
    m.h.resize(m.f.size());
    from_f32(dt, m.f.data(), m.h.data(), m.f.size());
    m.habs = m.h;
    for (auto& x : m.habs) x = static_cast<uint16_t>(x & 0x7FFF);
    m.ref = MatRef{m.h.data(), dt, N, K, ld};
    m.abs_ref = MatRef{m.habs.data(), dt, N, K, ld};
  }
  return m;
}

TEST(GemmNt, MatchesReferenceOnOddShapes) {
  if (!isa_supported(Isa::kAvx512)) GTEST_SKIP() << "no AVX-512 on this CPU";
  ScopedIsa scoped(Isa::kAvx512);
  ASSERT_TRUE(gemm_nt_available());
  ThreadPool pool1(1), pool2(2);
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16})
    for (int64_t K : {1, 7, 64, 300, 1000})
      for (int64_t N : {1, 31, 33, 100, 515}) {
        const int64_t ldb = K + 5;
        const Mat b = make_b(dt, N, K, ldb, static_cast<uint32_t>(17 + K + N));
        for (int64_t M : {1, 5, 13, 100, 257}) {
          // linear_ref wants contiguous rows: reference on a packed copy of A.
          const int64_t lda = K + 3, ldc = N + 7;
          const auto a = randu(static_cast<size_t>(M * lda), static_cast<uint32_t>(M));
          std::vector<float> ac(static_cast<size_t>(M * K)), aabs(ac.size());
          for (int64_t m = 0; m < M; ++m)
            for (int64_t k = 0; k < K; ++k) {
              ac[m * K + k] = a[m * lda + k];
              aabs[m * K + k] = std::fabs(a[m * lda + k]);
            }
          std::vector<float> yr(static_cast<size_t>(M * N)), sabs(yr.size());
          linear_ref(ac.data(), M, b.ref, nullptr, yr.data());
          linear_ref(aabs.data(), M, b.abs_ref, nullptr, sabs.data());
          for (ThreadPool* pool : {&pool1, &pool2}) {
            std::vector<float> c(static_cast<size_t>(M * ldc), 12345.f);  // must be overwritten
            gemm_nt(a.data(), lda, M, b.ref, c.data(), ldc, *pool);
            int bad = 0;
            for (int64_t m = 0; m < M && bad < 5; ++m)
              for (int64_t n = 0; n < N; ++n) {
                // f32 accumulation of K products (FMA or not, in any order/blocking) errs by at
                // most gamma_K * sum_k |a_k b_k| with gamma_K = K u / (1 - K u) (Higham,
                // Accuracy and Stability, eq. 3.5); the f64 reference is exact to ~K 2^-53 and
                // its final rounding to f32 adds u |y| <= u sum|a b|. (K + 2) u sum|a b| covers
                // both; sabs itself is an f32-rounded sum, hence the factor (1 + 1e-6) slack.
                const double tol = (K + 2) * kU * sabs[m * N + n] * (1 + 1e-6) + 1e-30;
                const double err = std::fabs(double(c[m * ldc + n]) - yr[m * N + n]);
                if (!(err <= tol)) {
                  ADD_FAILURE() << dtype_name(dt) << " M=" << M << " N=" << N << " K=" << K
                                << " threads=" << pool->threads() << " at (" << m << "," << n
                                << "): " << c[m * ldc + n] << " vs " << yr[m * N + n]
                                << " tol " << tol;
                  ++bad;
                }
              }
            // Padding between rows of C is untouched.
            for (int64_t m = 0; m < M; ++m)
              for (int64_t n = N; n < ldc; ++n) ASSERT_EQ(c[m * ldc + n], 12345.f);
          }
        }
      }
}

TEST(GemmNt, EmptyKZeroesC) {
  if (!isa_supported(Isa::kAvx512)) GTEST_SKIP() << "no AVX-512 on this CPU";
  ScopedIsa scoped(Isa::kAvx512);
  ThreadPool pool(2);
  const float a[3] = {1, 2, 3};
  const uint16_t bdata[1] = {0};
  MatRef b{bdata, DType::kBF16, 4, 0, 0};
  std::vector<float> c(12, 7.f);
  gemm_nt(a, 0, 3, b, c.data(), 4, pool);
  for (float v : c) EXPECT_EQ(v, 0.f);
}

TEST(GemmNt, AccumulateAddsToC) {
  if (!isa_supported(Isa::kAvx512)) GTEST_SKIP() << "no AVX-512 on this CPU";
  ScopedIsa scoped(Isa::kAvx512);
  ThreadPool pool1(1), pool2(2);
  for (int64_t K : {0, 5, 400, 1000})
    for (int64_t N : {3, 100}) {
      for (int64_t M : {7, 130}) {
        const int64_t lda = K + 1, ldc = N + 2;
        const auto a = randu(static_cast<size_t>(M * lda + 1), static_cast<uint32_t>(M + K));
        const auto b = randu(static_cast<size_t>(N * K + 1), static_cast<uint32_t>(N + 3 * K));
        const MatRef br{b.data(), DType::kF32, N, K, K};
        const auto c0 = randu(static_cast<size_t>(M * ldc), 99);
        for (ThreadPool* pool : {&pool1, &pool2}) {
          std::vector<float> prod(c0.size(), 0.f), acc = c0;
          gemm_nt(a.data(), lda, M, br, prod.data(), ldc, *pool);
          gemm_nt(a.data(), lda, M, br, acc.data(), ldc, *pool, /*accumulate=*/true);
          for (int64_t m = 0; m < M; ++m)
            for (int64_t n = 0; n < ldc; ++n) {
              const size_t i = static_cast<size_t>(m * ldc + n);
              if (n >= N) {
                ASSERT_EQ(acc[i], c0[i]);
              } else {
                double sabs = std::fabs(c0[i]);
                for (int64_t k = 0; k < K; ++k) sabs += std::fabs(a[m * lda + k] * b[n * K + k]);
                ASSERT_NEAR(acc[i], double(c0[i]) + prod[i], (K + 4) * kU * sabs + 1e-30)
                    << "M=" << M << " N=" << N << " K=" << K;
              }
            }
        }
      }
    }
}

TEST(GemmNt, TransposeF32) {
  if (!isa_supported(Isa::kAvx512)) GTEST_SKIP() << "no AVX-512 on this CPU";
  ScopedIsa scoped(Isa::kAvx512);
  ThreadPool pool1(1), pool2(2);
  for (int64_t rows : {1, 15, 16, 33, 700})
    for (int64_t cols : {1, 17, 32, 257}) {
      const int64_t lds = cols + 3, ldd = rows + 5;
      const auto src = randu(static_cast<size_t>(rows * lds), static_cast<uint32_t>(rows + cols));
      for (ThreadPool* pool : {&pool1, &pool2}) {
        std::vector<float> dst(static_cast<size_t>(cols * ldd), -7.f);
        transpose_f32(src.data(), lds, rows, cols, dst.data(), ldd, *pool);
        for (int64_t c = 0; c < cols; ++c)
          for (int64_t r = 0; r < ldd; ++r)
            ASSERT_EQ(dst[c * ldd + r], r < rows ? src[r * lds + c] : -7.f)
                << rows << "x" << cols << " at " << r << "," << c;
      }
    }
}

TEST(GemmNt, RejectsBadArgumentsAndMissingIsa) {
  ThreadPool pool(1);
  float a[4] = {}, c[4] = {};
  MatRef b{a, DType::kF32, 2, 2, 1};  // ld < cols
  EXPECT_THROW(gemm_nt(a, 2, 2, b, c, 2, pool), Error);
  ScopedIsa scoped(Isa::kScalar);
  EXPECT_FALSE(gemm_nt_available());
  MatRef ok{a, DType::kF32, 2, 2, 2};
  EXPECT_THROW(gemm_nt(a, 2, 2, ok, c, 2, pool), Error);
}

}  // namespace
}  // namespace kvlab::cpu
