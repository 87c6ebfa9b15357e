// kvlab table DIR and kvlab plot DIR|FILE.h5: paper-style tables and SVG charts from a sweep
// folder (DESIGN.md section 3, step 5; framework/report/).
#include <filesystem>
#include <fstream>
#include <iostream>

#include "framework/cli/args.h"
#include "framework/cli/commands.h"
#include "framework/core/error.h"
#include "framework/report/plots.h"
#include "framework/report/sweep.h"
#include "framework/report/table.h"

namespace kvlab::cli {
namespace fs = std::filesystem;

int cmd_table(int argc, char** argv, int first) {
  Args a("table",
         "Pivots a sweep folder (<output>/<name>/) into a table: rows = method and its varying "
         "parameters, "
         "columns = tasks, cells = metric mean ± std over seeds, plus an Average column. "
         "Incomplete points are "
         "listed as missing.",
         {{"metric", "KEY",
           "results.json key, dotted for nested (default: the experiment's headline, e.g. "
           "perplexity)"},
          {"format", "md|csv|latex", "output format", "md"},
          {"digits", "N", "decimals in Markdown and LaTeX cells", "2"},
          {"out", "FILE", "write the table to FILE instead of stdout"}},
         {"DIR"});
  if (!a.parse(argc, argv, first)) return 0;
  const auto fmt = report::parse_table_format(a.get("format"));
  const auto points = report::load_sweep(a.positionals()[0]);
  const auto pv = report::pivot(points, a.has("metric") ? a.get("metric") : "");
  const std::string text = report::format_table(pv, fmt, static_cast<int>(a.get_int("digits")));
  if (a.has("out")) {
    std::ofstream f(a.get("out"), std::ios::binary);
    f << text;
    if (!f) fail("kvlab table: cannot write ", a.get("out"));
    std::cerr << "wrote " << a.get("out") << "\n";
  } else {
    std::cout << text;
  }
  if (!pv.missing.empty() && (fmt == report::TableFormat::kCsv || a.has("out"))) {
    std::cerr << "kvlab table: " << pv.missing.size()
              << " incomplete point(s), not in the table:\n";
    for (const auto& m : pv.missing_labels) std::cerr << "  " << m << "\n";
  }
  return 0;
}

int cmd_plot(int argc, char** argv, int first) {
  Args a("plot",
         "Draws SVG charts and prints their paths. For a sweep folder: needle heatmaps (context "
         "length x depth), "
         "metric against compression ratio, NLL against position; with --series, that trace of "
         "every point against "
         "decode step. For FILE.h5 with --series: that one trace.",
         {{"out-dir", "D", "folder for the charts (default: DIR/plots, or beside FILE.h5)"},
          {"metric", "KEY", "metric of the compression chart (default: the experiment's headline)"},
          {"series", "PATH", "a trace dataset to plot against decode step, e.g. /samples/0/nll"},
          {"column", "I", "with a 2-D --series: the column to plot"},
          {"smooth", "W", "with --series: also draw a trailing moving average over W steps", "0"}},
         {"DIR|FILE.h5"});
  if (!a.parse(argc, argv, first)) return 0;
  const fs::path in = a.positionals()[0];
  if (fs::is_regular_file(in)) {
    if (!a.has("series"))
      fail("kvlab plot: ", in.string(),
           " is a file: give the dataset to plot with --series PATH (kvlab inspect lists them)");
    const fs::path dir = a.has("out-dir") ? fs::path(a.get("out-dir")) : in.parent_path();
    const fs::path out =
        dir / (in.stem().string() + "_" + report::file_stem(a.get("series")) + ".svg");
    report::plot_trace(in.string(), a.get("series"), out.string(),
                       static_cast<int>(a.get_int("smooth")),
                       a.has("column") ? static_cast<int>(a.get_int("column")) : -1);
    std::cout << out.string() << "\n";
    return 0;
  }
  const auto points = report::load_sweep(in.string());
  const fs::path dir = a.has("out-dir") ? fs::path(a.get("out-dir")) : in / "plots";
  if (a.has("column"))
    fail(
        "kvlab plot: --column goes with one HDF5 file (kvlab plot DIR/<point>/trace.h5 --series "
        "PATH --column I)");
  const auto res =
      a.has("series")
          ? report::plot_sweep_series(points, a.get("series"), dir.string(),
                                      static_cast<int>(a.get_int("smooth")))
          : report::plot_sweep(points, dir.string(), a.has("metric") ? a.get("metric") : "");
  for (const auto& n : res.notes) std::cerr << "kvlab plot: " << n << "\n";
  for (const auto& f : res.files) std::cout << f << "\n";
  if (res.files.empty()) std::cerr << "kvlab plot: no chart written\n";
  return 0;
}

}  // namespace kvlab::cli
