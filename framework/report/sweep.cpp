#include "framework/report/sweep.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "framework/core/error.h"

namespace kvlab::report {
namespace fs = std::filesystem;

namespace {

void flatten(const YAML::Node& n, const std::string& prefix,
             std::map<std::string, std::string>& out) {
  if (n.IsMap()) {
    for (const auto& kv : n) {
      const std::string k = kv.first.as<std::string>();
      flatten(kv.second, prefix.empty() ? k : prefix + "." + k, out);
    }
  } else if (n.IsScalar()) {
    out[prefix] = n.as<std::string>();
  } else if (n.IsNull()) {
    out[prefix] = "";
  } else {  // a sequence: one flow-style value, e.g. "[1024, 2048]"
    YAML::Emitter e;
    e << YAML::Flow << n;
    out[prefix] = e.c_str();
  }
}

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

bool parse_number(const std::string& s, double* v) {
  if (s.empty()) return false;
  char* end = nullptr;
  *v = std::strtod(s.c_str(), &end);
  return end && *end == '\0';
}

// Keys that identify neither a row nor a column and never label anything.
bool ignored_key(const std::string& k) { return k == "seed" || k == "output" || k == "name"; }
bool is_column_key(const std::string& k) { return k == "experiment" || k.rfind("task.", 0) == 0; }

std::string get(const Point& p, const std::string& k) {
  auto it = p.config.find(k);
  return it == p.config.end() ? std::string() : it->second;
}

}  // namespace

bool value_less(const std::string& a, const std::string& b) {
  double x, y;
  const bool nx = parse_number(a, &x), ny = parse_number(b, &y);
  if (nx && ny && x != y) return x < y;
  if (nx != ny) return nx;  // numbers before words
  return a < b;
}

std::vector<Point> load_sweep(const std::string& dir) {
  if (!fs::is_directory(dir))
    fail("kvlab report: '", dir, "' is not a folder (expected a sweep folder <output>/<name>/)");
  std::vector<Point> points;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_directory()) continue;
    const fs::path cfg = e.path() / "config.resolved.yaml";
    if (!fs::exists(cfg)) continue;
    Point p;
    p.id = e.path().filename().string();
    p.dir = e.path().string();
    try {
      flatten(YAML::LoadFile(cfg.string()), "", p.config);
    } catch (const YAML::Exception& ex) {
      fail(cfg.string(), ": cannot parse: ", ex.what());
    }
    const fs::path res = e.path() / "results.json";
    if (fs::exists(e.path() / "COMPLETE") && fs::exists(res)) {
      try {
        p.results = nlohmann::json::parse(read_text(res));
        p.complete = true;
      } catch (const nlohmann::json::exception& ex) {
        fail(res.string(), ": not valid JSON: ", ex.what());
      }
    }
    points.push_back(std::move(p));
  }
  if (points.empty())
    fail("kvlab report: no run points under '", dir,
         "' (a point is a folder with config.resolved.yaml; give the sweep folder "
         "<output>/<name>/)");
  std::sort(points.begin(), points.end(),
            [](const Point& a, const Point& b) { return a.id < b.id; });
  return points;
}

std::string default_metric(const std::string& experiment, const nlohmann::json& results) {
  if (results.is_object() && results.contains("headline") && results["headline"].is_string())
    return results["headline"].get<std::string>();
  if (experiment == "ppl" || experiment == "pg19") return "perplexity";
  if (results.is_object() && results.contains("grid")) return "score";
  if (results.is_object() && results.contains("score")) return "score";
  std::string keys;
  if (results.is_object())
    for (const auto& [k, v] : results.items())
      if (v.is_number()) keys += (keys.empty() ? "" : ", ") + k;
  fail("kvlab table: experiment '", experiment,
       "' has no default metric; choose one with --metric (numbers in results.json: ",
       keys.empty() ? "none" : keys, ")");
}

std::optional<double> metric_value(const nlohmann::json& results, const std::string& metric) {
  const nlohmann::json* j = &results;
  std::stringstream ss(metric);
  std::string part;
  bool found = true;
  while (std::getline(ss, part, '.')) {
    if (!j->is_object() || !j->contains(part)) {
      found = false;
      break;
    }
    j = &(*j)[part];
  }
  if (found && j->is_number()) return j->get<double>();
  if (metric == "score" && results.is_object() && results.contains("grid") &&
      results["grid"].is_array() && !results["grid"].empty()) {
    double s = 0;
    for (const auto& c : results["grid"]) s += c.value("score", 0.0);
    return s / static_cast<double>(results["grid"].size());
  }
  return std::nullopt;
}

