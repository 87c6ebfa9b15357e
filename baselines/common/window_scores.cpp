#include "baselines/common/window_scores.h"

#include <algorithm>
#include <cmath>

#include "framework/core/error.h"

namespace kvlab::baselines {

Pooling parse_pooling(const std::string& name, const std::string& key) {
  if (name == "max") return Pooling::kMax;
  if (name == "avg") return Pooling::kAvg;
  if (name == "none") return Pooling::kNone;
  fail(key, ": unknown pooling '", name, "' (max, avg or none)");
}

void accumulate_window_probabilities(const float* q, int64_t T, const int32_t* q_pos,
                                     const float* lse, const cpu::KvView& kv,
                                     const cpu::AttentionShape& shape, ThreadPool& pool,
                                     std::vector<std::vector<double>>& acc) {
  const int64_t H = shape.H, D = shape.D, group = shape.H / shape.G, S = kv.S;
  acc.resize(static_cast<size_t>(H));
  for (auto& a : acc) a.resize(static_cast<size_t>(S), 0.0);
  pool.parallel_tasks(H, [&](int64_t h, int) {
    const int64_t g = h / group;
    auto& a = acc[static_cast<size_t>(h)];
    for (int64_t t = 0; t < T; ++t) {
      const float* qh = q + (t * H + h) * D;
      const double l = lse[t * H + h];
      for (int64_t s = 0; s < S; ++s) {
        if (kv.pos[s] > q_pos[t]) continue;
        const float* kr = kv.k + g * kv.head_stride + s * kv.row_stride;
        double dot = 0.0;
        for (int64_t d = 0; d < D; ++d) dot += static_cast<double>(qh[d]) * kr[d];
        a[static_cast<size_t>(s)] += std::exp(static_cast<double>(shape.scale) * dot - l);
      }
    }
  });
}

std::vector<double> pool_scores(const std::vector<double>& a, int64_t n, int64_t kernel,
                                Pooling pooling) {
  KVLAB_CHECK(n <= static_cast<int64_t>(a.size()) && kernel >= 1);
  if (pooling == Pooling::kNone) return std::vector<double>(a.begin(), a.begin() + n);
  std::vector<double> out(static_cast<size_t>(n));
  const int64_t r = kernel / 2;
  for (int64_t s = 0; s < n; ++s) {
    const int64_t lo = std::max<int64_t>(0, s - r), hi = std::min<int64_t>(n - 1, s + r);
    double v = pooling == Pooling::kMax ? -1.0 : 0.0;
    for (int64_t j = lo; j <= hi; ++j)
      v = pooling == Pooling::kMax ? std::max(v, a[static_cast<size_t>(j)])
                                   : v + a[static_cast<size_t>(j)];
    if (pooling == Pooling::kAvg) v /= static_cast<double>(kernel);
    out[static_cast<size_t>(s)] = v;
  }
  return out;
}

}  // namespace kvlab::baselines
