// The fixed random projection A [k, d] of SGC (methods.md section 3.2, "Fixed"; 3.7 knobs
// `projection`, `projection_storage`, `seed`). Column j of A is a pure function of
// (seed, stream, j): a counter-based generator (a splitmix64 finaliser applied to the counter
// (stream key, column, row pair)) so any column is reproducible on its own, in any order, on any
// thread. `stream` is the block index (projection_storage regenerate / stored) or a key of the
// chunk shape (shared_per_shape). Stored and regenerated projectors give bit-identical columns.
//
// Distributions: gaussian N(0, 1/k) (inverse normal CDF of one 32-bit uniform per row, f64,
// rounded to f32), rademacher +-1/sqrt(k) (one bit per row), identity (test hook: requires
// k == d, A = I, so SGC with s = d reduces to AdamW exactly; see tests/methods/sgc). Generation
// cost per entry: see results/reference/microbench/optim_bench.txt (BM_Generate); a
// regenerated OMP pass is generation-bound.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace kvlab::sgc {

enum class ProjectionKind { kGaussian, kRademacher, kIdentity };
ProjectionKind projection_kind_from(
    const std::string& name);  // "gaussian" | "rademacher" | "identity"

// Stateless 64-bit mixer (splitmix64 finaliser): the counter-based generator's round function.
uint64_t mix64(uint64_t x);
// Standard normal quantile for p in (0, 1) (Acklam; relative error < 4e-8).
double inverse_normal_cdf(double p);

class Projector {
 public:
  // A [k, d]; stored = true keeps all d columns ([d, k] f32, 4*k*d bytes), otherwise each
  // column is generated when used (cost O(k) per column, no memory).
  Projector(ProjectionKind kind, int64_t k, int64_t d, uint64_t seed, uint64_t stream, bool stored);

  int64_t k() const { return k_; }
  int64_t d() const { return d_; }
  bool stored() const { return !store_.empty(); }
  ProjectionKind kind() const { return kind_; }
  // Bytes held (the stored columns; 0 when regenerated).
  int64_t bytes() const { return static_cast<int64_t>(store_.size() * sizeof(float)); }
  // The stored columns [d, k] (column j at j*k), for checkpoints; empty when regenerated.
  std::vector<float>& storage() { return store_; }

  // Column j of A into out[k]. Cost O(k) generated, O(k) copy when stored.
  void column(int64_t j, float* out) const;
  // c[k] += sum_i vals[i] * A[:, idx[i]] in f64, idx ascending; touches only those columns.
  // Cost O(k * |idx|).
  void apply_sparse(std::span<const int64_t> idx, std::span<const double> vals, double* c) const;
  // Calls f(j, col[k]) for j = 0..d-1 in order (one generation pass, O(k*d)); col is valid
  // during the call only.
  template <class F>
  void for_each_column(F&& f) const {
    if (!store_.empty()) {
      for (int64_t j = 0; j < d_; ++j) f(j, store_.data() + j * k_);
      return;
    }
    std::vector<float> col(static_cast<size_t>(k_));
    for (int64_t j = 0; j < d_; ++j) {
      generate(j, col.data());
      f(j, static_cast<const float*>(col.data()));
    }
  }

 private:
  void generate(int64_t j, float* out) const;
  ProjectionKind kind_;
  int64_t k_, d_;
  uint64_t key_;              // mix of (seed, stream)
  std::vector<float> store_;  // [d, k] when stored
};

}  // namespace kvlab::sgc
