// Orthogonal Matching Pursuit (Tropp & Gilbert 2007; methods.md section 3.2 "OMP", knobs
// omp_sparsity, omp_tol, omp_solver of 3.7). Given A [k, d] (a Projector) and y [k], greedily
// builds a support Lambda and x = argmin ||y - A_Lambda x||_2 on it:
//   1. j = argmax_i |a_i^T rho| / ||a_i|| over columns not yet chosen (ties: lower i);
//   2. Lambda += {j};  3. least squares on Lambda (incremental);  4. rho = y - A_Lambda x.
// Stops after max_atoms atoms, when ||rho|| <= tol * ||y|| (tol > 0), when rho = 0, or when the
// new column is numerically dependent on the chosen ones. f64 throughout.
// Solvers: cholesky (default): incremental Cholesky L L^T = A_Lambda^T A_Lambda, one
// forward row per atom, x by one back-substitution, O(t k + t^2) per atom; qr: incremental
// modified Gram-Schmidt with one re-orthogonalisation pass, Q [k, t], R [t, t], x = R^-1 Q^T y
// at the end. Cost: one pass over all d columns per atom, O(k d) (generated columns cost one
// generation each): O(s' k d) per call, which dominates SGC (why MESGC and CESGC exist).
// Workspace (not optimizer state): k*s' chosen columns + s'^2 factor + d flags + O(k).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "methods/sgc/projection.h"

namespace kvlab::sgc {

enum class OmpSolver { kCholesky, kQr };

struct OmpOptions {
  int64_t max_atoms = 1;  // s' >= 1
  double tol = 0;         // relative residual stop, >= 0 (0: run all s' atoms)
  OmpSolver solver = OmpSolver::kCholesky;
};

struct OmpResult {
  std::vector<int64_t> support;  // chosen columns, in the order chosen
  std::vector<double> x;         // coefficients, aligned with support
  double residual = 0;           // ||y - A x|| / ||y|| (0 when y = 0)
  int64_t iterations = 0;        // atoms added (== support.size())
  int64_t workspace_bytes = 0;   // peak transient bytes used by this call
};

OmpResult omp(const Projector& A, std::span<const double> y, const OmpOptions& o);

}  // namespace kvlab::sgc
