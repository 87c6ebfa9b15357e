// CPU kernels: every fast path (each ISA this machine supports, forced with ScopedIsa) against
// its scalar reference on odd sizes. u = 2^-24 is the f32 unit roundoff; tolerances are
// worst-case bounds (Higham gamma_n = n u) on the quantities the test draws.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numbers>
#include <random>
#include <vector>

#include "framework/backend/cpu/cpu_features.h"
#include "framework/backend/cpu/kernel_table.h"
#include "framework/backend/cpu/kernels.h"
#include "tests/support/close.h"

namespace kvlab::cpu {
namespace {

constexpr double kU = 0x1p-24;

std::vector<Isa> isas() {
  std::vector<Isa> v;
  for (Isa i : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512})
    if (isa_supported(i)) v.push_back(i);
  return v;
}

std::vector<float> randu(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// W [N, K] stored as dt with leading dimension ld (>= K); values exactly representable in dt.
struct Weight {
  std::vector<uint16_t> h;
  std::vector<float> f;
  MatRef ref;
};
Weight make_weight(DType dt, int64_t N, int64_t K, int64_t ld, uint32_t seed) {
  Weight w;
  const auto v = randu(static_cast<size_t>(N * ld), seed);
  if (dt == DType::kF32) {
    w.f = v;
    w.ref = MatRef{w.f.data(), dt, N, K, ld};
  } else {
    w.h.resize(v.size());
    from_f32(dt, v.data(), w.h.data(), v.size());
    w.ref = MatRef{w.h.data(), dt, N, K, ld};
  }
  return w;
}

TEST(CpuFeatures, ForceIsaSelectsTable) {
  for (Isa i : isas()) {
    ScopedIsa s(i);
    EXPECT_EQ(active_isa(), i);
    EXPECT_EQ(detail::active_table().isa, i);
  }
  if (!isa_supported(Isa::kAvx512)) {
    EXPECT_THROW(force_isa(Isa::kAvx512), Error);
  }
}

TEST(Linear, FastMatchesReference) {
  ThreadPool pool(3);
  for (Isa isa : isas()) {
    ScopedIsa scoped(isa);
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16})
      for (int64_t T : {1, 3, 4, 5, 17})
        for (int64_t K : {1, 67, 300})
          for (int64_t N : {1, 45, 133}) {
            const int64_t ld = K + 3;
            Weight w = make_weight(dt, N, K, ld, 7);
            const auto x = randu(static_cast<size_t>(T * K), 11);
            const auto b = randu(static_cast<size_t>(N), 13);
            VecRef bias{b.data(), DType::kF32, N};
            std::vector<float> y(static_cast<size_t>(T * N)), yr(y.size());
            for (const VecRef* bp : std::vector<const VecRef*>{nullptr, &bias}) {
              linear(x.data(), T, w.ref, bp, y.data(), pool);
              linear_ref(x.data(), T, w.ref, bp, yr.data());
              // |x|, |w| <= 1: sum |x_k w_k| + |b| <= K + 1; f32 accumulation of K terms
              // (any order, FMA or not) errs by at most gamma_K (K + 1).
              const double atol = (K + 2) * kU * (K + 1);
              EXPECT_TRUE(testing::all_close(y.data(), yr.data(), T * N, atol, 0))
                  << isa_name(isa) << " " << dtype_name(dt) << " T=" << T << " K=" << K
                  << " N=" << N << " bias=" << (bp != nullptr);
            }
          }
  }
}

TEST(RmsNorm, FastMatchesReference) {
  for (Isa isa : isas()) {
    ScopedIsa scoped(isa);
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16})
      for (int64_t C : {1, 7, 64, 200}) {
        const int64_t T = 3;
        const auto x = randu(static_cast<size_t>(T * C), 3, -4.f, 4.f);
        auto wf = randu(static_cast<size_t>(C), 5, 0.5f, 1.5f);
        std::vector<uint16_t> wh(wf.size());
        from_f32(dt == DType::kF32 ? DType::kBF16 : dt, wf.data(), wh.data(), wf.size());
        VecRef w = dt == DType::kF32 ? VecRef{wf.data(), dt, C} : VecRef{wh.data(), dt, C};
        std::vector<float> y(x.size()), yr(x.size());
        rmsnorm(x.data(), T, C, w, 1e-5f, y.data());
        rmsnorm_ref(x.data(), T, C, w, 1e-5f, yr.data());
        // Sum of C squares: relative error <= gamma_C; sqrt, divide and two products add 4 u.
        const double rtol = (C + 6) * kU;
        EXPECT_TRUE(testing::all_close(y.data(), yr.data(), T * C, 0, rtol))
            << isa_name(isa) << " " << dtype_name(dt) << " C=" << C;
        // In place (y aliases x).
        std::vector<float> z = x;
        rmsnorm(z.data(), T, C, w, 1e-5f, z.data());
        EXPECT_TRUE(testing::all_close(z.data(), y.data(), T * C, 0, 0));
      }
  }
}

