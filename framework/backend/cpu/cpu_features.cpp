#include "framework/backend/cpu/cpu_features.h"

#include <atomic>

#include "framework/backend/cpu/kernel_table.h"
#include "framework/core/error.h"

namespace kvlab::cpu {

namespace {
Isa detect() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    return Isa::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c"))
    return Isa::kAvx2;
  return Isa::kScalar;
}
std::atomic<int>& forced() {
  static std::atomic<int> f{-1};
  return f;
}
}  // namespace

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
  }
  return "unknown";
}

Isa detected_isa() {
  static const Isa isa = detect();
  return isa;
}

bool isa_supported(Isa isa) { return static_cast<int>(isa) <= static_cast<int>(detected_isa()); }

Isa active_isa() {
  const int f = forced().load(std::memory_order_relaxed);
  return f < 0 ? detected_isa() : static_cast<Isa>(f);
}

void force_isa(Isa isa) {
  if (!isa_supported(isa))
    fail("force_isa: this CPU does not support ", isa_name(isa), " (best: ",
         isa_name(detected_isa()), ")");
  forced().store(static_cast<int>(isa), std::memory_order_relaxed);
}

void reset_isa() { forced().store(-1, std::memory_order_relaxed); }

namespace detail {
const KernelTable& active_table() {
  switch (active_isa()) {
    case Isa::kAvx512: return table_avx512();
    case Isa::kAvx2: return table_avx2();
    case Isa::kScalar: break;
  }
  return table_scalar();
}
}  // namespace detail

}  // namespace kvlab::cpu
