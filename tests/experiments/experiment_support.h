// Helpers for experiment tests: a random tiny model on disk (byte-level tokenizer) and a way to
// run a registered experiment with task parameters given as strings.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

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
                                     TraceSink* trace = nullptr, uint64_t seed = 0,
                                     kv::KvFactory make_cache = nullptr) {
  const auto& e = experiments::ExperimentRegistry::instance().find(name);
  experiments::RunContext ctx;
  ctx.model = tiny_model();
  ctx.method = "full_cache";
  ctx.make_cache = make_cache ? std::move(make_cache)
                              : kv::make_kv_factory("full_cache",
                                                    ParamValues(std::vector<ParamDecl>{}));
  ctx.task = ParamValues(e.params);
  for (const auto& [k, v] : task) ctx.task.set_from_string(k, v, "test: task." + k);
  ctx.seed = seed;
  ctx.threads = 1;
  static ThreadPool pool(2);
  ctx.pool = &pool;
  ctx.trace = trace;
  return e.run(ctx);
}

// A full cache whose trace() writes "probe/layer_NN/tokens_seen" (and counts its calls): checks
// that an experiment hands the method's traces on, and for which sample.
class TraceProbeCache : public kv::KvCache {
 public:
  explicit TraceProbeCache(const kv::LayerInfo& info)
      : layer_(info.layer),
        inner_(kv::make_kv_factory("full_cache", ParamValues(std::vector<ParamDecl>{}))(info)) {}
  void append(const float* k, const float* v, int64_t T, const int32_t* pos) override {
    inner_->append(k, v, T, pos);
  }
  void attend(const float* q, int64_t T, const int32_t* pos, float* out) override {
    inner_->attend(q, T, pos, out);
  }
  MemoryReport memory() const override { return inner_->memory(); }
  int64_t tokens_seen() const override { return inner_->tokens_seen(); }
  void trace(TraceSink& sink) const override {
    sink.append_scalar("probe/layer_0" + std::to_string(layer_) + "/tokens_seen",
                       static_cast<double>(tokens_seen()), "tokens");
  }

 private:
  int64_t layer_;
  std::unique_ptr<kv::KvCache> inner_;
};

inline kv::KvFactory trace_probe_factory() {
  return [](const kv::LayerInfo& info) { return std::make_unique<TraceProbeCache>(info); };
}

// Scalar series kept in memory.
struct SeriesSink : TraceSink {
  std::map<std::string, std::vector<double>> series;
  std::map<std::string, std::string> attributes;  // "path:key" -> value
  void append_scalar(std::string_view path, double v, std::string_view) override {
    series[std::string(path)].push_back(v);
  }
  void append_row(std::string_view, std::span<const float>, std::string_view) override {}
  void set_attribute(std::string_view path, std::string_view key, std::string_view v) override {
    attributes[std::string(path) + ":" + std::string(key)] = std::string(v);
  }
};

}  // namespace kvlab::testing
