// Attention-derived token scores shared by SnapKV (selection), H2O-style accumulators and OjaKV
// (salient prefill batch and residual weighting, methods.md 1.3 steps 1-2): the last prompt queries
// (observation window) and exact softmax probabilities of queries over a cache view.
#pragma once

#include <cstdint>
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

}  // namespace kvlab::baselines
