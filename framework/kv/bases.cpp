#include "framework/kv/bases.h"

#include "framework/core/error.h"

namespace kvlab::kv {

const char* basis_kind_name(BasisKind k) {
  switch (k) {
    case BasisKind::qk: return "qk";
    case BasisKind::k: return "k";
    case BasisKind::v: return "v";
  }
  return "?";
}

const Eigenbasis& Bases::get(BasisKind kind, int64_t layer, int64_t g) const {
  if (layer < 0 || layer >= n_layers || g < 0 || g >= G)
    fail("bases (", source, "): no layer ", layer, " KV head ", g, " (file has ", n_layers,
         " layers x ", G, " KV heads)");
  const auto& v_ = kind == BasisKind::qk ? qk : kind == BasisKind::k ? k : v;
  KVLAB_CHECK(static_cast<int64_t>(v_.size()) == n_layers * G) << basis_kind_name(kind);
  return v_[static_cast<size_t>(layer * G + g)];
}

}  // namespace kvlab::kv
