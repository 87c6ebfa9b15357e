// kvlab sweep CONFIG [--set k=v]... [--slurm [--partition P --time T --gpus N
//   --cpus-per-task C --mem M --max-parallel K --dry-run]]
// Without --slurm: runs every point here, like `kvlab run CONFIG`. With --slurm: writes
// <output>/<name>/slurm/sweep.sbatch, a job array with one task per point (task I runs
// `kvlab run CONFIG --point I` with absolute paths, from the directory sweep was called in, so
// relative paths in the config mean the same), logs in <output>/<name>/slurm/logs/<job>_<task>.log;
// then submits it with `sbatch --parsable` when sbatch is on PATH (--dry-run: only writes it).
// Tasks share the results folder; per-point lock files keep two tasks off one point
// (framework/harness/point_lock.h), and complete points are skipped, so resubmitting is safe.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "framework/cli/args.h"
#include "framework/cli/commands.h"
#include "framework/core/error.h"
#include "framework/core/file_io.h"
#include "framework/harness/sweep.h"

namespace kvlab::cli {

namespace fs = std::filesystem;

namespace {

// Single-quoted for bash: 'it'\''s'.
std::string shell_quote(const std::string& s) {
  std::string out(1, '\'');
  for (char c : s) {
    if (c == '\'') {
      out.append("'\\''");
    } else {
      out.push_back(c);
    }
  }
  out.push_back('\'');
  return out;
}

// The first PATH entry holding an executable `name`, or "".
std::string find_on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  if (!path) return "";
  std::stringstream ss(path);
  std::string d;
  while (std::getline(ss, d, ':')) {
    const fs::path p = fs::path(d.empty() ? "." : d) / name;
    if (::access(p.c_str(), X_OK) == 0) return p.string();
  }
  return "";
}

// Runs argv, returning its stdout; fails with its output when it exits non-zero.
std::string run_capture(const std::vector<std::string>& argv) {
  std::string cmd;
  for (const auto& a : argv) {
    if (!cmd.empty()) cmd.push_back(' ');
    cmd.append(shell_quote(a));
  }
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) fail("cannot run ", cmd);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int st = ::pclose(p);
  if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) fail(cmd, " failed: ", out);
  return out;
}

}  // namespace

int cmd_sweep(int argc, char** argv, int first) {
  Args a(
      "sweep",
      "Runs a sweep's points here (like kvlab run), or with --slurm writes a Slurm job array "
      "(one task per point) to <output>/<name>/slurm/sweep.sbatch and submits it.",
      {{"set", "KEY=VALUE", "override any config key (passed on to every task)", "", false, true},
       {"slurm", "", "write (and submit, when sbatch is on PATH) a Slurm job array"},
       {"partition", "P", "#SBATCH --partition"},
       {"time", "T", "#SBATCH --time per task, e.g. 02:00:00"},
       {"gpus", "N", "#SBATCH --gpus per task"},
       {"cpus-per-task", "C", "#SBATCH --cpus-per-task (set threads: in the config to match)"},
       {"mem", "M", "#SBATCH --mem per task, e.g. 16G"},
       {"max-parallel", "K", "run at most K tasks at once (--array=0-(n-1)%K)"},
       {"dry-run", "", "write the sbatch script but do not submit it"},
       {"list", "", "print the sweep's points and exit"}},
      {"CONFIG"});
  if (!a.parse(argc, argv, first)) return 0;
  const std::string file = a.positionals()[0];
  const std::vector<std::string> sets = a.get_all("set");
  // Every point is expanded and validated here, before anything is written or submitted.
  const harness::Sweep s = load_cli_sweep(file, sets);
  if (a.flag("list")) {
    print_sweep_list(s);
    return 0;
  }
  if (!a.flag("slurm")) {
    for (const char* o :
         {"partition", "time", "gpus", "cpus-per-task", "mem", "max-parallel", "dry-run"})
      if (a.has(o)) fail("kvlab sweep: --", o, " applies only with --slurm");
    return run_points(s, -1);
  }

  const size_t n = s.points.size();
  const fs::path sweep_dir = fs::absolute(s.dir());
  const fs::path slurm_dir = sweep_dir / "slurm";
  fs::create_directories(slurm_dir / "logs");
  const std::string kvlab = fs::read_symlink("/proc/self/exe").string();
  const std::string config = fs::absolute(file).lexically_normal().string();
  const std::string name = s.points.front().config.name;

  std::string array = str("0-", n - 1);
  if (a.has("max-parallel")) {
    const int64_t k = a.get_int("max-parallel");
    if (k < 1) fail("kvlab sweep: --max-parallel must be >= 1");
    array += str("%", k);
  }
  std::ostringstream sb;
  sb << "#!/bin/bash\n"
     << "# Written by `kvlab sweep --slurm` for " << config << " (" << n << " points).\n"
     << "# Task I runs point I; `kvlab run CONFIG --list` shows the points and their status.\n"
     << "#SBATCH --job-name=kvlab-" << name << "\n"
     << "#SBATCH --array=" << array << "\n"
     << "#SBATCH --ntasks=1\n"
     << "#SBATCH --chdir=" << fs::current_path().string() << "\n"
     << "#SBATCH --output=" << (slurm_dir / "logs" / "%A_%a.log").string() << "\n";
  if (a.has("partition")) sb << "#SBATCH --partition=" << a.get("partition") << "\n";
  if (a.has("time")) sb << "#SBATCH --time=" << a.get("time") << "\n";
  if (a.has("gpus")) sb << "#SBATCH --gpus=" << a.get_int("gpus") << "\n";
  if (a.has("cpus-per-task"))
    sb << "#SBATCH --cpus-per-task=" << a.get_int("cpus-per-task") << "\n";
  if (a.has("mem")) sb << "#SBATCH --mem=" << a.get("mem") << "\n";
  sb << "set -euo pipefail\n"
     << "exec " << shell_quote(kvlab) << " run " << shell_quote(config);
  for (const auto& v : sets) sb << " --set " << shell_quote(v);
  sb << " --point \"$SLURM_ARRAY_TASK_ID\"\n";
  const fs::path script = slurm_dir / "sweep.sbatch";
  write_file_atomic(script.string(), sb.str());
  fs::permissions(script, fs::perms::owner_exec | fs::perms::group_exec | fs::perms::others_exec,
                  fs::perm_options::add);
  std::fprintf(stderr, "wrote %s: a job array of %zu task%s (logs in %s/)\n", script.c_str(), n,
               n == 1 ? "" : "s", (slurm_dir / "logs").c_str());

  if (a.flag("dry-run")) {
    std::printf("%s\n", script.c_str());
    return 0;
  }
  const std::string sbatch = find_on_path("sbatch");
  if (sbatch.empty()) {
    std::fprintf(stderr, "sbatch is not on PATH: not submitted (submit it with: sbatch %s)\n",
                 script.c_str());
    std::printf("%s\n", script.c_str());
    return 0;
  }
  std::string out = run_capture({sbatch, "--parsable", script.string()});
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  const std::string job =
      out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1);
  const std::string job_id = job.substr(0, job.find(';'));  // "id;cluster" on federated setups
  write_file_atomic((slurm_dir / "last_job_id").string(), job_id + "\n");
  std::fprintf(stderr, "submitted job array %s (%zu tasks); watch it with: squeue -j %s\n",
               job_id.c_str(), n, job_id.c_str());
  std::printf("%s\n", job_id.c_str());
  return 0;
}

}  // namespace kvlab::cli
