#include "baselines/common/attention_scores.h"

#include <algorithm>
#include <cmath>

#include "framework/core/error.h"

namespace kvlab::baselines {

void ObservationWindow::push(const float* q, int64_t T, const int32_t* pos) {
  q_.insert(q_.end(), q, q + T * HD_);
  pos_.insert(pos_.end(), pos, pos + T);
  const int64_t n = static_cast<int64_t>(pos_.size());
  if (n > window_) {
    q_.erase(q_.begin(), q_.begin() + (n - window_) * HD_);
    pos_.erase(pos_.begin(), pos_.begin() + (n - window_));
  }
}

void ObservationWindow::clear() {
  q_.clear();
  q_.shrink_to_fit();
  pos_.clear();
  pos_.shrink_to_fit();
}

int64_t ObservationWindow::bytes() const {
  return static_cast<int64_t>(q_.capacity() * sizeof(float) + pos_.capacity() * sizeof(int32_t));
}

void accumulate_probabilities(const float* q, int64_t T, const int32_t* q_pos, const float* lse,
                              const cpu::KvView& kv, const cpu::AttentionShape& shape,
                              std::vector<std::vector<double>>& acc, ThreadPool& pool) {
  const int64_t H = shape.H, D = shape.D, group = H / shape.G, S = kv.S;
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

std::vector<std::vector<double>> group_mean(const std::vector<std::vector<double>>& acc,
                                            int64_t G) {
  const int64_t H = static_cast<int64_t>(acc.size()), group = H / G;
  const size_t S = acc.empty() ? 0 : acc[0].size();
  std::vector<std::vector<double>> out(static_cast<size_t>(G), std::vector<double>(S, 0.0));
  for (int64_t h = 0; h < H; ++h)
    for (size_t s = 0; s < S; ++s)
      out[static_cast<size_t>(h / group)][s] +=
          acc[static_cast<size_t>(h)][s] / static_cast<double>(group);
  return out;
}

Pooling parse_pooling(const std::string& name, const std::string& key) {
  if (name == "max") return Pooling::kMax;
  if (name == "avg") return Pooling::kAvg;
  if (name == "none") return Pooling::kNone;
  fail(key, ": unknown pooling '", name, "' (max, avg or none)");
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
