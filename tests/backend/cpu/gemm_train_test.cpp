// gemm_tn (C = A^T B, the dW product of a training backward) and gemm_nn (C = A B, the dX
// product) against an f64 brute-force reference on odd shapes: every dimension off the 14 x 32
// tile, the reduction across the 384 K slice, N/K across the 512-column block, strided operands,
// overwrite and accumulate, 1 and 2 threads. Also the exact property that they equal gemm_nt on
// explicitly transposed copies bit for bit (same packed panels, same microkernel and blocking),
// so a caller switching from transpose + gemm_nt to them changes no result.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "framework/backend/cpu/cpu_features.h"
#include "framework/backend/cpu/gemm.h"
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

// x[i * ld + j] for i < rows, j < cols -> dense transposed [cols, rows].
std::vector<float> transposed(const std::vector<float>& x, int64_t rows, int64_t cols, int64_t ld) {
  std::vector<float> t(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) t[j * rows + i] = x[i * ld + j];
  return t;
}

// Checks C (ldc, rows x cols, started from c0) against c0 (if accumulate) + sum_r a(i, r) b(j, r)
// in f64 with the gamma_R bound of gemm_test.cpp: (R + 3) u (|c0| + sum |a b|).
template <class FA, class FB>
void check(const std::vector<float>& c, const std::vector<float>& c0, int64_t rows, int64_t cols,
           int64_t ldc, int64_t R, bool accumulate, FA a, FB b, const char* what) {
  int bad = 0;
  for (int64_t i = 0; i < rows && bad < 5; ++i)
    for (int64_t j = 0; j < ldc; ++j) {
      const size_t ix = static_cast<size_t>(i * ldc + j);
      if (j >= cols) {
        ASSERT_EQ(c[ix], c0[ix]) << what << ": padding column touched";
        continue;
      }
      double y = accumulate ? c0[ix] : 0.0, s = accumulate ? std::fabs(c0[ix]) : 0.0;
      for (int64_t r = 0; r < R; ++r) {
        y += static_cast<double>(a(i, r)) * b(j, r);
        s += std::fabs(static_cast<double>(a(i, r)) * b(j, r));
      }
      const double tol = (R + 3) * kU * s * (1 + 1e-6) + 1e-30;
      if (!(std::fabs(c[ix] - y) <= tol)) {
        ADD_FAILURE() << what << " rows=" << rows << " cols=" << cols << " R=" << R
                      << " acc=" << accumulate << " at (" << i << "," << j << "): " << c[ix]
                      << " vs " << y << " tol " << tol;
        ++bad;
      }
    }
}

TEST(GemmTrain, TnMatchesReferenceAndTransposedNt) {
  if (!isa_supported(Isa::kAvx512)) GTEST_SKIP() << "no AVX-512 on this CPU";
  ScopedIsa scoped(Isa::kAvx512);
  ThreadPool pool1(1), pool2(2);
  for (int64_t M : {1, 13, 777})             // reduction (tokens)
    for (int64_t N : {1, 15, 64, 130})       // rows of C
      for (int64_t K : {1, 33, 100, 530}) {  // columns of C
        const int64_t lda = N + 3, ldb = K + 5, ldc = K + 2;
        const auto A = randu(static_cast<size_t>(M * lda), static_cast<uint32_t>(M + 7 * N));
        const auto B = randu(static_cast<size_t>(M * ldb), static_cast<uint32_t>(M + 11 * K));
        const auto At = transposed(A, M, N, lda), Bt = transposed(B, M, K, ldb);
        const auto c0 = randu(static_cast<size_t>(N * ldc), 5);
        for (ThreadPool* pool : {&pool1, &pool2})
          for (bool acc : {false, true}) {
            auto c = c0, cnt = c0;
            gemm_tn(A.data(), lda, B.data(), ldb, M, N, K, c.data(), ldc, *pool, acc);
            check(
                c, c0, N, K, ldc, M, acc, [&](int64_t i, int64_t r) { return A[r * lda + i]; },
                [&](int64_t j, int64_t r) { return B[r * ldb + j]; }, "gemm_tn");
            gemm_nt(At.data(), M, N, MatRef{Bt.data(), DType::kF32, K, M, M}, cnt.data(), ldc,
                    *pool, acc);
            ASSERT_EQ(c, cnt) << "gemm_tn != gemm_nt on transposed copies, M=" << M << " N=" << N
                              << " K=" << K;
          }
      }
}

