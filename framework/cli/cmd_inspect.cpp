// kvlab inspect FILE.h5 [--dataset PATH --csv]: the tree of an HDF5 trace with shapes,
// attributes and summary statistics, or one dataset as CSV.
#include <iostream>

#include "framework/cli/args.h"
#include "framework/cli/commands.h"
#include "framework/core/error.h"
#include "framework/io/trace_h5.h"

namespace kvlab::cli {

int cmd_inspect(int argc, char** argv, int first) {
  Args a("inspect", "Prints an HDF5 file's groups and datasets (shape, type, min/max/mean/std, attributes), or exports one dataset as CSV.",
         {{"dataset", "PATH", "one dataset, e.g. /steps/nll"},
          {"csv", "", "with --dataset: print it as CSV (index, values...)"},
          {"no-stats", "", "skip the summary statistics (faster on huge files)"}},
         {"FILE.h5"});
  if (!a.parse(argc, argv, first)) return 0;
  const std::string file = a.positionals()[0];
  if (a.flag("csv") != a.has("dataset")) fail("kvlab inspect: --csv and --dataset go together");
  if (a.flag("csv")) {
    io::export_csv(file, a.get("dataset"), std::cout);
  } else {
    io::InspectOptions opt;
    opt.stats = !a.flag("no-stats");
    io::inspect_h5(file, std::cout, opt);
  }
  return 0;
}

}  // namespace kvlab::cli
