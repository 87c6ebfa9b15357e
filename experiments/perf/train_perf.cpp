// Training-throughput benchmark (issue 4, "What it must show", last bullet): tokens/s of one full
// training step of kvlab and of PyTorch on the kvlab-tiny config, same threads, in one run.
//
//   build/experiments/train_perf [--threads 2] [--rounds 3] [--steps 3] [--out FILE.json]
//       [--shapes 512x8,2048x2] [--python /usr/bin/python3] [--peer PATH] [--skip-torch]
//
// Config (configs/train/kvlab-tiny.yaml): C 256, 6 layers, H 8, G 2, D 32, SwiGLU F 704, V 4096,
// tied embeddings, rope_theta 500000 (5.28M parameters). One step = zero_grad +
// TrainModel::forward_backward (mean cross-entropy over B x T random tokens, targets = tokens
// shifted by one) + AdamW step (registry "adamw": lr 1e-3, weight decay 0.01 on matrices only,
// as kvlab's trainer; no clipping). The torch side is experiments/perf/torch_train_peer.py (a
// subprocess: the same model with torch_llama.py's functions, f32 autograd, explicit causal
// softmax attention, torch.optim.AdamW with the same settings, OMP/OPENBLAS_NUM_THREADS = threads
// set before torch is imported). kvlab and torch alternate round by round; each round runs one
// warm-up step then --steps timed steps; the reported figure is the best step over all rounds.
// OPENBLAS_CORETYPE is left as the environment has it and reported.
#include <cblas.h>
#include <sys/resource.h>
#include <sys/utsname.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "baselines/adamw/adamw.h"
#include "framework/cli/commands.h"
#include "framework/core/rng.h"
#include "framework/core/thread_pool.h"
#include "framework/model/llama_train.h"
#include "framework/model/model_init.h"
#include "kvlab/build_info.h"

namespace {

using kvlab::ThreadPool;
using nlohmann::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// User + system CPU seconds of this process (all its threads; not the torch child). On a shared
// machine a step's CPU time moves far less with the load than its wall time: it is the A/B
// figure across builds, tok/s the headline.
double cpu_s() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

double now_s() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }

std::string load_str() {
  double l[3] = {0, 0, 0};
  if (getloadavg(l, 3) < 3) return "?";
  char b[64];
  std::snprintf(b, sizeof b, "%.2f %.2f %.2f", l[0], l[1], l[2]);
  return b;
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  char b[64];
  std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return b;
}

[[noreturn]] void fail(const std::string& msg) {
  std::fprintf(stderr, "train_perf: %s\n", msg.c_str());
  std::exit(2);
}

struct Shape {
  int64_t T, B;
};

struct Options {
  int threads = 2;
  int rounds = 3;
  int steps = 3;
  std::vector<Shape> shapes = {{512, 8}, {2048, 2}};
  std::string out;
  std::string python = "/usr/bin/python3";
  std::string peer;
  bool skip_torch = false;
};

Options parse(int argc, char** argv) {
  Options o;
  o.peer = (fs::path(__FILE__).parent_path() / "torch_train_peer.py").string();
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) fail(a + " needs a value");
      return argv[++i];
    };
    if (a == "--threads") o.threads = std::stoi(val());
    else if (a == "--rounds") o.rounds = std::stoi(val());
    else if (a == "--steps") o.steps = std::stoi(val());
    else if (a == "--out") o.out = val();
    else if (a == "--python") o.python = val();
    else if (a == "--peer") o.peer = val();
    else if (a == "--skip-torch") o.skip_torch = true;
    else if (a == "--shapes") {
      o.shapes.clear();
      std::stringstream ss(val());
      for (std::string it; std::getline(ss, it, ',');) {
        const auto x = it.find('x');
        if (x == std::string::npos) fail("--shapes wants TxB,TxB, got " + it);
        o.shapes.push_back({std::stoll(it.substr(0, x)), std::stoll(it.substr(x + 1))});
      }
    } else if (a == "--help" || a == "-h") {
      std::printf("train_perf [--threads 2] [--rounds 3] [--steps 3] [--shapes 512x8,2048x2]\n"
                  "           [--out FILE.json] [--python /usr/bin/python3] [--peer PATH] "
                  "[--skip-torch]\n");
      std::exit(0);
    } else fail("unknown argument " + a);
  }
  if (o.threads < 1 || o.rounds < 1 || o.steps < 1) fail("threads, rounds, steps must be >= 1");
  return o;
}

