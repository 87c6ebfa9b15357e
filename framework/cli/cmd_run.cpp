// kvlab run CONFIG [--set k=v]... [--point I | --list] and kvlab help NAME.
// A run folder is <output>/<name>/<point-id>/ holding config.resolved.yaml, meta.json,
// results.json, log.txt, trace.h5 and, written last, COMPLETE. A folder with COMPLETE is never
// rerun or overwritten; one without it (a killed run) is cleared and run again from the start.
// A config with a `sweep:` block has many points (framework/harness/sweep.h), run in index
// order; each is run under its lock file (framework/harness/point_lock.h) so that Slurm array
// tasks and hand-started runs sharing a results folder never run the same point twice at once.
#include <H5public.h>
#include <cblas.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <nlohmann/json.hpp>

#include "experiments/common/experiment.h"
#include "framework/cli/args.h"
#include "framework/cli/commands.h"
#include "framework/core/error.h"
#include "framework/core/file_io.h"
#include "framework/harness/point_lock.h"
#include "framework/harness/run_config.h"
#include "framework/harness/suite.h"
#include "framework/harness/sweep.h"
#include "framework/io/trace_h5.h"
#include "framework/report/plots.h"
#include "framework/report/sweep.h"
#include "framework/report/table.h"
#include "framework/model/model_init.h"
#include "framework/optim/optimizer.h"
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
// Several processes (array tasks) may create it at once: each writes its own temporary folder
// and renames it into place; rename(2) of a folder onto an existing non-empty one fails, so
// the first one wins whole and the others drop theirs (the weights are the same: same seed).
std::string ensure_random_model(const harness::RunConfig& c) {
  const std::string spec =
      str(c.model.preset, "|", c.model.config_file, "|", c.model.dtype, "|", c.model.seed);
  const fs::path dir =
      fs::path(c.output) / c.name / "models" / harness::fnv1a_hex(spec).substr(0, 12);
  if (fs::exists(dir / "config.json")) return dir.string();
  model::InitOptions o;
  o.config = c.model.preset.empty() ? model::load_model_config(c.model.config_file)
                                    : model::preset_config(c.model.preset);
  o.dtype = parse_dtype(c.model.dtype, c.file + ": model.dtype");
  o.seed = static_cast<uint64_t>(c.model.seed);
  fs::create_directories(dir.parent_path());
  const fs::path tmp = str(dir.string(), ".tmp.", harness::this_host(), ".", getpid());
  fs::remove_all(tmp);
  model::write_random_model(o, tmp.string());
  std::error_code ec;
  fs::rename(tmp, dir, ec);
  if (ec) {
    fs::remove_all(tmp);
    if (!fs::exists(dir / "config.json"))
      fail(dir.string(), ": cannot move the random model into place: ", ec.message());
  }
  return dir.string();
}

nlohmann::json meta_json(const harness::RunConfig& c, int threads, const std::string& model_dir) {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  unsigned maj = 0, min = 0, rel = 0;
  H5get_libversion(&maj, &min, &rel);
  return {
      {"kvlab_version", KVLAB_VERSION},
      {"git_commit", KVLAB_GIT_COMMIT},
      {"build",
       {{"type", KVLAB_BUILD_TYPE}, {"compiler", KVLAB_COMPILER}, {"cuda", KVLAB_HAVE_CUDA_STR}}},
      {"threads", threads},
      {"seed", c.seed},
      {"model_dir", model_dir},
      {"host", host},
      {"started_utc", utc_now()},
      {"dependencies",
       {{"openblas", openblas_get_config()}, {"hdf5", str(maj, ".", min, ".", rel)}}},
      {"environment",
       {{"OPENBLAS_CORETYPE", getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : ""}}}};
}

const std::vector<ParamDecl>& method_decls(const std::string& n) {
  return kv::KvRegistry::instance().find(n).params;
}
const std::vector<ParamDecl>& experiment_decls(const std::string& n) {
  return experiments::ExperimentRegistry::instance().find(n).params;
}

