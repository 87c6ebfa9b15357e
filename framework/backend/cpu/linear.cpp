// linear: y[T, N] = x[T, K] . W[N, K]^T (+ bias). See kernels.h.
//
// T > kGemvMaxT with AVX-512 active: gemm_nt (gemm.h), kvlab's packed AVX-512 SGEMM, which
// converts bf16/f16 W while packing it. Debian's OpenBLAS 0.3.21 runs its SSE3 "Prescott"
// kernels on this Xeon (OPENBLAS_CORETYPE is the environment's and is left alone), ~2-4x slower.
// Without AVX-512 the OpenBLAS path below is kept.
//
// Threading decision for the OpenBLAS sgemm path: bf16/f16 weights are split into panels of kPanel rows
// of W; pool workers take panels dynamically, convert their panel into a thread-local f32
// workspace (kPanel * K floats, 2 MiB at K = 4096: fits L2) and run a single-threaded
// cblas_sgemm on it. OpenBLAS's thread count is process-global (pthread build), so it is set to
// 1 for the duration of the parallel region and restored afterwards. f32 weights need no
// conversion: one cblas_sgemm with OpenBLAS threads = pool.threads().
#include <cblas.h>

#include <algorithm>
#include <vector>

#include "framework/backend/cpu/gemm.h"
#include "framework/backend/cpu/kernel_table.h"
#include "framework/backend/cpu/kernels.h"
#include "framework/core/error.h"

namespace kvlab::cpu {

namespace {

constexpr int64_t kGemvMaxT = 4;   // T <= this: GEMV kernel (W read once, converted in registers)
constexpr int64_t kPanel = 128;    // rows of W per converted panel on the sgemm path

// Restores OpenBLAS's global thread count on scope exit.
class BlasThreads {
 public:
  explicit BlasThreads(int n) : prev_(openblas_get_num_threads()) { openblas_set_num_threads(n); }
  ~BlasThreads() { openblas_set_num_threads(prev_); }
  BlasThreads(const BlasThreads&) = delete;
  BlasThreads& operator=(const BlasThreads&) = delete;

 private:
  int prev_;
};

void check_args(const float* x, int64_t T, const MatRef& w, const VecRef* bias, float* y) {
  KVLAB_CHECK(w.dtype == DType::kF32 || w.dtype == DType::kBF16 || w.dtype == DType::kF16)
      << "linear: weight dtype " << dtype_name(w.dtype) << " is not f32/bf16/f16";
  KVLAB_CHECK(T >= 0 && w.rows >= 0 && w.cols >= 0 && w.ld >= w.cols)
      << "linear: T=" << T << " W[" << w.rows << ", " << w.cols << "] ld=" << w.ld;
  KVLAB_CHECK(T == 0 || (x && y && (w.data || w.rows * w.cols == 0)))
      << "linear: null pointer";
  if (bias) {
    KVLAB_CHECK(bias->n == w.rows && bias->data)
        << "linear: bias has " << bias->n << " elements, W has " << w.rows << " rows";
  }
}

std::vector<float> bias_f32(const VecRef* bias) {
  std::vector<float> b;
  if (!bias) return b;
  b.resize(static_cast<size_t>(bias->n));
  to_f32(bias->dtype, bias->data, b.data(), b.size());
  return b;
}

}  // namespace

void linear(const float* x, int64_t T, const MatRef& w, const VecRef* bias, float* y,
            ThreadPool& pool) {
  check_args(x, T, w, bias, y);
  const int64_t N = w.rows, K = w.cols;
  if (T == 0 || N == 0) return;
  const std::vector<float> bvec = bias_f32(bias);
  const float* b = bias ? bvec.data() : nullptr;
  const detail::KernelTable& kt = detail::active_table();

  if (T <= kGemvMaxT) {
    // Memory-bound: each W row is read once; chunks of rows per worker.
    pool.parallel_for(N, [&](int64_t n0, int64_t n1, int) {
      kt.gemv(x, T, K, w.data, w.dtype, w.ld, n0, n1, b, y, N);
    });
    return;
  }

  if (gemm_nt_available()) {
    gemm_nt(x, K, T, w, y, N, pool);
    if (b)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t n = 0; n < N; ++n) y[t * N + n] += b[n];
    return;
  }

  if (w.dtype == DType::kF32) {
    BlasThreads bt(pool.threads());
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(T),
                static_cast<int>(N), static_cast<int>(K), 1.f, x, static_cast<int>(K),
                static_cast<const float*>(w.data), static_cast<int>(w.ld), 0.f, y,
                static_cast<int>(N));
    if (b)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t n = 0; n < N; ++n) y[t * N + n] += b[n];
    return;
  }

  const int64_t n_panels = (N + kPanel - 1) / kPanel;
  BlasThreads bt(1);
  pool.parallel_tasks(n_panels, [&](int64_t p, int) {
    thread_local std::vector<float> ws;
    const int64_t n0 = p * kPanel, n1 = std::min(N, n0 + kPanel), np = n1 - n0;
    if (ws.size() < static_cast<size_t>(np * K)) ws.resize(static_cast<size_t>(np * K));
    kt.convert_rows(w.data, w.dtype, w.ld, n0, n1, K, ws.data());
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(T),
                static_cast<int>(np), static_cast<int>(K), 1.f, x, static_cast<int>(K),
                ws.data(), static_cast<int>(K), 0.f, y + n0, static_cast<int>(N));
    if (b)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t n = n0; n < n1; ++n) y[t * N + n] += b[n];
  });
}

void linear_ref(const float* x, int64_t T, const MatRef& w, const VecRef* bias, float* y) {
  check_args(x, T, w, bias, y);
  const int64_t N = w.rows, K = w.cols;
  std::vector<float> row(static_cast<size_t>(K));
  for (int64_t n = 0; n < N; ++n) {
    to_f32(w.dtype, w.row_ptr(n), row.data(), static_cast<size_t>(K));
    const double bn = bias ? bias->at(n) : 0.0;
    for (int64_t t = 0; t < T; ++t) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += static_cast<double>(x[t * K + k]) * row[k];
      y[t * N + n] = static_cast<float>(s + bn);
    }
  }
}

}  // namespace kvlab::cpu
