// Attention-derived token scores shared by SnapKV (selection; Li et al. 2024 section 4.1),
// H2O-style accumulators, OjaKV (salient prefill batch and residual weighting, methods.md 1.3
// steps 1-2) and SentenceKV (prefill selection, methods.md 2.3): the last prompt queries
// (observation window), exact softmax probabilities of queries over a cache view, and SnapKV's
// 1-D pooling of the summed votes along tokens.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "framework/backend/cpu/kernels.h"
#include "framework/core/thread_pool.h"

namespace kvlab::baselines {

// The last `window` queries seen ([w, H, D], w <= window) and their positions.
class ObservationWindow {
 public:
  ObservationWindow(int64_t window, int64_t H, int64_t D) : window_(window), HD_(H * D) {}
  // Appends T queries [T, H, D]; drops the oldest beyond the window.
  void push(const float* q, int64_t T, const int32_t* pos);
  int64_t size() const { return static_cast<int64_t>(pos_.size()); }
  const float* queries() const { return q_.data(); }
  const int32_t* positions() const { return pos_.data(); }
  void clear();  // releases the storage
  int64_t bytes() const;

 private:
  int64_t window_, HD_;
  std::vector<float> q_;
  std::vector<int32_t> pos_;
};

// Adds, for every query head h, the exact attention probabilities of queries q [T, H, D] at q_pos
// over the S tokens of `kv` to acc[h][s] (acc resized to [H][kv.S], new entries 0):
// p = exp(scale * q.k - lse[t, h]), lse [T, H] from cpu::attention over the same view, the dot
// product in f64, masked by kv.pos[s] > q_pos[t]. Cost O(T H S D).
void accumulate_probabilities(const float* q, int64_t T, const int32_t* q_pos, const float* lse,
                              const cpu::KvView& kv, const cpu::AttentionShape& shape,
                              std::vector<std::vector<double>>& acc, ThreadPool& pool);

// Per KV head: the mean over its H/G query heads of acc [H][S] -> [G][S] (GQA, as SnapKV).
std::vector<std::vector<double>> group_mean(const std::vector<std::vector<double>>& acc, int64_t G);

enum class Pooling { kMax, kAvg, kNone };
// "max" | "avg" | "none"; anything else is an error naming `key`.
Pooling parse_pooling(const std::string& name, const std::string& key);

// 1-D pooling of a[0, n) with stride 1 and padding kernel/2 (kernel odd): max pool (padding
// never wins, as torch max_pool1d's -inf padding), avg pool counting the padding (sum / kernel,
// torch avg_pool1d's count_include_pad), or a copy (kNone). Returns [n].
std::vector<double> pool_scores(const std::vector<double>& a, int64_t n, int64_t kernel,
                                Pooling pooling);

}  // namespace kvlab::baselines
