#include "framework/linalg/linalg.h"

#include <lapacke.h>

#include <algorithm>
#include <cmath>

#include "framework/core/error.h"

namespace kvlab::linalg {

Mat identity(int64_t n) {
  Mat I(n, n);
  for (int64_t i = 0; i < n; ++i) I(i, i) = 1.0;
  return I;
}

Mat transpose(const Mat& A) {
  Mat T(A.cols, A.rows);
  for (int64_t i = 0; i < A.rows; ++i)
    for (int64_t j = 0; j < A.cols; ++j) T(j, i) = A(i, j);
  return T;
}

Mat matmul(const Mat& A, const Mat& B) {
  KVLAB_CHECK(A.cols == B.rows) << A.rows << "x" << A.cols << " * " << B.rows << "x" << B.cols;
  Mat C(A.rows, B.cols);
  for (int64_t i = 0; i < A.rows; ++i)
    for (int64_t k = 0; k < A.cols; ++k) {
      const double a = A(i, k);
      if (a == 0.0) continue;
      const double* b = B.data() + k * B.cols;
      double* c = C.data() + i * C.cols;
      for (int64_t j = 0; j < B.cols; ++j) c[j] += a * b[j];
    }
  return C;
}

Mat matmul_tn(const Mat& A, const Mat& B) {
  KVLAB_CHECK(A.rows == B.rows) << A.rows << "x" << A.cols << "^T * " << B.rows << "x" << B.cols;
  Mat C(A.cols, B.cols);
  for (int64_t k = 0; k < A.rows; ++k) {
    const double* a = A.data() + k * A.cols;
    const double* b = B.data() + k * B.cols;
    for (int64_t i = 0; i < A.cols; ++i) {
      if (a[i] == 0.0) continue;
      double* c = C.data() + i * C.cols;
      for (int64_t j = 0; j < B.cols; ++j) c[j] += a[i] * b[j];
    }
  }
  return C;
}

double frobenius(const Mat& A) {
  double s = 0.0;
  for (double x : A.a) s += x * x;
  return std::sqrt(s);
}

Mat leading_columns(const Mat& A, int64_t r) {
  KVLAB_CHECK(r >= 0 && r <= A.cols) << "r=" << r << " cols=" << A.cols;
  Mat B(A.rows, r);
  for (int64_t i = 0; i < A.rows; ++i)
    for (int64_t j = 0; j < r; ++j) B(i, j) = A(i, j);
  return B;
}

namespace {
void lapack_check(lapack_int info, const char* routine, int64_t m, int64_t n) {
  if (info != 0) fail("LAPACK ", routine, " failed on a ", m, "x", n, " matrix (info ", info, ")");
}

// Flips column j of M (and row j of Vt when given) so its largest-|x| entry is positive.
void fix_column_signs(Mat& M, Mat* Vt) {
  for (int64_t j = 0; j < M.cols; ++j) {
    int64_t best = 0;
    for (int64_t i = 1; i < M.rows; ++i)
      if (std::abs(M(i, j)) > std::abs(M(best, j))) best = i;
    if (M.rows == 0 || M(best, j) >= 0.0) continue;
    for (int64_t i = 0; i < M.rows; ++i) M(i, j) = -M(i, j);
    if (Vt)
      for (int64_t c = 0; c < Vt->cols; ++c) (*Vt)(j, c) = -(*Vt)(j, c);
  }
}
}  // namespace

Mat qr_q(const Mat& A) {
  const int64_t m = A.rows, n = A.cols;
  KVLAB_CHECK(m >= n) << "thin QR needs rows >= cols, got " << m << "x" << n;
  if (n == 0) return Mat(m, 0);
  Mat Q = A;
  std::vector<double> tau(static_cast<size_t>(n));
  lapack_check(LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, m, n, Q.data(), n, tau.data()), "dgeqrf", m, n);
  std::vector<double> rdiag(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) rdiag[j] = Q(j, j);
  lapack_check(LAPACKE_dorgqr(LAPACK_ROW_MAJOR, m, n, n, Q.data(), n, tau.data()), "dorgqr", m,
               n);
  for (int64_t j = 0; j < n; ++j)
    if (rdiag[j] < 0.0)
      for (int64_t i = 0; i < m; ++i) Q(i, j) = -Q(i, j);
  return Q;
}