TEST(SwiGlu, FastMatchesReference) {
  for (Isa isa : isas()) {
    ScopedIsa scoped(isa);
    for (int64_t n : {1, 13, 100, 1037}) {
      auto g = randu(static_cast<size_t>(n), 1, -12.f, 12.f);
      if (n > 3) g[0] = -100.f, g[1] = 95.f, g[2] = 0.f;
      const auto u = randu(static_cast<size_t>(n), 2, -3.f, 3.f);
      std::vector<float> y(g.size()), yr(g.size());
      swiglu(g.data(), u.data(), y.data(), n);
      swiglu_ref(g.data(), u.data(), yr.data(), n);
      // exp to <= 2 ulp, then add, divide, multiply: relative error <= 6 u (+ 1 u rounding of
      // the f64 reference). atol covers g < -87, where exp(-g) is clamped and y ~ 1e-36.
      EXPECT_TRUE(testing::all_close(y.data(), yr.data(), n, 1e-30, 8 * kU))
          << isa_name(isa) << " n=" << n;
      std::vector<float> z = g;  // out aliases gate
      swiglu(z.data(), u.data(), z.data(), n);
      EXPECT_TRUE(testing::all_close(z.data(), y.data(), n, 0, 0));
    }
  }
}

float hexf(const char* s) { return std::strtof(s, nullptr); }

TEST(Rope, InvFreqMatchesTorch) {
  // Values printed by transformers' formulas run with torch 2.x (f32) on this machine.
  Rope d80({.head_dim = 80, .theta = 10000.0});
  EXPECT_EQ(d80.inv_freq()[1], hexf("0x1.96b23p-1"));
  EXPECT_EQ(d80.inv_freq()[7], hexf("0x1.98a136p-3"));
  EXPECT_EQ(d80.inv_freq()[20], hexf("0x1.47ae14p-7"));
  EXPECT_EQ(d80.inv_freq()[39], hexf("0x1.080408p-13"));

  // Llama-3.1: theta 5e5, D 128, factor 8, low 1, high 4, original 8192. Wavelengths split at
  // 8192 / 4 = 2048 and 8192 / 1 = 8192: i <= 28 high frequency (unchanged), 29..34 medium
  // (smoothed), i >= 35 low frequency (divided by 8).
  RopeConfig c{.head_dim = 128, .theta = 500000.0, .type = RopeConfig::Type::kLlama3,
               .factor = 8.0, .low_freq_factor = 1.0, .high_freq_factor = 4.0,
               .original_max_position = 8192};
  Rope l3(c);
  Rope base({.head_dim = 128, .theta = 500000.0});
  const auto& f = l3.inv_freq();
  const auto& b = base.inv_freq();
  EXPECT_EQ(b[40], hexf("0x1.1f91fp-12"));
  EXPECT_EQ(f[1], hexf("0x1.a11582p-1"));
  EXPECT_EQ(f[20], hexf("0x1.0f5386p-6"));
  EXPECT_EQ(f[28], hexf("0x1.a4ee4p-9"));
  EXPECT_EQ(f[29], hexf("0x1.1bfa0cp-9"));
  EXPECT_EQ(f[31], hexf("0x1.c12f3cp-11"));
  EXPECT_EQ(f[34], hexf("0x1.765ba4p-13"));
  EXPECT_EQ(f[35], hexf("0x1.90d10cp-14"));
  EXPECT_EQ(f[63], hexf("0x1.4985fep-22"));
  // Regimes, independently of torch.
  for (size_t i = 0; i < f.size(); ++i) {
    const double wl = 2 * std::numbers::pi / b[i];
    if (wl < 2048) EXPECT_EQ(f[i], b[i]) << i;
    else if (wl > 8192) EXPECT_EQ(f[i], b[i] / 8.f) << i;
    else {
      const double s = (8192 / wl - 1) / 3;
      EXPECT_NEAR(f[i], (1 - s) * b[i] / 8 + s * b[i], 1e-6 * b[i]) << i;
    }
  }
  Rope lin({.head_dim = 64, .theta = 10000.0, .type = RopeConfig::Type::kLinear, .factor = 4.0});
  Rope def({.head_dim = 64, .theta = 10000.0});
  for (size_t i = 0; i < 32; ++i) EXPECT_EQ(lin.inv_freq()[i], def.inv_freq()[i] / 4.f);
}

