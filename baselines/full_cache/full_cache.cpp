#include "baselines/full_cache/full_cache.h"

#include <algorithm>
#include <cstring>

namespace kvlab::baselines {

FullCache::FullCache(const kv::LayerInfo& info) : info_(info) {}

void FullCache::reserve(int64_t cap) {
  if (cap <= cap_) return;
  const int64_t G = info_.G, D = info_.D;
  Buffer nk(static_cast<size_t>(G * cap * D)), nv(static_cast<size_t>(G * cap * D));
  for (int64_t g = 0; g < G; ++g) {
    if (S_ == 0) break;
    std::memcpy(nk.data() + g * cap * D, k_.data() + g * cap_ * D, S_ * D * sizeof(float));
    std::memcpy(nv.data() + g * cap * D, v_.data() + g * cap_ * D, S_ * D * sizeof(float));
  }
  k_ = std::move(nk);
  v_ = std::move(nv);
  cap_ = cap;
}

void FullCache::append(const float* keys, const float* values, int64_t T,
                       const int32_t* positions) {
  if (S_ + T > cap_) reserve(std::max<int64_t>({S_ + T, 2 * cap_, 256}));
  const int64_t G = info_.G, D = info_.D;
  for (int64_t t = 0; t < T; ++t) {
    KVLAB_CHECK(pos_.empty() || positions[t] > pos_.back())
        << "positions must increase: " << positions[t] << " after " << pos_.back();
    for (int64_t g = 0; g < G; ++g) {
      std::memcpy(k_.data() + (g * cap_ + S_ + t) * D, keys + (t * G + g) * D, D * sizeof(float));
      std::memcpy(v_.data() + (g * cap_ + S_ + t) * D, values + (t * G + g) * D,
                  D * sizeof(float));
    }
    pos_.push_back(positions[t]);
  }
  S_ += T;
}

cpu::KvView FullCache::view() const {
  cpu::KvView kv;
  kv.k = k_.data();
  kv.v = v_.data();
  kv.S = S_;
  kv.head_stride = cap_ * info_.D;
  kv.row_stride = info_.D;
  kv.pos = pos_.data();
  return kv;
}

void FullCache::attend(const float* queries, int64_t T, const int32_t* q_positions, float* out) {
  const cpu::AttentionShape shape{info_.H, info_.G, info_.D, info_.scale};
  cpu::attention(queries, T, q_positions, view(), shape, out, nullptr, *info_.pool);
}

MemoryReport FullCache::memory() const {
  MemoryReport r;
  const int64_t per_token = 2 * info_.G * info_.D * static_cast<int64_t>(sizeof(float)) +
                            static_cast<int64_t>(sizeof(int32_t));
  r.device_bytes = S_ * per_token;
  r.workspace_bytes = (cap_ - S_) * per_token;  // reserved, not yet filled
  r.full_tokens = S_;
  return r;
}

KVLAB_REGISTER_KV_METHOD(
    full_cache,
    (kv::KvMethod{"full_cache",
                  "Full KV cache: every token's post-RoPE K and V at f32; the uncompressed "
                  "reference. Takes no parameters.",
                  {},
                  [](const kv::LayerInfo& info, const ParamValues&) {
                    return std::unique_ptr<kv::KvCache>(new FullCache(info));
                  }}));

}  // namespace kvlab::baselines
