#include "framework/report/table.h"

#include <cmath>
#include <cstdio>
#include <sstream>

#include "framework/core/error.h"

namespace kvlab::report {

namespace {

std::string fixed(double v, int digits) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", digits, v);
  return b;
}

std::string full(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.10g", v);
  return b;
}

// The text of one cell; `pm` is the plus-minus sign of the format.
std::string cell_text(const Cell& c, int digits, const std::string& pm, bool latex) {
  if (c.values.empty()) return c.incomplete ? "missing" : (latex ? "--" : "—");
  std::string s = fixed(c.mean(), digits);
  if (c.values.size() > 1) s += pm + fixed(c.stddev(), digits);
  if (latex) s = "$" + s + "$";
  if (c.incomplete) s += latex ? "$^\\dagger$" : "†";
  return s;
}

std::string seeds_note(const Pivot& pv) {
  if (pv.max_seeds <= 1) return "";
  if (pv.min_seeds == pv.max_seeds)
    return ", mean ± std over " + std::to_string(pv.max_seeds) + " seeds";
  return ", mean ± std over " + std::to_string(pv.min_seeds) + "-" + std::to_string(pv.max_seeds) +
         " seeds";
}

bool any_partial(const Pivot& pv) {
  for (const auto& r : pv.cells)
    for (const auto& c : r)
      if (c.incomplete && !c.values.empty()) return true;
  return false;
}

std::string param(const RowKey& r, const std::string& name) {
  auto it = r.params.find(name);
  return it == r.params.end() ? "" : it->second;
}

std::string md_escape(const std::string& s) {
  std::string o;
  for (char ch : s) {
    if (ch == '|') o += '\\';
    o += ch;
  }
  return o;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string o = "\"";
  for (char ch : s) {
    if (ch == '"') o += '"';
    o += ch;
  }
  return o + "\"";
}

std::string tex_escape(const std::string& s) {
  std::string o;
  for (char ch : s) {
    switch (ch) {
      case '_':
      case '&':
      case '%':
      case '#':
      case '$':
      case '{':
      case '}':
        o += '\\';
        o += ch;
        break;
      case '\\': o += "\\textbackslash{}"; break;
      case '~': o += "\\textasciitilde{}"; break;
      case '^': o += "\\textasciicircum{}"; break;
      default: o += ch;
    }
  }
  return o;
}

std::string markdown(const Pivot& pv, int digits) {
  std::ostringstream o;
  o << "**" << pv.metric << "**" << seeds_note(pv) << "\n\n| Method |";
  for (const auto& p : pv.param_columns) o << " " << md_escape(p) << " |";
  for (const auto& c : pv.columns) o << " " << md_escape(c) << " |";
  o << " Average |\n|---|";
  for (size_t i = 0; i < pv.param_columns.size(); ++i) o << "---|";
  for (size_t i = 0; i <= pv.columns.size(); ++i) o << "--:|";
  o << "\n";
  for (size_t r = 0; r < pv.rows.size(); ++r) {
    o << "| " << md_escape(pv.rows[r].method) << " |";
    for (const auto& p : pv.param_columns) o << " " << md_escape(param(pv.rows[r], p)) << " |";
    for (const auto& c : pv.cells[r]) o << " " << cell_text(c, digits, " ± ", false) << " |";
    auto avg = pv.row_average(r);
    o << " " << (avg ? fixed(*avg, digits) : "—") << " |\n";
  }
  if (any_partial(pv))
    o << "\n† some seeds of this cell are incomplete; the value uses the finished ones.\n";
  if (!pv.missing.empty()) {
    o << "\nMissing (" << pv.missing.size() << " incomplete point"
      << (pv.missing.size() == 1 ? "" : "s") << ", no COMPLETE marker):\n";
    for (const auto& m : pv.missing_labels) o << "- " << md_escape(m) << "\n";
  }
  return o.str();
}

std::string csv(const Pivot& pv) {
  std::ostringstream o;
  o << "method";
  for (const auto& p : pv.param_columns) o << "," << csv_field(p);
  for (const auto& c : pv.columns)
    o << "," << csv_field(c + " mean") << "," << csv_field(c + " std") << ","
      << csv_field(c + " n");
  o << ",average\n";
  for (size_t r = 0; r < pv.rows.size(); ++r) {
    o << csv_field(pv.rows[r].method);
    for (const auto& p : pv.param_columns) o << "," << csv_field(param(pv.rows[r], p));
    for (const auto& c : pv.cells[r]) {
      if (c.values.empty())
        o << ",,,0";
      else
        o << "," << full(c.mean()) << "," << full(c.stddev()) << "," << c.values.size();
    }
    auto avg = pv.row_average(r);
    o << "," << (avg ? full(*avg) : "") << "\n";
  }
  return o.str();
}

std::string latex(const Pivot& pv, int digits) {
  std::ostringstream o;
  std::string note = seeds_note(pv);
  if (auto p = note.find("±"); p != std::string::npos)
    note.replace(p, std::string("±").size(), "+/-");
  o << "% kvlab table: " << pv.metric << note << "\n";
  o << "\\begin{tabular}{l" << std::string(pv.param_columns.size(), 'l')
    << std::string(pv.columns.size() + 1, 'r') << "}\n\\toprule\nMethod";
  for (const auto& p : pv.param_columns) o << " & " << tex_escape(p);
  for (const auto& c : pv.columns) o << " & " << tex_escape(c);
  o << " & Average \\\\\n\\midrule\n";
  for (size_t r = 0; r < pv.rows.size(); ++r) {
    o << tex_escape(pv.rows[r].method);
    for (const auto& p : pv.param_columns) o << " & " << tex_escape(param(pv.rows[r], p));
    for (const auto& c : pv.cells[r]) o << " & " << cell_text(c, digits, " \\pm ", true);
    auto avg = pv.row_average(r);
    o << " & " << (avg ? fixed(*avg, digits) : "--") << " \\\\\n";
  }
  o << "\\bottomrule\n\\end{tabular}\n";
  if (any_partial(pv)) o << "% $^\\dagger$: some seeds of this cell are incomplete\n";
  for (const auto& m : pv.missing_labels) o << "% missing (incomplete): " << m << "\n";
  return o.str();
}

}  // namespace

TableFormat parse_table_format(const std::string& s) {
  if (s == "md" || s == "markdown") return TableFormat::kMarkdown;
  if (s == "csv") return TableFormat::kCsv;
  if (s == "latex" || s == "tex") return TableFormat::kLatex;
  fail("kvlab table: --format '", s, "' is not one of md, csv, latex");
}

std::string format_table(const Pivot& pv, TableFormat fmt, int digits) {
  switch (fmt) {
    case TableFormat::kMarkdown: return markdown(pv, digits);
    case TableFormat::kCsv: return csv(pv);
    case TableFormat::kLatex: return latex(pv, digits);
  }
  return "";
}

}  // namespace kvlab::report
