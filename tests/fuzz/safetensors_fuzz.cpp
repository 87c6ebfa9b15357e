// Fuzzes parse_safetensors on in-memory buffers. Seeds are small valid files from the writer
// (every dtype, empty and scalar tensors, metadata); bad input must end in kvlab::Error.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "framework/core/error.h"
#include "framework/model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Copy into an exact-size heap buffer so ASan sees any read past the end.
  std::vector<uint8_t> buf(data, data + size);
  try {
    const auto tensors =
        kvlab::model::parse_safetensors(buf.data(), buf.size(), "fuzz.safetensors");
    // Touch every byte the parser vouched for.
    uint8_t acc = 0;
    for (const auto& t : tensors) {
      const auto* p = static_cast<const uint8_t*>(t.data);
      for (size_t i = 0; i < t.nbytes; ++i) acc ^= p[i];
    }
    volatile uint8_t sink = acc;
    (void)sink;
  } catch (const kvlab::Error&) {
  }
  return 0;
}

std::vector<std::string> kvlab_fuzz_seeds() {
  using kvlab::DType;
  using kvlab::model::safetensors_bytes;
  const float f[6] = {1, -2, 3.5f, 0, 1e-3f, 7};
  const uint16_t h[4] = {0x3c00, 0xbc00, 0x7bff, 0x0001};
  const int32_t i32[2] = {-1, 2};
  const int64_t i64[1] = {1ll << 40};
  const uint8_t u8[3] = {1, 2, 3};
  return {
      safetensors_bytes({}),
      safetensors_bytes({{"w", DType::kF32, {2, 3}, f}}, {{"format", "pt"}}),
      safetensors_bytes({{"a", DType::kBF16, {2, 2}, h},
                         {"b", DType::kF16, {4}, h},
                         {"c", DType::kI32, {2}, i32},
                         {"d", DType::kI64, {1}, i64},
                         {"e", DType::kU8, {3}, u8},
                         {"empty", DType::kF32, {0, 5}, nullptr},
                         {"scalar", DType::kF32, {}, f}}),
      safetensors_bytes({{"model.layers.0.self_attn.q_proj.weight", DType::kBF16, {2, 2}, h},
                         {"model.norm.weight", DType::kF32, {6}, f}},
                        {{"format", "pt"}, {"note", "x"}}),
  };
}