// A value for people: floats in their shortest round-trip form (0.6, not 0.59999999999999998).
std::string display_value(const ParamValue& v) {
  if (const auto* d = std::get_if<double>(&v)) {
    char buf[32];
    const auto r = std::to_chars(buf, buf + sizeof buf, *d);
    return std::string(buf, r.ptr);
  }
  return param_value_to_string(v);
}

void print_params(const std::vector<ParamDecl>& params) {
  if (params.empty()) std::printf("  (no parameters)\n");
  for (const auto& p : params) {
    std::string range;
    if (p.min || p.max)
      range = str(" range [", p.min ? display_value(*p.min) : "-inf", ", ",
                  p.max ? display_value(*p.max) : "inf", "]");
    if (!p.choices.empty()) {
      range = " one of:";
      for (const auto& ch : p.choices) range += " " + ch;
    }
    std::printf("  %-16s %-7s default %s%s\n      %s\n", p.name.c_str(),
                param_type_name(p.type).c_str(), display_value(p.default_value).c_str(),
                range.c_str(), p.help.c_str());
  }
}

}  // namespace

namespace {

// The model of the last point, kept while the next points use the same folder (one model in
// memory at a time: real models are large).
struct ModelCache {
  std::string dir;
  std::shared_ptr<const model::Model> model;
  std::shared_ptr<const model::Model> get(const std::string& d) {
    if (d != dir || !model) {
      model.reset();
      model = model::Model::load(d);
      dir = d;
    }
    return model;
  }
};

enum class Outcome { kRan, kComplete, kBusy };

std::string point_label(const harness::Sweep& s, size_t i) {
  if (s.points.size() == 1 && !s.has_sweep) return "";
  return str("[point ", i, " of ", s.points.size(), "] ");
}

Outcome run_point(const harness::Sweep& s, size_t index, ModelCache& models) {
  const harness::RunConfig& c = s.points[index].config;
  const std::string label = point_label(s, index);
  const fs::path sweep_dir = fs::path(c.output) / c.name;
  const fs::path dir = sweep_dir / c.point_id();
  if (fs::exists(dir / "COMPLETE")) {
    std::fprintf(stderr, "%s%s: complete, skipped (delete the folder to run it again)\n",
                 label.c_str(), dir.c_str());
    return Outcome::kComplete;
  }
  fs::create_directories(sweep_dir);
  harness::LockHolder holder;
  const auto lock =
      harness::PointLock::try_acquire((sweep_dir / (c.point_id() + ".lock")).string(), &holder);
  if (!lock) {
    std::fprintf(stderr, "%s%s: being run by %s, skipped\n", label.c_str(), dir.c_str(),
                 holder.text().c_str());
    return Outcome::kBusy;
  }
  if (fs::exists(dir / "COMPLETE")) {  // finished by another process between the check and the lock
    std::fprintf(stderr, "%s%s: complete, skipped\n", label.c_str(), dir.c_str());
    return Outcome::kComplete;
  }
  const bool half_written = fs::exists(dir);
  if (half_written) fs::remove_all(dir);

  const int threads = set_threads(static_cast<int>(c.threads));
  const std::string model_dir = c.model.is_random() ? ensure_random_model(c) : c.model.path;
  fs::create_directories(dir);
  std::ofstream log(dir / "log.txt", std::ios::app);
  auto say = [&](const std::string& line) {
    std::fprintf(stderr, "%s%s\n", label.c_str(), line.c_str());
    log << utc_now() << " " << line << "\n";
    log.flush();
  };
  if (half_written)
    say(str(dir.string(),
            ": half-written by an earlier run (no COMPLETE): cleared, running again"));
  say(str("run ", c.name, " point ", c.point_id(), ": experiment ", c.experiment, ", method ",
          c.method, ", model ", model_dir, c.model.is_random() ? " (random weights)" : "",
          ", threads ", threads,
          s.points[index].swept.empty() ? "" : ", " + s.points[index].swept_text()));
  write_file_atomic((dir / "config.resolved.yaml").string(), c.resolved_yaml());
  nlohmann::json meta = meta_json(c, threads, model_dir);
  if (s.has_sweep)
    meta["sweep"] = {
        {"index", index}, {"points", s.points.size()}, {"config", fs::absolute(s.file).string()}};
  write_file_atomic((dir / "meta.json").string(), meta.dump(2) + "\n");

  experiments::RunContext ctx;
  ctx.model = models.get(model_dir);
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
  if (!label.empty())
    std::printf("point %zu %s: %s\n", index, c.point_id().c_str(),
                s.points[index].swept_text().c_str());
  for (const auto& [k, v] : results.items())
    if (v.is_primitive()) std::printf("%-20s %s\n", k.c_str(), v.dump().c_str());
  std::fflush(stdout);
  return Outcome::kRan;
}

}  // namespace