TEST(Rope, ApplyMatchesFormulaAndInverts) {
  for (Isa isa : isas()) {
    ScopedIsa scoped(isa);
    for (int64_t D : {2, 64, 80, 128}) {
      Rope rope({.head_dim = D, .theta = 500000.0});
      const int64_t T = 4, Hh = 3, half = D / 2;
      const std::vector<int32_t> pos = {0, 1, 777, 31999};
      const auto x = randu(static_cast<size_t>(T * Hh * D), 9);
      std::vector<float> y = x, yr = x, want(x.size());
      rope.apply(y.data(), T, Hh, pos.data());
      rope.apply_ref(yr.data(), T, Hh, pos.data());
      // Direct formula in f64 from the f32 angle float(pos) * inv_freq.
      for (int64_t t = 0; t < T; ++t)
        for (int64_t h = 0; h < Hh; ++h)
          for (int64_t i = 0; i < half; ++i) {
            const float a = static_cast<float>(pos[t]) * rope.inv_freq()[i];
            const int64_t o = (t * Hh + h) * D;
            const double x1 = x[o + i], x2 = x[o + i + half];
            want[o + i] = static_cast<float>(x1 * std::cos(a) - x2 * std::sin(a));
            want[o + i + half] = static_cast<float>(x2 * std::cos(a) + x1 * std::sin(a));
          }
      // |x| <= 1: cos/sin within 1 ulp, two products and a sum: <= 6 u absolute.
      const double atol = 6 * kU;
      EXPECT_TRUE(testing::all_close(y.data(), want.data(), T * Hh * D, atol, 0))
          << isa_name(isa) << " D=" << D;
      EXPECT_TRUE(testing::all_close(yr.data(), want.data(), T * Hh * D, atol, 0));
      rope.unapply(y.data(), T, Hh, pos.data());
      // Two rotations: 12 u, plus cos^2 + sin^2 = 1 only to 4 u.
      EXPECT_TRUE(testing::all_close(y.data(), x.data(), T * Hh * D, 16 * kU, 0))
          << isa_name(isa) << " D=" << D;
    }
  }
}

struct AttnCase {
  int64_t T, S, H, G, D;
  bool head_major;
};

