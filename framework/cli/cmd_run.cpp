// kvlab run CONFIG [--set k=v]... and kvlab help NAME.
// A run folder is <output>/<name>/<point-id>/ holding config.resolved.yaml, meta.json,
// results.json, log.txt and, written last, COMPLETE. A folder with COMPLETE is never rerun or
// overwritten; one without it (a killed run) is run again from the start.
#include <unistd.h>

#include <H5public.h>
#include <cblas.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "experiments/common/experiment.h"
#include "framework/cli/args.h"
#include "framework/cli/commands.h"
#include "framework/core/error.h"
#include "framework/core/file_io.h"
#include "framework/harness/run_config.h"
#include "framework/io/trace_h5.h"
#include "framework/model/model_init.h"
#include "kvlab/build_info.h"

namespace kvlab::cli {

namespace fs = std::filesystem;

namespace {

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

// A random model for the run, written once under <output>/<name>/models/<hash>/ and reused.
std::string ensure_random_model(const harness::RunConfig& c) {
  const std::string spec = str(c.model.preset, "|", c.model.config_file, "|", c.model.dtype, "|", c.model.seed);
  const fs::path dir = fs::path(c.output) / c.name / "models" / harness::fnv1a_hex(spec).substr(0, 12);
  if (fs::exists(dir / "config.json")) return dir.string();
  model::InitOptions o;
  o.config = c.model.preset.empty() ? model::load_model_config(c.model.config_file)
                                    : model::preset_config(c.model.preset);
  o.dtype = parse_dtype(c.model.dtype, c.file + ": model.dtype");
  o.seed = static_cast<uint64_t>(c.model.seed);
  const fs::path tmp = dir.string() + ".tmp";
  fs::remove_all(tmp);
  model::write_random_model(o, tmp.string());
  fs::create_directories(dir.parent_path());
  fs::rename(tmp, dir);
  return dir.string();
}

nlohmann::json meta_json(const harness::RunConfig& c, int threads, const std::string& model_dir) {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  unsigned maj = 0, min = 0, rel = 0;
  H5get_libversion(&maj, &min, &rel);
  return {{"kvlab_version", KVLAB_VERSION},
          {"git_commit", KVLAB_GIT_COMMIT},
          {"build", {{"type", KVLAB_BUILD_TYPE}, {"compiler", KVLAB_COMPILER}, {"cuda", KVLAB_HAVE_CUDA_STR}}},
          {"threads", threads},
          {"seed", c.seed},
          {"model_dir", model_dir},
          {"host", host},
          {"started_utc", utc_now()},
          {"dependencies",
           {{"openblas", openblas_get_config()},
            {"hdf5", str(maj, ".", min, ".", rel)}}},
          {"environment", {{"OPENBLAS_CORETYPE", getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : ""}}}};
}

const std::vector<ParamDecl>& method_decls(const std::string& n) {
  return kv::KvRegistry::instance().find(n).params;
}
const std::vector<ParamDecl>& experiment_decls(const std::string& n) {
  return experiments::ExperimentRegistry::instance().find(n).params;
}

void print_params(const std::vector<ParamDecl>& params) {
  if (params.empty()) std::printf("  (no parameters)\n");
  for (const auto& p : params) {
    std::string range;
    if (p.min || p.max)
      range = str(" range [", p.min ? param_value_to_string(*p.min) : "-inf", ", ",
                  p.max ? param_value_to_string(*p.max) : "inf", "]");
    if (!p.choices.empty()) {
      range = " one of:";
      for (const auto& ch : p.choices) range += " " + ch;
    }
    std::printf("  %-16s %-7s default %s%s\n      %s\n", p.name.c_str(),
                param_type_name(p.type).c_str(), param_value_to_string(p.default_value).c_str(),
                range.c_str(), p.help.c_str());
  }
}

}  // namespace

int cmd_run(int argc, char** argv, int first) {
  Args a("run", "Runs the experiment a YAML config describes and writes <output>/<name>/<point-id>/.",
         {{"set", "KEY=VALUE", "override any config key, e.g. --set task.max_tokens=512", "", false, true},
          {"check", "", "validate the config, print the resolved YAML and exit"}},
         {"CONFIG"});
  if (!a.parse(argc, argv, first)) return 0;
  const std::string file = a.positionals()[0];
  const harness::RunConfig c = harness::load_run_config(file, a.get_all("set"), method_decls, experiment_decls);
  if (a.flag("check")) {
    std::printf("%s", c.resolved_yaml().c_str());
    return 0;
  }
  const fs::path dir = fs::path(c.output) / c.name / c.point_id();
  if (fs::exists(dir / "COMPLETE")) {
    std::fprintf(stderr, "%s: complete, skipped (delete the folder to run it again)\n", dir.c_str());
    return 0;
  }
  const int threads = set_threads(static_cast<int>(c.threads));
  const std::string model_dir = c.model.is_random() ? ensure_random_model(c) : c.model.path;
  fs::create_directories(dir);
  std::ofstream log(dir / "log.txt", std::ios::app);
  auto say = [&](const std::string& line) {
    std::fprintf(stderr, "%s\n", line.c_str());
    log << utc_now() << " " << line << "\n";
    log.flush();
  };
  say(str("run ", c.name, " point ", c.point_id(), ": experiment ", c.experiment, ", method ",
          c.method, ", model ", model_dir, c.model.is_random() ? " (random weights)" : "",
          ", threads ", threads));
  write_file_atomic((dir / "config.resolved.yaml").string(), c.resolved_yaml());
  nlohmann::json meta = meta_json(c, threads, model_dir);
  write_file_atomic((dir / "meta.json").string(), meta.dump(2) + "\n");

  experiments::RunContext ctx;
  ctx.model = model::Model::load(model_dir);
  ctx.method = c.method;
  ctx.make_cache = kv::make_kv_factory(c.method, c.method_params);
  ctx.task = c.task;
  ctx.seed = static_cast<uint64_t>(c.seed);
  ctx.threads = threads;
  ctx.pool = &ThreadPool::global();
  io::H5TraceSink trace((dir / "trace.h5").string());
  trace.set_attribute("/", "config_resolved_yaml", c.resolved_yaml());
  trace.set_attribute("/", "meta_json", meta.dump());
  ctx.trace = &trace;
  const auto& exp = experiments::ExperimentRegistry::instance().find(c.experiment);
  nlohmann::json results = exp.run(ctx);
  trace.close();
  results["point_id"] = c.point_id();
  meta["finished_utc"] = utc_now();
  write_file_atomic((dir / "meta.json").string(), meta.dump(2) + "\n");
  write_file_atomic((dir / "results.json").string(), results.dump(2) + "\n");
  write_file_atomic((dir / "COMPLETE").string(), utc_now() + "\n");
  say(str("done: ", (dir / "results.json").string()));
  // Headline numbers on stdout: every top-level scalar of results.json.
  for (const auto& [k, v] : results.items())
    if (v.is_primitive()) std::printf("%-20s %s\n", k.c_str(), v.dump().c_str());
  return 0;
}

int cmd_help(int argc, char** argv, int first) {
  Args a("help", "Describes a KV-cache method or an experiment and the parameters it declares.", {},
         {"NAME"});
  if (!a.parse(argc, argv, first)) return 0;
  const std::string name = a.positionals()[0];
  const auto& kreg = kv::KvRegistry::instance();
  const auto& ereg = experiments::ExperimentRegistry::instance();
  const auto knames = kreg.names(), enames = ereg.names();
  if (std::find(knames.begin(), knames.end(), name) != knames.end()) {
    const auto& m = kreg.find(name);
    std::printf("KV-cache method %s\n  %s\n\nparameters (method: block):\n", m.name.c_str(), m.help.c_str());
    print_params(m.params);
    return 0;
  }
  if (std::find(enames.begin(), enames.end(), name) != enames.end()) {
    const auto& e = ereg.find(name);
    std::printf("experiment %s\n  %s\n\nparameters (task: block):\n", e.name.c_str(), e.help.c_str());
    print_params(e.params);
    return 0;
  }
  std::vector<std::string> all = knames;
  all.insert(all.end(), enames.begin(), enames.end());
  std::string msg = str("kvlab help: no method or experiment named '", name, "'");
  if (auto s = did_you_mean(name, all)) msg += str(" (did you mean '", *s, "'?)");
  msg += "; methods:";
  for (const auto& n : knames) msg += " " + n;
  msg += "; experiments:";
  for (const auto& n : enames) msg += " " + n;
  throw Error(msg);
}

}  // namespace kvlab::cli
