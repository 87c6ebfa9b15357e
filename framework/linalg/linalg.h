// Small dense linear algebra shared by methods, calibration, experiments and optimizers:
// orthonormal bases (OjaKV, StaticPCA, GaLore, CESGC), symmetric eigendecomposition (PCA of
// d x d second moments), thin SVD, principal angles. f64 throughout: matrices here are small
// (d = 32..128 head dims, optimizer blocks up to a few thousand), accuracy matters more than speed.
//
// Layout: row-major. A basis U of r directions in R^d is stored [d, r] (column j is direction j),
// so a row vector x [d] projects to x U [r] and reconstructs as (x U) U^T [d].
// LAPACK (LAPACKE, Debian's liblapacke on OpenBLAS) does the factorisations; a non-zero info
// throws kvlab::Error naming the routine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kvlab::linalg {

// Row-major m x n matrix of doubles.
struct Mat {
  int64_t rows = 0, cols = 0;
  std::vector<double> a;  // [rows * cols]
  Mat() = default;
  Mat(int64_t r, int64_t c) : rows(r), cols(c), a(static_cast<size_t>(r * c), 0.0) {}
  double& operator()(int64_t i, int64_t j) { return a[static_cast<size_t>(i * cols + j)]; }
  double operator()(int64_t i, int64_t j) const { return a[static_cast<size_t>(i * cols + j)]; }
  double* data() { return a.data(); }
  const double* data() const { return a.data(); }
};

Mat identity(int64_t n);
Mat transpose(const Mat& A);
Mat matmul(const Mat& A, const Mat& B);      // A [m,k] B [k,n] -> [m,n]
Mat matmul_tn(const Mat& A, const Mat& B);   // A^T B: A [k,m], B [k,n] -> [m,n]
double frobenius(const Mat& A);
// Columns 0..r-1 of A [m, n>=r] -> [m, r].
Mat leading_columns(const Mat& A, int64_t r);

// Thin Householder QR of A [m, n], m >= n (LAPACK dgeqrf + dorgqr): returns Q [m, n] with
// orthonormal columns, column signs fixed so that diag(R) >= 0 (the unique QR when A has full
// column rank). Cost O(m n^2).
Mat qr_q(const Mat& A);

// Symmetric eigendecomposition of S [n, n] (LAPACK dsyevd; only the upper triangle is read).
// values descending; vectors [n, n], column j the eigenvector of values[j], each column signed
// so that its entry of largest magnitude is positive (ties: the first). Cost O(n^3).
struct SymEig {
  std::vector<double> values;
  Mat vectors;
};
SymEig sym_eig(const Mat& S);

// Thin SVD of A [m, n] (LAPACK dgesdd), k = min(m, n): U [m, k], s [k] descending, Vt [k, n];
// each column of U signed like sym_eig's vectors, Vt's rows flipped to match. Cost O(m n k).
struct Svd {
  Mat U;
  std::vector<double> s;
  Mat Vt;
};
Svd svd_thin(const Mat& A);

// Top-r principal directions of the rows of X [m, d] (uncentred second moment X^T X / m), via
// sym_eig of the d x d moment: basis [d, r] and all d eigenvalues (descending) of X^T X / m.
struct Pca {
  Mat basis;                   // [d, r]
  std::vector<double> energy;  // [d] eigenvalues of X^T X / m, descending
};
Pca pca_uncentred(const Mat& X, int64_t r);
// Accumulates X^T X (d x d, upper and lower) of rows X [m, d] given as floats into S.
void add_gram(Mat& S, const float* X, int64_t m, int64_t d, int64_t row_stride);

// Smallest r in [1, n] with sum_{i<r} values[i] / sum values >= theta (values descending,
// non-negative; theta in (0, 1]). Returns n when the total is zero.
int64_t rank_for_energy(const std::vector<double>& values, double theta);

// Cosines of the principal angles between span(U) and span(P) (both orthonormal columns, [d, r1]
// and [d, r2]): singular values of U^T P, descending, clipped to [0, 1]; min(r1, r2) of them.
std::vector<double> principal_cosines(const Mat& U, const Mat& P);
// ||U^T U - I||_F for U [d, r].
double orthonormality_error(const Mat& U);
// ||U U^T - P P^T||_F (projection distance), U [d, r1], P [d, r2].
double projection_distance(const Mat& U, const Mat& P);

}  // namespace kvlab::linalg