SymEig sym_eig(const Mat& S) {
  const int64_t n = S.rows;
  KVLAB_CHECK(S.cols == n) << "sym_eig needs a square matrix, got " << S.rows << "x" << S.cols;
  SymEig out;
  if (n == 0) return out;
  Mat V = S;
  std::vector<double> w(static_cast<size_t>(n));
  lapack_check(LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', n, V.data(), n, w.data()), "dsyevd", n,
               n);
  // LAPACK returns ascending; reverse to descending.
  out.values.assign(w.rbegin(), w.rend());
  out.vectors = Mat(n, n);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) out.vectors(i, j) = V(i, n - 1 - j);
  fix_column_signs(out.vectors, nullptr);
  return out;
}

Svd svd_thin(const Mat& A) {
  const int64_t m = A.rows, n = A.cols, k = std::min(m, n);
  Svd out;
  out.U = Mat(m, k);
  out.Vt = Mat(k, n);
  out.s.assign(static_cast<size_t>(k), 0.0);
  if (k == 0) return out;
  Mat W = A;
  lapack_check(LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', m, n, W.data(), n, out.s.data(),
                              out.U.data(), k, out.Vt.data(), n),
               "dgesdd", m, n);
  fix_column_signs(out.U, &out.Vt);
  return out;
}

void add_gram(Mat& S, const float* X, int64_t m, int64_t d, int64_t row_stride) {
  KVLAB_CHECK(S.rows == d && S.cols == d) << "gram " << S.rows << "x" << S.cols << " vs d=" << d;
  std::vector<double> x(static_cast<size_t>(d));
  for (int64_t t = 0; t < m; ++t) {
    const float* row = X + t * row_stride;
    for (int64_t i = 0; i < d; ++i) x[i] = row[i];
    for (int64_t i = 0; i < d; ++i) {
      double* s = S.data() + i * d;
      const double xi = x[i];
      for (int64_t j = i; j < d; ++j) s[j] += xi * x[j];
    }
  }
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = 0; j < i; ++j) S(i, j) = S(j, i);
}

Pca pca_uncentred(const Mat& X, int64_t r) {
  const int64_t d = X.cols;
  KVLAB_CHECK(r >= 1 && r <= d) << "rank " << r << " outside [1, " << d << "]";
  Mat S = matmul_tn(X, X);
  const double inv = X.rows > 0 ? 1.0 / static_cast<double>(X.rows) : 0.0;
  for (double& v : S.a) v *= inv;
  SymEig e = sym_eig(S);
  Pca out;
  out.basis = leading_columns(e.vectors, r);
  out.energy = std::move(e.values);
  for (double& v : out.energy) v = std::max(v, 0.0);  // round-off below zero
  return out;
}

int64_t rank_for_energy(const std::vector<double>& values, double theta) {
  KVLAB_CHECK(theta > 0.0 && theta <= 1.0) << "energy threshold " << theta << " outside (0, 1]";
  const int64_t n = static_cast<int64_t>(values.size());
  double total = 0.0;
  for (double v : values) total += std::max(v, 0.0);
  if (total <= 0.0) return n;
  double acc = 0.0;
  for (int64_t r = 0; r < n; ++r) {
    acc += std::max(values[r], 0.0);
    // Relative slack so theta = 1 is reached despite summation round-off.
    if (acc >= theta * total * (1.0 - 1e-12)) return r + 1;
  }
  return n;
}

std::vector<double> principal_cosines(const Mat& U, const Mat& P) {
  KVLAB_CHECK(U.rows == P.rows) << "bases in different dimensions: " << U.rows << " vs " << P.rows;
  Svd s = svd_thin(matmul_tn(U, P));
  for (double& c : s.s) c = std::clamp(c, 0.0, 1.0);
  return s.s;
}

double orthonormality_error(const Mat& U) {
  Mat G = matmul_tn(U, U);
  for (int64_t i = 0; i < G.rows; ++i) G(i, i) -= 1.0;
  return frobenius(G);
}

double projection_distance(const Mat& U, const Mat& P) {
  // ||UU^T - PP^T||_F^2 = r1 + r2 - 2 ||U^T P||_F^2 for orthonormal U, P.
  const double c = frobenius(matmul_tn(U, P));
  const double v = static_cast<double>(U.cols + P.cols) - 2.0 * c * c;
  return std::sqrt(std::max(v, 0.0));
}

}  // namespace kvlab::linalg
