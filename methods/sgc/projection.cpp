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
      const float a = static_cast<float>(1.0 / std::sqrt(static_cast<double>(k_)));
      for (int64_t i0 = 0; i0 < k_; i0 += 64) {
        const uint64_t bits = mix64(col_key + static_cast<uint64_t>(i0 / 64 + 1));
        for (int64_t i = i0; i < std::min(k_, i0 + 64); ++i) out[i] = (bits >> (i - i0)) & 1 ? a : -a;
      }
      return;
    }
    case ProjectionKind::kGaussian: {
      const double sd = 1.0 / std::sqrt(static_cast<double>(k_));
      for (int64_t i = 0; i < k_; i += 2) {
        const uint64_t h = mix64(col_key + static_cast<uint64_t>(i / 2 + 1));
        const double u1 = (static_cast<double>(h >> 32) + 0.5) * 0x1.0p-32;  // (0, 1)
        const double u2 = static_cast<double>(h & 0xffffffffu) * 0x1.0p-32;  // [0, 1)
        const double r = std::sqrt(-2.0 * std::log(u1)) * sd;
        out[i] = static_cast<float>(r * std::cos(2.0 * M_PI * u2));
        if (i + 1 < k_) out[i + 1] = static_cast<float>(r * std::sin(2.0 * M_PI * u2));
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
