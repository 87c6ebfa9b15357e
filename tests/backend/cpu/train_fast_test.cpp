// AVX-512 training kernels against their plain references (style.md 4.1): fused cross-entropy
// (cross_entropy_rows vs cross_entropy_rows_ref), the SwiGLU backward (swiglu_bwd vs
// swiglu_bwd_ref), the RMSNorm backward (rmsnorm_bwd vs rmsnorm_bwd_ref) and the attention
// backward (attention_bwd vs attention_bwd_ref), on sizes with and without a 16-lane tail,
// ignored rows, weights, aliased outputs and extreme inputs. The PyTorch goldens for these ops
// are in tests/train/train_kernels_test.cpp (which runs the dispatched, i.e. fast, paths).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "framework/backend/cpu/cpu_features.h"
#include "framework/backend/cpu/train_kernels.h"
#include "tests/support/close.h"

namespace kvlab::cpu {
namespace {

std::vector<float> randu(size_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// Loss: both sum exp in f64 (fast: of f32 exp512 values, ~2 ulp each; ref: f64 exp of the f32
// difference), so the row's logsumexp differs by ~1e-7 relative: rtol 1e-6 on the total.
// Gradient: coef * e / sum (fast) vs coef * exp(z - f32(lse)) (ref). The ref rounds lse (up to
// ~80 here) to f32, a relative error up to 2^-24 * 128 ~ 7.6e-6 on every softmax entry, and the
// target entry coef (p - 1) cancels: atol 1e-5 * max coef, rtol 1e-5.
TEST(TrainFast, CrossEntropyMatchesReference) {
  if (!isa_supported(Isa::kAvx512)) GTEST_SKIP() << "no AVX-512 on this CPU";
  ScopedIsa scoped(Isa::kAvx512);
  for (int threads : {1, 2})
    for (int64_t V : {1, 5, 16, 17, 264, 4096}) {
      ThreadPool pool(threads);
      const int64_t T = 37;
      auto logits = randu(static_cast<size_t>(T * V), static_cast<uint32_t>(V), -12.f, 12.f);
      if (V > 3) logits[2 * V + 3] = 80.f;  // one dominant logit: the max shift matters
      std::vector<int32_t> targets(static_cast<size_t>(T));
      std::mt19937 g(11);
      for (int64_t t = 0; t < T; ++t)
        targets[t] = t % 7 == 3 ? -1 : static_cast<int32_t>(g() % static_cast<uint32_t>(V));
      const auto weight = randu(static_cast<size_t>(T), 5, 0.1f, 2.f);
      double norm = 0;
      for (int64_t t = 0; t < T; ++t)
        if (targets[t] >= 0) norm += weight[t];
      for (bool grad : {false, true}) {
        auto fast = logits, ref = logits;
        const double lf = cross_entropy_rows(fast.data(), targets.data(), weight.data(), T, V,
                                             1.0 / norm, grad, pool);
        const double lr = cross_entropy_rows_ref(ref.data(), targets.data(), weight.data(), T, V,
                                                 1.0 / norm, grad, pool);
        EXPECT_NEAR(lf, lr, 1e-6 * std::fabs(lr)) << "V=" << V << " grad=" << grad;
        double max_coef = 0;
        for (int64_t t = 0; t < T; ++t) max_coef = std::max(max_coef, weight[t] / norm);
        if (grad)
          EXPECT_TRUE(testing::all_close(fast.data(), ref.data(), T * V, 1e-5 * max_coef, 1e-5))
              << "V=" << V;
        else
          EXPECT_EQ(fast, logits) << "loss-only must leave the logits untouched";
      }
      // Loss-only and gradient runs give the identical loss (the trainer logs either).
      auto a = logits, b = logits;
      EXPECT_EQ(cross_entropy_rows(a.data(), targets.data(), nullptr, T, V, 1.0, false, pool),
                cross_entropy_rows(b.data(), targets.data(), nullptr, T, V, 1.0, true, pool));
    }
}

// Elementwise, one exp512 (~2 ulp) and a division per element: rtol 1e-5 + atol 1e-6 as the
// golden test in tests/train. Inputs include |g| > 88 (exp clamp region) and the aliased
// in-place form the trainer uses (dg over dh, du over u).
TEST(TrainFast, SwigluBackwardMatchesReference) {
  if (!isa_supported(Isa::kAvx512)) GTEST_SKIP() << "no AVX-512 on this CPU";
  ScopedIsa scoped(Isa::kAvx512);
  for (int64_t n : {1, 15, 16, 33, 1000}) {
    auto g = randu(static_cast<size_t>(n), 1, -9.f, 9.f);
    const auto u = randu(static_cast<size_t>(n), 2, -3.f, 3.f);
    const auto dh = randu(static_cast<size_t>(n), 3, -2.f, 2.f);
    if (n > 3) {
      g[0] = 95.f;
      g[1] = -95.f;
      g[2] = 0.f;
    }
    std::vector<float> dg(n), du(n), rdg(n), rdu(n);
    swiglu_bwd(g.data(), u.data(), dh.data(), dg.data(), du.data(), n);
    swiglu_bwd_ref(g.data(), u.data(), dh.data(), rdg.data(), rdu.data(), n);
    EXPECT_TRUE(testing::all_close(dg.data(), rdg.data(), n, 1e-6, 1e-5)) << "n=" << n;
    EXPECT_TRUE(testing::all_close(du.data(), rdu.data(), n, 1e-6, 1e-5)) << "n=" << n;
    auto dh_in = dh, u_in = u;  // in place: dg over dh, du over u
    swiglu_bwd(g.data(), u_in.data(), dh_in.data(), dh_in.data(), u_in.data(), n);
    EXPECT_EQ(dh_in, dg);
    EXPECT_EQ(u_in, du);
  }
}

// RMSNorm backward rows (and the forward's saved rstd) against the plain loops: the vector path
// sums C products in 16 lanes instead of one chain, a reordering worth ~sqrt(C) ulp of
// sum |terms| (terms O(1), C <= 300): atol 1e-5, rtol 1e-5; dw sums T rows in both (per-worker
// partials, same split) so only the per-row reordering shows.
TEST(TrainFast, RmsNormMatchesReference) {
  if (!isa_supported(Isa::kAvx512)) GTEST_SKIP() << "no AVX-512 on this CPU";
  for (int threads : {1, 2})
    for (int64_t C : {1, 16, 48, 256, 300}) {
      ThreadPool pool(threads);
      const int64_t T = 37;
      const auto x = randu(static_cast<size_t>(T * C), 21, -2.f, 2.f);
      const auto w = randu(static_cast<size_t>(C), 22, 0.5f, 1.5f);
      const auto dy = randu(static_cast<size_t>(T * C), 23, -1.f, 1.f);
      const auto dx0 = randu(static_cast<size_t>(T * C), 24, -1.f, 1.f);  // accumulated into
      std::vector<float> y(T * C), rs(T), rs_ref(T), ws(threads * C);
      {
        ScopedIsa scoped(Isa::kScalar);
        rmsnorm_fwd(x.data(), T, C, w.data(), 1e-6f, y.data(), rs_ref.data(), pool);
      }
      ScopedIsa scoped(Isa::kAvx512);
      rmsnorm_fwd(x.data(), T, C, w.data(), 1e-6f, y.data(), rs.data(), pool);
      EXPECT_TRUE(testing::all_close(rs.data(), rs_ref.data(), T, 0, 1e-6)) << "C=" << C;
      auto dx = dx0, dx_ref = dx0;
      std::vector<float> dw(C, 0.5f), dw_ref(C, 0.5f);
      rmsnorm_bwd(dy.data(), x.data(), w.data(), rs.data(), T, C, dx.data(), dw.data(), ws.data(),
                  pool);
      rmsnorm_bwd_ref(dy.data(), x.data(), w.data(), rs.data(), T, C, dx_ref.data(), dw_ref.data(),
                      ws.data(), pool);
      EXPECT_TRUE(testing::all_close(dx.data(), dx_ref.data(), T * C, 1e-5, 1e-5)) << "C=" << C;
      EXPECT_TRUE(testing::all_close(dw.data(), dw_ref.data(), C, 1e-5, 1e-5)) << "C=" << C;
    }
}

// attention_bwd's AVX-512 tiles (4 rows at a time for D <= 32, 2 for D <= 64, 1 above) against
// the f64 reference attention_bwd_ref over several full 64-key tiles, a ragged last tile and
// row counts that leave every remainder of the row blocking; lse from attention_fwd. Each
// gradient element sums up to T = 300 keys (x H/G heads) of O(1) products after an f32 exp
// (~1e-7 relative): error ~ sqrt(T) 1e-7 of the gradient's scale; atol 1e-4 * max |ref| as the
// golden test in tests/train.
TEST(TrainFast, AttentionBackwardMatchesReference) {
  if (!isa_supported(Isa::kAvx512)) GTEST_SKIP() << "no AVX-512 on this CPU";
  ScopedIsa scoped(Isa::kAvx512);
  ThreadPool pool(2);
  for (int64_t D : {16, 32, 64, 80})
    for (int64_t T : {129, 300}) {
      const int64_t B = 2, H = 4, G = 2;
      const AttentionShape sh{H, G, D, 1.0f / std::sqrt(static_cast<float>(D))};
      const auto q = randu(static_cast<size_t>(B * T * H * D), 31, -1.5f, 1.5f);
      const auto k = randu(static_cast<size_t>(B * T * G * D), 32, -1.5f, 1.5f);
      const auto v = randu(static_cast<size_t>(B * T * G * D), 33, -1.f, 1.f);
      const auto dout = randu(static_cast<size_t>(B * T * H * D), 34, -1.f, 1.f);
      std::vector<float> o(q.size()), lse(static_cast<size_t>(B * T * H));
      attention_fwd(q.data(), k.data(), v.data(), B, T, sh, o.data(), lse.data(), pool);
      std::vector<float> dq(q.size()), dk(k.size()), dv(v.size()), rq(q.size()), rk(k.size()),
          rv(v.size()), ws(static_cast<size_t>(attention_bwd_ws_floats(B, T, sh)));
      attention_bwd(q.data(), k.data(), v.data(), o.data(), lse.data(), dout.data(), B, T, sh,
                    dq.data(), dk.data(), dv.data(), ws.data(), pool);
      attention_bwd_ref(q.data(), k.data(), v.data(), dout.data(), B, T, sh, rq.data(), rk.data(),
                        rv.data());
      auto max_abs = [](const std::vector<float>& x) {
        double m = 0;
        for (float e : x) m = std::max(m, static_cast<double>(std::fabs(e)));
        return m;
      };
      EXPECT_TRUE(testing::all_close(dq.data(), rq.data(), dq.size(), 1e-4 * max_abs(rq), 0))
          << "D=" << D << " T=" << T;
      EXPECT_TRUE(testing::all_close(dk.data(), rk.data(), dk.size(), 1e-4 * max_abs(rk), 0))
          << "D=" << D << " T=" << T;
      EXPECT_TRUE(testing::all_close(dv.data(), rv.data(), dv.size(), 1e-4 * max_abs(rv), 0))
          << "D=" << D << " T=" << T;
    }
}

}  // namespace
}  // namespace kvlab::cpu