TEST(Attention, FastMatchesReference) {
  ThreadPool pool(3);
  std::vector<AttnCase> cases;
  for (int64_t S : {1, 63, 200, 1000})
    for (int64_t T : {1, 3, 17})
      for (int64_t D : {64, 80, 128})
        for (int64_t grp : {1, 4}) cases.push_back({T, S, 2 * grp, 2, D, (S + T + D) % 2 == 0});
  cases.push_back({1, 1000, 4, 1, 128, true});  // G = 1: flash-decoding split over S
  cases.push_back({40, 300, 8, 2, 64, false});
  for (Isa isa : isas()) {
    ScopedIsa scoped(isa);
    for (const AttnCase& c : cases) {
      const int64_t S_cap = c.S + 5;
      // Cached positions with gaps and repeats (evicted / merged tokens), starting at 3.
      std::vector<int32_t> kpos(static_cast<size_t>(c.S));
      for (int64_t s = 0; s < c.S; ++s) kpos[s] = static_cast<int32_t>(3 + s + s / 3 - s / 7);
      const int32_t last = kpos.back();
      // Queries inside the cached range, one before every key (no visible key), one after all.
      std::vector<int32_t> qpos(static_cast<size_t>(c.T));
      std::mt19937 g(17);
      for (int64_t t = 0; t < c.T; ++t) qpos[t] = static_cast<int32_t>(g() % (last + 1));
      qpos[0] = c.T > 1 ? 1 : last;
      if (c.T > 2) qpos[c.T - 1] = last + 10;
      const auto q = randu(static_cast<size_t>(c.T * c.H * c.D), 21, -2.f, 2.f);
      const auto kbuf = randu(static_cast<size_t>(S_cap * c.G * c.D), 22, -2.f, 2.f);
      const auto vbuf = randu(static_cast<size_t>(S_cap * c.G * c.D), 23);
      KvView kv{kbuf.data(), vbuf.data(), c.S,
                c.head_major ? S_cap * c.D : c.D, c.head_major ? c.D : c.G * c.D, kpos.data()};
      AttentionShape sh{c.H, c.G, c.D, static_cast<float>(1 / std::sqrt(double(c.D)))};
      std::vector<float> out(static_cast<size_t>(c.T * c.H * c.D), 7.f), outr(out.size());
      std::vector<float> lse(static_cast<size_t>(c.T * c.H)), lser(lse.size());
      attention(q.data(), c.T, qpos.data(), kv, sh, out.data(), lse.data(), pool);
      attention_ref(q.data(), c.T, qpos.data(), kv, sh, outr.data(), lser.data());
      // Logit error: D-term f32 dot with |q|,|k| <= 2: gamma_D * 4 D * scale. Probabilities
      // then err relatively by that + exp (2 u) + the f32 sums of up to S terms (gamma_S) and
      // the rescales (2 u each, at most S / 64 + n_split of them); outputs are convex
      // combinations of |v| <= 1, so the absolute error is bounded by the sum.
      const double dlogit = c.D * kU * 4.0 * c.D * sh.scale;
      const double atol = 2 * dlogit + (c.S + 16) * kU * 4;
      EXPECT_TRUE(testing::all_close(out.data(), outr.data(), c.T * c.H * c.D, atol, 0))
          << isa_name(isa) << " T=" << c.T << " S=" << c.S << " H=" << c.H << " G=" << c.G
          << " D=" << c.D;
      EXPECT_TRUE(testing::all_close(lse.data(), lser.data(), c.T * c.H, atol, 0))
          << isa_name(isa) << " lse T=" << c.T << " S=" << c.S;
      if (c.T > 1) {  // qpos[0] = 1 < kpos[0] = 3: nothing visible
        for (int64_t i = 0; i < c.H * c.D; ++i) ASSERT_EQ(out[i], 0.f);
        ASSERT_EQ(lse[0], -std::numeric_limits<float>::infinity());
      }
      // No lse requested.
      std::vector<float> out2(out.size());
      attention(q.data(), c.T, qpos.data(), kv, sh, out2.data(), nullptr, pool);
      EXPECT_TRUE(testing::all_close(out2.data(), out.data(), c.T * c.H * c.D, 0, 0));
    }
  }
}

TEST(Attention, ReferenceMatchesHandComputedCase) {
  // One query, two keys, D = 2: logits 0 and log 3 -> p = (1/4, 3/4).
  const float q[2] = {1.f, 0.f};
  const float k[4] = {0.f, 5.f, std::log(3.f), 1.f};
  const float v[4] = {1.f, 2.f, 5.f, 6.f};
  const int32_t kp[2] = {0, 1}, qp[1] = {1};
  KvView kv{k, v, 2, 2, 2, kp};
  AttentionShape sh{1, 1, 2, 1.f};
  float out[2], lse[1], out2[2], lse2[1];
  attention_ref(q, 1, qp, kv, sh, out, lse);
  EXPECT_NEAR(out[0], 4.f, 1e-6);
  EXPECT_NEAR(out[1], 5.f, 1e-6);
  EXPECT_NEAR(lse[0], std::log(4.f), 1e-6);
  ThreadPool pool(2);
  attention(q, 1, qp, kv, sh, out2, lse2, pool);
  EXPECT_NEAR(out2[0], 4.f, 1e-5);
  EXPECT_NEAR(lse2[0], std::log(4.f), 1e-6);
}

TEST(Kernels, RejectBadArguments) {
  ThreadPool pool(1);
  float x[4] = {}, y[4] = {};
  int32_t i32[2] = {};
  MatRef w{i32, DType::kI32, 2, 2, 2};
  EXPECT_THROW(linear(x, 1, w, nullptr, y, pool), Error);
  VecRef nw{x, DType::kF32, 3};
  EXPECT_THROW(rmsnorm(x, 1, 4, nw, 1e-5f, y), Error);
  EXPECT_THROW(Rope({.head_dim = 3}), Error);
  int32_t p[1] = {0};
  KvView kv{x, x, 1, 2, 2, p};
  EXPECT_THROW(attention(x, 1, p, kv, AttentionShape{3, 2, 2, 1.f}, y, nullptr, pool), Error);
}

}  // namespace
}  // namespace kvlab::cpu
