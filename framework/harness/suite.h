// A suite: one YAML file that runs several experiment configs in order and reports on each,
// e.g. configs/quickstart.yaml (needle grid + PG-19-style perplexity across methods):
//   name: quickstart
//   suite:                       # run in order; paths relative to this file
//     - quickstart/niah.yaml
//     - quickstart/pg19.yaml
//   report: true                 # after the runs: print each sweep's table, draw its charts
// `kvlab run SUITE [--set K=V ...]` applies every --set to every member config.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace kvlab::harness {

struct Suite {
  std::string file;
  std::string name;
  std::vector<std::string> members;  // resolved paths, in order
  bool report = true;
};

// nullopt when `file` has no top-level `suite:` key (an ordinary run or sweep config). Otherwise
// the validated suite: unknown keys, an empty list or a member that does not exist fail naming
// file:line and key.
std::optional<Suite> load_suite(const std::string& file);

}  // namespace kvlab::harness
