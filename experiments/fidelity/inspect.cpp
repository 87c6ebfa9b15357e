// Adapters that show the fidelity shadow what a cache holds (experiments/fidelity/fidelity.h).
#include <cstring>

#include "baselines/full_cache/full_cache.h"
#include "experiments/fidelity/fidelity.h"

namespace kvlab::experiments::fidelity {

namespace {

// Full cache: attention sees the exact rows ([G, cap, D] storage, KvView strides).
class FullCacheInspector : public Inspector {
 public:
  explicit FullCacheInspector(const baselines::FullCache& c) : c_(c) {}
  bool materialize(int64_t g, std::vector<float>* K, std::vector<float>* V,
                   std::vector<int32_t>* positions) const override {
    const cpu::KvView v = c_.view();
    const int64_t D = v.row_stride;  // head-major: row stride = D
    K->resize(static_cast<size_t>(v.S * D));
    V->resize(static_cast<size_t>(v.S * D));
    for (int64_t s = 0; s < v.S; ++s) {
      std::memcpy(K->data() + s * D, v.k + g * v.head_stride + s * v.row_stride, D * sizeof(float));
      std::memcpy(V->data() + s * D, v.v + g * v.head_stride + s * v.row_stride, D * sizeof(float));
    }
    positions->assign(v.pos, v.pos + v.S);
    return true;
  }

 private:
  const baselines::FullCache& c_;
};

}  // namespace

std::shared_ptr<const Inspector> inspect(const kv::KvCache& c) {
  if (const auto* self = dynamic_cast<const Inspector*>(&c))
    return std::shared_ptr<const Inspector>(std::shared_ptr<const Inspector>(), self);  // non-owning
  if (const auto* full = dynamic_cast<const baselines::FullCache*>(&c))
    return std::make_shared<FullCacheInspector>(*full);
  return std::make_shared<Inspector>();
}

}  // namespace kvlab::experiments::fidelity
