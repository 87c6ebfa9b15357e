#include "framework/harness/sweep.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "framework/core/error.h"
#include "framework/harness/config_tree.h"

namespace kvlab::harness {

namespace {

using detail::where;

// Top-level keys a sweep may vary. `name` and `output` name the results folder every point
// shares, and `sweep` cannot sweep itself.
const std::vector<std::string> kSweepable = {"experiment", "model", "method",
                                             "task",       "seed",  "threads"};

struct Axis {
  std::string kind;                // "grid" or "zip"
  std::string key;                 // "method.rank"
  std::vector<std::string> parts;  // {"method", "rank"}
  std::vector<YAML::Node> values;
  bool method_param() const {
    return parts.size() == 2 && parts[0] == "method" && parts[1] != "name";
  }
};

std::string value_text(const YAML::Node& n) {
  if (n.IsScalar()) return n.Scalar();
  YAML::Emitter e;
  e << YAML::Flow << n;
  return e.c_str();
}

std::vector<Axis> read_axes(const std::string& file, const YAML::Node& block,
                            const std::string& kind) {
  if (!block.IsMap())
    fail(where(file, block, "sweep." + kind), ": expected a map of KEY.PATH: [values...], e.g. ",
         kind, ": {method.rank: [16, 32]}");
  std::vector<Axis> axes;
  for (const auto& kv : block) {
    Axis a;
    a.kind = kind;
    a.key = kv.first.as<std::string>();
    const std::string w = where(file, kv.first, "sweep." + kind + "." + a.key);
    a.parts = detail::split_path(a.key);
    for (const auto& p : a.parts)
      if (p.empty()) fail(w, ": empty key in '", a.key, "'");
    const std::string& head = a.parts[0];
    if (head == "name" || head == "output")
      fail(w, ": '", head, "' cannot be swept: every point of a sweep shares <output>/<name>/");
    if (std::find(kSweepable.begin(), kSweepable.end(), head) == kSweepable.end()) {
      std::string msg = str(w, ": unknown key '", head, "'");
      if (auto s = did_you_mean(head, kSweepable)) msg += str(" (did you mean '", *s, "'?)");
      msg += "; a sweep can vary:";
      for (const auto& k : kSweepable) msg += " " + k;
      throw Error(msg);
    }
    if (!kv.second.IsSequence() || kv.second.size() == 0)
      fail(w, ": expected a non-empty list of values, e.g. [16, 32]");
    for (const auto& v : kv.second) a.values.push_back(v);
    axes.push_back(std::move(a));
  }
  return axes;
}

// The method name a point's tree names ("" when it has none: the default applies).
std::string method_of(const YAML::Node& root) {
  const YAML::Node m = root["method"];
  if (m && m.IsScalar()) return m.Scalar();
  if (m && m.IsMap() && m["name"] && m["name"].IsScalar()) return m["name"].Scalar();
  return "full_cache";
}

bool declares(const DeclLookup& method_params, const std::string& method, const std::string& param,
              bool unknown_answer) {
  try {
    for (const auto& d : method_params(method))
      if (d.name == param) return true;
    return false;
  } catch (const Error&) {
    return unknown_answer;  // an unknown method: validation reports it with its line
  }
}

}  // namespace

std::string SweepPoint::swept_text() const {
  std::string s;
  for (const auto& [k, v] : swept) s += (s.empty() ? "" : " ") + k + "=" + v;
  return s;
}

std::string Sweep::dir() const {
  const RunConfig& c = points.front().config;
  return (std::filesystem::path(c.output) / c.name).string();
}

Sweep load_sweep(const std::string& file, const std::vector<std::string>& overrides,
                 const DeclLookup& method_params, const DeclLookup& experiment_params) {
  const YAML::Node base = detail::load_yaml(file, overrides);
  Sweep out;
  out.file = file;
  const YAML::Node sw = base["sweep"];
  if (!sw) {
    out.points.push_back(
        {detail::config_from_tree(file, base, method_params, experiment_params), {}});
    return out;
  }
  out.has_sweep = true;
  if (!sw.IsMap()) fail(where(file, sw, "sweep"), ": expected a map with grid, zip and/or methods");
  const std::vector<std::string> kinds = {"grid", "zip", "methods"};
  for (const auto& kv : sw) {
    const std::string k = kv.first.as<std::string>();
    if (std::find(kinds.begin(), kinds.end(), k) != kinds.end()) continue;
    std::string msg = str(where(file, kv.first, "sweep." + k), ": unknown key");
    if (auto s = did_you_mean(k, kinds)) msg += str(" (did you mean 'sweep.", *s, "'?)");
    throw Error(msg + "; allowed here: grid zip methods");
  }

  std::vector<Axis> grid, zip;
  if (sw["grid"]) grid = read_axes(file, sw["grid"], "grid");
  if (sw["zip"]) zip = read_axes(file, sw["zip"], "zip");
  size_t zip_len = 1;
  for (size_t i = 0; i < zip.size(); ++i) {
    if (i == 0) zip_len = zip[0].values.size();
    if (zip[i].values.size() != zip_len)
      fail(where(file, sw["zip"][zip[i].key], "sweep.zip." + zip[i].key), ": has ",
           zip[i].values.size(), " values but sweep.zip.", zip[0].key, " has ", zip_len,
           " (zipped lists are taken together and must be equally long)");
  }
  std::set<std::string> seen;
  for (const auto* axes : {&grid, &zip})
    for (const auto& a : *axes)
      if (!seen.insert(a.key).second)
        fail(where(file, sw["zip"], "sweep.zip." + a.key), ": '", a.key,
             "' is both in sweep.grid and sweep.zip");

  // sweep.methods: each entry a method name or a map {name, ...its parameters}.
  std::vector<YAML::Node> methods;  // read only for names: each point uses its own tree's copy
  if (const YAML::Node ms = sw["methods"]) {
    if (!ms.IsSequence() || ms.size() == 0)
      fail(where(file, ms, "sweep.methods"),
           ": expected a non-empty list such as [{name: full_cache}, {name: ojakv, rank: 8}]");
    // A top-level method block next to sweep.methods holds parameters shared by the listed
    // methods (e.g. --set method.bases=FILE): each key goes to every listed method declaring it
    // and overrides the entry's own value; a name there, or a key no listed method declares,
    // is an error.
    if (const YAML::Node shared = base["method"]) {
      if (!shared.IsMap() || shared["name"])
        fail(where(file, shared, "method"),
             ": give the method either here or in sweep.methods, not both (a method: block next "
             "to sweep.methods may only hold parameters shared by the listed methods)");
    }
    for (size_t i = 0; i < ms.size(); ++i) {
      const YAML::Node e = ms[i];
      const std::string w = where(file, e, str("sweep.methods[", i, "]"));
      if (e.IsScalar()) {
        YAML::Node m(YAML::NodeType::Map);
        m["name"] = e;
        methods.push_back(m);
        continue;
      }
      if (!e.IsMap() || !e["name"]) fail(w, ": expected a method name or a map with 'name'");
      for (const auto* axes : {&grid, &zip})
        for (const auto& a : *axes)
          if (a.parts[0] == "method" && (a.parts.size() == 1 || e[a.parts[1]]))
            fail(w, ": sets '", a.key, "', which the sweep also varies; set it in one place");
      methods.push_back(e);
    }
    for (const auto* axes : {&grid, &zip})
      for (const auto& a : *axes)
        if (a.key == "method" || a.key == "method.name")
          fail(where(file, sw["methods"], "sweep.methods"), ": the sweep varies '", a.key,
               "' too; list the methods in one place");
  }

  // Every method name any point can take: a swept method.KEY applies to the points whose method
  // declares KEY, unless none does (then it is a typo, reported with its line).
  std::set<std::string> all_methods;
  for (const auto& m : methods) all_methods.insert(m["name"].Scalar());
  if (methods.empty()) all_methods.insert(method_of(base));
  for (const auto* axes : {&grid, &zip})
    for (const auto& a : *axes)
      if (a.key == "method" || a.key == "method.name")
        for (const auto& v : a.values) {
          if (v.IsScalar()) all_methods.insert(v.Scalar());
          if (v.IsMap() && v["name"]) all_methods.insert(v["name"].Scalar());
        }
  auto anyone_declares = [&](const std::string& param) {
    for (const auto& m : all_methods)
      if (declares(method_params, m, param, true)) return true;
    return false;
  };
  if (!methods.empty())
    if (const YAML::Node shared = base["method"])
      for (const auto& kv : shared)
        if (!anyone_declares(kv.first.Scalar()))
          fail(where(file, kv.second, "method." + kv.first.Scalar()),
               ": no method in sweep.methods declares '", kv.first.Scalar(), "'");

  const size_t n_methods = std::max<size_t>(1, methods.size());
  size_t n_grid = 1;
  for (const auto& a : grid) n_grid *= a.values.size();
  const size_t total = n_methods * n_grid * zip_len;
  if (total > 100000)
    fail(where(file, sw, "sweep"), ": expands to ", total, " points (limit 100000)");

  std::set<std::string> ids;
  for (size_t mi = 0; mi < n_methods; ++mi) {
    for (size_t gi = 0; gi < n_grid; ++gi) {
      for (size_t zi = 0; zi < zip_len; ++zi) {
        // A fresh tree per point, and the swept values taken from that tree's own sweep block:
        // setting keys never reaches another point, and every value keeps the line it was
        // written on for error messages (yaml-cpp's Clone would drop lines).
        YAML::Node root = detail::load_yaml(file, overrides);
        const YAML::Node fsw = root["sweep"];
        root.remove("sweep");
        SweepPoint p;
        if (!methods.empty()) {
          // (yaml-cpp's Node::operator= writes through a handle: build the map in a new one.)
          const YAML::Node e = fsw["methods"][mi];
          const YAML::Node shared = root["method"];
          YAML::Node m(YAML::NodeType::Map);
          if (e.IsScalar()) m["name"] = e;
          else
            for (const auto& kv : e) m[kv.first.Scalar()] = kv.second;
          if (shared)
            for (const auto& kv : shared)
              if (declares(method_params, m["name"].Scalar(), kv.first.Scalar(), true))
                m[kv.first.Scalar()] = kv.second;
          root["method"] = m;
          for (const auto& kv : m)
            p.swept.emplace_back(
                kv.first.Scalar() == "name" ? "method" : "method." + kv.first.Scalar(),
                value_text(kv.second));
        }
        // Grid index gi -> one value per axis, the last axis fastest.
        std::vector<std::pair<const Axis*, YAML::Node>> chosen;
        size_t rest = gi;
        std::vector<size_t> idx(grid.size());
        for (size_t a = grid.size(); a-- > 0;) {
          idx[a] = rest % grid[a].values.size();
          rest /= grid[a].values.size();
        }
        for (size_t a = 0; a < grid.size(); ++a)
          chosen.emplace_back(&grid[a], fsw["grid"][grid[a].key][idx[a]]);
        for (const auto& a : zip) chosen.emplace_back(&a, fsw["zip"][a.key][zi]);
        // Method names first, so that method.KEY knows which method it lands on.
        for (const auto& [a, v] : chosen)
          if (!a->method_param()) detail::set_path(root, a->parts, v);
        const std::string method = method_of(root);
        for (const auto& [a, v] : chosen) {
          if (a->method_param() && !declares(method_params, method, a->parts[1], true) &&
              anyone_declares(a->parts[1]))
            continue;  // e.g. full_cache crossed with method.rank
          if (a->method_param()) {
            if (!root["method"]) root["method"]["name"] = method;  // the default method, named
            detail::set_path(root, a->parts, v);
          }
          p.swept.emplace_back(a->key, value_text(v));
        }
        // Keep the listing in the order the sweep block gives (methods, grid, zip).
        try {
          p.config = detail::config_from_tree(file, root, method_params, experiment_params);
        } catch (const Error& e) {
          throw Error(str(e.what(), " (in sweep point ", out.points.size() + out.duplicates_dropped,
                          ": ", p.swept_text(), ")"));
        }
        if (!ids.insert(p.config.point_id()).second) {
          ++out.duplicates_dropped;
          continue;
        }
        out.points.push_back(std::move(p));
      }
    }
  }
  const RunConfig& first = out.points.front().config;
  for (const auto& p : out.points)
    if (p.config.name != first.name || p.config.output != first.output)
      fail(file, ": every point of a sweep must share name and output");
  return out;
}

RunConfig load_run_config(const std::string& file, const std::vector<std::string>& overrides,
                          const DeclLookup& method_params, const DeclLookup& experiment_params) {
  Sweep s = load_sweep(file, overrides, method_params, experiment_params);
  if (s.points.size() != 1)
    fail(file, ": has a sweep of ", s.points.size(), " points; run one with --point I");
  return std::move(s.points.front().config);
}

}  // namespace kvlab::harness
