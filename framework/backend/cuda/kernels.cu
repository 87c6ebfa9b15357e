// CUDA kernels behind framework/backend/cuda/kernels.h (contracts there; arguments validated in
// kernels.cpp). Compiled once per entry of CMAKE_CUDA_ARCHITECTURES; the only template is the
// rmsnorm weight type (3 instances). No fast-math: expf / sincosf are within 2 ulp, division and
// sqrtf are IEEE-rounded.
#include <cuda_fp16.h>

#include <cstdint>

#include "framework/backend/cuda/launch.h"

namespace kvlab::cuda::detail {

namespace {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kNormThreads = 256;
constexpr int kAttnThreads = 128;  // 4 warps
constexpr float kInf = __builtin_huge_valf();

__device__ float warp_sum(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

__device__ float warp_max(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

// Sum over a block whose size is a multiple of 32; every thread gets the result. `red` is 32
// floats of shared memory, used once per kernel (no barrier before the write).
__device__ float block_sum(float v, float* red) {
  v = warp_sum(v);
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = lane < static_cast<int>(blockDim.x) / kWarp ? red[lane] : 0.f;
  return warp_sum(v);
}

template <WeightType kW>
__device__ float weight_at(const void* w, int64_t i) {
  if constexpr (kW == WeightType::kF32) {
    return static_cast<const float*>(w)[i];
  } else if constexpr (kW == WeightType::kBF16) {  // bf16 = the top 16 bits of an f32
    return __uint_as_float(static_cast<unsigned>(static_cast<const uint16_t*>(w)[i]) << 16);
  } else {
    return __half2float(__ushort_as_half(static_cast<const unsigned short*>(w)[i]));
  }
}

// ---- RMSNorm: block per row. y may alias x: each thread reads x[i] before writing y[i], and
// the sum of squares is complete (block barrier) before any write.
template <WeightType kW>
__global__ void rmsnorm_kernel(const float* x, int64_t C, const void* w, float eps, float* y) {
  __shared__ float red[kWarp];
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * C;
  float* yr = y + static_cast<int64_t>(blockIdx.x) * C;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < C; i += blockDim.x) ss += xr[i] * xr[i];
  ss = block_sum(ss, red);
  const float r = 1.f / sqrtf(ss / static_cast<float>(C) + eps);
  for (int64_t i = threadIdx.x; i < C; i += blockDim.x) yr[i] = (xr[i] * r) * weight_at<kW>(w, i);
}

// ---- RoPE: thread per pair (row = t * n_heads + h, i < half). The angle is one f32 product
// (__fmul_rn: never fused), bit-identical to the CPU's float(pos) * inv_freq[i].
__global__ void rope_kernel(float* x, int64_t n_pairs, int64_t n_heads, int64_t half,
                            const int32_t* pos, const float* inv_freq) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= n_pairs) return;
  const int64_t row = p / half, i = p - row * half;
  const float a = __fmul_rn(static_cast<float>(pos[row / n_heads]), inv_freq[i]);
  float s, c;
  sincosf(a, &s, &c);
  float* xh = x + row * 2 * half;
  const float x1 = xh[i], x2 = xh[i + half];
  xh[i] = x1 * c + (-x2) * s;
  xh[i + half] = x2 * c + x1 * s;
}

// ---- decode attention, partial: block (g, split) covers keys [split * kSplitKeys, + n) of KV
// head g for its grp = H / G query heads (contiguous in q: heads g * grp ... g * grp + grp - 1).
// Dynamic shared memory: qs[grp, D], p[grp, kSplitKeys] (logits, then e^(logit - m)), and m, l
// [grp]. Steps: (1) logits, one warp per key (lanes across D, the K row read once for all grp
// heads); (2) per head, m = max and l = sum of e^(logit - m), one warp per head; (3) acc[j, d] =
// sum_s p[j, s] v[s, d], consecutive threads on consecutive d (coalesced V rows).
__global__ void decode_partial_kernel(const float* q, const float* k, const float* v, int64_t S,
                                      int64_t S_cap, int grp, int D, float scale, int n_split,
                                      float* part_acc, float* part_ml) {
  extern __shared__ float smem[];
  float* qs = smem;
  float* p = qs + grp * D;
  float* ms = p + grp * kSplitKeys;
  float* ls = ms + grp;
  const int g = blockIdx.x, split = blockIdx.y;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int n_warps = blockDim.x / kWarp;
  const int64_t s0 = static_cast<int64_t>(split) * kSplitKeys;
  const int n = S - s0 < kSplitKeys ? static_cast<int>(S - s0) : kSplitKeys;  // >= 1
  const float* kb = k + (static_cast<int64_t>(g) * S_cap + s0) * D;
  const float* vb = v + (static_cast<int64_t>(g) * S_cap + s0) * D;
  const float* qg = q + static_cast<int64_t>(g) * grp * D;
  for (int i = threadIdx.x; i < grp * D; i += blockDim.x) qs[i] = qg[i];
  __syncthreads();

  for (int s = warp; s < n; s += n_warps) {
    const float* kr = kb + static_cast<int64_t>(s) * D;
    for (int j = 0; j < grp; ++j) {
      float d = 0.f;
      for (int i = lane; i < D; i += kWarp) d += qs[j * D + i] * kr[i];
      d = warp_sum(d);
      if (lane == 0) p[j * kSplitKeys + s] = d * scale;
    }
  }
  __syncthreads();

  for (int j = warp; j < grp; j += n_warps) {
    float* pj = p + j * kSplitKeys;
    float m = -kInf;
    for (int s = lane; s < n; s += kWarp) m = fmaxf(m, pj[s]);
    m = warp_max(m);
    float l = 0.f;
    for (int s = lane; s < n; s += kWarp) {
      const float e = expf(pj[s] - m);
      pj[s] = e;
      l += e;
    }
    l = warp_sum(l);
    if (lane == 0) ms[j] = m, ls[j] = l;
  }
  __syncthreads();

  const int64_t h0 = static_cast<int64_t>(g) * grp;
  for (int idx = threadIdx.x; idx < grp * D; idx += blockDim.x) {
    const int j = idx / D, d = idx - j * D;
    const float* pj = p + j * kSplitKeys;
    float a = 0.f;
    for (int s = 0; s < n; ++s) a += pj[s] * vb[static_cast<int64_t>(s) * D + d];
    part_acc[((h0 + j) * n_split + split) * D + d] = a;
  }
  for (int j = threadIdx.x; j < grp; j += blockDim.x) {
    float* ml = part_ml + ((h0 + j) * n_split + split) * 2;
    ml[0] = ms[j];
    ml[1] = ls[j];
  }
}

// ---- decode attention, merge: block per query head h. M = max m_i, l = sum l_i e^(m_i - M),
// out = sum acc_i e^(m_i - M) / l, lse = M + log l. n_split = 0 (S = 0): zeros and -inf.
__global__ void decode_merge_kernel(const float* part_acc, const float* part_ml, int n_split, int D,
                                    float* out, float* lse) {
  const int64_t h = blockIdx.x;
  const float* ml = part_ml + h * n_split * 2;
  float M = -kInf;
  for (int i = 0; i < n_split; ++i) M = fmaxf(M, ml[2 * i]);
  float l = 0.f;
  for (int i = 0; i < n_split; ++i) l += ml[2 * i + 1] * expf(ml[2 * i] - M);
  float* o = out + h * D;
  if (!(l > 0.f)) {
    for (int d = threadIdx.x; d < D; d += blockDim.x) o[d] = 0.f;
    if (lse && threadIdx.x == 0) lse[h] = -kInf;
    return;
  }
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float a = 0.f;
    for (int i = 0; i < n_split; ++i)
      a += part_acc[(h * n_split + i) * D + d] * expf(ml[2 * i] - M);
    o[d] = a / l;
  }
  if (lse && threadIdx.x == 0) lse[h] = M + logf(l);
}

}  // namespace

