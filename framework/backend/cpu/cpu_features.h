// Run-time CPU feature detection and the one place kernels are dispatched (AVX-512 -> AVX2 ->
// scalar). Tests call force_isa() to run every path available on the machine against the
// scalar references.
#pragma once

#include <string_view>

namespace kvlab::cpu {

enum class Isa { kScalar, kAvx2, kAvx512 };

std::string_view isa_name(Isa isa);  // "scalar" / "avx2" / "avx512"

// Best ISA this CPU supports (checked once with __builtin_cpu_supports).
// AVX-512 needs F, BW, VL, DQ (bf16 conversion is done with integer shifts, so AVX512_BF16 is
// not required); AVX2 needs AVX2, FMA and F16C.
Isa detected_isa();
bool isa_supported(Isa isa);

// The ISA the fast kernels use now: detected_isa() unless forced.
Isa active_isa();
// Forces the fast kernels onto `isa` (throws kvlab::Error if the CPU lacks it). Not thread-safe
// against running kernels; meant for tests and benchmarks.
void force_isa(Isa isa);
// Back to detected_isa().
void reset_isa();

// RAII form for tests: forces `isa` for the scope.
class ScopedIsa {
 public:
  explicit ScopedIsa(Isa isa) : prev_(active_isa()) { force_isa(isa); }
  ~ScopedIsa() { force_isa(prev_); }
  ScopedIsa(const ScopedIsa&) = delete;
  ScopedIsa& operator=(const ScopedIsa&) = delete;

 private:
  Isa prev_;
};

}  // namespace kvlab::cpu
