#include "framework/io/bases_h5.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "framework/core/error.h"
#include "framework/io/h5_file.h"

namespace kvlab::io {
namespace {

kv::Eigenbasis random_eigenbasis(int64_t D, std::mt19937& g) {
  std::normal_distribution<double> N(0.0, 1.0);
  linalg::Mat X(3 * D, D);
  for (double& x : X.a) x = N(g);
  linalg::SymEig e = linalg::sym_eig(linalg::matmul_tn(X, X));
  return {e.vectors, e.values};
}

TEST(BasesH5, RoundTripKeepsDirectionsSignsAndValues) {
  const int64_t L = 2, G = 3, D = 8;
  std::mt19937 g(7);
  kv::Bases b;
  b.n_layers = L;
  b.G = G;
  b.D = D;
  b.frame = "pre_rope";
  b.source = "test: random";
  b.tokens = 1234;
  for (auto* v : {&b.qk, &b.k, &b.v})
    for (int64_t i = 0; i < L * G; ++i) v->push_back(random_eigenbasis(D, g));
  const std::string path =
      (std::filesystem::temp_directory_path() / "kvlab_bases_roundtrip.h5").string();
  save_bases_h5(path, b);
  kv::Bases r = load_bases_h5(path);
  EXPECT_EQ(r.n_layers, L);
  EXPECT_EQ(r.G, G);
  EXPECT_EQ(r.D, D);
  EXPECT_EQ(r.frame, "pre_rope");
  EXPECT_EQ(r.source, "test: random");
  EXPECT_EQ(r.tokens, 1234);
  for (kv::BasisKind kind : {kv::BasisKind::qk, kv::BasisKind::k, kv::BasisKind::v})
    for (int64_t l = 0; l < L; ++l)
      for (int64_t h = 0; h < G; ++h) {
        const auto& a = b.get(kind, l, h);
        const auto& c = r.get(kind, l, h);
        EXPECT_LT(linalg::orthonormality_error(c.vectors), 1e-12);
        for (size_t i = 0; i < a.vectors.a.size(); ++i)
          ASSERT_NEAR(a.vectors.a[i], c.vectors.a[i], 1e-6);
        for (int64_t i = 0; i < D; ++i)
          EXPECT_NEAR(a.values[i], c.values[i], 1e-6 * (1.0 + a.values[i]));
      }
  EXPECT_THROW(r.get(kv::BasisKind::k, L, 0), Error);
  EXPECT_EQ(load_bases_h5_cached(path).get(), load_bases_h5_cached(path).get());
  std::filesystem::remove(path);
}

TEST(BasesH5, MissingOrForeignFileNamesThePath) {
  try {
    load_bases_h5("/nonexistent/bases.h5");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/bases.h5"), std::string::npos);
  }
  const std::string path =
      (std::filesystem::temp_directory_path() / "kvlab_bases_foreign.h5").string();
  {
    H5Writer w(path);
    float x = 1.f;
    w.write_f32("x", &x, {1});
    w.close();
  }
  try {
    load_bases_h5(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("kvlab_bases_version"), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace kvlab::io
