#include "experiments/common/experiment.h"

#include "framework/core/error.h"

namespace kvlab::experiments {

ExperimentRegistry& ExperimentRegistry::instance() {
  static ExperimentRegistry r;
  return r;
}

bool ExperimentRegistry::add(Experiment e) {
  for (const auto& x : items_)
    KVLAB_CHECK(x.name != e.name) << "experiment '" << e.name << "' registered twice";
  items_.push_back(std::move(e));
  return true;
}

const Experiment& ExperimentRegistry::find(const std::string& name) const {
  for (const auto& e : items_)
    if (e.name == name) return e;
  std::string msg = str("unknown experiment '", name, "'");
  if (auto s = did_you_mean(name, names())) msg += str(" (did you mean '", *s, "'?)");
  msg += "; registered:";
  for (const auto& n : names()) msg += " " + n;
  throw Error(msg);
}

std::vector<std::string> ExperimentRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& e : items_) out.push_back(e.name);
  return out;
}

}  // namespace kvlab::experiments