harness::Sweep load_cli_sweep(const std::string& file, const std::vector<std::string>& sets) {
  return harness::load_sweep(file, sets, method_decls, experiment_decls);
}

std::string point_status(const harness::Sweep& s, size_t i) {
  const harness::RunConfig& c = s.points[i].config;
  const fs::path sweep_dir = fs::path(c.output) / c.name;
  if (fs::exists(sweep_dir / c.point_id() / "COMPLETE")) return "done";
  const auto lock = harness::probe_lock((sweep_dir / (c.point_id() + ".lock")).string());
  if (lock.exists && !lock.stale) return "running";
  if (fs::exists(sweep_dir / c.point_id())) return "partial";
  return "pending";
}

void print_sweep_list(const harness::Sweep& s) {
  size_t done = 0;
  std::vector<std::string> status;
  for (size_t i = 0; i < s.points.size(); ++i) {
    status.push_back(point_status(s, i));
    done += status.back() == "done";
  }
  std::printf("%s: %zu point%s in %s/, %zu done", s.file.c_str(), s.points.size(),
              s.points.size() == 1 ? "" : "s", s.dir().c_str(), done);
  if (s.duplicates_dropped) std::printf(" (%zu duplicate points dropped)", s.duplicates_dropped);
  std::printf("\n%-6s %-12s %-8s %s\n", "index", "point-id", "status", "swept values");
  for (size_t i = 0; i < s.points.size(); ++i)
    std::printf("%-6zu %-12s %-8s %s\n", i, s.points[i].config.point_id().c_str(),
                status[i].c_str(), s.points[i].swept_text().c_str());
}

// Model-free method checks (KvMethod::check: parameter combinations, files that must exist) on
// the given points: a bad point stops a sweep before any point runs.
void check_methods(const harness::Sweep& s, const std::vector<size_t>& which) {
  for (size_t i : which) {
    const harness::RunConfig& c = s.points[i].config;
    try {
      kv::check_kv_params(c.method, c.method_params);
    } catch (const Error& e) {
      fail(s.file, ": method: ", e.what(),
           s.has_sweep ? str(" (in sweep point ", i, ": ", s.points[i].swept_text(), ")") : "");
    }
  }
}

