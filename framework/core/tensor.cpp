#include "framework/core/tensor.h"

#include <cstdlib>
#include <cstring>

namespace kvlab {

float VecRef::at(int64_t i) const {
  switch (dtype) {
    case DType::kF32: return static_cast<const float*>(data)[i];
    case DType::kBF16: return bf16_to_f32(static_cast<const uint16_t*>(data)[i]);
    case DType::kF16: return f16_to_f32(static_cast<const uint16_t*>(data)[i]);
    default: fail("VecRef: dtype ", dtype_name(dtype), " is not a float type");
  }
}

void Buffer::Free::operator()(float* p) const { std::free(p); }

void Buffer::resize(size_t n) {
  if (n == n_) return;
  if (n == 0) {
    p_.reset();
    n_ = 0;
    return;
  }
  const size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
  void* p = std::aligned_alloc(64, bytes);
  if (!p) fail("out of memory allocating ", bytes, " bytes");
  std::memset(p, 0, bytes);
  p_.reset(static_cast<float*>(p));
  n_ = n;
}

}  // namespace kvlab
