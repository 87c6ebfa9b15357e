// The kvlab subcommands. Each takes argv from the subcommand's first option on, returns the
// process exit code, and prints --help from its declared options (framework/cli/args.h).
// These command-line contracts are what scripts rely on: keep them stable.
#pragma once

#include <string>
#include <vector>

namespace kvlab::harness {
struct Sweep;
}

namespace kvlab::cli {

int cmd_model_init(int argc, char** argv, int first);
int cmd_tokenize(int argc, char** argv, int first);
int cmd_logits(int argc, char** argv, int first);
int cmd_generate(int argc, char** argv, int first);
int cmd_ppl(int argc, char** argv, int first);
int cmd_sysinfo(int argc, char** argv, int first);
int cmd_run(int argc, char** argv, int first);
int cmd_help(int argc, char** argv, int first);
int cmd_inspect(int argc, char** argv, int first);
int cmd_tokenizer_train(int argc, char** argv, int first);
int cmd_score(int argc, char** argv, int first);
int cmd_train(int argc, char** argv, int first);
int cmd_sweep(int argc, char** argv, int first);
int cmd_calibrate(int argc, char** argv, int first);

// Shared by `kvlab run` and `kvlab sweep` (cmd_run.cpp): expand and validate a config's points
// against the registered methods and experiments; print them (--list); run point `only`, or all
// in order when only < 0 (skipping complete ones, under each point's lock).
harness::Sweep load_cli_sweep(const std::string& file, const std::vector<std::string>& sets);
void print_sweep_list(const harness::Sweep& s);
int run_points(const harness::Sweep& s, long only);
int cmd_table(int argc, char** argv, int first);
int cmd_plot(int argc, char** argv, int first);

// Sets the global thread pool (and BLAS) to `threads` (0: all hardware threads); returns it.
int set_threads(int threads);

}  // namespace kvlab::cli
