// Helpers for experiment tests: a random tiny model on disk (byte-level tokenizer) and a way to
// run a registered experiment with task parameters given as strings.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>

#include "experiments/common/experiment.h"
#include "framework/model/model_init.h"

namespace kvlab::testing {

inline std::shared_ptr<const model::Model> tiny_model() {
  static std::shared_ptr<const model::Model> m = [] {
    const auto dir = std::filesystem::temp_directory_path() /
                     ("kvlab_exp_tiny_" + std::to_string(::getpid()));
    if (!std::filesystem::exists(dir / "config.json")) {
      model::InitOptions o;
      o.config = model::preset_config("tiny");
      o.dtype = DType::kF32;
      o.seed = 5;
      o.init_std = 0.2;  // attention far from uniform
      model::write_random_model(o, dir.string());
    }
    return model::Model::load(dir.string());
  }();
  return m;
}

inline nlohmann::json run_experiment(const std::string& name,
                                     const std::map<std::string, std::string>& task,
                                     TraceSink* trace = nullptr, uint64_t seed = 0) {
  const auto& e = experiments::ExperimentRegistry::instance().find(name);
  experiments::RunContext ctx;
  ctx.model = tiny_model();
  ctx.method = "full_cache";
  ctx.make_cache = kv::make_kv_factory("full_cache", ParamValues(std::vector<ParamDecl>{}));
  ctx.task = ParamValues(e.params);
  for (const auto& [k, v] : task) ctx.task.set_from_string(k, v, "test: task." + k);
  ctx.seed = seed;
  ctx.threads = 1;
  static ThreadPool pool(2);
  ctx.pool = &pool;
  ctx.trace = trace;
  return e.run(ctx);
}

}  // namespace kvlab::testing
