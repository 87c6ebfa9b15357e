// rmsnorm and swiglu: the public entry points and their scalar references (see kernels.h).
#include <cmath>
#include <vector>

#include "framework/backend/cpu/kernel_table.h"
#include "framework/backend/cpu/kernels.h"
#include "framework/core/error.h"

namespace kvlab::cpu {

namespace {
void check_norm(const float* x, int64_t T, int64_t C, const VecRef& w, float* y) {
  KVLAB_CHECK(w.dtype == DType::kF32 || w.dtype == DType::kBF16 || w.dtype == DType::kF16)
      << "rmsnorm: weight dtype " << dtype_name(w.dtype) << " is not f32/bf16/f16";
  KVLAB_CHECK(w.n == C) << "rmsnorm: weight has " << w.n << " elements, rows have " << C;
  KVLAB_CHECK(T >= 0 && C > 0) << "rmsnorm: T=" << T << " C=" << C;
  KVLAB_CHECK(T == 0 || (x && y && w.data)) << "rmsnorm: null pointer";
}
}  // namespace

void rmsnorm(const float* x, int64_t T, int64_t C, const VecRef& w, float eps, float* y) {
  check_norm(x, T, C, w, y);
  const detail::KernelTable& kt = detail::active_table();
  for (int64_t t = 0; t < T; ++t) kt.rmsnorm_row(x + t * C, C, w.data, w.dtype, eps, y + t * C);
}

// HF LlamaRMSNorm: variance = mean(x^2) in f32, x * rsqrt(variance + eps), then * weight.
void rmsnorm_ref(const float* x, int64_t T, int64_t C, const VecRef& w, float eps, float* y) {
  check_norm(x, T, C, w, y);
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * C;
    double ss = 0;
    for (int64_t i = 0; i < C; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const float r = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(C) + eps));
    for (int64_t i = 0; i < C; ++i) y[t * C + i] = (xr[i] * r) * w.at(i);
  }
}

void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  KVLAB_CHECK(n >= 0) << "swiglu: n=" << n;
  detail::active_table().swiglu(gate, up, out, n);
}

void swiglu_ref(const float* gate, const float* up, float* out, int64_t n) {
  KVLAB_CHECK(n >= 0) << "swiglu: n=" << n;
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    out[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
  }
}

}  // namespace kvlab::cpu
