// Full KV cache: every token's post-RoPE keys and values kept at f32, the reference every
// compression method is measured against. Storage is head-major [G, capacity, D] for K and V so
// decode attention streams each KV head's rows contiguously; capacity doubles on growth
// (amortised O(1) per token; growth copies S*G*D*2 floats).
#pragma once

#include <vector>

#include "framework/kv/kv_cache.h"

namespace kvlab::baselines {

class FullCache : public kv::KvCache {
 public:
  explicit FullCache(const kv::LayerInfo& info);
  void append(const float* keys, const float* values, int64_t T, const int32_t* positions) override;
  void attend(const float* queries, int64_t T, const int32_t* q_positions, float* out) override;
  MemoryReport memory() const override;
  int64_t tokens_seen() const override { return S_; }

  // Read access for methods that wrap or compare with the full cache.
  cpu::KvView view() const;

 private:
  void reserve(int64_t cap);
  kv::LayerInfo info_;
  int64_t S_ = 0, cap_ = 0;
  Buffer k_, v_;               // [G, cap, D]
  std::vector<int32_t> pos_;   // [S]
};

}  // namespace kvlab::baselines
