// Packed AVX-512 SGEMM for the large-T path of linear(): C[M, N] = A[M, K] . B[N, K]^T.
//
// Why it exists: Debian's OpenBLAS 0.3.21 does not recognise this Xeon and falls back to its SSE3
// "Prescott" kernels (~15 GFLOP/s per core); OPENBLAS_CORETYPE is the environment's and is not
// changed. This kernel runs at a large fraction of the AVX-512 FMA peak instead.
//
// Design (BLIS loop order with the roles of A and B swapped, since C is row-major and the
// vector dimension is N):
//  - microkernel kMR x kNR = 14 x 32: 28 zmm accumulators, per k two 16-float loads of packed B
//    and 14 broadcasts of packed A folded into the FMAs;
//  - B (the weight, f32/bf16/f16) is packed per (kc x nc) block into kNR-wide K-major panels,
//    converting to f32 during the pack (bf16: 16-bit shift, f16: vcvtph2ps) via 16x16 register
//    transposes; the block (nc * kc * 4 B <= 768 KiB) stays in L2 and is shared by every row of
//    A the task covers;
//  - A is packed per kc slice into kMR-row K-major panels; one A micro-panel (14 x kc floats,
//    <= 21 KiB) stays in L1 while the microkernel streams B micro-panels from L2;
//  - threads: tasks over N ranges (each task packs its own B blocks), split over M as well when
//    N is too small to give every thread enough work; tasks are handed out dynamically.
// Edge tiles: packed panels are zero-padded; stores are masked on N and limited on M.
#pragma once

#include <cstdint>

#include "framework/core/tensor.h"
#include "framework/core/thread_pool.h"

namespace kvlab::cpu {

// True when gemm_nt can run here: the active ISA (cpu_features.h, honours force_isa) is AVX-512.
bool gemm_nt_available();

// C[m, n] = sum_k A[m * lda + k] * f32(B[n, k]) for m < M, n < N = B.rows, K = B.cols; C is
// overwritten (C[m * ldc + n]). B dtype f32, bf16 or f16 with leading dimension B.ld. f32
// accumulation with FMA. A and C must not alias. Requires gemm_nt_available() (throws otherwise).
// accumulate = true: C += A . B^T instead (each K slice's partial sum is added to C in turn).
void gemm_nt(const float* A, int64_t lda, int64_t M, const MatRef& B, float* C, int64_t ldc,
             ThreadPool& pool, bool accumulate = false);

// The two other products of a training backward, on the same blocked kernel with no transposed
// copies: the operand that is K-major in memory is packed by plain row copies instead of 16x16
// register transposes (cheaper than gemm_nt's own packing). f32 only; A, B, C must not alias C.
//   gemm_tn: C[n, k] (+)= sum_m A[m * lda + n] * B[m * ldb + k]   (dW = dY^T X: M = tokens)
//            for n < N, k < K;  A [M, N], B [M, K], C [N, K] row-major.
//   gemm_nn: C[m, k] (+)= sum_n A[m * lda + n] * B[n * ldb + k]   (dX = dY W)
//            for m < M, k < K;  A [M, N], B [N, K], C [M, K] row-major.
// 2 M N K flops each. Same tiling, thread partition and K slicing as gemm_nt (results depend
// only on the shapes and the thread count). Require gemm_nt_available().
void gemm_tn(const float* A, int64_t lda, const float* B, int64_t ldb, int64_t M, int64_t N,
             int64_t K, float* C, int64_t ldc, ThreadPool& pool, bool accumulate);
void gemm_nn(const float* A, int64_t lda, const float* B, int64_t ldb, int64_t M, int64_t N,
             int64_t K, float* C, int64_t ldc, ThreadPool& pool, bool accumulate);

// dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols (f32), split over the pool in
// row blocks (a pure copy: the result does not depend on the thread count). src and dst must
// not overlap. Requires gemm_nt_available() (16x16 AVX-512 register-tile transposes).
void transpose_f32(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst,
                   int64_t ldd, ThreadPool& pool);

namespace detail {
// The AVX-512 implementation (gemm_avx512.cpp); call only after the run-time ISA check.
void gemm_nt_avx512(const float* A, int64_t lda, int64_t M, const MatRef& B, float* C,
                    int64_t ldc, ThreadPool& pool, bool accumulate);
void gemm_tn_avx512(const float* A, int64_t lda, const float* B, int64_t ldb, int64_t M, int64_t N,
                    int64_t K, float* C, int64_t ldc, ThreadPool& pool, bool accumulate);
void gemm_nn_avx512(const float* A, int64_t lda, const float* B, int64_t ldb, int64_t M, int64_t N,
                    int64_t K, float* C, int64_t ldc, ThreadPool& pool, bool accumulate);
// Transposes rows [r0, r1) of src (all cols) into dst (see transpose_f32).
void transpose_f32_avx512(const float* src, int64_t lds, int64_t r0, int64_t r1, int64_t cols,
                          float* dst, int64_t ldd);
// Register-only loop of independent AVX-512 FMAs (24 accumulators, no memory traffic) for
// measuring one core's FMA peak in benchmarks. Returns the flops done (iters * 24 * 16 * 2);
// the result is folded into *sink so the loop is not optimised away.
int64_t fma_peak_loop(int64_t iters, float* sink);
}  // namespace detail

}  // namespace kvlab::cpu
