// Sweeps (DESIGN.md section 3, step 2): one YAML file, many points.
//
//   sweep:
//     methods:                     # optional; each entry its own parameter block
//       - {name: full_cache}
//       - {name: ojakv, rank: 8}
//     grid:                        # cartesian product; the first key varies slowest
//       method.window: [64, 128]
//       task.max_tokens: [256, 512]
//     zip:                         # equal-length lists taken together, crossed with the grid
//       task.text: [kjv:Gen1, kjv:Gen2]
//       seed: [1, 2]
//
// Points are ordered methods (as listed) x grid (nested loops, last key fastest) x zip (in
// list order); that order is the index `kvlab run CONFIG --point I` takes, and the same file
// always expands the same way. A swept `method.KEY` applies to the points whose method declares
// KEY (full_cache crossed with method.rank runs once); points whose resolved config is identical
// are kept once (the first). Every point is validated before any runs; an error names the file,
// the line of the offending value and the key path, then the point.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "framework/harness/run_config.h"

namespace kvlab::harness {

struct SweepPoint {
  RunConfig config;
  // The values this point takes from `sweep:`, in order: ("method", "ojakv"), ("method.rank",
  // "8"), ("task.max_tokens", "512"), ... Empty for a config without a sweep.
  std::vector<std::pair<std::string, std::string>> swept;
  std::string swept_text() const;  // "method=ojakv method.rank=8 task.max_tokens=512"
};

struct Sweep {
  std::string file;
  std::vector<SweepPoint> points;  // at least one
  size_t duplicates_dropped = 0;   // points identical to an earlier one
  bool has_sweep = false;          // the file has a `sweep:` block
  // <output>/<name>: every point shares name and output (they cannot be swept).
  std::string dir() const;
};

Sweep load_sweep(const std::string& file, const std::vector<std::string>& overrides,
                 const DeclLookup& method_params, const DeclLookup& experiment_params);

}  // namespace kvlab::harness
