// The YAML tree steps every kvlab config shares (run configs, sweeps, training recipes):
// loading with --set overrides, "file:line: key" locations, unknown-key checks with did-you-mean.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

#include "framework/harness/run_config.h"

namespace kvlab::harness::detail {

// Loads `file` (errors name file:line:column) and applies `--set` overrides; the values of
// overrides carry no line (errors about them say "(--set)").
YAML::Node load_yaml(const std::string& file, const std::vector<std::string>& overrides);

// Validates one point's tree (no `sweep` key) against the declarations.
RunConfig config_from_tree(const std::string& file, const YAML::Node& root,
                           const DeclLookup& method_params, const DeclLookup& experiment_params);

// "a.b.c" -> {"a", "b", "c"} (empty parts kept, for the caller to reject).
std::vector<std::string> split_path(const std::string& path);

// Sets root[a][b][c] = value, creating maps on the way and replacing a scalar in the way; a
// numeric part indexes a list (stages.1.seq_len).
void set_path(YAML::Node& root, const std::vector<std::string>& parts, const YAML::Node& value);

// "file:line: key" for a node; "file (--set): key" for a node without a line.
std::string where(const std::string& file, const YAML::Node& n, const std::string& key);

// Throws naming file:line and prefix+key (with a "did you mean") for a key of `map` not in
// `allowed`.
void check_keys(const std::string& file, const YAML::Node& map, const std::string& prefix,
                const std::vector<std::string>& allowed);

}  // namespace kvlab::harness::detail
