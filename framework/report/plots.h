// The charts of `kvlab plot` (SVG through framework/report/svg.h):
//   - needle heatmaps: one per row (method + varying parameters) and task, from results.json
//     "grid" [{context_length, depth, score}], scores averaged over seeds;
//   - metric against compression ratio, one line per method, one chart per task. The ratio is
//     results.json "compression_ratio" when given, else kv bytes kept (kv_memory.device_bytes +
//     host_bytes) over those of the full_cache point of the same task (same seed when there is
//     one); full_cache itself is drawn as a dashed reference line;
//   - NLL against position (ppl results.json "nll_by_position", when it has several buckets), one
//     line per row, one chart per task;
//   - a trace series (1-D, or one column of a 2-D dataset) against decode step, with an optional
//     trailing moving average.
#pragma once

#include <string>
#include <vector>

#include "framework/report/sweep.h"

namespace kvlab::report {

struct PlotResult {
  std::vector<std::string> files;  // written charts
  std::vector<std::string> notes;  // why a chart kind was not drawn
};

// Writes every chart the sweep supports into `out_dir` (created). `metric` "" -> headline.
PlotResult plot_sweep(const std::vector<Point>& points, const std::string& out_dir,
                      const std::string& metric = "");

// With a trace dataset: that series from every complete point's trace.h5 against decode step, one
// line per row (method + varying parameters; seeds averaged where their lengths agree), one chart
// per task. Points without the dataset are noted.
PlotResult plot_sweep_series(const std::vector<Point>& points, const std::string& series,
                             const std::string& out_dir, int smooth = 0);

// Trailing moving average over `window` values (window <= 1: a copy); shorter at the start.
std::vector<double> moving_average(const std::vector<double>& v, int window);

// Plots `series` of an HDF5 file against its index (decode step) into `out_path`.
// `column` selects a column of a 2-D dataset (-1: the dataset must be 1-D).
void plot_trace(const std::string& h5_path, const std::string& series, const std::string& out_path,
                int smooth = 0, int column = -1);

// "ojakv rank=16" -> "ojakv_rank-16": a file-name-safe form of a label.
std::string file_stem(const std::string& label);

}  // namespace kvlab::report
