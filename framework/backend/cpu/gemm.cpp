// gemm_nt: argument checks and dispatch (baseline x86-64; the kernel is in gemm_avx512.cpp).
#include "framework/backend/cpu/gemm.h"

#include <algorithm>
#include <cstdint>

#include "framework/backend/cpu/cpu_features.h"
#include "framework/core/error.h"

namespace kvlab::cpu {

bool gemm_nt_available() { return active_isa() == Isa::kAvx512; }

void gemm_nt(const float* A, int64_t lda, int64_t M, const MatRef& B, float* C, int64_t ldc,
             ThreadPool& pool, bool accumulate) {
  KVLAB_CHECK(B.dtype == DType::kF32 || B.dtype == DType::kBF16 || B.dtype == DType::kF16)
      << "gemm_nt: B dtype " << dtype_name(B.dtype) << " is not f32/bf16/f16";
  KVLAB_CHECK(M >= 0 && B.rows >= 0 && B.cols >= 0 && B.ld >= B.cols && lda >= B.cols &&
              ldc >= B.rows)
      << "gemm_nt: M=" << M << " B[" << B.rows << ", " << B.cols << "] ld=" << B.ld
      << " lda=" << lda << " ldc=" << ldc;
  if (M == 0 || B.rows == 0) return;
  KVLAB_CHECK(A && C && (B.data || B.cols == 0)) << "gemm_nt: null pointer";
  KVLAB_CHECK(gemm_nt_available()) << "gemm_nt: needs AVX-512 (active ISA "
                                   << isa_name(active_isa()) << ")";
  detail::gemm_nt_avx512(A, lda, M, B, C, ldc, pool, accumulate);
}

namespace {
void check_f32_gemm(const char* what, int64_t lda, int64_t ldb, int64_t M, int64_t N, int64_t K,
                    int64_t ldc, int64_t a_cols, int64_t b_cols, int64_t c_cols) {
  KVLAB_CHECK(M >= 0 && N >= 0 && K >= 0 && lda >= a_cols && ldb >= b_cols && ldc >= c_cols)
      << what << ": M=" << M << " N=" << N << " K=" << K << " lda=" << lda << " ldb=" << ldb
      << " ldc=" << ldc;
  KVLAB_CHECK(gemm_nt_available())
      << what << ": needs AVX-512 (active ISA " << isa_name(active_isa()) << ")";
}
}  // namespace

void gemm_tn(const float* A, int64_t lda, const float* B, int64_t ldb, int64_t M, int64_t N,
             int64_t K, float* C, int64_t ldc, ThreadPool& pool, bool accumulate) {
  check_f32_gemm("gemm_tn", lda, ldb, M, N, K, ldc, N, K, K);
  if (N == 0 || K == 0) return;
  KVLAB_CHECK(C && (M == 0 || (A && B))) << "gemm_tn: null pointer";
  detail::gemm_tn_avx512(A, lda, B, ldb, M, N, K, C, ldc, pool, accumulate);
}

void gemm_nn(const float* A, int64_t lda, const float* B, int64_t ldb, int64_t M, int64_t N,
             int64_t K, float* C, int64_t ldc, ThreadPool& pool, bool accumulate) {
  check_f32_gemm("gemm_nn", lda, ldb, M, N, K, ldc, N, K, K);
  if (M == 0 || K == 0) return;
  KVLAB_CHECK(C && (N == 0 || (A && B))) << "gemm_nn: null pointer";
  detail::gemm_nn_avx512(A, lda, B, ldb, M, N, K, C, ldc, pool, accumulate);
}

void transpose_f32(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst,
                   int64_t ldd, ThreadPool& pool) {
  KVLAB_CHECK(rows >= 0 && cols >= 0 && lds >= cols && ldd >= rows)
      << "transpose_f32: [" << rows << ", " << cols << "] lds=" << lds << " ldd=" << ldd;
  if (rows == 0 || cols == 0) return;
  KVLAB_CHECK(src && dst) << "transpose_f32: null pointer";
  KVLAB_CHECK(gemm_nt_available()) << "transpose_f32: needs AVX-512 (active ISA "
                                   << isa_name(active_isa()) << ")";
  // Row blocks of 16 (whole register tiles) laid so that every 16-float store into dst is one
  // whole 64-byte line: when ldd % 16 == 0, a first block of `head` rows brings dst + r to a
  // line boundary. (A store split over two lines costs both lines a read-for-ownership, and with
  // ldd a power of two the 16 lines of a tile share one L1 set, so the halves are evicted before
  // the next tile completes them. train_bench BM_Transpose, [4096, 256] / [4096, 704] into a
  // malloc'd buffer, CPU time: 1.6x / 1.06x slower without this.)
  const auto mis = static_cast<int64_t>((reinterpret_cast<uintptr_t>(dst) % 64) / sizeof(float));
  const int64_t head = (ldd % 16 == 0 && reinterpret_cast<uintptr_t>(dst) % sizeof(float) == 0)
                           ? std::min(rows, (16 - mis) % 16)
                           : 0;
  if (head > 0) detail::transpose_f32_avx512(src, lds, 0, head, cols, dst, ldd);
  const int64_t body = rows - head;
  if (body == 0) return;
  const float* s0 = src + head * lds;
  float* d0 = dst + head;
  const int64_t blocks = (body + 15) / 16;
  // One block range per thread when it pays off.
  if (pool.threads() == 1 || body * cols < (1 << 16)) {
    detail::transpose_f32_avx512(s0, lds, 0, body, cols, d0, ldd);
    return;
  }
  pool.parallel_for(blocks, [&](int64_t b0, int64_t b1, int) {
    if (b1 > b0)
      detail::transpose_f32_avx512(s0, lds, b0 * 16, std::min(body, b1 * 16), cols, d0, ldd);
  });
}

}  // namespace kvlab::cpu
