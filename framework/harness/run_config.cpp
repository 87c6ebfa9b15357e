#include "framework/harness/run_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>

#include <cstdio>
#include <map>
#include <set>
#include <sstream>

#include "framework/core/error.h"
#include "framework/harness/config_tree.h"

namespace kvlab::harness {

namespace {
void apply_override(YAML::Node& root, const std::string& ov);
}  // namespace

namespace detail {

// "file:line: key.path" for a node (yaml-cpp lines are 0-based; -1 for nodes made by --set).
std::string where(const std::string& file, const YAML::Node& n, const std::string& key) {
  const auto mark = n.Mark();
  if (mark.line < 0) return str(file, " (--set): ", key);
  return str(file, ":", mark.line + 1, ": ", key);
}

// As above for a map entry: the key's line, or the value's where the key was made by a sweep
// (sweep values keep the line they were written on).
std::string where(const std::string& file, const YAML::Node& key, const YAML::Node& value,
                  const std::string& path) {
  return where(file, key.Mark().line >= 0 ? key : value, path);
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    parts.push_back(path.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts;
}

void set_path(YAML::Node& root, const std::vector<std::string>& parts, const YAML::Node& value) {
  // Walk with node references (yaml-cpp nodes are handles; operator[] creates missing keys).
  std::vector<YAML::Node> chain{root};
  auto index_of = [&](const YAML::Node& seq, const std::string& part) -> size_t {
    const bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](unsigned char ch) {
      return std::isdigit(ch);
    });
    if (!digits) fail("--set: '", part, "' must be a list index (the key holds a list)");
    const size_t idx = std::stoul(part);
    if (idx >= seq.size()) fail("--set: index ", idx, " is past the list's ", seq.size(), " entries");
    return idx;
  };
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node cur = chain.back();
    if (cur.IsSequence()) {  // stages.1.seq_len: a numeric part indexes a list
      chain.push_back(cur[index_of(cur, parts[i])]);
      continue;
    }
    YAML::Node next = cur[parts[i]];
    if (next.IsDefined() && !next.IsMap() && !next.IsSequence()) {
      // `model: DIR` written as a scalar: a map key below it means the scalar is replaced;
      // `method: NAME` becomes {name: NAME} (method.rank=8 keeps the method).
      YAML::Node m(YAML::NodeType::Map);
      if (i == 0 && parts[0] == "method" && next.IsScalar()) m["name"] = YAML::Node(next);
      cur.remove(parts[i]);
      cur[parts[i]] = m;
      next = cur[parts[i]];
    }
    chain.push_back(next);
  }
  if (chain.back().IsSequence()) {
    YAML::Node seq = chain.back();
    seq[index_of(seq, parts.back())] = value;
    return;
  }
  // Replace the entry (not assign through it): the old value node may be shared with another tree.
  chain.back().remove(parts.back());
  chain.back()[parts.back()] = value;
}

YAML::Node load_yaml(const std::string& file, const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(file);
  } catch (const YAML::BadFile&) {
    fail(file, ": cannot open config file");
  } catch (const YAML::ParserException& e) {
    fail(file, ":", e.mark.line + 1, ":", e.mark.column + 1, ": malformed YAML: ", e.msg);
  }
  if (!root.IsMap())
    fail(file, ": the top level must be a map of keys");
  for (const auto& ov : overrides) apply_override(root, ov);
  return root;
}

void check_keys(const std::string& file, const YAML::Node& map, const std::string& prefix,
                const std::vector<std::string>& allowed) {
  for (const auto& kv : map) {
    const std::string k = kv.first.as<std::string>();
    if (std::find(allowed.begin(), allowed.end(), k) != allowed.end()) continue;
    std::string msg = str(where(file, kv.first, kv.second, prefix + k), ": unknown key");
    if (auto s = did_you_mean(k, allowed)) msg += str(" (did you mean '", prefix + *s, "'?)");
    msg += "; allowed here:";
    for (const auto& a : allowed) msg += " " + a;
    throw Error(msg);
  }
}

}  // namespace detail

