// kvlab train CONFIG [--set k=v]... [--max-steps N] [--check]: trains a model from a YAML recipe
// (experiments/train/train_config.h) into its output folder, resuming from the newest checkpoint
// there. SIGINT/SIGTERM: the step in progress finishes, a checkpoint is written and the command
// exits with 128 + the signal number (130 / 143); a second signal kills at once.
#include <csignal>
#include <cstdio>

#include "experiments/train/train_config.h"
#include "experiments/train/train_run.h"
#include "framework/cli/args.h"
#include "framework/cli/commands.h"

namespace kvlab::cli {

namespace {

std::atomic<bool> g_stop{false};
volatile std::sig_atomic_t g_signal = 0;

void on_signal(int sig) {
  g_signal = sig;
  g_stop.store(true);  // lock-free atomic: async-signal-safe
}

}  // namespace

int cmd_train(int argc, char** argv, int first) {
  Args a("train",
         "Trains a model from a YAML recipe (configs/train/*.yaml) into its output folder; a folder "
         "holding a checkpoint is resumed exactly. Progress: a bar on a terminal, plain lines "
         "otherwise. SIGINT/SIGTERM checkpoint and exit 130/143.",
         {{"set", "KEY=VALUE", "override any config key, e.g. --set steps=100 or --set stages.0.batch=8", "",
           false, true},
          {"max-steps", "N", "stop (with a checkpoint) after N steps of this invocation; 0 = no limit", "0"},
          {"progress", "MODE", "auto, bar, plain or off", "auto"},
          {"check", "", "validate the config, print the resolved YAML and exit"}},
         {"CONFIG"});
  if (!a.parse(argc, argv, first)) return 0;
  const experiments::TrainConfig cfg = experiments::load_train_config(a.positionals()[0], a.get_all("set"));
  if (a.flag("check")) {
    std::printf("%s", cfg.resolved_yaml().c_str());
    return 0;
  }
  experiments::TrainRunOptions opt;
  opt.max_steps = a.get_int("max-steps");
  if (opt.max_steps < 0) fail("--max-steps must be >= 0");
  opt.progress = a.get("progress");
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;  // a second signal takes the default action (terminates)
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  const auto r = experiments::run_training(cfg, opt, &g_stop);
  if (g_signal != 0) {
    std::fprintf(stderr, "kvlab train: stopped by signal %d after step %lld; rerun the same command to resume\n",
                 static_cast<int>(g_signal), static_cast<long long>(r.result.end_step));
    return 128 + static_cast<int>(g_signal);
  }
  if (!r.result.finished)
    std::fprintf(stderr, "kvlab train: paused after step %lld (--max-steps); rerun to resume\n",
                 static_cast<long long>(r.result.end_step));
  return 0;
}

}  // namespace kvlab::cli
