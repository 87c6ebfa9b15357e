#include "methods/sentencekv/host_pool.h"

#include "framework/backend/cpu/cpu_features.h"
#include "framework/core/error.h"

namespace kvlab::methods {
namespace detail {
void f16_to_f32_f16c(const uint16_t* src, float* dst, int64_t n);  // host_pool_avx2.cpp
}  // namespace detail

namespace {
// One row to f32: F16C for f16 when the CPU has it (exact, like the scalar path).
void row_to_f32(DType t, const uint8_t* src, float* dst, int64_t n) {
  if (t == DType::kF16 && cpu::active_isa() != cpu::Isa::kScalar) {
    detail::f16_to_f32_f16c(reinterpret_cast<const uint16_t*>(src), dst, n);
    return;
  }
  to_f32(t, src, dst, static_cast<size_t>(n));
}
}  // namespace

HostPool::HostPool(int64_t heads, int64_t D, DType dtype)
    : heads_(heads),
      D_(D),
      dtype_(dtype),
      k_(static_cast<size_t>(heads)),
      v_(static_cast<size_t>(heads)),
      rows_(static_cast<size_t>(heads), 0),
      h2d_(static_cast<size_t>(heads), 0) {}

int64_t HostPool::push(int64_t h, const float* k, const float* v) {
  const size_t es = dtype_size(dtype_), rb = static_cast<size_t>(D_) * es;
  auto& kh = k_[static_cast<size_t>(h)];
  auto& vh = v_[static_cast<size_t>(h)];
  kh.resize(kh.size() + rb);
  vh.resize(vh.size() + rb);
  from_f32(dtype_, k, kh.data() + kh.size() - rb, static_cast<size_t>(D_));
  from_f32(dtype_, v, vh.data() + vh.size() - rb, static_cast<size_t>(D_));
  d2h_ += row_bytes();
  return rows_[static_cast<size_t>(h)]++;
}

void HostPool::fetch(int64_t h, const int64_t* rows, int64_t n, float* k_out, float* v_out) {
  const size_t rb = static_cast<size_t>(D_) * dtype_size(dtype_);
  const auto& kh = k_[static_cast<size_t>(h)];
  const auto& vh = v_[static_cast<size_t>(h)];
  for (int64_t i = 0; i < n; ++i) {
    KVLAB_CHECK(rows[i] >= 0 && rows[i] < rows_[static_cast<size_t>(h)]) << "row " << rows[i];
    row_to_f32(dtype_, kh.data() + static_cast<size_t>(rows[i]) * rb, k_out + i * D_, D_);
    row_to_f32(dtype_, vh.data() + static_cast<size_t>(rows[i]) * rb, v_out + i * D_, D_);
  }
  h2d_[static_cast<size_t>(h)] += n * row_bytes();
}

void HostPool::read(int64_t h, int64_t row, float* k, float* v) const {
  const size_t rb = static_cast<size_t>(D_) * dtype_size(dtype_);
  KVLAB_CHECK(row >= 0 && row < rows_[static_cast<size_t>(h)]);
  to_f32(dtype_, k_[static_cast<size_t>(h)].data() + static_cast<size_t>(row) * rb, k,
         static_cast<size_t>(D_));
  to_f32(dtype_, v_[static_cast<size_t>(h)].data() + static_cast<size_t>(row) * rb, v,
         static_cast<size_t>(D_));
}

int64_t HostPool::bytes() const {
  int64_t n = 0;
  for (int64_t r : rows_) n += r * row_bytes();
  return n;
}

int64_t HostPool::h2d_bytes() const {
  int64_t n = 0;
  for (int64_t b : h2d_) n += b;
  return n;
}

}  // namespace kvlab::methods
