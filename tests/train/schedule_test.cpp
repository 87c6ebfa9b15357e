// Warmup + cosine schedule against its closed form at the boundary steps.
#include "framework/train/schedule.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "framework/core/error.h"

namespace kvlab::train {
namespace {

// Tolerance: lr_at evaluates the same closed form in f64; 1e-15 relative covers the different
// association of a few f64 operations (a handful of 2^-53 roundings).
constexpr double kRel = 1e-15;

TEST(Schedule, WarmupThenCosineToFloor) {
  const WarmupCosine s{/*max_lr=*/3e-4, /*min_lr=*/3e-5, /*warmup_steps=*/10, /*total_steps=*/110,
                       /*start_factor=*/0};
  EXPECT_EQ(lr_at(s, 0), 0.0);                                   // warmup starts from 0
  EXPECT_NEAR(lr_at(s, 5), 3e-4 * 0.5, 3e-4 * kRel);              // half-way up
  EXPECT_NEAR(lr_at(s, 9), 3e-4 * 0.9, 3e-4 * kRel);              // last warmup step
  EXPECT_EQ(lr_at(s, 10), 3e-4);                                 // peak: cos(0) = 1
  EXPECT_NEAR(lr_at(s, 60), (3e-4 + 3e-5) / 2, 3e-4 * kRel);      // progress 1/2: midpoint
  const double last = 3e-5 + (3e-4 - 3e-5) * 0.5 * (1 + std::cos(std::numbers::pi * 99 / 100));
  EXPECT_NEAR(lr_at(s, 109), last, 3e-4 * kRel);                  // last step of [0, N)
  EXPECT_GT(lr_at(s, 109), 3e-5);
  EXPECT_EQ(lr_at(s, 110), 3e-5);                                // the floor at N and beyond
  EXPECT_EQ(lr_at(s, 1000), 3e-5);
  for (int64_t t = 10; t + 1 < 110; ++t) EXPECT_GE(lr_at(s, t), lr_at(s, t + 1)) << t;
  for (int64_t t = 0; t + 1 < 10; ++t) EXPECT_LT(lr_at(s, t), lr_at(s, t + 1)) << t;
}

TEST(Schedule, StartFactorAndNoWarmup) {
  const WarmupCosine a{1.0, 0.0, 4, 8, 0.25};
  EXPECT_EQ(lr_at(a, 0), 0.25);
  EXPECT_NEAR(lr_at(a, 2), 0.25 + 0.75 * 0.5, kRel);
  EXPECT_EQ(lr_at(a, 4), 1.0);
  EXPECT_NEAR(lr_at(a, 6), 0.5, kRel);
  const WarmupCosine b{2.0, 0.5, 0, 4, 0.0};
  EXPECT_EQ(lr_at(b, 0), 2.0);  // no warmup: the peak at step 0
  EXPECT_NEAR(lr_at(b, 2), 1.25, 2 * kRel);
  const WarmupCosine c{1.0, 0.1, 5, 5, 0.0};  // all warmup, then the floor
  EXPECT_NEAR(lr_at(c, 4), 0.8, kRel);
  EXPECT_EQ(lr_at(c, 5), 0.1);
}

TEST(Schedule, RejectsBadSettings) {
  EXPECT_THROW(lr_at(WarmupCosine{1, 0, 0, 0, 0}, 0), Error);     // total 0
  EXPECT_THROW(lr_at(WarmupCosine{1, 0, 11, 10, 0}, 0), Error);   // warmup > total
  EXPECT_THROW(lr_at(WarmupCosine{1, 2, 0, 10, 0}, 0), Error);    // floor above peak
  EXPECT_THROW(lr_at(WarmupCosine{1, 0, 0, 10, 1.5}, 0), Error);  // start factor > 1
  EXPECT_THROW(lr_at(WarmupCosine{1, 0, 0, 10, 0}, -1), Error);
}

TEST(Schedule, FromDeclaredParams) {
  ParamValues v(schedule_param_decls());
  v.set("lr", 1e-3, "test");
  v.set("warmup_steps", int64_t{2}, "test");
  v.set("total_steps", int64_t{4}, "test");
  const auto s = schedule_from(v);
  EXPECT_NEAR(lr_at(s, 1), 5e-4, 1e-3 * kRel);
  v.set("warmup_steps", int64_t{5}, "test");
  EXPECT_THROW(schedule_from(v), Error);
}

}  // namespace
}  // namespace kvlab::train
