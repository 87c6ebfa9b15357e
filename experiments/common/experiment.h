// The Experiment extension point (DESIGN.md section 2): an experiment declares its task
// parameters once and, given a resolved run context, measures and returns results.json content.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "framework/core/params.h"
#include "framework/core/trace_sink.h"
#include "framework/kv/kv_cache.h"
#include "framework/model/llama.h"

namespace kvlab::experiments {

struct RunContext {
  std::shared_ptr<const model::Model> model;
  std::string method;        // KV-cache method name
  kv::KvFactory make_cache;  // builds one layer's cache of that method
  ParamValues task;          // the experiment's declared task parameters, resolved
  uint64_t seed = 0;
  int threads = 1;
  ThreadPool* pool = nullptr;
  TraceSink* trace = nullptr;  // the run's trace.h5 (schema: results/README.md)
};

struct Experiment {
  std::string name;
  std::string help;
  std::vector<ParamDecl> params;  // the `task:` block
  std::function<nlohmann::json(const RunContext&)> run;
};

class ExperimentRegistry {
 public:
  static ExperimentRegistry& instance();
  bool add(Experiment e);
  const Experiment& find(const std::string& name) const;  // error with "did you mean"
  std::vector<std::string> names() const;

 private:
  std::vector<Experiment> items_;
};

}  // namespace kvlab::experiments

#define KVLAB_REGISTER_EXPERIMENT(id, expr) \
  static const bool kvlab_experiment_registered_##id = \
      ::kvlab::experiments::ExperimentRegistry::instance().add(expr)
