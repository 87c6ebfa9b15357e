// framework/linalg against exact properties: orthonormality, reconstruction, sign conventions,
// known angles between planted subspaces.
#include "framework/linalg/linalg.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace kvlab::linalg {
namespace {

Mat random_mat(int64_t m, int64_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<double> N(0.0, 1.0);
  Mat A(m, n);
  for (double& x : A.a) x = N(g);
  return A;
}

double max_abs_diff(const Mat& A, const Mat& B) {
  double m = 0.0;
  for (size_t i = 0; i < A.a.size(); ++i) m = std::max(m, std::abs(A.a[i] - B.a[i]));
  return m;
}

TEST(Linalg, QrIsOrthonormalSpansInputWithPositiveR) {
  Mat A = random_mat(40, 7, 1);
  Mat Q = qr_q(A);
  EXPECT_LT(orthonormality_error(Q), 1e-12);
  Mat R = matmul_tn(Q, A);  // Q^T A = R: upper triangular, positive diagonal
  for (int64_t i = 0; i < R.rows; ++i) {
    EXPECT_GT(R(i, i), 0.0);
    for (int64_t j = 0; j < i; ++j) EXPECT_NEAR(R(i, j), 0.0, 1e-12);
  }
  EXPECT_LT(max_abs_diff(matmul(Q, R), A), 1e-12);
  // A column with a negative leading entry still gets R_00 > 0 (sign fixed, not LAPACK's).
  Mat B = A;
  for (int64_t i = 0; i < B.rows; ++i) B(i, 0) = -std::abs(B(i, 0));
  Mat QB = qr_q(B);
  EXPECT_GT(matmul_tn(QB, B)(0, 0), 0.0);
}

TEST(Linalg, SymEigReconstructsDescendingAndSigned) {
  Mat X = random_mat(30, 6, 2);
  Mat S = matmul_tn(X, X);
  SymEig e = sym_eig(S);
  ASSERT_EQ(e.values.size(), 6u);
  for (size_t i = 1; i < e.values.size(); ++i) EXPECT_GE(e.values[i - 1], e.values[i]);
  Mat VD = e.vectors;
  for (int64_t i = 0; i < 6; ++i)
    for (int64_t j = 0; j < 6; ++j) VD(i, j) *= e.values[j];
  EXPECT_LT(max_abs_diff(matmul(VD, transpose(e.vectors)), S), 1e-9);
  for (int64_t j = 0; j < 6; ++j) {
    int64_t best = 0;
    for (int64_t i = 1; i < 6; ++i)
      if (std::abs(e.vectors(i, j)) > std::abs(e.vectors(best, j))) best = i;
    EXPECT_GT(e.vectors(best, j), 0.0);
  }
}

TEST(Linalg, SvdReconstructs) {
  for (auto [m, n] : {std::pair<int64_t, int64_t>{9, 5}, {5, 9}}) {
    Mat A = random_mat(m, n, 3);
    Svd s = svd_thin(A);
    Mat US = s.U;
    for (int64_t i = 0; i < US.rows; ++i)
      for (int64_t j = 0; j < US.cols; ++j) US(i, j) *= s.s[j];
    EXPECT_LT(max_abs_diff(matmul(US, s.Vt), A), 1e-12) << m << "x" << n;
    EXPECT_LT(orthonormality_error(s.U), 1e-12);
  }
}

TEST(Linalg, PcaFindsPlantedSubspaceAndAngles) {
  // Rows in span(B) (B [d, 3] orthonormal) plus tiny noise: PCA(3) recovers span(B).
  const int64_t d = 16, r = 3, m = 500;
  Mat B = qr_q(random_mat(d, r, 4));
  Mat C = random_mat(m, r, 5);
  Mat X = matmul(C, transpose(B));
  Mat noise = random_mat(m, d, 6);
  for (size_t i = 0; i < X.a.size(); ++i) X.a[i] += 1e-6 * noise.a[i];
  Pca p = pca_uncentred(X, r);
  for (double c : principal_cosines(p.basis, B)) EXPECT_NEAR(c, 1.0, 1e-9);
  EXPECT_LT(projection_distance(p.basis, B), 1e-6);
  EXPECT_EQ(rank_for_energy(p.energy, 0.999999), r);
  // A basis orthogonal to B: all cosines 0, projection distance sqrt(2r).
  Mat Q = qr_q(random_mat(d, r, 7));
  // Remove span(B) from Q and re-orthonormalise.
  Mat Qp = Q;
  Mat BBtQ = matmul(B, matmul_tn(B, Q));
  for (size_t i = 0; i < Qp.a.size(); ++i) Qp.a[i] -= BBtQ.a[i];
  Qp = qr_q(Qp);
  for (double c : principal_cosines(Qp, B)) EXPECT_NEAR(c, 0.0, 1e-12);
  EXPECT_NEAR(projection_distance(Qp, B), std::sqrt(2.0 * r), 1e-12);
}

TEST(Linalg, KnownPrincipalAngle) {
  // span(e0) vs span(cos a e0 + sin a e1): cosine = cos a.
  const double a = 0.3;
  Mat U(3, 1), P(3, 1);
  U(0, 0) = 1.0;
  P(0, 0) = std::cos(a);
  P(1, 0) = std::sin(a);
  auto c = principal_cosines(U, P);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_NEAR(c[0], std::cos(a), 1e-15);
  EXPECT_NEAR(projection_distance(U, P), std::sqrt(2.0) * std::sin(a), 1e-12);
}

TEST(Linalg, RankForEnergy) {
  std::vector<double> v = {4.0, 3.0, 2.0, 1.0};
  EXPECT_EQ(rank_for_energy(v, 0.4), 1);
  EXPECT_EQ(rank_for_energy(v, 0.41), 2);
  EXPECT_EQ(rank_for_energy(v, 0.7), 2);
  EXPECT_EQ(rank_for_energy(v, 1.0), 4);
  EXPECT_EQ(rank_for_energy({0.0, 0.0}, 0.5), 2);
}

TEST(Linalg, AddGramMatchesMatmul) {
  Mat X = random_mat(11, 5, 8);
  std::vector<float> xf(X.a.begin(), X.a.end());
  Mat Xf(11, 5);
  for (size_t i = 0; i < xf.size(); ++i) Xf.a[i] = xf[i];
  Mat S(5, 5);
  add_gram(S, xf.data(), 11, 5, 5);
  EXPECT_LT(max_abs_diff(S, matmul_tn(Xf, Xf)), 1e-12);
}

}  // namespace
}  // namespace kvlab::linalg
