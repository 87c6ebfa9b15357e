// Reading a sweep folder (<output>/<name>/) into points and pivoting it into a paper-style grid
// (DESIGN.md section 3, step 5). A point is a sub-folder holding config.resolved.yaml; it is
// complete when COMPLETE exists (then results.json is read). Folders without a resolved config
// (e.g. the cached random models under <name>/models/) are not points.
//
// Pivot: every resolved-config key is flattened to a dotted path ("method.rank", "task.text").
//   - replicate key: "seed" (points differing only in it are averaged: mean ± sample std);
//   - task (column) keys: "experiment" and "task.*";
//   - row keys: everything else ("method.name", "method.*", "model.*", "threads", ...).
// Only keys whose value varies across the sweep label rows and columns; method parameters are
// compared among the points of the same method name. Order is deterministic: rows by method
// name (full_cache first, the reference), then parameter values (numbers numerically); columns
// by experiment, then task values.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace kvlab::report {

struct Point {
  std::string id;                             // the folder name (the point id)
  std::string dir;                            // its path
  bool complete = false;                      // COMPLETE exists and results.json parsed
  std::map<std::string, std::string> config;  // flattened resolved config: dotted key -> scalar
  nlohmann::json results;                     // results.json (null when incomplete)
};

// Every point folder under `dir`, sorted by id. Throws kvlab::Error when `dir` is not a folder
// or holds no point at all.
std::vector<Point> load_sweep(const std::string& dir);

// The headline metric of an experiment's results ("perplexity" for ppl, "score" for needle
// tasks); `results` may name it itself with a top-level "headline" key.
std::string default_metric(const std::string& experiment, const nlohmann::json& results);

// Reads `metric` (a dotted path into results.json, e.g. "kv_memory.device_bytes") from one
// point's results. "score" on a results.json with a needle "grid" is the mean grid score.
std::optional<double> metric_value(const nlohmann::json& results, const std::string& metric);

// Compares two config values: both numbers -> numerically, else as strings.
bool value_less(const std::string& a, const std::string& b);

struct Cell {
  std::vector<double> values;  // one per complete seed, in seed order
  int incomplete = 0;          // points of this cell without COMPLETE
  double mean() const;
  double stddev() const;  // sample std (n-1); 0 for one value
};

struct RowKey {
  std::string method;                         // method.name
  std::map<std::string, std::string> params;  // varying row keys (without "method."), by name
};

struct Pivot {
  std::string metric;
  std::vector<std::string> param_columns;  // varying row parameters, in display order
  std::vector<RowKey> rows;
  std::vector<std::string> columns;         // task labels, e.g. "ppl" or "max_tokens=128"
  std::vector<std::vector<Cell>> cells;     // [row][column]
  std::vector<const Point*> missing;        // incomplete points
  std::vector<std::string> missing_labels;  // "<id>: row | column | seed=S" for each
  int min_seeds = 0, max_seeds = 0;         // over non-empty cells
  // Average over columns of the cell means; nullopt if any column of the row has no value.
  std::optional<double> row_average(size_t row) const;
};

// Identity of a point (without the seed) split into row and column parts; used by pivot and plots.
struct PointKeys {
  std::vector<std::string> row_keys;     // varying row keys (dotted), display order
  std::vector<std::string> column_keys;  // varying task keys (dotted)
  bool multi_experiment = false;
};
PointKeys varying_keys(const std::vector<Point>& points);
RowKey row_of(const Point& p, const PointKeys& k);
std::string row_label(const RowKey& r);  // "ojakv rank=16 window=64"
std::string column_of(const Point& p, const PointKeys& k);

// The distinct rows of the points in table order.
std::vector<RowKey> sorted_rows(const std::vector<Point>& points, const PointKeys& k);

// Pivots the points; `metric` empty -> the experiment's default metric.
Pivot pivot(const std::vector<Point>& points, const std::string& metric = "");

}  // namespace kvlab::report
