#include "methods/sgc/projection.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "framework/core/error.h"

namespace kvlab::sgc {

ProjectionKind projection_kind_from(const std::string& name) {
  if (name == "gaussian") return ProjectionKind::kGaussian;
  if (name == "rademacher") return ProjectionKind::kRademacher;
  if (name == "identity") return ProjectionKind::kIdentity;
  fail("sgc: projection = '", name, "' must be gaussian, rademacher or identity");
}

uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

Projector::Projector(ProjectionKind kind, int64_t k, int64_t d, uint64_t seed, uint64_t stream,
                     bool stored)
    : kind_(kind), k_(k), d_(d), key_(mix64(mix64(seed) ^ (stream * 0xd1b54a32d192ed03ull))) {
  if (k < 1) fail("sgc: k = ", k, " must be >= 1");
  if (d < 1) fail("sgc: projector width d = ", d, " must be >= 1");
  if (kind == ProjectionKind::kIdentity && k != d)
    fail("sgc: projection = identity needs k == d (a test hook), got k = ", k, ", d = ", d);
  if (stored) {
    store_.resize(static_cast<size_t>(k * d));
    for (int64_t j = 0; j < d; ++j) generate(j, store_.data() + j * k);
  }
}

void Projector::generate(int64_t j, float* out) const {
  const uint64_t col_key = mix64(key_ ^ (static_cast<uint64_t>(j) * 0x9e3779b97f4a7c15ull));
  switch (kind_) {
    case ProjectionKind::kIdentity:
      for (int64_t i = 0; i < k_; ++i) out[i] = i == j ? 1.0f : 0.0f;
      return;
    case ProjectionKind::kRademacher: {
      // Branch-free: the sign bit of 1/sqrt(k) xor-ed with one random bit per row.
      const float a = static_cast<float>(1.0 / std::sqrt(static_cast<double>(k_)));
      uint32_t ua;
      std::memcpy(&ua, &a, 4);
      for (int64_t i0 = 0; i0 < k_; i0 += 64) {
        const uint64_t bits = mix64(col_key + static_cast<uint64_t>(i0 / 64 + 1));
        const int64_t e = std::min<int64_t>(64, k_ - i0);
        for (int64_t i = 0; i < e; ++i) {
          const uint32_t u = ua ^ (static_cast<uint32_t>((bits >> i) & 1u) << 31);
          std::memcpy(out + i0 + i, &u, 4);
        }
      }
      return;
    }
    case ProjectionKind::kGaussian: {
      // Box-Muller in f32 on two 24-bit uniforms per row pair (|z| <= 5.9 sd): ~2x faster
      // than f64, the cost that dominates regenerated OMP passes.
      const float sd = static_cast<float>(1.0 / std::sqrt(static_cast<double>(k_)));
      for (int64_t i = 0; i < k_; i += 2) {
        const uint64_t h = mix64(col_key + static_cast<uint64_t>(i / 2 + 1));
        const float u1 = (static_cast<float>(h >> 40) + 0.5f) * 0x1.0p-24f;        // (0, 1)
        const float u2 = static_cast<float>(h & 0xffffffu) * 0x1.0p-24f;         // [0, 1)
        const float r = std::sqrt(-2.0f * std::log(u1)) * sd;
        float sn, cs;
        ::sincosf(6.28318530717958647692f * u2, &sn, &cs);
        out[i] = r * cs;
        if (i + 1 < k_) out[i + 1] = r * sn;
      }
      return;
    }
  }
}

void Projector::column(int64_t j, float* out) const {
  KVLAB_CHECK(j >= 0 && j < d_) << "column " << j << " of a projector with d = " << d_;
  if (!store_.empty()) {
    std::memcpy(out, store_.data() + j * k_, static_cast<size_t>(k_) * sizeof(float));
    return;
  }
  generate(j, out);
}

void Projector::apply_sparse(std::span<const int64_t> idx, std::span<const double> vals,
                             double* c) const {
  KVLAB_CHECK(idx.size() == vals.size());
  std::vector<float> col(static_cast<size_t>(k_));
  for (size_t t = 0; t < idx.size(); ++t) {
    column(idx[t], col.data());
    for (int64_t i = 0; i < k_; ++i) c[i] += vals[t] * static_cast<double>(col[i]);
  }
}

}  // namespace kvlab::sgc
