// F16C row conversion for HostPool::fetch (compiled with -mavx2 -mfma -mf16c; called only when
// cpu::active_isa() is AVX2 or better, which implies F16C). f16 -> f32 is exact, so this equals
// the scalar to_f32 bit for bit.
#include <immintrin.h>

#include <cstdint>

#include "framework/core/dtype.h"

namespace kvlab::methods::detail {

void f16_to_f32_f16c(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}

}  // namespace kvlab::methods::detail
