// Adapters that show the fidelity shadow what a cache holds (experiments/fidelity/fidelity.h).
#include <cstring>

#include "baselines/full_cache/full_cache.h"
#include "experiments/fidelity/fidelity.h"
#include "methods/ojakv/ojakv.h"

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

// OjaKV and the StaticPCA baselines built on it (methods/ojakv/ojakv.h): reconstructed rows,
// live bases (pre-RoPE when rope_frame is pre), Oja update count, bytes by tier, token states.
class OjaKvInspector : public Inspector {
 public:
  explicit OjaKvInspector(const methods::OjaKvCache& c) : c_(c) {}
  bool materialize(int64_t g, std::vector<float>* K, std::vector<float>* V,
                   std::vector<int32_t>* positions) const override {
    c_.materialize(g, K, V, positions);
    return true;
  }
  const linalg::Mat* basis(int64_t g, bool key) const override {
    return key ? &c_.basis_k(g) : &c_.basis_v(g);
  }
  std::optional<std::vector<int32_t>> full_rank_positions(int64_t g) const override {
    return c_.full_rank_positions(g);
  }
  bool basis_pre_rope() const override { return c_.params().rope_pre; }
  int64_t basis_updates() const override { return c_.basis_updates(); }
  std::vector<std::pair<std::string, int64_t>> tier_bytes() const override {
    const methods::OjaKvCache::Tiers t = c_.tiers();
    return {{"anchors", t.anchors}, {"coefficients", t.coefficients},
            {"bases", t.bases},     {"buffer", t.buffer},
            {"index", t.index},     {"workspace", t.workspace}};
  }
  std::vector<std::pair<std::string, int64_t>> token_states() const override {
    const methods::OjaKvCache::Tokens t = c_.tokens();
    return {{"anchor", t.anchor}, {"compressed", t.compressed}, {"buffered", t.buffered}};
  }

 private:
  const methods::OjaKvCache& c_;
};

}  // namespace

std::shared_ptr<const Inspector> inspect(const kv::KvCache& c) {
  if (const auto* self = dynamic_cast<const Inspector*>(&c))
    return std::shared_ptr<const Inspector>(std::shared_ptr<const Inspector>(),
                                            self);  // non-owning
  if (const auto* full = dynamic_cast<const baselines::FullCache*>(&c))
    return std::make_shared<FullCacheInspector>(*full);
  if (const auto* oja = dynamic_cast<const methods::OjaKvCache*>(&c))
    return std::make_shared<OjaKvInspector>(*oja);
  return std::make_shared<Inspector>();
}

}  // namespace kvlab::experiments::fidelity
