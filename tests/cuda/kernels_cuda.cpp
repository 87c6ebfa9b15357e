// CUDA kernels against their CPU scalar references (DESIGN.md section 5: CUDA is tested against
// CPU). Device tests skip, naming the reason, where no CUDA driver or device is present; the
// error-path tests need neither and run everywhere. u = 2^-24 is the f32 unit roundoff;
// tolerances are worst-case bounds on the inputs drawn, derived in the comments.
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "framework/backend/cpu/kernels.h"
#include "framework/backend/cuda/device.h"
#include "framework/backend/cuda/kernels.h"
#include "tests/support/close.h"

namespace kvlab::cuda {
namespace {

constexpr double kU = 0x1p-24;

std::vector<float> randu(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

template <class T>
DeviceBuffer to_device(const std::vector<T>& v) {
  DeviceBuffer b(v.size() * sizeof(T));
  b.upload(v.data(), b.bytes());
  return b;
}

template <class T>
std::vector<T> to_host(const DeviceBuffer& b) {
  std::vector<T> v(b.bytes() / sizeof(T));
  b.download(v.data(), b.bytes());
  return v;
}

// Device tests: skip with the probe's reason where there is no usable device.
class CudaKernels : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_device_available())
      GTEST_SKIP() << "CUDA kernel test needs a GPU; skipped: " << cuda_device_status();
    RecordProperty("cuda_device", cuda_device_status());
  }
};

// ---- runs everywhere ----

TEST(CudaCheck, ThrowsWithFileLineAndCudaMessage) {
  const int line = __LINE__ + 2;
  try {
    KVLAB_CUDA_CHECK(cudaErrorInvalidValue);
    FAIL() << "KVLAB_CUDA_CHECK did not throw";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("kernels_cuda.cpp:" + std::to_string(line) + ":"), std::string::npos) << m;
    EXPECT_NE(m.find("cudaErrorInvalidValue"), std::string::npos) << m;
    EXPECT_NE(m.find(cudaGetErrorString(cudaErrorInvalidValue)), std::string::npos) << m;
  }
  EXPECT_NO_THROW(KVLAB_CUDA_CHECK(cudaSuccess));
  try {
    KVLAB_CUBLAS_CHECK(CUBLAS_STATUS_INVALID_VALUE);
    FAIL() << "KVLAB_CUBLAS_CHECK did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("CUBLAS_STATUS_INVALID_VALUE"), std::string::npos)
        << e.what();
  }
}

TEST(CudaDevice, ProbeNeverThrowsAndAllocationFailsCleanlyWithoutDevice) {
  bool available = false;
  EXPECT_NO_THROW(available = cuda_device_available());
  EXPECT_FALSE(cuda_device_status().empty());
  std::printf("%s\n", cuda_device_status().c_str());
  if (!available) {
    EXPECT_THROW(DeviceBuffer(64), Error);
  } else {
    DeviceBuffer b(64);
    const std::vector<float> x = {1.f, 2.f};
    EXPECT_THROW(b.upload(x.data(), 8, 60), Error);  // past the end
  }
}

// Argument checks happen on the host before any launch (the pointers are never dereferenced).
TEST(CudaKernelArgs, RejectedBeforeLaunch) {
  float* const p = reinterpret_cast<float*>(uintptr_t{256});
  const float w[3] = {};
  EXPECT_THROW(rmsnorm(p, 1, 4, VecRef{w, DType::kF32, 3}, 1e-5f, p), Error);
  EXPECT_THROW(rmsnorm(p, 1, 3, VecRef{w, DType::kI32, 3}, 1e-5f, p), Error);
  const int32_t* pos = reinterpret_cast<const int32_t*>(p);
  EXPECT_THROW(rope_apply(p, 1, 1, 3, pos, p), Error);  // odd D
  const cpu::AttentionShape sh{4, 2, 64, 0.125f};
  const DecodeKv kv{p, p, 300, 300};
  EXPECT_THROW(decode_attention(p, kv, cpu::AttentionShape{3, 2, 64, 1.f}, p, nullptr, p, 1 << 20),
               Error);  // H % G != 0
  EXPECT_THROW(decode_attention(p, DecodeKv{p, p, 300, 299}, sh, p, nullptr, p, 1 << 20), Error);
  const size_t need = decode_attention_workspace_bytes(4, 64, 300);
  EXPECT_EQ(need, 4u * 3 * 66 * sizeof(float));  // 3 chunks of <= 128 keys
  EXPECT_THROW(decode_attention(p, kv, sh, p, nullptr, p, need - 4), Error);
  // H/G = 64 at D = 128: 64 * 258 * 4 bytes of shared memory > 48 KiB.
  EXPECT_THROW(decode_attention(p, kv, cpu::AttentionShape{64, 1, 128, 1.f}, p, nullptr, p,
                                std::size_t{1} << 30),
               Error);
}

