// SnapKV's observation-window scoring (Li et al. 2024, section 4.1), shared by the SnapKV baseline
// and SentenceKV's prefill selection (methods.md 2.3 prefill step 3): the last w prompt queries
// vote for earlier tokens with their exact softmax probabilities, summed over the window, then
// smoothed by a 1-D pooling along tokens.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "framework/backend/cpu/kernels.h"
#include "framework/core/thread_pool.h"

namespace kvlab::baselines {

enum class Pooling { kMax, kAvg, kNone };
// "max" | "avg" | "none"; anything else is an error naming `key`.
Pooling parse_pooling(const std::string& name, const std::string& key);

// Adds, for every query head h, the exact attention probabilities of queries q [T, H, D] at
// q_pos [T] over the S keys of `kv` (causal by kv.pos) to acc[h][s] (acc resized to [H][S], new
// entries 0): p = exp(scale * q.k - lse[t, h]), the dot product in f64, lse [T, H] from
// cpu::attention over the same keys. Cost: T*H*S*D multiply-adds, parallel over heads.
void accumulate_window_probabilities(const float* q, int64_t T, const int32_t* q_pos,
                                     const float* lse, const cpu::KvView& kv,
                                     const cpu::AttentionShape& shape, ThreadPool& pool,
                                     std::vector<std::vector<double>>& acc);

// 1-D pooling of a[0, n) with stride 1 and padding kernel/2 (kernel odd): max pool (padding
// never wins, as torch max_pool1d's -inf padding), avg pool counting the padding (sum / kernel,
// torch avg_pool1d's count_include_pad), or a copy (kNone). Returns [n].
std::vector<double> pool_scores(const std::vector<double>& a, int64_t n, int64_t kernel,
                                Pooling pooling);

}  // namespace kvlab::baselines
