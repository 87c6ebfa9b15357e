// kvlab bases files (`kvlab calibrate --out bases.h5`), schema in results/README.md:
//   root attributes: kvlab_bases_version "1", frame, source, n_layers, kv_heads, head_dim, tokens
//   /layer_LL/{qk,k,v}/vectors  f32 [G, D, D]  column j of [g] = j-th eigenvector (descending)
//   /layer_LL/{qk,k,v}/values   f32 [G, D]     eigenvalues of the uncentred second moment
// Vectors are re-orthonormalised in f64 on load (thin QR, diag(R) > 0, which keeps each column's
// direction and sign), so f32 storage does not cost orthonormality.
#pragma once

#include <memory>
#include <string>

#include "framework/kv/bases.h"

namespace kvlab::io {

void save_bases_h5(const std::string& path, const kv::Bases& bases);
// Errors name the file and the missing/ill-shaped dataset or attribute.
kv::Bases load_bases_h5(const std::string& path);
// Process-wide cache keyed by path (one read per file per process, shared by every layer cache
// of every sequence). Thread-safe.
std::shared_ptr<const kv::Bases> load_bases_h5_cached(const std::string& path);

}  // namespace kvlab::io
