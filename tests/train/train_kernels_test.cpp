// Training kernels against PyTorch autograd goldens (tests/golden/train_ops.h5, made by
// tests/golden/make_train_goldens.py in float64 from f32-representable inputs, so the golden's own
// error is ~1e-16 relative and every tolerance below budgets kvlab's f32 rounding only).
// Fast paths are also checked against the plain references (style.md 4.1).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "framework/backend/cpu/cpu_features.h"
#include "framework/backend/cpu/train_kernels.h"
#include "framework/io/h5_file.h"
#include "tests/support/close.h"

namespace kvlab::cpu {
namespace {

const std::string kOps = std::string(KVLAB_SOURCE_DIR) + "/tests/golden/train_ops.h5";

std::vector<float> rd(const std::string& name, std::vector<int64_t>* dims = nullptr) {
  return io::read_f32(kOps, name, dims);
}

double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, static_cast<double>(std::fabs(x)));
  return m;
}

// RMSNorm: each output sums C = 48 products in f32 (relative error ~ sqrt(C) * 6e-8 ~ 4e-7 of
// sum |terms|, terms O(1..10)); atol 2e-5 + rtol 1e-5 is ~20x that.
TEST(TrainKernels, RmsNormForwardBackward) {
  std::vector<int64_t> dims;
  const auto x = rd("rmsnorm/x", &dims);
  const int64_t T = dims[0], C = dims[1];
  const auto w = rd("rmsnorm/w"), dy = rd("rmsnorm/dy");
  const float eps = 1e-5f;
  ThreadPool pool(2);
  std::vector<float> y(T * C), rstd(T), dx(T * C, 0.f), dw(C, 0.f), ws(2 * C);
  rmsnorm_fwd(x.data(), T, C, w.data(), eps, y.data(), rstd.data(), pool);
  rmsnorm_bwd(dy.data(), x.data(), w.data(), rstd.data(), T, C, dx.data(), dw.data(), ws.data(),
              pool);
  EXPECT_TRUE(testing::all_close(y.data(), rd("rmsnorm/y").data(), T * C, 2e-5, 1e-5));
  EXPECT_TRUE(testing::all_close(dx.data(), rd("rmsnorm/dx").data(), T * C, 2e-5, 1e-5));
  EXPECT_TRUE(testing::all_close(dw.data(), rd("rmsnorm/dw").data(), C, 2e-5, 1e-5));
  // Accumulation: a second call adds the same again.
  rmsnorm_bwd(dy.data(), x.data(), w.data(), rstd.data(), T, C, dx.data(), dw.data(), ws.data(),
              pool);
  std::vector<float> want = rd("rmsnorm/dw");
  for (auto& v : want) v *= 2;
  EXPECT_TRUE(testing::all_close(dw.data(), want.data(), C, 4e-5, 1e-5));
}

// SwiGLU: elementwise, a few ulp (expf) per element: atol 1e-6, rtol 1e-5.
TEST(TrainKernels, SwigluBackward) {
  std::vector<int64_t> dims;
  const auto g = rd("swiglu/g", &dims);
  const int64_t n = dims[0];
  const auto u = rd("swiglu/u"), dh = rd("swiglu/dh");
  std::vector<float> h(n), dg(n), du(n);
  swiglu(g.data(), u.data(), h.data(), n);
  swiglu_bwd(g.data(), u.data(), dh.data(), dg.data(), du.data(), n);
  EXPECT_TRUE(testing::all_close(h.data(), rd("swiglu/h").data(), n, 1e-6, 1e-5));
  EXPECT_TRUE(testing::all_close(dg.data(), rd("swiglu/dg").data(), n, 1e-6, 1e-5));
  EXPECT_TRUE(testing::all_close(du.data(), rd("swiglu/du").data(), n, 1e-6, 1e-5));
}

// RoPE backward is the inverse rotation (Rope::unapply). Golden angles are HF's f32 ones, so the
// only error is the f32 rotation itself (2 products and a sum, |x| <= ~4): atol 2e-6.
TEST(TrainKernels, RopeBackwardIsInverseRotation) {
  std::vector<int64_t> dims;
  auto x = rd("rope/x", &dims);
  const int64_t T = dims[0], H = dims[1], D = dims[2];
  auto dy = rd("rope/dy");
  RopeConfig rc;
  rc.head_dim = D;
  rc.theta = 10000.0;
  Rope rope(rc);
  std::vector<int32_t> pos(T);
  for (int64_t t = 0; t < T; ++t) pos[t] = static_cast<int32_t>(t);
  rope.apply(x.data(), T, H, pos.data());
  rope.unapply(dy.data(), T, H, pos.data());
  EXPECT_TRUE(testing::all_close(x.data(), rd("rope/y").data(), T * H * D, 2e-6, 0));
  EXPECT_TRUE(testing::all_close(dy.data(), rd("rope/dx").data(), T * H * D, 2e-6, 0));
}

