// One YAML file describes one experiment run (DESIGN.md section 3, step 1):
//   name: quickstart            # results go to <output>/<name>/<point-id>/
//   experiment: ppl             # a registered experiment; `kvlab help EXPERIMENT`
//   model: models/kvlab-tiny    # a folder, or {preset|config: ..., dtype, seed} for a random model
//   method: {name: full_cache, ...its parameters}   # `kvlab help METHOD`
//   task: {...the experiment's parameters}
//   seed: 0
//   threads: 0                  # 0: all hardware threads
//   output: results
//   sweep: {grid: ..., zip: ..., methods: ...}   # many points from one file: see sweep.h
// Every key is validated against a declaration before any work; errors name the file, the line
// and the key path, with a "did you mean". `--set a.b=value` overrides any key.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "framework/core/params.h"

namespace kvlab::harness {

struct ModelSpec {
  std::string path;         // an existing model folder, or
  std::string preset;       // a `kvlab model init` preset, or
  std::string config_file;  // a config.json giving the shape (random weights)
  std::string dtype = "bf16";
  int64_t seed = 0;
  bool is_random() const { return path.empty(); }
};

struct RunConfig {
  std::string file;  // the YAML file
  std::string name;
  std::string experiment;
  ModelSpec model;
  std::string method = "full_cache";
  ParamValues method_params;
  ParamValues task;
  int64_t seed = 0;
  int64_t threads = 0;
  std::string output = "results";

  // The fully resolved config (every default filled in) as YAML with sorted keys.
  std::string resolved_yaml() const;
  // 12 hex digits of a 64-bit FNV-1a hash of resolved_yaml(): a changed config is a new point.
  std::string point_id() const;
};

// Declared parameters for a method or experiment name (throws for unknown names).
using DeclLookup = std::function<const std::vector<ParamDecl>&(const std::string&)>;

// One run: a config without a `sweep:` block (or whose sweep has a single point); see sweep.h.
RunConfig load_run_config(const std::string& file, const std::vector<std::string>& overrides,
                          const DeclLookup& method_params, const DeclLookup& experiment_params);

// FNV-1a 64-bit hash as 16 hex digits.
std::string fnv1a_hex(const std::string& s);

}  // namespace kvlab::harness