cudaError_t launch_rmsnorm(const float* x, int64_t T, int64_t C, const void* w, WeightType wt,
                           float eps, float* y, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(T)), block(kNormThreads);
  switch (wt) {
    case WeightType::kF32:
      rmsnorm_kernel<WeightType::kF32><<<grid, block, 0, stream>>>(x, C, w, eps, y);
      break;
    case WeightType::kBF16:
      rmsnorm_kernel<WeightType::kBF16><<<grid, block, 0, stream>>>(x, C, w, eps, y);
      break;
    case WeightType::kF16:
      rmsnorm_kernel<WeightType::kF16><<<grid, block, 0, stream>>>(x, C, w, eps, y);
      break;
  }
  return cudaGetLastError();
}

cudaError_t launch_rope(float* x, int64_t T, int64_t n_heads, int64_t D, const int32_t* positions,
                        const float* inv_freq, cudaStream_t stream) {
  const int64_t n_pairs = T * n_heads * (D / 2);
  const dim3 grid(static_cast<unsigned>((n_pairs + kRopeThreads - 1) / kRopeThreads));
  rope_kernel<<<grid, kRopeThreads, 0, stream>>>(x, n_pairs, n_heads, D / 2, positions, inv_freq);
  return cudaGetLastError();
}

cudaError_t launch_decode_attention(const float* q, const float* k, const float* v, int64_t S,
                                    int64_t S_cap, int64_t H, int64_t G, int64_t D, float scale,
                                    int64_t n_split, float* part_acc, float* part_ml, float* out,
                                    float* lse, size_t shared_bytes, cudaStream_t stream) {
  if (n_split > 0) {
    const dim3 grid(static_cast<unsigned>(G), static_cast<unsigned>(n_split));
    decode_partial_kernel<<<grid, kAttnThreads, shared_bytes, stream>>>(
        q, k, v, S, S_cap, static_cast<int>(H / G), static_cast<int>(D), scale,
        static_cast<int>(n_split), part_acc, part_ml);
    if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  }
  decode_merge_kernel<<<static_cast<unsigned>(H), kAttnThreads, 0, stream>>>(
      part_acc, part_ml, static_cast<int>(n_split), static_cast<int>(D), out, lse);
  return cudaGetLastError();
}

}  // namespace kvlab::cuda::detail
