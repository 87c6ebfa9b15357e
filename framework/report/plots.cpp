#include "framework/report/plots.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <tuple>

#include "framework/core/error.h"
#include "framework/io/h5_file.h"
#include "framework/report/svg.h"

namespace kvlab::report {
namespace fs = std::filesystem;

namespace {

void write_text(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary);
  f << s;
  if (!f) fail("kvlab plot: cannot write ", p.string());
}

std::string cfg(const Point& p, const std::string& k) {
  auto it = p.config.find(k);
  return it == p.config.end() ? "" : it->second;
}

std::string fmt(double v, const char* f = "%.3g") {
  char b[32];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

std::optional<double> kv_bytes(const nlohmann::json& r) {
  if (!r.is_object() || !r.contains("kv_memory") || !r["kv_memory"].is_object())
    return std::nullopt;
  const auto& m = r["kv_memory"];
  if (!m.contains("device_bytes")) return std::nullopt;
  return m["device_bytes"].get<double>() + m.value("host_bytes", 0.0);
}

void needle_heatmaps(const std::vector<Point>& points, const PointKeys& k, const fs::path& out,
                     PlotResult& res) {
  // (row label, column label) -> (L, depth) -> scores over seeds.
  std::map<std::pair<std::string, std::string>,
           std::map<std::pair<double, double>, std::vector<double>>>
      groups;
  std::set<std::string> columns;
  for (const auto& p : points) {
    if (!p.complete || !p.results.contains("grid") || !p.results["grid"].is_array()) continue;
    const std::string col = column_of(p, k);
    columns.insert(col);
    auto& g = groups[{row_label(row_of(p, k)), col}];
    try {
      for (const auto& c : p.results["grid"])
        g[{c.at("context_length").get<double>(), c.at("depth").get<double>()}].push_back(
            c.at("score").get<double>());
    } catch (const nlohmann::json::exception& e) {
      fail(p.dir,
           "/results.json: each \"grid\" entry needs numbers context_length, depth and score (",
           e.what(), ")");
    }
  }
  if (groups.empty()) {
    res.notes.push_back("no needle heatmap: no complete point has a \"grid\" in results.json");
    return;
  }
  for (const auto& [key, cells] : groups) {
    std::set<double> ls, ds;
    size_t seeds = 0;
    for (const auto& [ld, v] : cells)
      ls.insert(ld.first), ds.insert(ld.second), seeds = std::max(seeds, v.size());
    const bool fraction = *ds.rbegin() <= 1.0;
    Heatmap h;
    h.title = "Needle in a haystack: " + key.first;
    double total = 0;
    size_t n = 0;
    for (double l : ls) h.x_ticks.push_back(tick_label(l));
    for (double d : ds) {
      h.y_ticks.push_back(fmt(fraction ? d * 100 : d, "%g") + "%");
      std::vector<double> row;
      for (double l : ls) {
        auto it = cells.find({l, d});
        if (it == cells.end()) {
          row.push_back(NAN);
          continue;
        }
        double s = 0;
        for (double v : it->second) s += v;
        row.push_back(s / static_cast<double>(it->second.size()));
        total += row.back(), ++n;
      }
      h.values.push_back(row);
    }
    h.subtitle = (columns.size() > 1 ? key.second + " · " : "") + "mean score " +
                 fmt(total / static_cast<double>(n), "%.3f") +
                 (seeds > 1 ? " · averaged over " + std::to_string(seeds) + " seeds" : "");
    h.x_label = "context length (tokens)";
    h.y_label = "needle depth (% of context)";
    const fs::path file = out / ("needle_" + file_stem(key.first) +
                                 (columns.size() > 1 ? "_" + file_stem(key.second) : "") + ".svg");
    write_text(file, render_heatmap(h));
    res.files.push_back(file.string());
  }
}

void compression_charts(const std::vector<Point>& points, const PointKeys& k,
                        const std::string& metric_in, const fs::path& out, PlotResult& res) {
  std::string metric = metric_in;
  // Per column: full-cache bytes by seed (and any seed), and per row: (ratio, metric) over seeds.
  struct Acc {
    std::vector<double> ratio, value;
  };
  std::map<std::string, std::map<std::string, double>> full_bytes;  // column -> seed -> bytes
  for (const auto& p : points)
    if (p.complete && cfg(p, "method.name") == "full_cache")
      if (auto b = kv_bytes(p.results)) full_bytes[column_of(p, k)][cfg(p, "seed")] = *b;
  struct Row {
    RowKey key;
    Acc acc;
  };
  std::map<std::string, std::map<std::string, Row>>
      data;  // column -> row label -> values over seeds
  bool any_compressed = false;
  for (const auto& p : points) {
    if (!p.complete) continue;
    if (metric.empty()) metric = default_metric(cfg(p, "experiment"), p.results);
    const std::string col = column_of(p, k);
    std::optional<double> ratio;
    if (p.results.contains("compression_ratio") && p.results["compression_ratio"].is_number())
      ratio = p.results["compression_ratio"].get<double>();
    else if (auto b = kv_bytes(p.results); b && full_bytes.count(col)) {
      const auto& fb = full_bytes[col];
      auto it = fb.find(cfg(p, "seed"));
      const double ref = it != fb.end() ? it->second : fb.begin()->second;
      if (ref > 0) ratio = *b / ref;
    }
    auto v = metric_value(p.results, metric);
    if (!ratio || !v) continue;
    const RowKey r = row_of(p, k);
    auto& slot = data[col][row_label(r)];
    slot.key = r;
    slot.acc.ratio.push_back(*ratio);
    slot.acc.value.push_back(*v);
    if (r.method != "full_cache") any_compressed = true;
  }
  if (!any_compressed) {
    res.notes.push_back(
        "no compression chart: no compressed-cache point with a compression ratio (results.json "
        "\"compression_ratio\", or kv_memory beside a full_cache point of the same task)");
    return;
  }
  auto mean = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return s / static_cast<double>(v.size());
  };
  for (const auto& [col, rows] : data) {
    // method -> (ratio, value, parameter label) per row
    std::map<std::string, std::vector<std::tuple<double, double, std::string>>> by_method;
    for (const auto& [label, row] : rows) {
      std::string params;
      for (const auto& [pk, pv] : row.key.params)
        params += (params.empty() ? "" : " ") + pk + "=" + pv;
      by_method[row.key.method].emplace_back(mean(row.acc.ratio), mean(row.acc.value), params);
    }
    LineChart c;
    c.title = metric + " against KV compression";
    c.subtitle = (col != cfg(points.front(), "experiment") ? col + " · " : "") +
                 "ratio = KV bytes kept / full-cache bytes; mean over seeds";
    c.x_label = "compression ratio (KV bytes kept / full cache)";
    c.y_label = metric;
    c.x_from_zero = true;
    size_t color = 0;
    double xmax = 1;
    for (const auto& [m, pts] : by_method)
      for (const auto& pt : pts) xmax = std::max(xmax, std::get<0>(pt));
    for (auto& [m, pts] : by_method) {
      std::sort(pts.begin(), pts.end());
      Series s;
      s.name = m;
      if (m == "full_cache") {  // the reference: a dashed horizontal line at its value
        s.x = {0, xmax};
        s.y = {std::get<1>(pts.front()), std::get<1>(pts.front())};
        s.dashed = true;
        s.color = "#444444";
      } else {
        for (const auto& [x, y, l] : pts) s.x.push_back(x), s.y.push_back(y), s.labels.push_back(l);
        s.markers = true;
        s.color = palette(color++);
      }
      c.series.push_back(s);
    }
    const fs::path file = out / ("compression_" + file_stem(metric) +
                                 (data.size() > 1 ? "_" + file_stem(col) : "") + ".svg");
    write_text(file, render_line_chart(c));
    res.files.push_back(file.string());
  }
}

void nll_position_charts(const std::vector<Point>& points, const PointKeys& k, const fs::path& out,
                         PlotResult& res) {
  // column -> row label -> bucket midpoints and per-seed nll means
  struct Curve {
    std::vector<double> x;
    std::vector<std::vector<double>> y;  // per seed
  };
  std::map<std::string, std::map<std::string, Curve>> data;
  std::vector<std::string> row_order;  // pivot order of row labels
  struct Baseline {
    std::vector<double> x;
    std::vector<std::vector<double>> y;
    std::string source;
  };
  std::map<std::string, Baseline> unigram;  // column -> baseline curve
  for (const auto& p : points) {
    if (!p.complete || !p.results.contains("nll_by_position") ||
        !p.results["nll_by_position"].is_array() || p.results["nll_by_position"].size() < 2)
      continue;
    Curve& c = data[column_of(p, k)][row_label(row_of(p, k))];
    std::vector<double> xs, ys;
    for (const auto& b : p.results["nll_by_position"]) {
      xs.push_back((b.value("start", 0.0) + b.value("end", 0.0)) / 2);
      ys.push_back(b.value("nll_mean", NAN));
    }
    if (c.x.empty()) c.x = xs;
    if (xs == c.x) c.y.push_back(ys);  // seeds with other buckets are left out of the mean
    // The unigram baseline (pg19 task.unigram) scores the same tokens for every method: one
    // series per column, from the first point that has it.
    auto& u = unigram[column_of(p, k)];
    if (u.y.empty() && p.results.contains("unigram") &&
        p.results["nll_by_position"][0].contains("unigram_nll_mean")) {
      u.x = xs;
      u.y.emplace_back();
      for (const auto& b : p.results["nll_by_position"])
        u.y.back().push_back(b.value("unigram_nll_mean", NAN));
      u.source = p.results["unigram"].value("source", std::string("unigram"));
    }
  }
  if (data.empty()) return;  // not a perplexity sweep with position buckets: nothing to say
  const std::vector<RowKey> rows_in_order = sorted_rows(points, k);
  for (const auto& [col, rows] : data) {
    LineChart c;
    c.title = "NLL against position";
    c.subtitle = (col != cfg(points.front(), "experiment") ? col + " · " : "") + "mean over seeds";
    c.x_from_zero = true;
    c.x_label = "token position (bucket centre)";
    c.y_label = "mean NLL (nats / token)";
    size_t color = 0;
    for (const auto& r : rows_in_order) {
      auto it = rows.find(row_label(r));
      if (it == rows.end()) continue;
      Series s;
      s.name = it->first;
      s.x = it->second.x;
      for (size_t i = 0; i < s.x.size(); ++i) {
        double sum = 0;
        for (const auto& seed : it->second.y) sum += seed[i];
        s.y.push_back(sum / static_cast<double>(it->second.y.size()));
      }
      s.markers = s.x.size() <= 40;
      s.color = r.method == "full_cache" ? "#444444" : palette(color++);
      s.dashed = r.method == "full_cache";
      c.series.push_back(s);
    }
    if (auto u = unigram.find(col); u != unigram.end() && !u->second.y.empty()) {
      Series s;
      s.name = "unigram baseline (" + u->second.source + ")";
      s.x = u->second.x;
      s.y = u->second.y.front();
      s.color = "#999999";
      s.dashed = true;
      c.series.push_back(s);
    }
    const fs::path file =
        out / ("nll_by_position" + (data.size() > 1 ? "_" + file_stem(col) : "") + ".svg");
    write_text(file, render_line_chart(c));
    res.files.push_back(file.string());
  }
}

}  // namespace

