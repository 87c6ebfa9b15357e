#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <numeric>

#include "framework/core/dtype.h"
#include "framework/core/error.h"
#include "framework/core/params.h"
#include "framework/core/rng.h"
#include "framework/core/thread_pool.h"

namespace kvlab {
namespace {

// f16 conversion against exact definitions: every one of the 65536 bit patterns that is not NaN
// round-trips f16 -> f32 -> f16 exactly, and f32 -> f16 rounds to nearest even.
TEST(DType, F16RoundTripsEveryBitPattern) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f))));
      continue;
    }
    ASSERT_EQ(f32_to_f16(f), h) << "bits 0x" << std::hex << h << " value " << f;
  }
}

TEST(DType, F16KnownValues) {
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0xc000), -2.0f);
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);                 // rounds up to inf
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);    // tie to even -> 0
  EXPECT_EQ(f32_to_f16(std::ldexp(1.5f, -25)), 0x0001);    // above the tie -> smallest subnormal
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie to even (down)
  EXPECT_EQ(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie to even (up)
}

TEST(DType, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  float x;
  uint32_t u = 0x3f808000;  // exactly halfway between 0x3f80 and 0x3f81 -> even 0x3f80
  std::memcpy(&x, &u, 4);
  EXPECT_EQ(f32_to_bf16(x), 0x3f80);
  u = 0x3f818000;  // halfway between 0x3f81 and 0x3f82 -> even 0x3f82
  std::memcpy(&x, &u, 4);
  EXPECT_EQ(f32_to_bf16(x), 0x3f82);
  EXPECT_EQ(bf16_to_f32(0xc0a0), -5.0f);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
}

TEST(DType, ParseNamesAndRejectUnknown) {
  EXPECT_EQ(parse_dtype("BF16", "t"), DType::kBF16);
  EXPECT_EQ(parse_dtype("f16", "t"), DType::kF16);
  try {
    parse_dtype("F8_E4M3", "model.safetensors: tensor x");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.safetensors: tensor x"), std::string::npos);
  }
}

TEST(ThreadPool, ParallelForCoversRangeOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 7, 1000}) {
      std::vector<std::atomic<int>> hits(n);
      pool.parallel_for(n, [&](int64_t b, int64_t e, int w) {
        EXPECT_GE(w, 0);
        EXPECT_LT(w, threads);
        for (int64_t i = b; i < e; ++i) hits[i]++;
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
    }
  }
}

TEST(ThreadPool, TasksAndNestingAndExceptions) {
  ThreadPool pool(3);
  std::atomic<int64_t> sum{0};
  pool.parallel_tasks(100, [&](int64_t i, int) {
    // A nested call runs inline on the calling worker.
    pool.parallel_for(3, [&](int64_t b, int64_t e, int) { sum += (e - b) * i; });
  });
  EXPECT_EQ(sum.load(), 3 * 4950);
  EXPECT_THROW(pool.parallel_for(10, [](int64_t b, int64_t, int) {
    if (b > 0) fail("worker failure");
  }), Error);
  // The pool still works after an exception.
  std::atomic<int> n{0};
  pool.parallel_for(10, [&](int64_t b, int64_t e, int) { n += static_cast<int>(e - b); });
  EXPECT_EQ(n.load(), 10);
}

TEST(Rng, DeterministicAndRoughlyNormal) {
  Rng a(42), b(42), c(43);
  EXPECT_EQ(a.next_u64(), b.next_u64());
  EXPECT_NE(Rng(42).next_u64(), c.next_u64());
  Rng r(7);
  double s = 0, s2 = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const double x = r.normal();
    s += x;
    s2 += x * x;
  }
  // Mean has std 1/sqrt(n) = 0.0022; variance estimate std sqrt(2/n) = 0.0032: 5-sigma bounds.
  EXPECT_NEAR(s / n, 0.0, 0.011);
  EXPECT_NEAR(s2 / n, 1.0, 0.016);
}

std::vector<ParamDecl> decls() {
  return {{"rank", ParamDecl::Type::kInt, int64_t{32}, 1.0, 128.0, {}, "rank"},
          {"eta", ParamDecl::Type::kFloat, 0.01, 0.0, 1.0, {}, "step"},
          {"rotate", ParamDecl::Type::kBool, false, std::nullopt, std::nullopt, {}, "rotate"},
          {"mode", ParamDecl::Type::kChoice, std::string("paper"), std::nullopt, std::nullopt,
           {"paper", "official_code"}, "mode"}};
}

TEST(Params, DefaultsParsingAndErrors) {
  ParamValues p(decls());
  EXPECT_EQ(p.get_int("rank"), 32);
  p.set_from_string("rank", "64", "x.yaml:3: method");
  p.set_from_string("eta", "0.5", "w");
  p.set_from_string("rotate", "true", "w");
  p.set_from_string("mode", "official_code", "w");
  EXPECT_EQ(p.get_int("rank"), 64);
  EXPECT_DOUBLE_EQ(p.get_float("eta"), 0.5);
  EXPECT_TRUE(p.get_bool("rotate"));
  auto msg = [&](const std::string& k, const std::string& v) {
    try {
      p.set_from_string(k, v, "x.yaml:3: method");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(msg("rank", "129").find("out of range"), std::string::npos);
  EXPECT_NE(msg("rank", "3.5").find("integer"), std::string::npos);
  EXPECT_NE(msg("rnak", "3").find("did you mean 'rank'"), std::string::npos);
  EXPECT_NE(msg("rnak", "3").find("x.yaml:3"), std::string::npos);
  EXPECT_NE(msg("mode", "papr").find("did you mean 'paper'"), std::string::npos);
  EXPECT_NE(msg("rotate", "maybe").find("true or false"), std::string::npos);
  EXPECT_EQ(p.get_int("rank"), 64);  // failed sets change nothing
}

}  // namespace
}  // namespace kvlab
