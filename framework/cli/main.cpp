// kvlab: the command-line entry point. Only this file exits the process (style.md 4.14).
#include <cstdio>
#include <cstring>
#include <string>

#include "framework/cli/commands.h"
#include "framework/core/error.h"
#include "kvlab/build_info.h"

namespace {

struct Command {
  const char* name;
  int (*fn)(int, char**, int);
  const char* summary;
};

const Command kCommands[] = {
    {"run", kvlab::cli::cmd_run, "run an experiment from a YAML config (configs/quickstart.yaml)"},
    {"train", kvlab::cli::cmd_train, "train a model from a YAML recipe (configs/train/), resuming"},
    {"sweep", kvlab::cli::cmd_sweep, "run a sweep's points locally, or as a Slurm job array (--slurm)"},
    {"calibrate", kvlab::cli::cmd_calibrate, "per-layer, per-head Q/K/V eigenbases for StaticPCA/OjaKV (HDF5)"},
    {"model init", kvlab::cli::cmd_model_init, "write a random model in the Hugging Face layout"},
    {"tokenize", kvlab::cli::cmd_tokenize, "print a text's token ids as a JSON array"},
    {"tokenizer train", kvlab::cli::cmd_tokenizer_train, "train a byte-level BPE tokenizer.json"},
    {"logits", kvlab::cli::cmd_logits, "write full-cache logits of a text to HDF5"},
    {"generate", kvlab::cli::cmd_generate, "generate text (greedy or seeded sampling)"},
    {"ppl", kvlab::cli::cmd_ppl, "perplexity of a text file"},
    {"sysinfo", kvlab::cli::cmd_sysinfo, "measure memory bandwidth and GEMM peak"},
    {"score", kvlab::cli::cmd_score, "score one prediction with a LongBench metric"},
    {"inspect", kvlab::cli::cmd_inspect, "print an HDF5 trace's tree and statistics, or a dataset as CSV"},
    {"table", kvlab::cli::cmd_table, "pivot a sweep folder into a Markdown, CSV or LaTeX table"},
    {"plot", kvlab::cli::cmd_plot, "SVG charts: needle heatmaps, metric vs compression, a trace series"},
    {"help", kvlab::cli::cmd_help, "describe a KV-cache method or an experiment and its parameters"},
};

void usage(FILE* f) {
  std::fprintf(f, "kvlab %s (%s): memory-efficient LLM inference and fine-tuning lab\n\n",
               KVLAB_VERSION, KVLAB_GIT_COMMIT);
  std::fprintf(f, "usage: kvlab COMMAND [options]   (kvlab COMMAND --help for details)\n\ncommands:\n");
  for (const auto& c : kCommands) std::fprintf(f, "  %-14s %s\n", c.name, c.summary);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage(stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!std::strcmp(argv[1], "--version")) {
    std::printf("kvlab %s (%s, %s, %s)\n", KVLAB_VERSION, KVLAB_GIT_COMMIT, KVLAB_BUILD_TYPE,
                KVLAB_COMPILER);
    return 0;
  }
  try {
    for (const auto& c : kCommands) {
      const std::string name = c.name;
      if (name.find(' ') != std::string::npos) {
        const std::string a = name.substr(0, name.find(' ')), b = name.substr(name.find(' ') + 1);
        if (a == argv[1]) {
          if (argc < 3 || std::string(argv[2]) != b) {
            std::fprintf(stderr, "kvlab %s: expected a subcommand: %s\n", argv[1], name.c_str());
            return 2;
          }
          return c.fn(argc, argv, 3);
        }
      } else if (name == argv[1]) {
        return c.fn(argc, argv, 2);
      }
    }
    std::fprintf(stderr, "kvlab: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
  } catch (const kvlab::Error& e) {
    std::fprintf(stderr, "kvlab: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kvlab: internal error: %s\n", e.what());
    return 3;
  }
}
