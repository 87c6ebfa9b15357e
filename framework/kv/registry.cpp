#include "framework/core/error.h"
#include "framework/kv/kv_cache.h"

namespace kvlab::kv {

KvRegistry& KvRegistry::instance() {
  static KvRegistry r;
  return r;
}

bool KvRegistry::add(KvMethod m) {
  for (const auto& x : methods_)
    KVLAB_CHECK(x.name != m.name) << "KV method '" << m.name << "' registered twice";
  methods_.push_back(std::move(m));
  return true;
}

const KvMethod& KvRegistry::find(const std::string& name) const {
  for (const auto& m : methods_)
    if (m.name == name) return m;
  std::string msg = str("unknown KV-cache method '", name, "'");
  if (auto s = did_you_mean(name, names())) msg += str(" (did you mean '", *s, "'?)");
  msg += "; registered:";
  for (const auto& n : names()) msg += " " + n;
  throw Error(msg);
}

std::vector<std::string> KvRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& m : methods_) out.push_back(m.name);
  return out;
}

KvFactory make_kv_factory(const std::string& method, const ParamValues& params) {
  const KvMethod& m = KvRegistry::instance().find(method);
  auto make = m.make;
  return [make, params](const LayerInfo& info) { return make(info, params); };
}

void check_kv_params(const std::string& method, const ParamValues& params) {
  const KvMethod& m = KvRegistry::instance().find(method);
  if (m.check) m.check(params);
}

}  // namespace kvlab::kv
