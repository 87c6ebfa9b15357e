// Calibrated per-layer, per-KV-head eigenbases of queries/keys/values: what `kvlab calibrate`
// writes (framework/io/bases_h5.h, schema in results/README.md) and what StaticPCA and OjaKV's
// offline initialisation read (methods.md 1.3 step 0). Full eigendecompositions are kept so a
// method picks its rank at load time (ratio, energy threshold or fixed) without recalibrating.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "framework/linalg/linalg.h"

namespace kvlab::kv {

// Eigendecomposition of one head's uncentred second moment: vectors [D, D], column j the j-th
// principal direction (descending), values [D] the matching eigenvalues (>= 0).
struct Eigenbasis {
  linalg::Mat vectors;
  std::vector<double> values;
  // Leading r directions [D, r].
  linalg::Mat top(int64_t r) const { return linalg::leading_columns(vectors, r); }
};

// Which tokens' statistics a basis was computed from. qk: keys and the queries of the KV head's
// group, each side's moment normalised by its count and summed, Q^T Q/|Q| + K^T K/|K| (the
// paper's stacked [Q; K] with equal weight per side); k: keys only; v: values.
enum class BasisKind { qk, k, v };
const char* basis_kind_name(BasisKind k);

struct Bases {
  int64_t n_layers = 0;  // L
  int64_t G = 0;         // KV heads
  int64_t D = 0;         // head dim
  std::string frame = "post_rope";  // "post_rope" | "pre_rope": the frame keys/queries were in
  std::string source;               // free text: model, dataset, token count, seed
  int64_t tokens = 0;               // calibration tokens per sequence position summed
  std::vector<Eigenbasis> qk, k, v;  // each [L * G], index layer * G + g

  const Eigenbasis& get(BasisKind kind, int64_t layer, int64_t g) const;
};

}  // namespace kvlab::kv