kvlab::model::ModelConfig tiny_config() {
  auto c = kvlab::model::preset_config("small");
  c.hidden_size = 256;
  c.num_hidden_layers = 6;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 2;
  c.head_dim = 32;
  c.intermediate_size = 704;
  c.vocab_size = 4096;
  c.tie_word_embeddings = true;
  c.rope.head_dim = 32;
  c.rope.theta = 500000.0;
  c.max_position_embeddings = 8192;
  c.rms_norm_eps = 1e-6;
  return c;
}

// kvlab: one round = a fresh model and optimizer, 1 warm-up step, `steps` timed steps.
json kvlab_round(const Options& o, ThreadPool& pool, const Shape& s) {
  using namespace kvlab;
  model::TrainModel m(tiny_config(), 1, 0.02, pool);
  std::vector<optim::ParamBlock> blocks;
  for (auto& p : m.params()) blocks.push_back({p.name, p.data, p.grad, p.shape, p.is_matrix});
  baselines::AdamWParams ap;  // torch defaults, weight_decay 0.01
  baselines::AdamW opt(ap);
  const int64_t n = s.B * s.T;
  std::vector<int32_t> tok(n), tgt(n);
  Rng rng(3);
  for (auto& x : tok) x = static_cast<int32_t>(rng.below(4096));
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t t = 0; t < s.T; ++t) tgt[b * s.T + t] = tok[b * s.T + (t + 1) % s.T];
  double loss = 0;
  auto step = [&] {
    m.zero_grad();
    loss = m.forward_backward(tok.data(), tgt.data(), nullptr, s.B, s.T);
    opt.step(blocks, 1e-3);
  };
  step();  // warm-up: buffers and optimizer state allocated
  std::vector<double> times, cpu;
  for (int i = 0; i < o.steps; ++i) {
    const double t0 = now_s(), c0 = cpu_s();
    step();
    times.push_back(now_s() - t0);
    cpu.push_back(cpu_s() - c0);
  }
  const double best = *std::min_element(times.begin(), times.end());
  const double best_cpu = *std::min_element(cpu.begin(), cpu.end());
  return {{"step_s", best},
          {"tok_s", n / best},
          {"step_times_s", times},
          {"step_cpu_s", best_cpu},
          {"tok_per_cpu_s", n / best_cpu},
          {"step_cpu_times_s", cpu},
          {"loss", loss},
          {"num_params", m.num_params()}};
}

json torch_round(const Options& o, const Shape& s) {
  if (o.skip_torch) return json();
  const std::string cmd = o.python + " " + o.peer + " --threads " + std::to_string(o.threads) +
                          " --seq " + std::to_string(s.T) + " --batch " + std::to_string(s.B) +
                          " --steps " + std::to_string(o.steps) + " --warmup 1";
  std::fprintf(stderr, "  torch: %s\n", cmd.c_str());
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) fail("cannot run " + cmd);
  std::string out;
  char buf[4096];
  size_t k;
  while ((k = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, k);
  const int rc = pclose(p);
  std::string last;
  std::stringstream ss(out);
  for (std::string line; std::getline(ss, line);)
    if (!line.empty() && line[0] == '{') last = line;
  if (rc != 0 || last.empty()) {
    std::fprintf(stderr, "train_perf: torch peer failed (status %d): %s\n", rc, out.c_str());
    return json();
  }
  try {
    return json::parse(last);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_perf: cannot parse peer output (%s): %s\n", e.what(), out.c_str());
    return json();
  }
}