int run_points(const harness::Sweep& s, long only) {
  std::vector<size_t> which;
  if (only >= 0) {
    if (static_cast<size_t>(only) >= s.points.size())
      fail("--point ", only, ": ", s.file, " has ", s.points.size(), " point",
           s.points.size() == 1 ? "" : "s", " (0-", s.points.size() - 1, "); kvlab run ", s.file,
           " --list shows them");
    which.push_back(static_cast<size_t>(only));
  } else {
    for (size_t i = 0; i < s.points.size(); ++i) which.push_back(i);
  }
  check_methods(s, which);
  ModelCache models;
  size_t ran = 0, complete = 0, busy = 0;
  std::vector<std::string> failed;
  for (size_t i : which) {
    if (which.size() == 1) {  // one point: its error is the command's error
      const Outcome o = run_point(s, i, models);
      ran += o == Outcome::kRan, complete += o == Outcome::kComplete, busy += o == Outcome::kBusy;
      continue;
    }
    try {
      const Outcome o = run_point(s, i, models);
      ran += o == Outcome::kRan, complete += o == Outcome::kComplete, busy += o == Outcome::kBusy;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%spoint %zu (%s) failed: %s\n", point_label(s, i).c_str(), i,
                   s.points[i].config.point_id().c_str(), e.what());
      failed.push_back(std::to_string(i));
    }
  }
  if (which.size() > 1)
    std::fprintf(stderr,
                 "sweep %s: %zu points in %s/: %zu run now, %zu already complete, %zu being run "
                 "elsewhere, %zu failed\n",
                 s.points.front().config.name.c_str(), s.points.size(), s.dir().c_str(), ran,
                 complete, busy, failed.size());
  if (!failed.empty()) {
    std::string list;
    for (const auto& f : failed) list += (list.empty() ? "" : ", ") + f;
    fail(failed.size(), " of ", which.size(), " points failed (", list,
         "); their folders have no COMPLETE and are rerun next time");
  }
  return 0;
}

// Prints a finished sweep's table (headline metric, Markdown; also written to DIR/table.md)
// and draws its charts (DIR/plots/), printing their paths.
void report_sweep(const harness::Sweep& s) {
  const auto points = report::load_sweep(s.dir());
  const auto pv = report::pivot(points, "");
  const std::string text = report::format_table(pv, report::TableFormat::kMarkdown);
  write_file_atomic((fs::path(s.dir()) / "table.md").string(), text);
  std::printf("\n%s (%s, %s):\n%s", s.points.front().config.name.c_str(),
              s.points.front().config.experiment.c_str(), pv.metric.c_str(), text.c_str());
  const auto res = report::plot_sweep(points, (fs::path(s.dir()) / "plots").string(), "");
  for (const auto& n : res.notes) std::fprintf(stderr, "kvlab plot: %s\n", n.c_str());
  std::printf("table: %s\n", (fs::path(s.dir()) / "table.md").string().c_str());
  for (const auto& f : res.files) std::printf("chart: %s\n", f.c_str());
}

// Runs every member config of a suite in order (a failed member does not stop the others),
// then reports on each; fails at the end if any member failed.
int run_suite(const harness::Suite& suite, const Args& a) {
  if (a.has("point"))
    fail("--point: ", suite.file, " is a suite of ", suite.members.size(),
         " configs; run one member with --point instead (", suite.members.front(), ")");
  std::vector<harness::Sweep> sweeps;
  for (const auto& m : suite.members) sweeps.push_back(load_cli_sweep(m, a.get_all("set")));
  if (a.flag("check") || a.flag("list")) {
    for (const auto& s : sweeps) {
      if (a.flag("list")) {
        print_sweep_list(s);
        continue;
      }
      for (size_t i = 0; i < s.points.size(); ++i)
        std::printf("---\n# %s, point %zu\n%s", s.file.c_str(), i,
                    s.points[i].config.resolved_yaml().c_str());
    }
    return 0;
  }
  std::vector<std::string> failed;
  for (size_t i = 0; i < sweeps.size(); ++i) {
    std::fprintf(stderr, "== suite %s: %s (%zu/%zu) ==\n", suite.name.c_str(),
                 sweeps[i].file.c_str(), i + 1, sweeps.size());
    try {
      run_points(sweeps[i], -1);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: %s\n", sweeps[i].file.c_str(), e.what());
      failed.push_back(sweeps[i].file);
    }
  }
  if (suite.report)
    for (const auto& s : sweeps)
      if (std::find(failed.begin(), failed.end(), s.file) == failed.end()) report_sweep(s);
  if (!failed.empty()) {
    std::string list;
    for (const auto& f : failed) list += (list.empty() ? "" : ", ") + f;
    fail("suite ", suite.file, ": ", failed.size(), " of ", sweeps.size(),
         " configs failed (", list, "); rerun to finish them (complete points are skipped)");
  }
  return 0;
}