namespace {

using detail::check_keys;
using detail::where;


std::string scalar(const std::string& file, const YAML::Node& n, const std::string& key) {
  if (!n.IsScalar()) fail(where(file, n, key), ": expected a single value");
  return n.Scalar();
}

int64_t integer(const std::string& file, const YAML::Node& n, const std::string& key) {
  const std::string s = scalar(file, n, key);
  try {
    size_t used = 0;
    const long long v = std::stoll(s, &used);
    if (used == s.size()) return v;
  } catch (...) {
  }
  fail(where(file, n, key), ": expected an integer, got '", s, "'");
}

// Fills `values` from a YAML map against its declarations (type and range checked by
// ParamValues). Nested maps are not parameters.
void fill_params(const std::string& file, const YAML::Node& map, const std::string& prefix,
                 const std::vector<std::string>& skip, ParamValues& values) {
  for (const auto& kv : map) {
    const std::string k = kv.first.as<std::string>();
    if (std::find(skip.begin(), skip.end(), k) != skip.end()) continue;
    const std::string w = where(file, kv.first, kv.second, prefix + k);
    if (!kv.second.IsScalar()) fail(w, ": expected a single value");
    // ParamValues reports "<w>: unknown parameter 'k'" with the declared names.
    values.set_from_string(k, kv.second.Scalar(),
                           where(file, kv.first, kv.second, prefix.substr(0, prefix.size() - 1)));
  }
}

// A --set value keeps no line of the file: rebuilt without marks so errors say "(--set)".
YAML::Node without_marks(const YAML::Node& n) {
  if (n.IsScalar()) return YAML::Node(n.Scalar());
  if (n.IsSequence()) {
    YAML::Node out(YAML::NodeType::Sequence);
    for (const auto& c : n) out.push_back(without_marks(c));
    return out;
  }
  if (n.IsMap()) {
    YAML::Node out(YAML::NodeType::Map);
    for (const auto& kv : n) out[kv.first.Scalar()] = without_marks(kv.second);
    return out;
  }
  return YAML::Node();
}

// Applies "a.b.c=value" to the tree; value parsed as YAML (so lists and numbers keep their type).
void apply_override(YAML::Node& root, const std::string& ov) {
  const auto eq = ov.find('=');
  if (eq == std::string::npos || eq == 0) fail("--set ", ov, ": expected KEY.PATH=VALUE");
  const std::string path = ov.substr(0, eq), value = ov.substr(eq + 1);
  const std::vector<std::string> parts = detail::split_path(path);
  for (const auto& p : parts)
    if (p.empty()) fail("--set ", ov, ": empty key in '", path, "'");
  YAML::Node v;
  try {
    v = YAML::Load(value);
  } catch (const YAML::Exception& e) {
    fail("--set ", ov, ": cannot parse value: ", e.msg);
  }
  detail::set_path(root, parts, without_marks(v));
}

void emit_params(YAML::Emitter& e, const ParamValues& p) {
  for (const auto& [k, v] : p.values())
    e << YAML::Key << k << YAML::Value << param_value_to_string(v);
}

}  // namespace

