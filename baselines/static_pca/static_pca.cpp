// StaticPCA and StaticPCA-H (methods.md 1.3 step 0, 1.5): the calibrated eigenbasis, frozen (the
// Eigen-Attention construction). Thin registrations on methods/ojakv's OjaKvCache with
// online_update false: static_pca keeps no anchors (every token as coefficients k U_k, v U_v);
// static_pca_h adds OjaKV's positional anchors (first n_start + sliding last n_recent full-rank).
// Each declares the subset of OjaKV's parameters that still means something; the rest are fixed.
#include <algorithm>
#include <set>

#include "methods/ojakv/ojakv.h"

namespace kvlab::baselines {
namespace {

kv::KvMethod make_static(const std::string& name, bool anchors, const std::string& help) {
  std::set<std::string> keep = {
      "bases",  "key_basis",  "rank_mode",      "ratio",       "energy_threshold", "rank_k",
      "rank_v", "rope_frame", "attention_path", "tile_tokens", "coeff_dtype"};
  if (anchors) keep.insert({"n_start", "n_recent"});
  std::vector<ParamDecl> decls;
  for (const auto& d : methods::ojakv_params())
    if (keep.count(d.name)) decls.push_back(d);
  // OjaKV's full parameter set with this baseline's fixed values.
  const auto full = [name, anchors](const ParamValues& given) {
    ParamValues p(methods::ojakv_params());
    for (const auto& [k, v] : given.values()) p.set(k, v, name);
    p.set("online_update", ParamValue(false), name);
    p.set("prefill_update", ParamValue(std::string("none")), name);
    p.set("anchor_policy", ParamValue(std::string("positional")), name);
    if (!anchors) {
      p.set("n_start", ParamValue(int64_t{0}), name);
      p.set("n_recent", ParamValue(int64_t{0}), name);
    }
    return p;
  };
  return kv::KvMethod{
      name, help, decls,
      [name, full](const kv::LayerInfo& info, const ParamValues& given) {
        return methods::make_ojakv_cache(info, full(given), name);
      },
      [name, full](const ParamValues& given) { methods::check_ojakv_params(full(given), name); }};
}

}  // namespace

KVLAB_REGISTER_KV_METHOD(
    static_pca,
    make_static(
        "static_pca", false,
        "StaticPCA (Eigen-Attention construction; OjaKV's baseline): calibrated per-head bases "
        "(bases, rank_mode), frozen; every token stored as coefficients k U_k, v U_v."));
KVLAB_REGISTER_KV_METHOD(
    static_pca_h,
    make_static(
        "static_pca_h", true,
        "StaticPCA-H (OjaKV v1 baseline): StaticPCA plus full-rank positional anchors (first "
        "n_start and sliding last n_recent tokens)."));

}  // namespace kvlab::baselines