// Attention: forward by cpu::attention (saving lse), backward by attention_bwd on every ISA path
// and by the f64 reference. Each gradient element sums up to T = 100 keys (and H/G heads) of
// products O(1..10) after an f32 exp (Cephes polynomial, ~1e-7 relative): expected error
// ~ sqrt(T) * 1e-7 * sum|terms| ~ 1e-5 of the gradient's scale. atol = 1e-4 * max|golden|.
class AttnGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(AttnGolden, ForwardAndBackward) {
  const std::string g = GetParam() + "/";
  std::vector<int64_t> qd, kd;
  const auto q = rd(g + "q", &qd);
  const auto k = rd(g + "k", &kd);
  const auto v = rd(g + "v"), dout = rd(g + "dout");
  const int64_t B = qd[0], T = qd[1], H = qd[2], D = qd[3], G = kd[2];
  const AttentionShape sh{H, G, D, 1.0f / std::sqrt(static_cast<float>(D))};
  ThreadPool pool(2);
  std::vector<int32_t> pos(T);
  for (int64_t t = 0; t < T; ++t) pos[t] = static_cast<int32_t>(t);
  std::vector<float> out(B * T * H * D), lse(B * T * H);
  for (int64_t b = 0; b < B; ++b) {
    KvView kv{k.data() + b * T * G * D, v.data() + b * T * G * D, T, D, G * D, pos.data()};
    attention(q.data() + b * T * H * D, T, pos.data(), kv, sh, out.data() + b * T * H * D,
              lse.data() + b * T * H, pool);
  }
  const auto want_out = rd(g + "out"), want_lse = rd(g + "lse");
  EXPECT_TRUE(testing::all_close(out.data(), want_out.data(), out.size(), 1e-4 * max_abs(want_out), 0));
  EXPECT_TRUE(testing::all_close(lse.data(), want_lse.data(), lse.size(), 1e-5 * max_abs(want_lse), 1e-6));

  // The training forward (own kernel on AVX-512, cpu::attention otherwise) on every ISA path.
  for (Isa isa : {Isa::kScalar, Isa::kAvx512}) {
    if (!isa_supported(isa)) continue;
    ScopedIsa scoped(isa);
    std::vector<float> o2(out.size(), NAN), l2(lse.size(), NAN);
    attention_fwd(q.data(), k.data(), v.data(), B, T, sh, o2.data(), l2.data(), pool);
    EXPECT_TRUE(testing::all_close(o2.data(), want_out.data(), o2.size(), 1e-4 * max_abs(want_out), 0)) << isa_name(isa);
    EXPECT_TRUE(testing::all_close(l2.data(), want_lse.data(), l2.size(), 1e-5 * max_abs(want_lse), 1e-6)) << isa_name(isa);
  }

  const auto wdq = rd(g + "dq"), wdk = rd(g + "dk"), wdv = rd(g + "dv");
  std::vector<Isa> isas = {Isa::kScalar};
  if (isa_supported(Isa::kAvx512)) isas.push_back(Isa::kAvx512);
  for (Isa isa : isas) {
    ScopedIsa scoped(isa);
    std::vector<float> dq(q.size(), NAN), dk(k.size(), NAN), dv(v.size(), NAN);
    std::vector<float> ws(attention_bwd_ws_floats(B, T, sh));
    attention_bwd(q.data(), k.data(), v.data(), out.data(), lse.data(), dout.data(), B, T, sh,
                  dq.data(), dk.data(), dv.data(), ws.data(), pool);
    EXPECT_TRUE(testing::all_close(dq.data(), wdq.data(), dq.size(), 1e-4 * max_abs(wdq), 0)) << isa_name(isa);
    EXPECT_TRUE(testing::all_close(dk.data(), wdk.data(), dk.size(), 1e-4 * max_abs(wdk), 0)) << isa_name(isa);
    EXPECT_TRUE(testing::all_close(dv.data(), wdv.data(), dv.size(), 1e-4 * max_abs(wdv), 0)) << isa_name(isa);
  }
  std::vector<float> dq(q.size()), dk(k.size()), dv(v.size());
  attention_bwd_ref(q.data(), k.data(), v.data(), dout.data(), B, T, sh, dq.data(), dk.data(),
                    dv.data());
  EXPECT_TRUE(testing::all_close(dq.data(), wdq.data(), dq.size(), 1e-5 * max_abs(wdq), 0));
  EXPECT_TRUE(testing::all_close(dk.data(), wdk.data(), dk.size(), 1e-5 * max_abs(wdk), 0));
  EXPECT_TRUE(testing::all_close(dv.data(), wdv.data(), dv.size(), 1e-5 * max_abs(wdv), 0));
}

INSTANTIATE_TEST_SUITE_P(Train, AttnGolden, ::testing::Values("attn_d16", "attn_d32"));

// Cross-entropy: loss in f64, gradient coef * (softmax - onehot) in f32 per element:
// atol 1e-7 on gradients of size <= coef ~ 0.1, rtol 1e-6 on the loss.
TEST(TrainKernels, CrossEntropyFused) {
  std::vector<int64_t> dims;
  auto logits = rd("xent/logits", &dims);
  const int64_t T = dims[0], V = dims[1];
  const auto targets = io::read_i32(kOps, "xent/targets");
  const auto weight = rd("xent/weight");
  double norm = 0;
  for (int64_t t = 0; t < T; ++t)
    if (targets[t] >= 0) norm += weight[t];
  ThreadPool pool(2);
  auto copy = logits;
  const double loss_only =
      cross_entropy_rows(copy.data(), targets.data(), weight.data(), T, V, 1.0 / norm, false, pool);
  EXPECT_EQ(copy, logits);
  const double sum = cross_entropy_rows(logits.data(), targets.data(), weight.data(), T, V,
                                        1.0 / norm, true, pool);
  EXPECT_EQ(sum, loss_only);
  const float want = rd("xent/loss")[0];
  EXPECT_NEAR(sum / norm, want, 1e-6 * std::fabs(want));
  EXPECT_TRUE(testing::all_close(logits.data(), rd("xent/dlogits").data(), T * V, 1e-7, 1e-5));
}

}  // namespace
}  // namespace kvlab::cpu