// ---- device tests ----

TEST_F(CudaKernels, RmsNormMatchesReference) {
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16})
    for (int64_t C : {1, 7, 64, 200, 4099}) {
      const int64_t T = 3;
      const auto x = randu(static_cast<size_t>(T * C), 3, -4.f, 4.f);
      const auto wf = randu(static_cast<size_t>(C), 5, 0.5f, 1.5f);
      std::vector<uint16_t> wh(wf.size());
      if (dt != DType::kF32) from_f32(dt, wf.data(), wh.data(), wf.size());
      const VecRef w_host = dt == DType::kF32 ? VecRef{wf.data(), dt, C} : VecRef{wh.data(), dt, C};
      std::vector<float> yr(x.size());
      cpu::rmsnorm_ref(x.data(), T, C, w_host, 1e-5f, yr.data());

      DeviceBuffer dw = dt == DType::kF32 ? to_device(wf) : to_device(wh);
      DeviceBuffer dx = to_device(x), dy(x.size() * sizeof(float));
      const VecRef w{dw.data(), dt, C};
      rmsnorm(dx.as<float>(), T, C, w, 1e-5f, dy.as<float>());
      const auto y = to_host<float>(dy);
      // f32 sum of C squares, any order (FMA or not): relative error <= gamma_C; divide by C,
      // add eps, sqrt, reciprocal and the two products add <= 6 u. The reference rounds once.
      const double rtol = (C + 6) * kU;
      EXPECT_TRUE(testing::all_close(y.data(), yr.data(), T * C, 0, rtol))
          << dtype_name(dt) << " C=" << C;
      // In place (y aliases x): the same arithmetic, bit for bit.
      rmsnorm(dx.as<float>(), T, C, w, 1e-5f, dx.as<float>());
      const auto z = to_host<float>(dx);
      EXPECT_TRUE(testing::all_close(z.data(), y.data(), T * C, 0, 0)) << dtype_name(dt);
    }
}

TEST_F(CudaKernels, RopeMatchesReference) {
  std::vector<cpu::RopeConfig> cfgs;
  for (int64_t D : {2, 64, 80, 128}) cfgs.push_back({.head_dim = D, .theta = 500000.0});
  cfgs.push_back(
      {.head_dim = 128, .theta = 500000.0, .type = cpu::RopeConfig::Type::kLlama3, .factor = 8.0});
  for (const cpu::RopeConfig& cfg : cfgs) {
    const cpu::Rope rope(cfg);
    const int64_t T = 4, Hh = 3, D = cfg.head_dim;
    const std::vector<int32_t> pos = {0, 1, 777, 31999};
    const auto x = randu(static_cast<size_t>(T * Hh * D), 9);
    std::vector<float> yr = x;
    rope.apply_ref(yr.data(), T, Hh, pos.data());

    DeviceBuffer dx = to_device(x), dpos = to_device(pos), dfreq = to_device(rope.inv_freq());
    rope_apply(dx.as<float>(), T, Hh, D, dpos.as<int32_t>(), dfreq.as<float>());
    const auto y = to_host<float>(dx);
    // Both sides rotate by the same f32 angle (one IEEE product). |x| <= 1, |cos|, |sin| < 1:
    // the GPU's sincosf is within 2 ulp (<= 2 u absolute each, CUDA Math API), then two products
    // and a sum: <= 8 u; the reference is within 6 u (glibc cosf/sinf within 1 ulp). 14 u apart.
    EXPECT_TRUE(testing::all_close(y.data(), yr.data(), T * Hh * D, 14 * kU, 0))
        << "D=" << D << " type=" << static_cast<int>(cfg.type);
  }
}

struct DecodeCase {
  int64_t S, H, G, D;
};