PlotResult plot_sweep_series(const std::vector<Point>& points, const std::string& series,
                             const std::string& out_dir, int smooth) {
  PlotResult res;
  fs::create_directories(out_dir);
  const PointKeys k = varying_keys(points);
  const std::vector<RowKey> rows_in_order = sorted_rows(points, k);
  std::map<std::string, std::map<std::string, std::vector<std::vector<double>>>>
      data;  // column -> row -> seeds
  for (const auto& p : points) {
    if (!p.complete) continue;
    const fs::path h5 = fs::path(p.dir) / "trace.h5";
    if (!fs::exists(h5)) {
      res.notes.push_back(p.id + ": no trace.h5");
      continue;
    }
    std::vector<int64_t> dims;
    std::vector<float> v;
    try {
      v = io::read_f32(h5.string(), series, &dims);
    } catch (const Error& e) {
      res.notes.push_back(p.id + ": " + e.what());
      continue;
    }
    if (dims.size() != 1) {
      res.notes.push_back(p.id + ": " + series + " is not 1-D (plot one file with --column)");
      continue;
    }
    data[column_of(p, k)][row_label(row_of(p, k))].emplace_back(v.begin(), v.end());
  }
  for (const auto& [col, rows] : data) {
    LineChart c;
    c.title = series;
    c.subtitle = (col != cfg(points.front(), "experiment") ? col + " · " : "") + "mean over seeds" +
                 (smooth > 1 ? ", moving average over " + std::to_string(smooth) + " steps" : "");
    c.x_label = "decode step";
    c.y_label = series.substr(series.find_last_of('/') + 1);
    size_t color = 0;
    for (const auto& r : rows_in_order) {
      auto it = rows.find(row_label(r));
      if (it == rows.end()) continue;
      const auto& seeds = it->second;
      std::vector<double> y = seeds.front();
      size_t n = 1;
      for (size_t si = 1; si < seeds.size(); ++si)
        if (seeds[si].size() == y.size()) {
          for (size_t i = 0; i < y.size(); ++i) y[i] += seeds[si][i];
          ++n;
        }
      for (double& v : y) v /= static_cast<double>(n);
      y = moving_average(y, smooth);
      Series s;
      s.name = it->first;
      const size_t b = (y.size() + 1999) / 2000;  // at most 2000 points per line
      for (size_t i = 0; i < y.size(); i += b) {
        double sum = 0;
        size_t m = 0;
        for (size_t j = i; j < std::min(y.size(), i + b); ++j) sum += y[j], ++m;
        s.x.push_back(static_cast<double>(i));
        s.y.push_back(sum / static_cast<double>(m));
      }
      s.width = 1.5;
      s.color = r.method == "full_cache" ? "#444444" : palette(color++);
      c.series.push_back(s);
    }
    const fs::path file =
        fs::path(out_dir) /
        ("series_" + file_stem(series) + (data.size() > 1 ? "_" + file_stem(col) : "") + ".svg");
    write_text(file, render_line_chart(c));
    res.files.push_back(file.string());
  }
  if (data.empty()) res.notes.push_back("no point has " + series + " in its trace.h5");
  return res;
}

