#include "framework/core/error.h"
#include "framework/optim/optimizer.h"

namespace kvlab::optim {

OptimizerRegistry& OptimizerRegistry::instance() {
  static OptimizerRegistry r;
  return r;
}

bool OptimizerRegistry::add(OptimizerMethod m) {
  for (const auto& x : items_)
    KVLAB_CHECK(x.name != m.name) << "optimizer '" << m.name << "' registered twice";
  items_.push_back(std::move(m));
  return true;
}

const OptimizerMethod& OptimizerRegistry::find(const std::string& name) const {
  for (const auto& m : items_)
    if (m.name == name) return m;
  std::string msg = str("unknown optimizer '", name, "'");
  if (auto s = did_you_mean(name, names())) msg += str(" (did you mean '", *s, "'?)");
  msg += "; registered:";
  for (const auto& n : names()) msg += " " + n;
  throw Error(msg);
}

std::vector<std::string> OptimizerRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& m : items_) out.push_back(m.name);
  return out;
}

}  // namespace kvlab::optim