TEST_F(CudaKernels, DecodeAttentionMatchesReference) {
  std::vector<DecodeCase> cases;
  for (int64_t S : {0, 1, 63, 128, 200, 1000, 4097})
    for (int64_t D : {64, 80, 128})
      for (int64_t grp : {1, 4}) cases.push_back({S, 2 * grp, 2, D});
  cases.push_back({1000, 4, 1, 128});   // G = 1: one KV head, 8 chunks
  cases.push_back({3000, 32, 8, 128});  // Llama-3-8B heads
  cases.push_back({700, 64, 8, 128});   // H/G = 8 (Llama-3-70B)
  for (const DecodeCase& c : cases) {
    const int64_t S_cap = c.S + 5;
    // Every key visible: positions 0..S-1, query at S.
    std::vector<int32_t> kpos(static_cast<size_t>(c.S));
    for (int64_t s = 0; s < c.S; ++s) kpos[static_cast<size_t>(s)] = static_cast<int32_t>(s);
    const int32_t qpos = static_cast<int32_t>(c.S);
    const auto q = randu(static_cast<size_t>(c.H * c.D), 21, -2.f, 2.f);
    const auto kbuf = randu(static_cast<size_t>(c.G * S_cap * c.D), 22, -2.f, 2.f);
    const auto vbuf = randu(static_cast<size_t>(c.G * S_cap * c.D), 23);
    const cpu::KvView kv_host{kbuf.data(), vbuf.data(), c.S, S_cap * c.D, c.D, kpos.data()};
    const cpu::AttentionShape sh{c.H, c.G, c.D, static_cast<float>(1 / std::sqrt(double(c.D)))};
    std::vector<float> outr(static_cast<size_t>(c.H * c.D)), lser(static_cast<size_t>(c.H));
    cpu::attention_ref(q.data(), 1, &qpos, kv_host, sh, outr.data(), lser.data());

    DeviceBuffer dq = to_device(q), dk = to_device(kbuf), dv = to_device(vbuf);
    DeviceBuffer dout = to_device(std::vector<float>(outr.size(), 7.f));
    DeviceBuffer dlse = to_device(std::vector<float>(lser.size(), 7.f));
    DeviceBuffer ws(decode_attention_workspace_bytes(c.H, c.D, c.S));
    const DecodeKv kv{dk.as<float>(), dv.as<float>(), c.S, S_cap};
    decode_attention(dq.as<float>(), kv, sh, dout.as<float>(), dlse.as<float>(), ws.data(),
                     ws.bytes());
    const auto out = to_host<float>(dout), lse = to_host<float>(dlse);
    // Logits: f32 dot of D terms with |q_i k_i| <= 4, any summation order: error <= gamma_D 4 D,
    // times scale. Probabilities then err relatively by twice that, plus expf (<= 2 ulp) in the
    // chunk and again in the merge, plus f32 sums of <= S terms for l and acc (gamma_S each);
    // outputs are convex combinations of |v| <= 1, so the absolute error is bounded by the sum.
    // Same bound as the CPU fast path (tests/backend/cpu/kernels_test.cpp).
    const double dlogit = c.D * kU * 4.0 * c.D * sh.scale;
    const double atol = 2 * dlogit + (c.S + 16) * kU * 4;
    EXPECT_TRUE(testing::all_close(out.data(), outr.data(), c.H * c.D, atol, 0))
        << "S=" << c.S << " H=" << c.H << " G=" << c.G << " D=" << c.D;
    EXPECT_TRUE(testing::all_close(lse.data(), lser.data(), c.H, atol, 0))
        << "lse S=" << c.S << " H=" << c.H << " G=" << c.G << " D=" << c.D;
    if (c.S == 0) {
      for (float o : out) ASSERT_EQ(o, 0.f);
      for (float l : lse) ASSERT_EQ(l, -std::numeric_limits<float>::infinity());
    }
    // No lse requested: the same outputs, bit for bit.
    DeviceBuffer dout2(dout.bytes());
    decode_attention(dq.as<float>(), kv, sh, dout2.as<float>(), nullptr, ws.data(), ws.bytes());
    const auto out2 = to_host<float>(dout2);
    EXPECT_TRUE(testing::all_close(out2.data(), out.data(), c.H * c.D, 0, 0)) << "S=" << c.S;
  }
}

}  // namespace
}  // namespace kvlab::cuda