double Cell::mean() const {
  double s = 0;
  for (double v : values) s += v;
  return values.empty() ? NAN : s / static_cast<double>(values.size());
}

double Cell::stddev() const {
  if (values.size() < 2) return 0;
  const double m = mean();
  double s = 0;
  for (double v : values) s += (v - m) * (v - m);
  return std::sqrt(s / static_cast<double>(values.size() - 1));
}

std::optional<double> Pivot::row_average(size_t row) const {
  double s = 0;
  for (const auto& c : cells[row]) {
    if (c.values.empty()) return std::nullopt;
    s += c.mean();
  }
  if (cells[row].empty()) return std::nullopt;
  return s / static_cast<double>(cells[row].size());
}

PointKeys varying_keys(const std::vector<Point>& points) {
  PointKeys k;
  std::set<std::string> all;
  for (const auto& p : points)
    for (const auto& [key, v] : p.config) all.insert(key);
  std::set<std::string> experiments;
  for (const auto& p : points) experiments.insert(get(p, "experiment"));
  k.multi_experiment = experiments.size() > 1;
  std::vector<std::string> method_keys, other_row;
  for (const auto& key : all) {
    if (ignored_key(key) || key == "experiment" || key == "method.name") continue;
    // Values compared within a group: method params per method name, task params per experiment.
    const bool col = is_column_key(key), meth = key.rfind("method.", 0) == 0;
    std::map<std::string, std::set<std::string>> by_group;
    for (const auto& p : points) {
      const std::string g = col ? get(p, "experiment") : meth ? get(p, "method.name") : "";
      auto it = p.config.find(key);
      if (meth && it == p.config.end()) continue;  // the method has no such parameter
      by_group[g].insert(it == p.config.end() ? std::string("\x01") : it->second);
    }
    bool varies = false;
    for (const auto& [g, vals] : by_group) varies |= vals.size() > 1;
    if (!varies) continue;
    if (col)
      k.column_keys.push_back(key);
    else if (meth)
      method_keys.push_back(key);
    else
      other_row.push_back(key);
  }
  k.row_keys = method_keys;
  k.row_keys.insert(k.row_keys.end(), other_row.begin(), other_row.end());
  return k;
}

static std::string short_key(const std::string& k) {
  return k.rfind("method.", 0) == 0 ? k.substr(7) : k.rfind("task.", 0) == 0 ? k.substr(5) : k;
}

RowKey row_of(const Point& p, const PointKeys& k) {
  RowKey r;
  r.method = get(p, "method.name");
  for (const auto& key : k.row_keys) {
    auto it = p.config.find(key);
    if (it != p.config.end()) r.params[short_key(key)] = it->second;
  }
  return r;
}

std::string row_label(const RowKey& r) {
  std::string s = r.method;
  for (const auto& [k, v] : r.params) s += " " + k + "=" + v;
  return s;
}

std::string column_of(const Point& p, const PointKeys& k) {
  std::string s;
  for (const auto& key : k.column_keys) {
    auto it = p.config.find(key);
    if (it == p.config.end()) continue;
    s += (s.empty() ? "" : " ") + short_key(key) + "=" + it->second;
  }
  const std::string e = get(p, "experiment");
  if (s.empty()) return e;
  return k.multi_experiment ? e + " " + s : s;
}

namespace {

struct RowOrder {
  const PointKeys* k;
  std::vector<std::string> names;  // short param names in display order
  bool operator()(const RowKey& a, const RowKey& b) const {
    if (a.method != b.method) {
      if (a.method == "full_cache") return true;
      if (b.method == "full_cache") return false;
      return a.method < b.method;
    }
    for (const auto& n : names) {
      auto ia = a.params.find(n), ib = b.params.find(n);
      const std::string va = ia == a.params.end() ? "" : ia->second,
                        vb = ib == b.params.end() ? "" : ib->second;
      if (va != vb) return value_less(va, vb);
    }
    return false;
  }
};

// Column order: experiment, then each varying task key's value.
std::vector<std::string> column_sort_key(const Point& p, const PointKeys& k) {
  std::vector<std::string> v{get(p, "experiment")};
  for (const auto& key : k.column_keys) v.push_back(get(p, key));
  return v;
}

bool vec_less(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    if (a[i] != b[i]) return value_less(a[i], b[i]);
  return a.size() < b.size();
}

}  // namespace

