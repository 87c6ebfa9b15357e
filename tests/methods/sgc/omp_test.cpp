// OMP and the counter-based projector of SGC (methods/sgc/omp.h, projection.h): exact recovery
// of planted sparse vectors above k ~ C s log d and its collapse below, both solvers against a
// naive f64 OMP (normal equations re-solved from scratch each atom), projector properties.
#include "methods/sgc/omp.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "framework/core/rng.h"
#include "methods/sgc/projection.h"

namespace kvlab::sgc {
namespace {

struct Planted {
  std::vector<int64_t> idx;  // ascending
  std::vector<double> val;
};

Planted plant(int64_t d, int64_t s, uint64_t seed) {
  Rng rng(seed);
  std::vector<int64_t> all(static_cast<size_t>(d));
  for (int64_t i = 0; i < d; ++i) all[static_cast<size_t>(i)] = i;
  for (int64_t i = 0; i < s; ++i)  // partial Fisher-Yates
    std::swap(all[static_cast<size_t>(i)],
              all[static_cast<size_t>(
                  i + static_cast<int64_t>(rng.below(static_cast<uint64_t>(d - i))))]);
  Planted p;
  p.idx.assign(all.begin(), all.begin() + s);
  std::sort(p.idx.begin(), p.idx.end());
  for (int64_t i = 0; i < s; ++i) {
    const double mag = 1.0 + std::fabs(rng.normal());  // bounded away from 0
    p.val.push_back(rng.uniform() < 0.5 ? -mag : mag);
  }
  return p;
}

// Max |x_hat - x| over all d entries.
double recovery_error(const OmpResult& r, const Planted& p, int64_t d) {
  std::vector<double> dense(static_cast<size_t>(d), 0.0);
  for (size_t e = 0; e < r.support.size(); ++e) dense[static_cast<size_t>(r.support[e])] += r.x[e];
  for (size_t e = 0; e < p.idx.size(); ++e) dense[static_cast<size_t>(p.idx[e])] -= p.val[e];
  double worst = 0;
  for (double v : dense) worst = std::max(worst, std::fabs(v));
  return worst;
}

double recovery_rate(ProjectionKind kind, int64_t k, int64_t d, int64_t s, OmpSolver solver,
                     int seeds) {
  int ok = 0;
  for (int seed = 0; seed < seeds; ++seed) {
    const Projector A(kind, k, d, 1000 + seed, 7, /*stored=*/false);
    const Planted p = plant(d, s, 5000 + seed);
    std::vector<double> y(static_cast<size_t>(k), 0.0);
    A.apply_sparse(p.idx, p.val, y.data());
    const OmpResult r = omp(A, y, {s, 0.0, solver});
    if (recovery_error(r, p, d) <= 1e-6) ++ok;
  }
  return static_cast<double>(ok) / seeds;
}

TEST(Omp, RecoversPlantedSparseVectorAboveTheBound) {
  // d = 512, s = 6: k = 128 >= 3.4 * s * ln d (and >= 4 s ln(d/s) = 107, methods.md 3.5).
  const int64_t d = 512, s = 6, k = 128;
  for (auto solver : {OmpSolver::kCholesky, OmpSolver::kQr}) {
    EXPECT_EQ(recovery_rate(ProjectionKind::kGaussian, k, d, s, solver, 60), 1.0)
        << "solver " << static_cast<int>(solver);
    EXPECT_EQ(recovery_rate(ProjectionKind::kRademacher, k, d, s, solver, 60), 1.0);
  }
}

TEST(Omp, RecoveryCollapsesBelowTheBound) {
  // Same d, s with k = 2s = 12 measurements: far below s log d, exact recovery becomes rare
  // (compressed-sensing phase transition); the rate must fall clearly as k shrinks. Measured
  // (60 seeds, cholesky): k = 12: 0, 20: 0, 30: 20, 48: 58, 64: 59, 96 and 128: 60 of 60.
  const int64_t d = 512, s = 6;
  const double high = recovery_rate(ProjectionKind::kGaussian, 128, d, s, OmpSolver::kCholesky, 60);
  const double mid = recovery_rate(ProjectionKind::kGaussian, 30, d, s, OmpSolver::kCholesky, 60);
  const double low = recovery_rate(ProjectionKind::kGaussian, 12, d, s, OmpSolver::kCholesky, 60);
  EXPECT_EQ(high, 1.0);
  EXPECT_LE(low, 0.2) << "k = 12";
  EXPECT_LT(low, mid + 1e-12);
  EXPECT_LT(mid, high) << "k = 30 should already lose some seeds";
}

// Naive OMP: same greedy rule, least squares by the normal equations solved from scratch with
// Gaussian elimination (partial pivoting) after every atom. Independent of the incremental code.
OmpResult naive_omp(const Projector& A, const std::vector<double>& y, int64_t atoms) {
  const int64_t k = A.k(), d = A.d();
  std::vector<std::vector<double>> cols(static_cast<size_t>(d),
                                        std::vector<double>(static_cast<size_t>(k)));
  std::vector<float> c(static_cast<size_t>(k));
  for (int64_t j = 0; j < d; ++j) {
    A.column(j, c.data());
    for (int64_t i = 0; i < k; ++i)
      cols[static_cast<size_t>(j)][static_cast<size_t>(i)] = c[static_cast<size_t>(i)];
  }
  OmpResult r;
  std::vector<double> rho = y;
  std::vector<bool> used(static_cast<size_t>(d), false);
  for (int64_t t = 0; t < atoms; ++t) {
    int64_t best = -1;
    double bs = 0;
    for (int64_t j = 0; j < d; ++j) {
      if (used[static_cast<size_t>(j)]) continue;
      double dot = 0, nn = 0;
      for (int64_t i = 0; i < k; ++i) {
        dot += cols[static_cast<size_t>(j)][static_cast<size_t>(i)] * rho[static_cast<size_t>(i)];
        nn += cols[static_cast<size_t>(j)][static_cast<size_t>(i)] *
              cols[static_cast<size_t>(j)][static_cast<size_t>(i)];
      }
      const double sc = std::fabs(dot) / std::sqrt(nn);
      if (sc > bs) bs = sc, best = j;
    }
    used[static_cast<size_t>(best)] = true;
    r.support.push_back(best);
    const auto n = r.support.size();
    std::vector<std::vector<double>> M(n, std::vector<double>(n + 1));
    for (size_t a = 0; a < n; ++a) {
      for (size_t b = 0; b < n; ++b)
        for (int64_t i = 0; i < k; ++i)
          M[a][b] += cols[static_cast<size_t>(r.support[a])][static_cast<size_t>(i)] *
                     cols[static_cast<size_t>(r.support[b])][static_cast<size_t>(i)];
      for (int64_t i = 0; i < k; ++i)
        M[a][n] += cols[static_cast<size_t>(r.support[a])][static_cast<size_t>(i)] *
                   y[static_cast<size_t>(i)];
    }
    for (size_t col = 0; col < n; ++col) {
      size_t piv = col;
      for (size_t a = col + 1; a < n; ++a)
        if (std::fabs(M[a][col]) > std::fabs(M[piv][col])) piv = a;
      std::swap(M[col], M[piv]);
      for (size_t a = col + 1; a < n; ++a) {
        const double f = M[a][col] / M[col][col];
        for (size_t b = col; b <= n; ++b) M[a][b] -= f * M[col][b];
      }
    }
    r.x.assign(n, 0.0);
    for (size_t a = n; a-- > 0;) {
      double v = M[a][n];
      for (size_t b = a + 1; b < n; ++b) v -= M[a][b] * r.x[b];
      r.x[a] = v / M[a][a];
    }
    rho = y;
    for (size_t a = 0; a < n; ++a)
      for (int64_t i = 0; i < k; ++i)
        rho[static_cast<size_t>(i)] -=
            cols[static_cast<size_t>(r.support[a])][static_cast<size_t>(i)] * r.x[a];
  }
  return r;
}

TEST(Omp, BothSolversMatchNaiveLeastSquares) {
  // A dense (non-sparse) y: every atom's least squares matters.
  for (int seed = 0; seed < 10; ++seed) {
    const Projector A(ProjectionKind::kGaussian, 24, 60, seed, 3, false);
    Rng rng(seed + 77);
    std::vector<double> y(24);
    for (auto& v : y) v = rng.normal();
    const OmpResult want = naive_omp(A, y, 9);
    for (auto solver : {OmpSolver::kCholesky, OmpSolver::kQr}) {
      const OmpResult got = omp(A, y, {9, 0.0, solver});
      ASSERT_EQ(got.support, want.support) << "seed " << seed;
      for (size_t e = 0; e < got.x.size(); ++e)
        EXPECT_NEAR(got.x[e], want.x[e], 1e-9 * (1 + std::fabs(want.x[e]))) << "seed " << seed;
      EXPECT_EQ(got.iterations, 9);
      EXPECT_GT(got.residual, 0.0);
      EXPECT_LT(got.residual, 1.0);
    }
  }
}

TEST(Omp, ToleranceStopsEarlyAndZeroInputGivesNothing) {
  const int64_t d = 300, s = 4, k = 80;
  const Projector A(ProjectionKind::kGaussian, k, d, 11, 0, false);
  const Planted p = plant(d, s, 12);
  std::vector<double> y(k, 0.0);
  A.apply_sparse(p.idx, p.val, y.data());
  const OmpResult r = omp(A, y, {20, 1e-9, OmpSolver::kCholesky});
  EXPECT_EQ(r.iterations, s);  // stops once the planted support explains y
  EXPECT_LE(r.residual, 1e-9);
  const OmpResult loose = omp(A, y, {20, 0.9, OmpSolver::kCholesky});
  EXPECT_LT(loose.iterations, s);
  const OmpResult zero = omp(A, std::vector<double>(k, 0.0), {5, 0.0, OmpSolver::kQr});
  EXPECT_EQ(zero.iterations, 0);
}

TEST(Projector, ColumnsAreReproducibleInAnyOrderAndStoredEqualsRegenerated) {
  for (auto kind : {ProjectionKind::kGaussian, ProjectionKind::kRademacher}) {
    const Projector gen(kind, 33, 50, 9, 4, false), st(kind, 33, 50, 9, 4, true);
    std::vector<float> a(33), b(33);
    for (int64_t j = 49; j >= 0; --j) {
      gen.column(j, a.data());
      st.column(j, b.data());
      EXPECT_EQ(a, b) << "column " << j;
    }
    const Projector other_seed(kind, 33, 50, 10, 4, false), other_stream(kind, 33, 50, 9, 5, false);
    gen.column(3, a.data());
    other_seed.column(3, b.data());
    EXPECT_NE(a, b);
    other_stream.column(3, b.data());
    EXPECT_NE(a, b);
    EXPECT_EQ(st.bytes(), 4 * 33 * 50);
    EXPECT_EQ(gen.bytes(), 0);
  }
}

TEST(Projector, DistributionsHaveTheDeclaredMoments) {
  const int64_t k = 64, d = 4000;
  const Projector g(ProjectionKind::kGaussian, k, d, 1, 0, false);
  double s1 = 0, s2 = 0, s4 = 0;
  std::vector<float> c(k);
  for (int64_t j = 0; j < d; ++j) {
    g.column(j, c.data());
    for (float v : c)
      s1 += v, s2 += double(v) * v, s4 += std::pow(double(v) * std::sqrt(double(k)), 4);
  }
  const double n = static_cast<double>(k * d);
  // N(0, 1/k): mean 0 (sd of the estimate 1/sqrt(k n) = 2.5e-4), variance 1/k to 1 %, kurtosis 3.
  EXPECT_NEAR(s1 / n, 0.0, 1.5e-3);
  EXPECT_NEAR(s2 / n * k, 1.0, 0.01);
  EXPECT_NEAR(s4 / n, 3.0, 0.06);
  const Projector r(ProjectionKind::kRademacher, 70, 10, 1, 0, false);
  c.resize(70);
  int pos = 0;
  for (int64_t j = 0; j < 10; ++j) {
    r.column(j, c.data());
    for (int64_t i = 0; i < 70; ++i) {
      EXPECT_EQ(std::fabs(c[i]), static_cast<float>(1.0 / std::sqrt(70.0)));
      pos += c[i] > 0;
    }
  }
  EXPECT_GT(pos, 280);
  EXPECT_LT(pos, 420);
}

TEST(Projector, InverseNormalCdfMatchesReferenceQuantiles) {
  // Quantiles of N(0, 1) from Python's statistics.NormalDist().inv_cdf (exact to ~1e-15).
  const std::pair<double, double> q[] = {
      {1e-9, -5.9978070150076865}, {0.001, -3.090232306167813},  {0.02, -2.0537489106318225},
      {0.1, -1.2815515655446008},  {0.3, -0.5244005127080407},   {0.5, 0.0},
      {0.97, 1.8807936081512504},  {0.999999, 4.753424308817089}};
  for (const auto& [p, z] : q) EXPECT_NEAR(inverse_normal_cdf(p), z, 5e-8 * std::fabs(z)) << p;
}

TEST(Projector, ApplySparseTouchesOnlyTheGivenColumns) {
  Projector A(ProjectionKind::kGaussian, 16, 40, 2, 0, true);
  const std::vector<int64_t> idx = {3, 17, 39};
  const std::vector<double> val = {0.5, -2.0, 1.25};
  std::vector<double> want(16, 0.0);
  std::vector<float> c(16);
  for (size_t e = 0; e < idx.size(); ++e) {
    A.column(idx[e], c.data());
    for (int i = 0; i < 16; ++i) want[i] += val[e] * c[i];
  }
  // Poison every other column: a touch would turn the result into NaN.
  for (int64_t j = 0; j < 40; ++j)
    if (std::find(idx.begin(), idx.end(), j) == idx.end())
      for (int i = 0; i < 16; ++i)
        A.storage()[static_cast<size_t>(j * 16 + i)] = std::numeric_limits<float>::quiet_NaN();
  std::vector<double> got(16, 0.0);
  A.apply_sparse(idx, val, got.data());
  for (int i = 0; i < 16; ++i) EXPECT_EQ(got[i], want[i]);
}

}  // namespace
}  // namespace kvlab::sgc
