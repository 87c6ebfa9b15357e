// SentenceKV's host tier (methods.md 2.2 prefill step 5, 2.8 "offload"): per head, K/V rows in
// `dtype` (f32, f16 or bf16) appended in slot order, with its own byte accounting and explicit
// transfers. push() is a device -> host copy, fetch() a host -> device copy into a caller's f32
// workspace; both count the bytes that cross (rows * 2 * D * dtype size). CPU build: the pool is
// ordinary memory and a transfer is a conversion copy; a CUDA build would back it with pinned
// memory and asynchronous copies (not implemented).
#pragma once

#include <cstdint>
#include <vector>

#include "framework/core/dtype.h"

namespace kvlab::methods {

class HostPool {
 public:
  HostPool() = default;
  HostPool(int64_t heads, int64_t D, DType dtype);
  // Appends one row to head h (k, v: [D] f32); returns its row index. Counts d2h bytes.
  int64_t push(int64_t h, const float* k, const float* v);
  // Copies rows[0..n) of head h into k_out, v_out [n, D] f32. Counts h2d bytes (thread-safe
  // across different heads: the counter is per head).
  void fetch(int64_t h, const int64_t* rows, int64_t n, float* k_out, float* v_out);
  // Reads one row without counting a transfer (inspection).
  void read(int64_t h, int64_t row, float* k, float* v) const;
  int64_t rows() const { return heads_ == 0 ? 0 : rows_[0]; }  // rows per head (equal)
  int64_t rows(int64_t h) const { return rows_[h]; }
  int64_t row_bytes() const { return 2 * D_ * static_cast<int64_t>(dtype_size(dtype_)); }
  int64_t bytes() const;  // resident bytes over every head
  DType dtype() const { return dtype_; }
  // Transfer counters (bytes since construction).
  int64_t h2d_bytes() const;
  int64_t d2h_bytes() const { return d2h_; }

 private:
  int64_t heads_ = 0, D_ = 0;
  DType dtype_ = DType::kF32;
  std::vector<std::vector<uint8_t>> k_, v_;  // [heads] -> rows * D * dtype size
  std::vector<int64_t> rows_, h2d_;
  int64_t d2h_ = 0;
};

}  // namespace kvlab::methods