std::vector<RowKey> sorted_rows(const std::vector<Point>& points, const PointKeys& k) {
  std::vector<std::string> names;
  for (const auto& key : k.row_keys) names.push_back(short_key(key));
  RowOrder order{&k, names};
  std::vector<RowKey> rows;
  for (const auto& p : points) {
    RowKey r = row_of(p, k);
    if (std::none_of(rows.begin(), rows.end(),
                     [&](const RowKey& x) { return !order(x, r) && !order(r, x); }))
      rows.push_back(r);
  }
  std::sort(rows.begin(), rows.end(), order);
  return rows;
}

Pivot pivot(const std::vector<Point>& points, const std::string& metric) {
  Pivot pv;
  const PointKeys k = varying_keys(points);
  for (const auto& key : k.row_keys) pv.param_columns.push_back(short_key(key));
  RowOrder order{&k, pv.param_columns};

  // Metric: given, or the default of the first complete point's experiment (all must agree).
  pv.metric = metric;
  if (pv.metric.empty()) {
    std::set<std::string> ms;
    for (const auto& p : points)
      if (p.complete) ms.insert(default_metric(get(p, "experiment"), p.results));
    if (ms.size() > 1) {
      std::string list;
      for (const auto& m : ms) list += (list.empty() ? "" : ", ") + m;
      fail("kvlab table: the sweep's experiments have different headline metrics (", list,
           "); choose one with --metric");
    }
    pv.metric = ms.empty() ? "perplexity" : *ms.begin();
  }

  const std::vector<RowKey> rows = sorted_rows(points, k);
  std::vector<std::pair<std::vector<std::string>, std::string>> cols;
  for (const auto& p : points) {
    auto ck = column_sort_key(p, k);
    if (std::none_of(cols.begin(), cols.end(), [&](const auto& c) { return c.first == ck; }))
      cols.emplace_back(ck, column_of(p, k));
  }
  std::sort(cols.begin(), cols.end(),
            [](const auto& a, const auto& b) { return vec_less(a.first, b.first); });
  pv.rows = rows;
  for (const auto& c : cols) pv.columns.push_back(c.second);
  pv.cells.assign(rows.size(), std::vector<Cell>(cols.size()));

  // Points in seed order so each cell's values are too.
  std::vector<const Point*> sorted;
  for (const auto& p : points) sorted.push_back(&p);
  std::stable_sort(sorted.begin(), sorted.end(), [](const Point* a, const Point* b) {
    return value_less(get(*a, "seed"), get(*b, "seed"));
  });
  struct Missing {
    size_t row, col;
    const Point* p;
    std::string label;
  };
  std::vector<Missing> missing;
  for (const Point* p : sorted) {
    const RowKey r = row_of(*p, k);
    size_t ri = 0, ci = 0;
    while (order(rows[ri], r) || order(r, rows[ri])) ++ri;
    const auto ck = column_sort_key(*p, k);
    while (cols[ci].first != ck) ++ci;
    Cell& c = pv.cells[ri][ci];
    if (!p->complete) {
      ++c.incomplete;
      missing.push_back(
          {ri, ci, p,
           p->id + ": " + row_label(r) + " | " + cols[ci].second + " | seed=" + get(*p, "seed")});
      continue;
    }
    auto v = metric_value(p->results, pv.metric);
    if (!v) fail("kvlab table: ", p->dir, "/results.json has no number '", pv.metric, "'");
    c.values.push_back(*v);
  }
  // Missing points in table order (row, column, seed).
  std::stable_sort(missing.begin(), missing.end(), [](const Missing& a, const Missing& b) {
    return a.row != b.row ? a.row < b.row : a.col < b.col;
  });
  for (const auto& m : missing) pv.missing.push_back(m.p), pv.missing_labels.push_back(m.label);
  pv.min_seeds = 1 << 30;
  for (const auto& row : pv.cells)
    for (const auto& c : row)
      if (!c.values.empty()) {
        pv.min_seeds = std::min<int>(pv.min_seeds, static_cast<int>(c.values.size()));
        pv.max_seeds = std::max<int>(pv.max_seeds, static_cast<int>(c.values.size()));
      }
  if (pv.max_seeds == 0) pv.min_seeds = 0;
  return pv;
}

}  // namespace kvlab::report
