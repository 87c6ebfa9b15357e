// Element types kvlab stores (f32, bf16, f16) and exact scalar conversions.
// Arithmetic always accumulates in f32; bf16/f16 are storage formats.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace kvlab {

enum class DType : uint8_t { kF32, kBF16, kF16, kI32, kI64, kU8 };

// Bytes per element.
constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kBF16: return 2;
    case DType::kF16: return 2;
    case DType::kI32: return 4;
    case DType::kI64: return 8;
    case DType::kU8: return 1;
  }
  return 0;
}

// "f32" / "bf16" / "f16" / "i32" / "i64" / "u8".
std::string_view dtype_name(DType t);
// Parses the names above and safetensors' "F32", "BF16", "F16", "I32", "I64", "U8";
// throws kvlab::Error naming `what` (e.g. the file and key) on anything else.
DType parse_dtype(std::string_view name, std::string_view what);

// bf16: the top 16 bits of an IEEE f32. Round-to-nearest-even; NaN stays NaN (quiet).
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// IEEE binary16 <-> f32, round-to-nearest-even, subnormals and inf/NaN handled exactly.
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Converts n elements of `src` (stored as `t`) to f32. Vectorised where the CPU allows.
void to_f32(DType t, const void* src, float* dst, size_t n);
// Converts n f32 values to storage type `t` (f32, bf16 or f16).
void from_f32(DType t, const float* src, void* dst, size_t n);

}  // namespace kvlab
