#include "methods/ojakv/oja_update.h"

#include <cmath>

namespace kvlab::methods {

linalg::Mat batch_second_moment(const float* X, int64_t m, int64_t d, int64_t stride, CovNorm norm,
                                double* trace_raw) {
  linalg::Mat C(d, d);
  int64_t used = 0;
  double raw = 0.0;
  std::vector<double> row(static_cast<size_t>(d));
  for (int64_t i = 0; i < m; ++i) {
    const float* x = X + i * stride;
    double n2 = 0.0;
    for (int64_t j = 0; j < d; ++j) {
      row[static_cast<size_t>(j)] = x[j];
      n2 += static_cast<double>(x[j]) * x[j];
    }
    raw += n2;
    double w = 1.0;
    if (norm == CovNorm::kTokenL2) {
      if (n2 == 0.0) continue;
      w = 1.0 / n2;
    }
    ++used;
    for (int64_t a = 0; a < d; ++a) {
      const double ra = w * row[static_cast<size_t>(a)];
      double* c = C.data() + a * d;
      for (int64_t b = a; b < d; ++b) c[b] += ra * row[static_cast<size_t>(b)];
    }
  }
  if (trace_raw) *trace_raw = m > 0 ? raw / static_cast<double>(m) : 0.0;
  if (used == 0) return C;
  double tr = 0.0;
  for (int64_t a = 0; a < d; ++a) tr += C(a, a);
  double scale = 1.0 / static_cast<double>(used);
  if (norm == CovNorm::kTrace && tr > 0.0) scale = 1.0 / tr;  // (X^T X / m) / tr(X^T X / m)
  for (int64_t a = 0; a < d; ++a)
    for (int64_t b = a; b < d; ++b) {
      C(a, b) *= scale;
      C(b, a) = C(a, b);
    }
  return C;
}

OjaStepStats oja_step(linalg::Mat& U, const linalg::Mat& C, double eta) {
  const linalg::Mat CU = linalg::matmul(C, U);              // [d, r]
  const linalg::Mat UtCU = linalg::matmul_tn(U, CU);        // [r, r]
  const linalg::Mat UUtCU = linalg::matmul(U, UtCU);        // [d, r]
  linalg::Mat Y = U;
  double g2 = 0.0;
  for (size_t i = 0; i < Y.a.size(); ++i) {
    const double gi = CU.a[i] - UUtCU.a[i];  // Oja gradient C U - U U^T C U
    g2 += gi * gi;
    Y.a[i] += eta * gi;
  }
  linalg::Mat Q = linalg::qr_q(Y);
  OjaStepStats s;
  s.step = eta * std::sqrt(g2);
  double d2 = 0.0;
  for (size_t i = 0; i < Q.a.size(); ++i) d2 += (Q.a[i] - U.a[i]) * (Q.a[i] - U.a[i]);
  s.delta = std::sqrt(d2);
  U = std::move(Q);
  s.orth_error = linalg::orthonormality_error(U);
  return s;
}

}  // namespace kvlab::methods