double jget(const json& j, const char* k) {
  if (j.is_object() && j.contains(k) && j[k].is_number()) return j[k].get<double>();
  return std::numeric_limits<double>::quiet_NaN();
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  const int threads = kvlab::cli::set_threads(o.threads);
  ThreadPool pool(threads);
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  const double t_start = now_s();
  json J;
  J["date"] = utc_now();
  J["kvlab_version"] = KVLAB_VERSION;
  J["git_commit"] = KVLAB_GIT_COMMIT;
  J["build_type"] = KVLAB_BUILD_TYPE;
  J["compiler"] = KVLAB_COMPILER;
  J["threads"] = threads;
  J["openblas_coretype"] = coretype ? json(coretype) : json(nullptr);
  J["openblas_config"] = std::string(openblas_get_config());
  J["load_average_start"] = load_str();
  utsname un{};
  uname(&un);
  J["kernel"] = std::string(un.release);
  J["config"] = {{"hidden", 256}, {"layers", 6}, {"heads", 8}, {"kv_heads", 2}, {"head_dim", 32},
                 {"intermediate", 704}, {"vocab", 4096}, {"tie", true}, {"rope_theta", 500000},
                 {"optimizer", "AdamW lr 1e-3 betas (0.9,0.999) eps 1e-8 wd 0.01 (matrices)"}};
  J["method"] = "full step (zero_grad + forward + backward + AdamW), random tokens; per round 1 "
                "warm-up + steps timed; kvlab and torch alternate; best step over all rounds";
  J["rounds"] = o.rounds;
  J["steps_per_round"] = o.steps;

  std::printf("kvlab train_perf  %s  commit %s (%s, %s)\n", J["date"].get<std::string>().c_str(),
              KVLAB_GIT_COMMIT, KVLAB_BUILD_TYPE, KVLAB_COMPILER);
  std::printf("kvlab-tiny (C 256, L 6, H 8/G 2, D 32, F 704, V 4096, tied, theta 5e5), full step "
              "fwd+bwd+AdamW\n");
  std::printf("threads %d (kvlab and torch)   load average at start %s\n", threads,
              load_str().c_str());
  std::printf("OPENBLAS_CORETYPE=%s   openblas_get_config(): %s\n", coretype ? coretype : "(unset)",
              openblas_get_config());
  std::fflush(stdout);

  J["shapes"] = json::array();
  struct Row {
    Shape s;
    double k, kc, t;
    std::string load;
  };
  std::vector<Row> rows;
  for (const Shape& s : o.shapes) {
    json rounds = json::array();
    double bk = 0, bc = 0, bt = std::numeric_limits<double>::quiet_NaN();
    std::string torch_version;
    for (int r = 0; r < o.rounds; ++r) {
      const std::string l0 = load_str();
      std::fprintf(stderr, "[T=%lld B=%lld round %d] load %s\n", (long long)s.T, (long long)s.B,
                   r, l0.c_str());
      const json kj = kvlab_round(o, pool, s);
      const std::string l1 = load_str();
      const json tj = torch_round(o, s);
      const std::string l2 = load_str();
      const double kt = jget(kj, "tok_s"), tt = jget(tj, "tok_s");
      std::fprintf(stderr, "  kvlab %.0f tok/s (loss %.3f)   torch %.0f tok/s\n", kt,
                   jget(kj, "loss"), tt);
      bk = std::max(bk, kt);
      bc = std::max(bc, jget(kj, "tok_per_cpu_s"));
      if (!std::isnan(tt)) bt = std::isnan(bt) ? tt : std::max(bt, tt);
      if (tj.is_object() && tj.contains("torch_version")) torch_version = tj["torch_version"];
      rounds.push_back({{"load_average_before_kvlab", l0}, {"load_average_before_torch", l1},
                        {"load_average_after", l2}, {"kvlab", kj}, {"torch", tj}});
    }
    J["shapes"].push_back({{"seq", s.T},
                           {"batch", s.B},
                           {"tokens_per_step", s.B * s.T},
                           {"kvlab_tok_s", bk},
                           {"kvlab_tok_per_cpu_s", bc},
                           {"torch_tok_s", std::isnan(bt) ? json() : json(bt)},
                           {"ratio_kvlab_over_torch", std::isnan(bt) ? json() : json(bk / bt)},
                           {"torch_version", torch_version},
                           {"rounds", rounds}});
    rows.push_back({s, bk, bc, bt, load_str()});
  }
  J["load_average_end"] = load_str();
  J["wall_s"] = now_s() - t_start;

  std::printf(
      "\nTraining step tokens/s (best of %d rounds x %d steps, kvlab and torch "
      "alternating, f32; tok/cpu-s: kvlab tokens per CPU-second of the process, all "
      "threads)\n",
      o.rounds, o.steps);
  std::printf("  %-6s %-3s %-8s %12s %12s %12s %10s  %s\n", "T", "B", "tok/step", "kvlab tok/s",
              "tok/cpu-s", "torch tok/s", "kvlab/torch", "load avg after");
  bool goal = true;
  for (const Row& r : rows) {
    const double ratio = r.k / r.t;
    if (!(ratio >= 1.5)) goal = false;
    std::printf("  %-6lld %-3lld %-8lld %12.0f %12.0f %12.0f %10.2fx  %s\n", (long long)r.s.T,
                (long long)r.s.B, (long long)(r.s.T * r.s.B), r.k, r.kc, r.t, ratio,
                r.load.c_str());
  }
  J["goal"] = "kvlab >= 1.5x torch";
  J["goal_met"] = goal && !o.skip_torch;
  std::printf("goal kvlab >= 1.5x torch: %s\n", (goal && !o.skip_torch) ? "met" : "NOT met");
  std::printf("load average at end %s   wall %.0f s\n", load_str().c_str(), now_s() - t_start);
  if (!o.out.empty()) {
    std::ofstream f(o.out);
    f << J.dump(2) << "\n";
    if (!f) fail("cannot write " + o.out);
    std::printf("wrote %s\n", o.out.c_str());
  }
  return 0;
}
