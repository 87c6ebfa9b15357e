// Scalar (baseline x86-64) instantiation of simd_kernels.h: one lane, libm exp.
#include <cmath>
#include <cstring>
#include <limits>

#include "framework/backend/cpu/kernel_table.h"

namespace kvlab::cpu::detail {
namespace {
struct VScalar {
  using R = float;
  static constexpr int W = 1;
  static R zero() { return 0.f; }
  static R set1(float a) { return a; }
  static R load(const float* p) { return *p; }
  static void store(float* p, R a) { *p = a; }
  static R add(R a, R b) { return a + b; }
  static R sub(R a, R b) { return a - b; }
  static R mul(R a, R b) { return a * b; }
  static R div(R a, R b) { return a / b; }
  static R max(R a, R b) { return a > b ? a : b; }
  static R fma(R a, R b, R c) { return a * b + c; }
  static float hsum(R a) { return a; }
  static float hmax(R a) { return a; }
  static R load_bf16(const uint16_t* p) {
    const uint32_t u = static_cast<uint32_t>(*p) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  static R load_f16(const uint16_t* p) { return f16_to_f32(*p); }
  static R exp(R x) { return std::exp(x); }
};
}  // namespace
}  // namespace kvlab::cpu::detail

#include "framework/backend/cpu/simd_kernels.h"

namespace kvlab::cpu::detail {
const KernelTable& table_scalar() {
  static const KernelTable t = make_table<VScalar>(Isa::kScalar);
  return t;
}
}  // namespace kvlab::cpu::detail
