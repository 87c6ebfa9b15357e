// Public entry points of the CUDA kernels (kernels.h): argument checks, dtype dispatch and
// checked launches. The kernels themselves are in kernels.cu (see launch.h).
#include "framework/backend/cuda/kernels.h"

#include <limits>

#include "framework/backend/cuda/device.h"
#include "framework/backend/cuda/launch.h"
#include "framework/core/error.h"

namespace kvlab::cuda {

static_assert(kDecodeSplitKeys == detail::kSplitKeys);

namespace {
constexpr int64_t kMaxGridX = std::numeric_limits<int32_t>::max();  // gridDim.x limit
constexpr int64_t kMaxGridY = 65535;                                // gridDim.y limit
}  // namespace

void rmsnorm(const float* x, int64_t T, int64_t C, const VecRef& w, float eps, float* y,
             cudaStream_t stream) {
  detail::WeightType wt = detail::WeightType::kF32;
  switch (w.dtype) {
    case DType::kF32: wt = detail::WeightType::kF32; break;
    case DType::kBF16: wt = detail::WeightType::kBF16; break;
    case DType::kF16: wt = detail::WeightType::kF16; break;
    default: fail("cuda::rmsnorm: weight dtype ", dtype_name(w.dtype), " is not f32/bf16/f16");
  }
  KVLAB_CHECK(w.n == C) << "cuda::rmsnorm: weight has " << w.n << " elements, rows have " << C;
  KVLAB_CHECK(T >= 0 && T <= kMaxGridX && C > 0) << "cuda::rmsnorm: T=" << T << " C=" << C;
  if (T == 0) return;
  KVLAB_CHECK(x && y && w.data) << "cuda::rmsnorm: null pointer";
  KVLAB_CUDA_CHECK(detail::launch_rmsnorm(x, T, C, w.data, wt, eps, y, stream));
}

void rope_apply(float* x, int64_t T, int64_t n_heads, int64_t D, const int32_t* positions,
                const float* inv_freq, cudaStream_t stream) {
  KVLAB_CHECK(D > 0 && D % 2 == 0 && T >= 0 && n_heads > 0)
      << "cuda::rope_apply: T=" << T << " n_heads=" << n_heads << " D=" << D
      << " (need D even and positive)";
  const int64_t n_pairs = T * n_heads * (D / 2);
  if (n_pairs == 0) return;
  KVLAB_CHECK((n_pairs + detail::kRopeThreads - 1) / detail::kRopeThreads <= kMaxGridX)
      << "cuda::rope_apply: " << n_pairs << " pairs";
  KVLAB_CHECK(x && positions && inv_freq) << "cuda::rope_apply: null pointer";
  KVLAB_CUDA_CHECK(detail::launch_rope(x, T, n_heads, D, positions, inv_freq, stream));
}

int64_t decode_attention_splits(int64_t S) {
  KVLAB_CHECK(S >= 0) << "decode_attention: S=" << S;
  return (S + kDecodeSplitKeys - 1) / kDecodeSplitKeys;
}

size_t decode_attention_workspace_bytes(int64_t H, int64_t D, int64_t S) {
  KVLAB_CHECK(H > 0 && D > 0) << "decode_attention: H=" << H << " D=" << D;
  return static_cast<size_t>(H) * static_cast<size_t>(decode_attention_splits(S)) *
         static_cast<size_t>(D + 2) * sizeof(float);
}

void decode_attention(const float* q, const DecodeKv& kv, const cpu::AttentionShape& sh, float* out,
                      float* lse, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  const int64_t H = sh.H, G = sh.G, D = sh.D, S = kv.S;
  KVLAB_CHECK(H > 0 && G > 0 && D > 0 && H % G == 0 && H <= kMaxGridX)
      << "cuda::decode_attention: H=" << H << " G=" << G << " D=" << D << " (need H % G == 0)";
  KVLAB_CHECK(S >= 0 && kv.S_cap >= S)
      << "cuda::decode_attention: S=" << S << " S_cap=" << kv.S_cap;
  KVLAB_CHECK(q && out && (S == 0 || (kv.k && kv.v))) << "cuda::decode_attention: null pointer";
  const int64_t grp = H / G, n_split = decode_attention_splits(S);
  KVLAB_CHECK(n_split <= kMaxGridY)
      << "cuda::decode_attention: S=" << S << " needs " << n_split << " chunks of "
      << kDecodeSplitKeys << " keys, more than the grid allows (" << kMaxGridY << ")";
  const size_t need = decode_attention_workspace_bytes(H, D, S);
  KVLAB_CHECK(workspace_bytes >= need && (need == 0 || workspace))
      << "cuda::decode_attention: workspace of " << workspace_bytes << " bytes, need " << need
      << " (decode_attention_workspace_bytes)";
  const size_t shared =
      static_cast<size_t>(grp) * static_cast<size_t>(D + kDecodeSplitKeys + 2) * sizeof(float);
  KVLAB_CHECK(shared <= static_cast<size_t>(detail::kMaxSharedBytes))
      << "cuda::decode_attention: H/G=" << grp << " and D=" << D << " need " << shared
      << " bytes of shared memory per block, more than " << detail::kMaxSharedBytes;
  float* part_acc = static_cast<float*>(workspace);
  float* part_ml = part_acc ? part_acc + H * n_split * D : nullptr;
  KVLAB_CUDA_CHECK(detail::launch_decode_attention(q, kv.k, kv.v, S, kv.S_cap, H, G, D, sh.scale,
                                                   n_split, part_acc, part_ml, out, lse, shared,
                                                   stream));
}

}  // namespace kvlab::cuda