int cmd_run(int argc, char** argv, int first) {
  Args a("run",
         "Runs the experiment a YAML config describes and writes <output>/<name>/<point-id>/; "
         "with a sweep: block, every point in order (complete points are skipped); with a suite: "
         "block, every listed config in order, then each one's table and charts.",
         {{"set", "KEY=VALUE", "override any config key, e.g. --set task.max_tokens=512", "", false,
           true},
          {"point", "I", "run only point I of the sweep (0-based; what Slurm array tasks call)"},
          {"list", "", "print the sweep's points (index, id, status, swept values) and exit"},
          {"check", "", "validate the config, print each point's resolved YAML and exit"}},
         {"CONFIG"});
  if (!a.parse(argc, argv, first)) return 0;
  const std::string file = a.positionals()[0];
  if (const auto suite = harness::load_suite(file)) return run_suite(*suite, a);
  const harness::Sweep s = load_cli_sweep(file, a.get_all("set"));
  if (a.flag("check")) {
    std::vector<size_t> all(s.points.size());
    std::iota(all.begin(), all.end(), size_t{0});
    check_methods(s, all);
    for (size_t i = 0; i < s.points.size(); ++i) {
      if (s.has_sweep) std::printf("---\n# point %zu: %s\n", i, s.points[i].swept_text().c_str());
      std::printf("%s", s.points[i].config.resolved_yaml().c_str());
    }
    return 0;
  }
  if (a.flag("list")) {
    print_sweep_list(s);
    return 0;
  }
  long only = -1;
  if (a.has("point")) {
    only = static_cast<long>(a.get_int("point"));
    if (only < 0) fail("--point ", only, ": expected an index >= 0");
  }
  return run_points(s, only);
}

int cmd_help(int argc, char** argv, int first) {
  Args a("help", "Describes a KV-cache method, an experiment or an optimizer and the parameters it declares.", {},
         {"NAME"});
  if (!a.parse(argc, argv, first)) return 0;
  const std::string name = a.positionals()[0];
  const auto& kreg = kv::KvRegistry::instance();
  const auto& ereg = experiments::ExperimentRegistry::instance();
  const auto knames = kreg.names(), enames = ereg.names();
  if (std::find(knames.begin(), knames.end(), name) != knames.end()) {
    const auto& m = kreg.find(name);
    std::printf("KV-cache method %s\n  %s\n\nparameters (method: block):\n", m.name.c_str(),
                m.help.c_str());
    print_params(m.params);
    return 0;
  }
  if (std::find(enames.begin(), enames.end(), name) != enames.end()) {
    const auto& e = ereg.find(name);
    std::printf("experiment %s\n  %s\n\nparameters (task: block):\n", e.name.c_str(),
                e.help.c_str());
    print_params(e.params);
    return 0;
  }
  const auto& oreg = optim::OptimizerRegistry::instance();
  const auto onames = oreg.names();
  if (std::find(onames.begin(), onames.end(), name) != onames.end()) {
    const auto& o = oreg.find(name);
    std::printf("optimizer %s\n  %s\n\nparameters (optimizer: block):\n", o.name.c_str(),
                o.help.c_str());
    print_params(o.params);
    return 0;
  }
  std::vector<std::string> all = knames;
  all.insert(all.end(), enames.begin(), enames.end());
  all.insert(all.end(), onames.begin(), onames.end());
  std::string msg = str("kvlab help: no method, experiment or optimizer named '", name, "'");
  if (auto s = did_you_mean(name, all)) msg += str(" (did you mean '", *s, "'?)");
  msg += "; methods:";
  for (const auto& n : knames) msg += " " + n;
  msg += "; experiments:";
  for (const auto& n : enames) msg += " " + n;
  msg += "; optimizers:";
  for (const auto& n : onames) msg += " " + n;
  throw Error(msg);
}

}  // namespace kvlab::cli
