#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "framework/model/generate.h"

namespace kvlab::model {
namespace {

TEST(Sampling, GreedyPicksArgmaxLowestIdOnTies) {
  SamplingOptions o;
  Rng rng(0);
  std::vector<float> l = {0.1f, 2.0f, -1.0f, 2.0f};
  EXPECT_EQ(sample_token(l, o, rng), 1);
}

// Empirical frequencies over 40000 draws match softmax(l / T) within 5 standard errors.
TEST(Sampling, TemperatureFollowsSoftmax) {
  SamplingOptions o;
  o.temperature = 0.7;
  o.seed = 1;
  std::vector<float> l = {1.0f, 0.0f, -0.5f, 0.3f};
  std::vector<double> p(4);
  double z = 0;
  for (int i = 0; i < 4; ++i) z += (p[i] = std::exp(l[i] / 0.7));
  Rng rng(o.seed);
  std::vector<int> count(4, 0);
  const int n = 40000;
  for (int i = 0; i < n; ++i) count[sample_token(l, o, rng)]++;
  for (int i = 0; i < 4; ++i) {
    const double pi = p[i] / z, se = std::sqrt(pi * (1 - pi) / n);
    EXPECT_NEAR(count[i] / double(n), pi, 5 * se) << "token " << i;
  }
}

TEST(Sampling, TopPKeepsOnlyTheNucleusAndSeedsRepeat) {
  SamplingOptions o;
  o.temperature = 1.0;
  o.top_p = 0.5;
  // softmax of {3, 2.9, 0, 0}: top two hold ~0.48 and ~0.44 -> nucleus is {0, 1}.
  std::vector<float> l = {3.0f, 2.9f, 0.0f, 0.0f};
  Rng a(5), b(5);
  std::map<int, int> seen;
  for (int i = 0; i < 2000; ++i) {
    const int t = sample_token(l, o, a);
    EXPECT_EQ(t, sample_token(l, o, b));
    seen[t]++;
  }
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_TRUE(seen.count(0) && seen.count(1));
}

TEST(Scoring, LogSumExpIsStable) {
  std::vector<float> l = {1000.0f, 1000.0f};
  EXPECT_NEAR(log_sum_exp(l), 1000.0 + std::log(2.0), 1e-9);
}

}  // namespace
}  // namespace kvlab::model