std::string file_stem(const std::string& label) {
  std::string o;
  for (char ch : label) {
    const bool ok =
        std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '-' || ch == '_';
    const char r = ch == '=' ? '-' : ok ? ch : '_';
    if (r == '_' && (o.empty() || o.back() == '_')) continue;  // no leading or doubled '_'
    o += r;
  }
  while (!o.empty() && o.back() == '_') o.pop_back();
  return o.empty() ? "chart" : o;
}

PlotResult plot_sweep(const std::vector<Point>& points, const std::string& out_dir,
                      const std::string& metric) {
  PlotResult res;
  fs::create_directories(out_dir);
  const PointKeys k = varying_keys(points);
  needle_heatmaps(points, k, out_dir, res);
  compression_charts(points, k, metric, out_dir, res);
  nll_position_charts(points, k, out_dir, res);
  return res;
}

std::vector<double> moving_average(const std::vector<double>& v, int window) {
  if (window <= 1) return v;
  std::vector<double> o(v.size());
  double s = 0;
  size_t n = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    if (std::isfinite(v[i])) s += v[i], ++n;
    if (i >= static_cast<size_t>(window) && std::isfinite(v[i - window])) s -= v[i - window], --n;
    o[i] = n ? s / static_cast<double>(n) : NAN;
  }
  return o;
}

