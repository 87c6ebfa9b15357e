#include "methods/sgc/omp.h"

#include <algorithm>
#include <cmath>

#include "framework/core/error.h"

namespace kvlab::sgc {

namespace {

double norm2(std::span<const double> v) {
  double s = 0;
  for (double x : v) s += x * x;
  return std::sqrt(s);
}

}  // namespace

OmpResult omp(const Projector& A, std::span<const double> y, const OmpOptions& o) {
  const int64_t k = A.k(), d = A.d();
  KVLAB_CHECK(static_cast<int64_t>(y.size()) == k)
      << "omp: y has " << y.size() << " entries, k = " << k;
  KVLAB_CHECK(o.max_atoms >= 1) << "omp: max_atoms = " << o.max_atoms;
  const int64_t smax = std::min(o.max_atoms, std::min(d, k));
  OmpResult r;
  const double ynorm = norm2(y);
  if (ynorm == 0) return r;

  std::vector<double> rho(y.begin(), y.end());             // residual [k]
  std::vector<uint8_t> chosen(static_cast<size_t>(d), 0);  // [d]
  std::vector<double> cols;                                // chosen columns [t, k] (f64 copies)
  std::vector<double> fac(static_cast<size_t>(smax * smax),
                          0.0);  // L (cholesky) or R (qr), [smax, smax] row-major
  std::vector<double> q;         // qr: orthonormal Q [t, k]
  std::vector<double> z;         // cholesky: L^-1 A^T y; qr: Q^T y
  std::vector<float> col(static_cast<size_t>(k));
  cols.reserve(static_cast<size_t>(smax * k));
  r.workspace_bytes = static_cast<int64_t>(d + (2 * smax * k + smax * smax + 3 * k) * 8);

  auto rho_rel = [&] { return norm2(rho) / ynorm; };
  while (r.iterations < smax) {
    const double rel = rho_rel();
    if (rel == 0 || (o.tol > 0 && rel <= o.tol)) break;
    // 1. correlation pass over all columns: |a_j^T rho| / ||a_j||.
    int64_t best = -1;
    double best_score = 0;
    A.for_each_column([&](int64_t j, const float* a) {
      if (chosen[static_cast<size_t>(j)]) return;
      double dot = 0, nn = 0;
      for (int64_t i = 0; i < k; ++i) {
        const double ai = a[i];
        dot += ai * rho[static_cast<size_t>(i)];
        nn += ai * ai;
      }
      if (nn == 0) return;
      const double score = std::fabs(dot) / std::sqrt(nn);
      if (score > best_score) best_score = score, best = j;
    });
    if (best < 0) break;
    // 2.-3. add column `best` and update the factorisation.
    A.column(best, col.data());
    const int64_t t = r.iterations;
    std::vector<double> a(col.begin(), col.end());
    double aa = 0;
    for (double v : a) aa += v * v;
    if (o.solver == OmpSolver::kCholesky) {
      // New row of L: L[:t,:t] w = A_Lambda^T a, l_tt = sqrt(a^T a - w^T w).
      std::vector<double> w(static_cast<size_t>(t));
      for (int64_t i = 0; i < t; ++i) {
        double b = 0;
        for (int64_t e = 0; e < k; ++e)
          b += cols[static_cast<size_t>(i * k + e)] * a[static_cast<size_t>(e)];
        for (int64_t m = 0; m < i; ++m)
          b -= fac[static_cast<size_t>(i * smax + m)] * w[static_cast<size_t>(m)];
        w[static_cast<size_t>(i)] = b / fac[static_cast<size_t>(i * smax + i)];
      }
      double dd = aa;
      for (double v : w) dd -= v * v;
      if (!(dd > 1e-12 * aa)) break;  // dependent on the chosen columns
      for (int64_t m = 0; m < t; ++m)
        fac[static_cast<size_t>(t * smax + m)] = w[static_cast<size_t>(m)];
      const double ltt = std::sqrt(dd);
      fac[static_cast<size_t>(t * smax + t)] = ltt;
      // Forward substitution, one new entry: z_t = (a^T y - sum_m L_tm z_m) / l_tt.
      double zt = 0;
      for (int64_t e = 0; e < k; ++e) zt += a[static_cast<size_t>(e)] * y[static_cast<size_t>(e)];
      for (int64_t m = 0; m < t; ++m) zt -= w[static_cast<size_t>(m)] * z[static_cast<size_t>(m)];
      z.push_back(zt / ltt);
      cols.insert(cols.end(), a.begin(), a.end());
      chosen[static_cast<size_t>(best)] = 1;
      r.support.push_back(best);
      ++r.iterations;
      // x = L^-T z (back-substitution), rho = y - A_Lambda x.
      const int64_t n = r.iterations;
      r.x.assign(static_cast<size_t>(n), 0.0);
      for (int64_t i = n - 1; i >= 0; --i) {
        double v = z[static_cast<size_t>(i)];
        for (int64_t m = i + 1; m < n; ++m)
          v -= fac[static_cast<size_t>(m * smax + i)] * r.x[static_cast<size_t>(m)];
        r.x[static_cast<size_t>(i)] = v / fac[static_cast<size_t>(i * smax + i)];
      }
      for (int64_t e = 0; e < k; ++e) {
        double v = y[static_cast<size_t>(e)];
        for (int64_t i = 0; i < n; ++i)
          v -= cols[static_cast<size_t>(i * k + e)] * r.x[static_cast<size_t>(i)];
        rho[static_cast<size_t>(e)] = v;
      }
    } else {
      // Modified Gram-Schmidt against Q, twice (re-orthogonalisation); R[:, t] accumulates.
      std::vector<double> v = a;
      for (int pass = 0; pass < 2; ++pass)
        for (int64_t i = 0; i < t; ++i) {
          const double* qi = q.data() + i * k;
          double c = 0;
          for (int64_t e = 0; e < k; ++e) c += qi[e] * v[static_cast<size_t>(e)];
          for (int64_t e = 0; e < k; ++e) v[static_cast<size_t>(e)] -= c * qi[e];
          fac[static_cast<size_t>(i * smax + t)] += c;
        }
      const double rtt = norm2(v);
      if (!(rtt > 1e-6 * std::sqrt(aa))) {
        for (int64_t i = 0; i < t; ++i) fac[static_cast<size_t>(i * smax + t)] = 0;
        break;
      }
      fac[static_cast<size_t>(t * smax + t)] = rtt;
      for (double& e : v) e /= rtt;
      double qy = 0, qr = 0;
      for (int64_t e = 0; e < k; ++e) {
        qy += v[static_cast<size_t>(e)] * y[static_cast<size_t>(e)];
        qr += v[static_cast<size_t>(e)] * rho[static_cast<size_t>(e)];
      }
      z.push_back(qy);
      for (int64_t e = 0; e < k; ++e) rho[static_cast<size_t>(e)] -= qr * v[static_cast<size_t>(e)];
      q.insert(q.end(), v.begin(), v.end());
      cols.insert(cols.end(), a.begin(), a.end());
      chosen[static_cast<size_t>(best)] = 1;
      r.support.push_back(best);
      ++r.iterations;
    }
  }
  const int64_t n = r.iterations;
  if (o.solver == OmpSolver::kQr && n > 0) {
    // x = R^-1 Q^T y; residual recomputed from x so both solvers report y - A x.
    r.x.assign(static_cast<size_t>(n), 0.0);
    for (int64_t i = n - 1; i >= 0; --i) {
      double v = z[static_cast<size_t>(i)];
      for (int64_t m = i + 1; m < n; ++m)
        v -= fac[static_cast<size_t>(i * smax + m)] * r.x[static_cast<size_t>(m)];
      r.x[static_cast<size_t>(i)] = v / fac[static_cast<size_t>(i * smax + i)];
    }
    for (int64_t e = 0; e < k; ++e) {
      double v = y[static_cast<size_t>(e)];
      for (int64_t i = 0; i < n; ++i)
        v -= cols[static_cast<size_t>(i * k + e)] * r.x[static_cast<size_t>(i)];
      rho[static_cast<size_t>(e)] = v;
    }
  }
  r.residual = rho_rel();
  return r;
}

}  // namespace kvlab::sgc
