// Paper-style tables from a Pivot (framework/report/sweep.h): Markdown, CSV and LaTeX (booktabs).
//   Markdown / LaTeX cells: "mean ± std" with `digits` decimals ("mean" alone for one seed);
//   "missing" where every point of the cell is incomplete, "—" where the sweep has no such point,
//   a "†" after a value when some of its seeds are incomplete. The Average column is the mean of
//   the row's cell means, "—" when a cell has no value. Incomplete points are listed under the
//   table (Markdown list, LaTeX comments); CSV carries numbers only (mean, std, n per column) and
//   leaves the listing to the caller (kvlab table prints it on stderr).
#pragma once

#include <string>

#include "framework/report/sweep.h"

namespace kvlab::report {

enum class TableFormat { kMarkdown, kCsv, kLatex };

TableFormat parse_table_format(const std::string& s);  // "md", "csv", "latex"; throws otherwise
std::string format_table(const Pivot& pv, TableFormat fmt, int digits = 2);

}  // namespace kvlab::report