std::string fnv1a_hex(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string RunConfig::resolved_yaml() const {
  YAML::Emitter e;
  e << YAML::BeginMap;
  e << YAML::Key << "experiment" << YAML::Value << experiment;
  e << YAML::Key << "method" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "name" << YAML::Value << method;
  emit_params(e, method_params);
  e << YAML::EndMap;
  e << YAML::Key << "model" << YAML::Value << YAML::BeginMap;
  if (!model.path.empty()) {
    e << YAML::Key << "path" << YAML::Value << model.path;
  } else {
    if (!model.config_file.empty()) e << YAML::Key << "config" << YAML::Value << model.config_file;
    e << YAML::Key << "dtype" << YAML::Value << model.dtype;
    if (!model.preset.empty()) e << YAML::Key << "preset" << YAML::Value << model.preset;
    e << YAML::Key << "seed" << YAML::Value << model.seed;
  }
  e << YAML::EndMap;
  e << YAML::Key << "name" << YAML::Value << name;
  e << YAML::Key << "output" << YAML::Value << output;
  e << YAML::Key << "seed" << YAML::Value << seed;
  e << YAML::Key << "task" << YAML::Value << YAML::BeginMap;
  emit_params(e, task);
  e << YAML::EndMap;
  e << YAML::Key << "threads" << YAML::Value << threads;
  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

std::string RunConfig::point_id() const { return fnv1a_hex(resolved_yaml()).substr(0, 12); }

RunConfig detail::config_from_tree(const std::string& file, const YAML::Node& root,
                                   const DeclLookup& method_params,
                                   const DeclLookup& experiment_params) {
  RunConfig c;
  c.file = file;
  check_keys(
      file, root, "",
      {"name", "experiment", "model", "method", "task", "seed", "threads", "output", "sweep"});
  // (`sweep` is taken out by load_sweep before a point's tree gets here.)
  for (const char* k : {"name", "experiment", "model"})
    if (!root[k]) fail(file, ": missing required key '", k, "'");
  c.name = scalar(file, root["name"], "name");
  for (char ch : c.name)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.'))
      fail(where(file, root["name"], "name"),
           ": use letters, digits, '-', '_' or '.' (it names a folder)");
  c.experiment = scalar(file, root["experiment"], "experiment");

  const YAML::Node m = root["model"];
  if (m.IsScalar()) {
    c.model.path = m.Scalar();
  } else if (m.IsMap()) {
    check_keys(file, m, "model.", {"path", "preset", "config", "dtype", "seed"});
    const int given = !!m["path"] + !!m["preset"] + !!m["config"];
    if (given != 1) fail(where(file, m, "model"), ": give exactly one of path, preset, config");
    if (m["path"]) c.model.path = scalar(file, m["path"], "model.path");
    if (m["preset"]) c.model.preset = scalar(file, m["preset"], "model.preset");
    if (m["config"]) c.model.config_file = scalar(file, m["config"], "model.config");
    if (m["dtype"]) {
      c.model.dtype = scalar(file, m["dtype"], "model.dtype");
      if (c.model.dtype != "f32" && c.model.dtype != "bf16" && c.model.dtype != "f16")
        fail(where(file, m["dtype"], "model.dtype"), ": expected f32, bf16 or f16, got '",
             c.model.dtype, "'");
    }
    if (m["seed"]) c.model.seed = integer(file, m["seed"], "model.seed");
    if (!c.model.path.empty() && (m["dtype"] || m["seed"]))
      fail(where(file, m, "model"), ": dtype and seed apply only to random models (preset/config)");
  } else {
    fail(where(file, m, "model"), ": expected a model folder or a map");
  }

  YAML::Node meth = root["method"];
  if (meth) {
    if (meth.IsScalar()) {
      c.method = meth.Scalar();
    } else if (meth.IsMap()) {
      if (!meth["name"]) fail(where(file, meth, "method"), ": missing 'name'");
      c.method = scalar(file, meth["name"], "method.name");
    } else {
      fail(where(file, meth, "method"), ": expected a method name or a map with 'name'");
    }
  }
  try {
    c.method_params = ParamValues(method_params(c.method));
  } catch (const Error& e) {
    const YAML::Node at = !meth ? root : (meth.IsMap() && meth["name"]) ? meth["name"] : meth;
    fail(where(file, at, "method.name"), ": ", e.what());
  }
  if (meth && meth.IsMap()) fill_params(file, meth, "method.", {"name"}, c.method_params);

  try {
    c.task = ParamValues(experiment_params(c.experiment));
  } catch (const Error& e) {
    fail(where(file, root["experiment"], "experiment"), ": ", e.what());
  }
  if (root["task"]) {
    if (!root["task"].IsMap()) fail(where(file, root["task"], "task"), ": expected a map");
    fill_params(file, root["task"], "task.", {}, c.task);
  }
  if (root["seed"]) c.seed = integer(file, root["seed"], "seed");
  if (root["threads"]) {
    c.threads = integer(file, root["threads"], "threads");
    if (c.threads < 0) fail(where(file, root["threads"], "threads"), ": must be >= 0");
  }
  if (root["output"]) c.output = scalar(file, root["output"], "output");
  return c;
}

}  // namespace kvlab::harness
