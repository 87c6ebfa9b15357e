// StaticPCA / StaticPCA-H (baselines/static_pca): registered through the registry from a bases file,
// frozen bases, anchors as declared, rank D reproduces the full cache.
#include <gtest/gtest.h>

#include "framework/core/error.h"
#include "framework/io/bases_h5.h"
#include "tests/methods/ojakv/ojakv_support.h"
#include "tests/support/temp_dir.h"

namespace kvlab {
namespace {

kv::KvFactory factory(const std::string& method,
                      const std::vector<std::pair<std::string, std::string>>& set) {
  ParamValues p(kv::KvRegistry::instance().find(method).params);
  for (const auto& [k, v] : set) p.set_from_string(k, v, "test");
  return kv::make_kv_factory(method, p);
}

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0.0, s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]));
    s = std::max(s, std::fabs(static_cast<double>(b[i])));
  }
  return m / s;
}

// Both registrations, from an HDF5 bases file: rank D reproduces the full cache's logits (f32
// coefficients; 2e-4 of the logit scale, as for OjaKV), rank D/2 does not; the bases never move;
// static_pca keeps no full-rank token, static_pca_h exactly n_start + n_recent.
TEST(StaticPca, RegisteredFrozenAndExactAtFullRank) {
  testing::TempDir dir("kvlab_static_pca");
  const std::string path = dir.sub("bases.h5");
  const auto bases = testing::random_bases(2, 2, 16, 17);
  io::save_bases_h5(path, *bases);
  const auto ids = testing::token_ids(100, 8);
  const int64_t prompt = 70;
  const auto want = testing::model_logits(
      kv::make_kv_factory("full_cache", ParamValues(std::vector<ParamDecl>{})), ids, prompt);
  for (const char* method : {"static_pca", "static_pca_h"}) {
    std::vector<std::pair<std::string, std::string>> set = {
        {"bases", path}, {"rank_mode", "fixed"}, {"rank_k", "16"}, {"rank_v", "16"},
        {"coeff_dtype", "f32"}};
    if (std::string(method) == "static_pca_h") {
      set.push_back({"n_start", "3"});
      set.push_back({"n_recent", "5"});
    }
    model::Sequence* seq = nullptr;
    const auto got = testing::model_logits(factory(method, set), ids, prompt, 512, &seq);
    std::unique_ptr<model::Sequence> own(seq);
    EXPECT_LT(max_rel_diff(got, want), 2e-4) << method;
    for (int64_t l = 0; l < 2; ++l) {
      auto* c = dynamic_cast<methods::OjaKvCache*>(&seq->cache(l));
      ASSERT_NE(c, nullptr);
      EXPECT_EQ(c->basis_updates(), 0);
      EXPECT_FALSE(c->params().online_update);
      for (int64_t g = 0; g < 2; ++g) {
        const linalg::Mat init = bases->qk[static_cast<size_t>(l * 2 + g)].top(16);
        const auto& U = c->basis_k(g);
        double d = 0.0;
        for (size_t i = 0; i < U.a.size(); ++i) d = std::max(d, std::fabs(U.a[i] - init.a[i]));
        EXPECT_LT(d, 1e-6) << "frozen (up to the f32 file round trip)";
      }
      const MemoryReport r = c->memory();
      EXPECT_EQ(r.full_tokens, std::string(method) == "static_pca" ? 0 : 8) << method;
      EXPECT_EQ(r.compressed_tokens + r.full_tokens, 100);
    }
    set[2].second = "8";
    set[3].second = "8";
    const auto half = testing::model_logits(factory(method, set), ids, prompt);
    EXPECT_GT(max_rel_diff(half, want), 1e-2) << method;
  }
}

// The Oja knobs are not declared by the static registrations (they would mean nothing).
TEST(StaticPca, DeclaresOnlyStaticKnobs) {
  for (const char* method : {"static_pca", "static_pca_h"}) {
    ParamValues p(kv::KvRegistry::instance().find(method).params);
    EXPECT_THROW(p.set_from_string("eta_dec", "0.1", "test"), Error) << method;
    EXPECT_THROW(p.set_from_string("online_update", "true", "test"), Error) << method;
  }
  ParamValues p(kv::KvRegistry::instance().find("static_pca").params);
  EXPECT_THROW(p.set_from_string("n_start", "4", "test"), Error);
  ParamValues h(kv::KvRegistry::instance().find("static_pca_h").params);
  EXPECT_NO_THROW(h.set_from_string("n_start", "4", "test"));
}

}  // namespace
}  // namespace kvlab
