// AVX-512 (F/BW/VL/DQ) instantiation of simd_kernels.h (16 lanes). bf16 -> f32 is a 16-bit
// left shift of the zero-extended value (exact, no AVX512_BF16 needed); f16 -> f32 is vcvtph2ps.
// Called only after the run-time check in cpu_features.cpp.
// GCC 12 false positives inside avx512fintrin.h (the self-initialised __Y of _mm512_undefined_*
// reached through reduce/cvt intrinsics).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "framework/backend/cpu/avx512_math.h"
#include "framework/backend/cpu/kernel_table.h"

namespace kvlab::cpu::detail {
namespace {
struct VAvx512 {
  using R = __m512;
  static constexpr int W = 16;
  static R zero() { return _mm512_setzero_ps(); }
  static R set1(float a) { return _mm512_set1_ps(a); }
  static R load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, R a) { _mm512_storeu_ps(p, a); }
  static R add(R a, R b) { return _mm512_add_ps(a, b); }
  static R sub(R a, R b) { return _mm512_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  static R div(R a, R b) { return _mm512_div_ps(a, b); }
  static R max(R a, R b) { return _mm512_max_ps(a, b); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static float hsum(R a) { return _mm512_reduce_add_ps(a); }
  static float hmax(R a) { return _mm512_reduce_max_ps(a); }
  static R load_bf16(const uint16_t* p) {
    const __m512i u =
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
  }
  static R load_f16(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static R exp(R x) { return exp512(x); }

};
}  // namespace
}  // namespace kvlab::cpu::detail

#include "framework/backend/cpu/simd_kernels.h"

namespace kvlab::cpu::detail {
const KernelTable& table_avx512() {
  static const KernelTable t = make_table<VAvx512>(Isa::kAvx512);
  return t;
}
}  // namespace kvlab::cpu::detail
