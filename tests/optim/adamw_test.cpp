// AdamW against torch.optim.AdamW 1.13 (tests/golden/adamw_steps.h5, made by
// tests/golden/make_adamw_goldens.py), plus registry, state and resume properties.
#include "baselines/adamw/adamw.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "framework/core/error.h"
#include "framework/io/h5_file.h"
#include "tests/support/close.h"

namespace kvlab::baselines {
namespace {

const std::string kGolden = std::string(KVLAB_SOURCE_DIR) + "/tests/golden/adamw_steps.h5";
constexpr int kTensors = 3;

// Distance in units in the last place between two finite floats of the same sign region.
int64_t ulp_distance(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  if (ia < 0) ia = INT32_MIN - ia;
  if (ib < 0) ib = INT32_MIN - ib;
  return std::llabs(static_cast<int64_t>(ia) - ib);
}

struct Golden {
  std::vector<float> lrs;
  std::vector<std::vector<int64_t>> shape;
  std::vector<std::vector<float>> init, grads, after, exp_avg, exp_avg_sq;
  std::vector<bool> decay;
};

Golden load_golden() {
  Golden g;
  g.lrs = io::read_f32(kGolden, "lrs");
  for (int i = 0; i < kTensors; ++i) {
    const std::string p = "p" + std::to_string(i) + "_";
    std::vector<int64_t> dims;
    g.init.push_back(io::read_f32(kGolden, p + "init", &dims));
    g.shape.push_back(dims);
    g.grads.push_back(io::read_f32(kGolden, p + "grads"));
    g.after.push_back(io::read_f32(kGolden, p + "after"));
    g.exp_avg.push_back(io::read_f32(kGolden, p + "exp_avg"));
    g.exp_avg_sq.push_back(io::read_f32(kGolden, p + "exp_avg_sq"));
    g.decay.push_back(io::read_i32(kGolden, p + "weight_decay").at(0) != 0);
  }
  return g;
}

// The golden's hyperparameters (make_adamw_goldens.py: BETAS, EPS, WEIGHT_DECAY).
AdamWParams golden_params() {
  AdamWParams p;
  p.beta1 = 0.9;
  p.beta2 = 0.999;
  p.eps = 1e-8;
  p.weight_decay = 0.1;
  return p;
}

TEST(AdamW, MatchesTorchStepForStep) {
  const Golden g = load_golden();
  const size_t S = g.lrs.size();
  ASSERT_EQ(S, 10u);
  std::vector<std::vector<float>> data = g.init;
  std::vector<std::vector<float>> grad(kTensors);
  std::vector<optim::ParamBlock> blocks(kTensors);
  for (int i = 0; i < kTensors; ++i) {
    grad[i].resize(data[i].size());
    blocks[i] = {"p" + std::to_string(i), data[i].data(), grad[i].data(), g.shape[i], g.decay[i]};
  }
  AdamW opt(golden_params());
  int64_t worst_ulp = 0;
  for (size_t s = 0; s < S; ++s) {
    for (int i = 0; i < kTensors; ++i) {
      const size_t n = data[i].size();
      std::memcpy(grad[i].data(), g.grads[i].data() + s * n, n * sizeof(float));
    }
    opt.step(blocks, g.lrs[s]);  // f32 lr widened exactly: the same double torch used
    for (int i = 0; i < kTensors; ++i) {
      const size_t n = data[i].size();
      const float* want = g.after[i].data() + s * n;
      int64_t ulp = 0;
      size_t at = 0;
      for (size_t j = 0; j < n; ++j)
        if (ulp_distance(data[i][j], want[j]) > ulp) ulp = ulp_distance(data[i][j], want[j]), at = j;
      worst_ulp = std::max(worst_ulp, ulp);
      // Same f32 operations in the same order with the same roundings (adamw.cpp), so the
      // expected result is bit-identical: 0 ulp. One unfused product (e.g. m*b1 + (1-b1)*g
      // instead of the fma) already shows as 1-4 ulp in ~5% of elements.
      EXPECT_EQ(ulp, 0) << "tensor p" << i << " after step " << s + 1 << ": worst at [" << at
                        << "] got " << data[i][at] << " want " << want[at];
      // The brief's bound for the same f32 ops: about 1 ulp, rtol 2^-23.
      EXPECT_TRUE(testing::all_close(data[i].data(), want, n, 0.0, 1.2e-7));
    }
  }
  EXPECT_EQ(worst_ulp, 0) << "max ulp distance to torch over all steps";
  EXPECT_EQ(opt.step_count(), static_cast<int64_t>(S));
  auto st = opt.state();
  ASSERT_EQ(st.size(), 2u * kTensors);
  for (int i = 0; i < kTensors; ++i) {
    EXPECT_EQ(st[i].name, "m/p" + std::to_string(i));
    EXPECT_EQ(st[kTensors + i].name, "v/p" + std::to_string(i));
    // Moments after the last step: bit-identical to torch's exp_avg / exp_avg_sq.
    EXPECT_EQ(std::memcmp(st[i].data, g.exp_avg[i].data(), st[i].numel * sizeof(float)), 0);
    EXPECT_EQ(std::memcmp(st[kTensors + i].data, g.exp_avg_sq[i].data(),
                          st[kTensors + i].numel * sizeof(float)), 0);
  }
}

TEST(AdamW, GoldenExercisesDecayAndEps) {
  // Guards the golden's power to catch mistakes: dropping the decay or the eps moves results.
  const Golden g = load_golden();
  auto run = [&](AdamWParams p, bool decay_all) {
    std::vector<std::vector<float>> data = g.init, grad(kTensors);
    std::vector<optim::ParamBlock> blocks(kTensors);
    for (int i = 0; i < kTensors; ++i) {
      grad[i].resize(data[i].size());
      blocks[i] = {"p", data[i].data(), grad[i].data(), g.shape[i], decay_all || g.decay[i]};
    }
    AdamW opt(p);
    for (size_t s = 0; s < g.lrs.size(); ++s) {
      for (int i = 0; i < kTensors; ++i)
        std::memcpy(grad[i].data(), g.grads[i].data() + s * data[i].size(),
                    data[i].size() * sizeof(float));
      opt.step(blocks, g.lrs[s]);
    }
    double diff = 0;
    for (int i = 0; i < kTensors; ++i)
      for (size_t j = 0; j < data[i].size(); ++j)
        diff = std::max(diff, std::fabs(double(data[i][j]) -
                                        g.after[i][(g.lrs.size() - 1) * data[i].size() + j]));
    return diff;
  };
  AdamWParams no_wd = golden_params();
  no_wd.weight_decay = 0;
  EXPECT_GT(run(no_wd, false), 1e-4);
  EXPECT_GT(run(golden_params(), true), 1e-5);  // decaying the wd=0 tensor too
  AdamWParams big_eps = golden_params();
  big_eps.eps = 1e-6;
  EXPECT_GT(run(big_eps, false), 1e-6);
}

TEST(AdamW, StateBytesAreTwoF32MomentsPerParameter) {
  std::vector<float> a(12 * 7), ga(a.size()), b(5), gb(b.size());
  std::vector<optim::ParamBlock> blocks = {{"a", a.data(), ga.data(), {12, 7}, true},
                                           {"b", b.data(), gb.data(), {5}, false}};
  AdamW opt(AdamWParams{});
  EXPECT_EQ(opt.state_bytes(), 0);  // lazy: nothing before the first step
  EXPECT_TRUE(opt.state().empty());
  opt.step(blocks, 1e-3);
  EXPECT_EQ(opt.state_bytes(), 2 * 4 * (12 * 7 + 5));  // methods.md 3.4: 2*m*n floats
  int64_t numel = 0;
  for (const auto& s : opt.state()) numel += s.numel;
  EXPECT_EQ(numel * 4, opt.state_bytes());
}

TEST(AdamW, RejectsChangedBlocks) {
  std::vector<float> a(4), ga(4), c(5), gc(5);
  std::vector<optim::ParamBlock> blocks = {{"a", a.data(), ga.data(), {4}, true}};
  AdamW opt(AdamWParams{});
  opt.step(blocks, 1e-3);
  std::vector<optim::ParamBlock> other = {{"c", c.data(), gc.data(), {5}, true}};
  try {
    opt.step(other, 1e-3);
    FAIL() << "expected kvlab::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'c'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(opt.step(blocks, -1.0), Error);
}

TEST(AdamW, RegisteredWithTorchDefaults) {
  const auto& m = optim::OptimizerRegistry::instance().find("adamw");
  ParamValues v(m.params);
  EXPECT_EQ(v.get_float("beta1"), 0.9);
  EXPECT_EQ(v.get_float("beta2"), 0.999);
  EXPECT_EQ(v.get_float("eps"), 1e-8);
  EXPECT_EQ(v.get_float("weight_decay"), 0.01);
  auto opt = m.make(v);
  ASSERT_NE(dynamic_cast<AdamW*>(opt.get()), nullptr);
  ParamValues bad(m.params);
  bad.set("beta1", 1.0, "test");  // inside the declared closed range, rejected like torch
  EXPECT_THROW(m.make(bad), Error);
}

}  // namespace
}  // namespace kvlab::baselines
