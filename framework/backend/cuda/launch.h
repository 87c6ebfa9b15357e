// Internal: kernel launchers, defined in kernels.cu. Arguments are already validated by the
// public entry points in kernels.cpp. Each returns the launch status (cudaGetLastError after
// every launch), which the caller wraps in KVLAB_CUDA_CHECK. This header stays free of kvlab
// and standard-library headers so that nvcc, which parses the .cu once per architecture,
// compiles as little as possible.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace kvlab::cuda::detail {

enum class WeightType { kF32, kBF16, kF16 };

constexpr int kMaxSharedBytes = 48 * 1024;  // dynamic shared memory without opt-in
constexpr int kSplitKeys = 128;             // keys per decode-attention block (kDecodeSplitKeys)
constexpr int kRopeThreads = 256;           // threads per RoPE block, one pair each

// One block per row of x[T, C].
cudaError_t launch_rmsnorm(const float* x, int64_t T, int64_t C, const void* w, WeightType wt,
                           float eps, float* y, cudaStream_t stream);

// One thread per rotated pair: T * n_heads * D/2 threads.
cudaError_t launch_rope(float* x, int64_t T, int64_t n_heads, int64_t D, const int32_t* positions,
                        const float* inv_freq, cudaStream_t stream);

// Partial kernel over grid (G, n_split) with `shared_bytes` of dynamic shared memory (skipped
// when n_split = 0), then the merge kernel over H blocks. part_acc: [H, n_split, D];
// part_ml: [H, n_split, 2] (chunk max logit m, chunk sum l).
cudaError_t launch_decode_attention(const float* q, const float* k, const float* v, int64_t S,
                                    int64_t S_cap, int64_t H, int64_t G, int64_t D, float scale,
                                    int64_t n_split, float* part_acc, float* part_ml, float* out,
                                    float* lse, size_t shared_bytes, cudaStream_t stream);

}  // namespace kvlab::cuda::detail
