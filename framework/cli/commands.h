// The kvlab subcommands. Each takes argv from the subcommand's first option on, returns the
// process exit code, and prints --help from its declared options (framework/cli/args.h).
// These command-line contracts are what scripts rely on: keep them stable.
#pragma once

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
int cmd_table(int argc, char** argv, int first);
int cmd_plot(int argc, char** argv, int first);

// Sets the global thread pool (and BLAS) to `threads` (0: all hardware threads); returns it.
int set_threads(int threads);

}  // namespace kvlab::cli
