// Global-norm clipping (framework/train/clip.h) against closed forms.
#include "framework/train/clip.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "framework/core/error.h"

namespace kvlab::train {
namespace {

TEST(Clip, NormIsOverAllGradientsTogether) {
  std::vector<float> a = {3, 0, 4}, b = {12};  // sqrt(9 + 16 + 144) = 13, exact in f64
  std::vector<std::span<float>> g = {a, b};
  EXPECT_EQ(global_grad_norm(g), 13.0);
}

TEST(Clip, ScalesByMaxNormOverNormPlusGuard) {
  std::vector<float> a = {3, 0, 4}, b = {12};
  std::vector<std::span<float>> g = {a, b};
  const auto r = clip_grad_norm(g, 1.0);
  EXPECT_EQ(r.total_norm, 13.0);  // pre-clip norm returned
  EXPECT_TRUE(r.clipped);
  const float c = static_cast<float>(1.0 / (13.0 + 1e-6));  // torch: max_norm / (norm + 1e-6)
  EXPECT_EQ(r.coef, c);
  // One f32 multiply per element by the f32 coefficient: exact equality.
  EXPECT_EQ(a[0], 3 * c);
  EXPECT_EQ(a[2], 4 * c);
  EXPECT_EQ(b[0], 12 * c);
  // New norm: max_norm * norm / (norm + 1e-6), within f32 rounding (a few 2^-24).
  EXPECT_NEAR(global_grad_norm(g), 13.0 / (13.0 + 1e-6), 4e-7);
}

TEST(Clip, LeavesSmallGradientsAlone) {
  std::vector<float> a = {0.3f, 0.4f};  // norm 0.5
  std::vector<std::span<float>> g = {a};
  const auto r = clip_grad_norm(g, 0.5);  // coef = 0.5 / (0.5 + 1e-6) < 1: clipped (torch too)
  EXPECT_TRUE(r.clipped);
  std::vector<float> b = {0.3f, 0.4f};
  std::vector<std::span<float>> h = {b};
  const auto s = clip_grad_norm(h, 1.0);
  EXPECT_FALSE(s.clipped);
  EXPECT_EQ(s.coef, 1.0);
  EXPECT_EQ(b[0], 0.3f);
  EXPECT_EQ(b[1], 0.4f);
}

TEST(Clip, NonFiniteNormIsReportedNotApplied) {
  std::vector<float> a = {1, std::numeric_limits<float>::infinity()}, b = {2};
  std::vector<std::span<float>> g = {a, b};
  const auto r = clip_grad_norm(g, 1.0);
  EXPECT_FALSE(r.finite);
  EXPECT_FALSE(r.clipped);
  EXPECT_EQ(a[0], 1.0f);
  EXPECT_EQ(b[0], 2.0f);
  EXPECT_THROW(clip_grad_norm(g, 0.0), Error);
}

}  // namespace
}  // namespace kvlab::train