void plot_trace(const std::string& h5_path, const std::string& series, const std::string& out_path,
                int smooth, int column) {
  std::vector<int64_t> dims;
  const std::vector<float> raw = io::read_f32(h5_path, series, &dims);
  std::vector<double> y;
  if (dims.size() == 1) {
    if (column >= 0) fail("kvlab plot: ", h5_path, ":", series, " is 1-D; drop --column");
    y.assign(raw.begin(), raw.end());
  } else if (dims.size() == 2) {
    if (column < 0 || column >= dims[1])
      fail("kvlab plot: ", h5_path, ":", series, " is 2-D [", dims[0], ", ", dims[1],
           "]; choose a column with --column 0..", dims[1] - 1);
    for (int64_t i = 0; i < dims[0]; ++i)
      y.push_back(raw[static_cast<size_t>(i * dims[1] + column)]);
  } else {
    fail("kvlab plot: ", h5_path, ":", series, " has ", dims.size(),
         " dimensions; only 1-D and 2-D series plot");
  }
  if (y.empty()) fail("kvlab plot: ", h5_path, ":", series, " is empty");
  // Long series: bucket means, at most 2000 points per line (an SVG stays small and readable).
  auto bucket = [](const std::vector<double>& v, std::vector<double>* xs) {
    const size_t n = v.size(), b = (n + 1999) / 2000;
    std::vector<double> o;
    xs->clear();
    for (size_t i = 0; i < n; i += b) {
      double s = 0;
      size_t c = 0;
      for (size_t j = i; j < std::min(n, i + b); ++j)
        if (std::isfinite(v[j])) s += v[j], ++c;
      o.push_back(c ? s / static_cast<double>(c) : NAN);
      xs->push_back(static_cast<double>(i) + static_cast<double>(std::min(n, i + b) - 1 - i) / 2);
    }
    return o;
  };
  LineChart c;
  c.title = series + (column >= 0 ? "[:, " + std::to_string(column) + "]" : "");
  c.subtitle = fs::path(h5_path).filename().string() + " · " + std::to_string(y.size()) + " steps";
  c.x_label = "decode step";
  c.y_label = series.substr(series.find_last_of('/') + 1);
  Series s;
  s.name = smooth > 1 ? "raw" : c.y_label;
  s.y = bucket(y, &s.x);
  s.color = palette(0);
  s.width = smooth > 1 ? 1 : 1.5;
  if (smooth > 1) s.opacity = 0.35;
  c.series.push_back(s);
  if (smooth > 1) {
    Series m;
    m.name = "moving avg (" + std::to_string(smooth) + ")";
    m.y = bucket(moving_average(y, smooth), &m.x);
    m.color = palette(1);
    m.width = 2.5;
    c.series.push_back(m);
  }
  const fs::path out(out_path);
  if (out.has_parent_path()) fs::create_directories(out.parent_path());
  write_text(out, render_line_chart(c));
}

}  // namespace kvlab::report