TEST(GemmTrain, NnMatchesReferenceAndTransposedNt) {
  if (!isa_supported(Isa::kAvx512)) GTEST_SKIP() << "no AVX-512 on this CPU";
  ScopedIsa scoped(Isa::kAvx512);
  ThreadPool pool1(1), pool2(2);
  for (int64_t M : {1, 13, 300})             // rows of C
    for (int64_t N : {1, 15, 777})           // reduction
      for (int64_t K : {1, 33, 100, 530}) {  // columns of C
        const int64_t lda = N + 3, ldb = K + 5, ldc = K + 2;
        const auto A = randu(static_cast<size_t>(M * lda), static_cast<uint32_t>(M + 7 * N));
        const auto B = randu(static_cast<size_t>(N * ldb), static_cast<uint32_t>(N + 11 * K));
        const auto Bt = transposed(B, N, K, ldb);
        const auto c0 = randu(static_cast<size_t>(M * ldc), 6);
        for (ThreadPool* pool : {&pool1, &pool2})
          for (bool acc : {false, true}) {
            auto c = c0, cnt = c0;
            gemm_nn(A.data(), lda, B.data(), ldb, M, N, K, c.data(), ldc, *pool, acc);
            check(
                c, c0, M, K, ldc, N, acc, [&](int64_t i, int64_t r) { return A[i * lda + r]; },
                [&](int64_t j, int64_t r) { return B[r * ldb + j]; }, "gemm_nn");
            gemm_nt(A.data(), lda, M, MatRef{Bt.data(), DType::kF32, K, N, N}, cnt.data(), ldc,
                    *pool, acc);
            ASSERT_EQ(c, cnt) << "gemm_nn != gemm_nt on transposed B, M=" << M << " N=" << N
                              << " K=" << K;
          }
      }
}

// transpose_f32's line-aligned blocking (ldd % 16 == 0): a first block of up to 15 rows brings
// the destination to a 64-byte line; checked for every start offset within a line, row counts
// below, at and above the head, 1 and 2 threads. A pure copy: exact.
TEST(GemmTrain, TransposeLineAlignedBlocking) {
  if (!isa_supported(Isa::kAvx512)) GTEST_SKIP() << "no AVX-512 on this CPU";
  ScopedIsa scoped(Isa::kAvx512);
  ThreadPool pool1(1), pool2(2);
  for (int64_t rows : {1, 7, 16, 40, 1000})
    for (int64_t cols : {3, 33, 300}) {
      const int64_t lds = cols + 1, ldd = (rows + 15) / 16 * 16 + 16;
      const auto src = randu(static_cast<size_t>(rows * lds), static_cast<uint32_t>(rows * cols));
      for (int64_t off = 0; off < 16; ++off)
        for (ThreadPool* pool : {&pool1, &pool2}) {
          std::vector<float> buf(static_cast<size_t>(cols * ldd + 32), -7.f);
          const auto base = reinterpret_cast<uintptr_t>(buf.data());
          float* dst = buf.data() + (16 - (base % 64) / 4) % 16 + off;  // off floats past a line
          transpose_f32(src.data(), lds, rows, cols, dst, ldd, *pool);
          for (int64_t c = 0; c < cols; ++c)
            for (int64_t r = 0; r < ldd; ++r)
              ASSERT_EQ(dst[c * ldd + r], r < rows ? src[r * lds + c] : -7.f)
                  << rows << "x" << cols << " off " << off << " at " << r << "," << c;
        }
    }
}

TEST(GemmTrain, EmptyReductionAndBadArguments) {
  if (!isa_supported(Isa::kAvx512)) GTEST_SKIP() << "no AVX-512 on this CPU";
  ScopedIsa scoped(Isa::kAvx512);
  ThreadPool pool(2);
  std::vector<float> c(6, 7.f);
  gemm_tn(nullptr, 2, nullptr, 3, 0, 2, 3, c.data(), 3, pool, /*accumulate=*/true);
  for (float v : c) EXPECT_EQ(v, 7.f);
  gemm_tn(nullptr, 2, nullptr, 3, 0, 2, 3, c.data(), 3, pool, /*accumulate=*/false);
  for (float v : c) EXPECT_EQ(v, 0.f);
  gemm_nn(nullptr, 0, nullptr, 3, 2, 0, 3, c.data(), 3, pool, false);
  for (float v : c) EXPECT_EQ(v, 0.f);
  const float a[4] = {1, 2, 3, 4};
  EXPECT_THROW(gemm_tn(a, 1, a, 2, 2, 2, 2, c.data(), 2, pool, false), Error);  // lda < N
  EXPECT_THROW(gemm_nn(a, 2, a, 2, 2, 2, 2, c.data(), 1, pool, false), Error);  // ldc < K
}

}  // namespace
}  // namespace kvlab::cpu
