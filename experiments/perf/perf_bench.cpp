// perf_bench: kvlab's speed against PyTorch on the same models, the same thread count, in one
// run (DESIGN.md section 6).
//
//   build/experiments/perf_bench [--threads 2] [--out FILE.json] [--cache-dir DIR]
//       [--small-prefill 512,2048] [--big-prefill 4096] [--decode 32] [--rounds 3]
//       [--big-rounds 1] [--long-context 32768] [--python /usr/bin/python3] [--peer PATH]
//
// 1. sysinfo: streaming read bandwidth and sgemm peak on the pool's threads.
// 2. Random models (write_random_model, bf16 weights): preset "small" and "llama3-8b-layer".
// 3. Per model and prompt length T: kvlab prefill tok/s (one forward over T tokens, last-token
//    logits, best of N after a warm-up) and decode tok/s (M single-token steps after a prefill of
//    T tokens), then the same from experiments/perf/torch_peer.py (a subprocess, same model
//    folder, same threads, f32 arithmetic like kvlab). kvlab and torch alternate round by round
//    and each side keeps its best, so both see the same machine conditions.
// 4. 8B layer decode at a 32K context (the cache is filled directly with random K/V: prefilling
//    32K tokens on 2 cores is too slow) and decode attention alone (cpu::attention, T = 1,
//    head-major full_cache layout, H=32 G=8 D=128) at S = 4K and 32K against torch's
//    --attention-only; GB/s = K and V bytes read / time, also as a fraction of sysinfo's read
//    bandwidth.
// 5. A readable table on stdout and every figure in a JSON file (--out).
#include <cblas.h>
#include <sys/utsname.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <thread>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "framework/backend/cpu/kernels.h"
#include "framework/backend/cpu/sysinfo.h"
#include "framework/cli/commands.h"
#include "framework/core/thread_pool.h"
#include "framework/kv/kv_cache.h"
#include "framework/model/llama.h"
#include "framework/model/model_init.h"
#include "kvlab/build_info.h"

namespace {

using kvlab::ThreadPool;
using nlohmann::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double now_s() {
  return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
}

std::string load_str() {
  double l[3] = {0, 0, 0};
  if (getloadavg(l, 3) < 3) return "?";
  char b[64];
  std::snprintf(b, sizeof b, "%.2f %.2f %.2f", l[0], l[1], l[2]);
  return b;
}

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) v.push_back(std::stoll(item));
  return v;
}

struct Options {
  int threads = 2;
  std::string out;
  std::string cache_dir;
  std::vector<int64_t> small_prefill = {512, 2048};
  std::vector<int64_t> big_prefill = {4096};
  int64_t decode = 32;
  int rounds = 3;      // kvlab/torch alternations for the small model (best of all)
  int big_rounds = 1;  // alternations for the 8B layer at big_prefill
  int reps = 3;        // timed runs per round on each side (after one warm-up)
  int big_reps = 2;    // the same for the 8B layer at big_prefill
  int64_t long_context = 32768;
  std::vector<int64_t> attn_contexts = {4096, 32768};
  std::string python = "/usr/bin/python3";
  std::string peer;
  double sysinfo_seconds = 4;
  double max_load = 0.3;      // wait (up to wait_load_s) until others keep fewer cores busy
  double wait_load_s = 0;
  bool skip_torch = false;
};

[[noreturn]] void usage_fail(const std::string& msg) {
  std::fprintf(stderr, "perf_bench: %s\n", msg.c_str());
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  o.peer = (fs::path(__FILE__).parent_path() / "torch_peer.py").string();
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) usage_fail(a + " needs a value");
      return argv[++i];
    };
    if (a == "--threads") o.threads = std::stoi(val());
    else if (a == "--out") o.out = val();
    else if (a == "--cache-dir") o.cache_dir = val();
    else if (a == "--small-prefill") o.small_prefill = parse_list(val());
    else if (a == "--big-prefill") o.big_prefill = parse_list(val());
    else if (a == "--decode") o.decode = std::stoll(val());
    else if (a == "--rounds") o.rounds = std::stoi(val());
    else if (a == "--big-rounds") o.big_rounds = std::stoi(val());
    else if (a == "--reps") o.reps = std::stoi(val());
    else if (a == "--big-reps") o.big_reps = std::stoi(val());
    else if (a == "--long-context") o.long_context = std::stoll(val());
    else if (a == "--attn-contexts") o.attn_contexts = parse_list(val());
    else if (a == "--python") o.python = val();
    else if (a == "--peer") o.peer = val();
    else if (a == "--sysinfo-seconds") o.sysinfo_seconds = std::stod(val());
    else if (a == "--max-load") o.max_load = std::stod(val());
    else if (a == "--wait-load") o.wait_load_s = std::stod(val());
    else if (a == "--skip-torch") o.skip_torch = true;
    else if (a == "--help" || a == "-h") {
      std::printf(
          "perf_bench: kvlab vs PyTorch speed on random small and Llama-3.1-8B-layer models\n"
          "  --threads N          threads for both sides (default 2)\n"
          "  --out FILE           JSON with every figure\n"
          "  --cache-dir DIR      where the random models are written (default $TMPDIR/kvlab_perf_bench)\n"
          "  --small-prefill LIST prompt lengths for the small model (default 512,2048)\n"
          "  --big-prefill LIST   prompt lengths for the 8B layer (default 4096)\n"
          "  --decode M           decode steps timed (default 32)\n"
          "  --rounds R           kvlab/torch alternations, small model (default 3)\n"
          "  --big-rounds R       kvlab/torch alternations, 8B layer (default 1)\n"
          "  --reps N             timed repetitions per round and side (default 3)\n"
          "  --big-reps N         the same for the 8B layer's prefill/decode (default 2)\n"
          "  --long-context S     8B-layer decode context filled directly (default 32768)\n"
          "  --attn-contexts LIST decode-attention contexts (default 4096,32768)\n"
          "  --python PATH        Python with torch (default /usr/bin/python3)\n"
          "  --peer PATH          torch_peer.py (default next to this source)\n"
          "  --wait-load S        before each section wait up to S s until other processes keep\n"
          "                       < --max-load cores busy (default 0.3; /proc/stat over 1 s)\n"
          "  --skip-torch         kvlab only\n");
      std::exit(0);
    } else usage_fail("unknown option " + a + " (see --help)");
  }
  if (o.cache_dir.empty()) {
    const char* t = std::getenv("TMPDIR");
    o.cache_dir = (fs::path(t && *t ? t : "/tmp") / "kvlab_perf_bench").string();
  }
  return o;
}

// ---- timing helpers ----

// Best wall time of fn over reps runs after warmup runs.
double best_of(int reps, int warmup, const std::function<void()>& fn) {
  for (int i = 0; i < warmup; ++i) fn();
  double best = std::numeric_limits<double>::infinity();
  for (int i = 0; i < reps; ++i) {
    const double t0 = now_s();
    fn();
    best = std::max(0.0, std::min(best, now_s() - t0));
  }
  return best;
}

std::vector<int32_t> random_tokens(int64_t n, int64_t V, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::uniform_int_distribution<int32_t> d(0, static_cast<int32_t>(V - 1));
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = d(g);
  return t;
}

void fill_random(std::vector<float>& v, uint64_t seed) {
  std::mt19937 g(static_cast<uint32_t>(seed));
  std::normal_distribution<float> d(0.f, 1.f);
  for (auto& x : v) x = d(g);
}

kvlab::kv::KvFactory full_cache() {
  return kvlab::kv::make_kv_factory("full_cache",
                                    kvlab::ParamValues(std::vector<kvlab::ParamDecl>{}));
}

// kvlab prefill: T tokens into an empty full cache (last-token logits), tokens/s.
double kvlab_prefill(const std::shared_ptr<const kvlab::model::Model>& m, int64_t T, int reps) {
  const int64_t V = m->config().vocab_size;
  const auto toks = random_tokens(T, V, 1);
  std::vector<float> logits(static_cast<size_t>(V));
  const double t = best_of(reps, 1, [&] {
    kvlab::model::Sequence seq(m, full_cache(), ThreadPool::global(), {.max_context = T + 1});
    seq.forward(toks, logits.data(), false);
  });
  return T / t;
}

// kvlab decode: one prefill of T tokens (not timed), a warm-up of M steps, then reps runs of M
// single-token steps on the same sequence (the context grows by M per run), tokens/s of the best.
double kvlab_decode(const std::shared_ptr<const kvlab::model::Model>& m, int64_t T, int64_t M,
                    int reps) {
  const int64_t V = m->config().vocab_size;
  const auto toks = random_tokens(T, V, 1);
  const auto steps = random_tokens(M * (reps + 1), V, 2);
  std::vector<float> logits(static_cast<size_t>(V));
  kvlab::model::Sequence seq(m, full_cache(), ThreadPool::global(),
                             {.max_context = T + M * (reps + 1)});
  seq.forward(toks, logits.data(), false);
  size_t k = 0;
  const double t = best_of(reps, 1, [&] {
    for (int64_t i = 0; i < M; ++i, ++k)
      seq.forward(std::span<const int32_t>(&steps[k], 1), logits.data(), false);
  });
  return M / t;
}

// kvlab decode at a long context S: every layer's cache gets S random post-RoPE K/V tokens at
// positions -S..-1 (appended directly; Sequence's own position counter stays at 0, so the new
// tokens take positions 0, 1, ...: every cached key is visible, and RoPE costs the same at any
// position). Then M steps timed as in kvlab_decode.
double kvlab_decode_filled(const std::shared_ptr<const kvlab::model::Model>& m, int64_t S,
                           int64_t M, int reps) {
  const auto& c = m->config();
  const int64_t G = c.num_key_value_heads, D = c.head_dim, V = c.vocab_size;
  kvlab::model::Sequence seq(m, full_cache(), ThreadPool::global(),
                             {.max_context = S + M * (reps + 1)});
  {
    std::vector<float> k(static_cast<size_t>(S * G * D)), v(k.size());
    std::vector<int32_t> pos(static_cast<size_t>(S));
    for (int64_t s = 0; s < S; ++s) pos[s] = static_cast<int32_t>(s - S);
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      fill_random(k, 100 + l);
      fill_random(v, 200 + l);
      seq.cache(l).append(k.data(), v.data(), S, pos.data());
    }
  }
  const auto steps = random_tokens(M * (reps + 1), V, 3);
  std::vector<float> logits(static_cast<size_t>(V));
  size_t idx = 0;
  const double t = best_of(reps, 1, [&] {
    for (int64_t i = 0; i < M; ++i, ++idx)
      seq.forward(std::span<const int32_t>(&steps[idx], 1), logits.data(), false);
  });
  return M / t;
}

struct AttnResult {
  double us_hot = 0;   // same cache every step (it may stay in the last-level cache)
  double us_cold = 0;  // rotating over copies totalling >= 1 GiB (each step reads from DRAM)
  int copies = 0;
};

// Decode attention alone: cpu::attention with T = 1 over head-major [G, S, D] K and V (the
// full_cache layout: head_stride = S*D, row_stride = D), positions 0..S-1, query at S.
AttnResult kvlab_attention(int64_t S, int64_t H, int64_t G, int64_t D, int reps) {
  const int64_t per = S * G * D;
  const int64_t bytes = 2 * per * static_cast<int64_t>(sizeof(float));
  const int copies = static_cast<int>(std::max<int64_t>(2, ((int64_t{1} << 30) + bytes - 1) / bytes));
  std::vector<std::vector<float>> ks(copies), vs(copies);
  for (int i = 0; i < copies; ++i) {
    ks[i].resize(static_cast<size_t>(per));
    vs[i].resize(static_cast<size_t>(per));
    if (i == 0) {
      fill_random(ks[i], 11);
      fill_random(vs[i], 12);
    } else {  // copies: same values, distinct memory
      ks[i] = ks[0];
      vs[i] = vs[0];
    }
  }
  std::vector<int32_t> pos(static_cast<size_t>(S));
  for (int64_t s = 0; s < S; ++s) pos[s] = static_cast<int32_t>(s);
  std::vector<float> q(static_cast<size_t>(H * D)), out(q.size());
  fill_random(q, 13);
  const int32_t qpos = static_cast<int32_t>(S);
  const kvlab::cpu::AttentionShape sh{H, G, D, 1.0f / std::sqrt(static_cast<float>(D))};
  auto view = [&](int i) {
    kvlab::cpu::KvView kv;
    kv.k = ks[i].data();
    kv.v = vs[i].data();
    kv.S = S;
    kv.head_stride = S * D;
    kv.row_stride = D;
    kv.pos = pos.data();
    return kv;
  };
  AttnResult r;
  r.copies = copies;
  const auto v0 = view(0);
  r.us_hot = 1e6 * best_of(reps, 3, [&] {
    kvlab::cpu::attention(q.data(), 1, &qpos, v0, sh, out.data(), nullptr, ThreadPool::global());
  });
  int next = 1;
  r.us_cold = 1e6 * best_of(reps, 1, [&] {
    const auto kv = view(next);
    next = (next + 1) % copies;
    kvlab::cpu::attention(q.data(), 1, &qpos, kv, sh, out.data(), nullptr, ThreadPool::global());
  });
  return r;
}

// ---- the torch peer ----

json run_peer(const Options& o, const std::string& args) {
  if (o.skip_torch) return json();
  const std::string cmd = o.python + " " + o.peer + " --json --threads " +
                          std::to_string(o.threads) + " " + args;
  std::fprintf(stderr, "  torch: %s\n", cmd.c_str());
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) usage_fail("cannot run " + cmd);
  std::string outp;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) outp.append(buf, n);
  const int rc = pclose(p);
  if (rc != 0) {
    std::fprintf(stderr, "perf_bench: torch peer failed (status %d): %s\n", rc, outp.c_str());
    return json();
  }
  // The JSON object is the last non-empty line.
  std::string last;
  std::stringstream ss(outp);
  for (std::string line; std::getline(ss, line);)
    if (!line.empty() && line[0] == '{') last = line;
  try {
    return json::parse(last);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "perf_bench: cannot parse the peer's output (%s): %s\n", e.what(),
                 outp.c_str());
    return json();
  }
}

double jget(const json& j, const char* k) {
  if (j.is_object() && j.contains(k) && j[k].is_number()) return j[k].get<double>();
  return std::numeric_limits<double>::quiet_NaN();
}

double nanmax(double a, double b) {
  if (std::isnan(a)) return b;
  if (std::isnan(b)) return a;
  return std::max(a, b);
}
double nanmin(double a, double b) {
  if (std::isnan(a)) return b;
  if (std::isnan(b)) return a;
  return std::min(a, b);
}

// Cores kept busy by other processes: non-idle jiffies from /proc/stat over `seconds` while
// this process is idle (the load average counts this benchmark's own threads, so it cannot tell
// whether the machine is quiet between sections).
double busy_cores(double seconds) {
  auto sample = [](uint64_t& busy, uint64_t& total) {
    std::ifstream f("/proc/stat");
    std::string cpu;
    uint64_t v[10] = {};
    f >> cpu;
    for (auto& x : v) f >> x;
    total = 0;
    for (auto x : v) total += x;
    busy = total - v[3] - v[4];  // minus idle and iowait
  };
  uint64_t b0, t0, b1, t1;
  sample(b0, t0);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  sample(b1, t1);
  if (t1 <= t0) return 0;
  return static_cast<double>(b1 - b0) / static_cast<double>(t1 - t0) *
         std::thread::hardware_concurrency();
}

// Waits (up to wait_load_s) until other processes keep less than max_load cores busy; returns
// the last measurement.
double wait_for_quiet(const Options& o) {
  const double t0 = now_s();
  double b = busy_cores(1.0);
  while (o.wait_load_s > 0 && b >= o.max_load && now_s() - t0 < o.wait_load_s) {
    std::fprintf(stderr, "  other processes busy %.2f cores (load %s): waiting\n", b,
                 load_str().c_str());
    std::this_thread::sleep_for(std::chrono::seconds(4));
    b = busy_cores(1.0);
  }
  return b;
}

std::string fmt(double x, const char* f = "%.1f") {
  if (std::isnan(x)) return "n/a";
  char b[64];
  std::snprintf(b, sizeof b, f, x);
  return b;
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  char b[64];
  std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  const int threads = kvlab::cli::set_threads(o.threads);
  const double t_start = now_s();
  json J;
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  const std::string blas_config = openblas_get_config();
  J["date"] = utc_now();
  J["kvlab_version"] = KVLAB_VERSION;
  J["git_commit"] = KVLAB_GIT_COMMIT;
  J["build_type"] = KVLAB_BUILD_TYPE;
  J["compiler"] = KVLAB_COMPILER;
  J["threads"] = threads;
  J["load_average_start"] = load_str();
  J["openblas_coretype"] = coretype ? json(coretype) : json(nullptr);
  J["openblas_config"] = blas_config;
  J["openblas_note"] =
      "Debian's OpenBLAS 0.3.21 does not recognise this Xeon and selects its generic 'Prescott' "
      "(SSE3) kernels. Debian's torch 1.13 reports BLAS_INFO=generic and also ships MKL-DNN "
      "(oneDNN) 2.6.3 with AVX-512 kernels, so its GEMMs need not go through this OpenBLAS.";
  utsname un{};
  uname(&un);
  J["kernel"] = std::string(un.release);

  std::printf("kvlab perf_bench  %s  commit %s (%s, %s)\n", J["date"].get<std::string>().c_str(),
              KVLAB_GIT_COMMIT, KVLAB_BUILD_TYPE, KVLAB_COMPILER);
  std::printf("threads %d (kvlab and torch)   load average at start %s\n", threads,
              load_str().c_str());
  std::printf("OPENBLAS_CORETYPE=%s   openblas_get_config(): %s\n", coretype ? coretype : "(unset)",
              blas_config.c_str());
  std::printf("  note: OpenBLAS 0.3.21 does not recognise this Xeon (core 'Prescott' above);\n"
              "        Debian's torch 1.13 (BLAS_INFO=generic) also ships oneDNN 2.6.3 with AVX-512\n"
              "        kernels, so torch's GEMMs need not go through this OpenBLAS.\n");
  std::fflush(stdout);

  // 1. sysinfo
  const double si_busy = wait_for_quiet(o);
  std::fprintf(stderr, "[sysinfo] others busy %.2f cores\n", si_busy);
  const auto si = kvlab::cpu::measure_sysinfo(ThreadPool::global(), o.sysinfo_seconds);
  J["sysinfo"] = {{"mem_bandwidth_gbs", si.mem_bandwidth_gbs},
                  {"copy_bandwidth_gbs", si.copy_bandwidth_gbs},
                  {"gemm_gflops", si.gemm_gflops},
                  {"threads", si.threads},
                  {"isa", si.isa},
                  {"cpu_model", si.cpu_model},
                  {"load_average", load_str()},
                  {"other_busy_cores", si_busy}};
  std::printf("\ncpu %s   kvlab isa %s\n", si.cpu_model.c_str(), si.isa.c_str());
  std::printf("sysinfo: read bandwidth %.2f GB/s, copy %.2f GB/s, sgemm peak %.1f GFLOP/s "
              "(%d threads)\n", si.mem_bandwidth_gbs, si.copy_bandwidth_gbs, si.gemm_gflops,
              si.threads);
  std::fflush(stdout);

  // 2. models
  std::fprintf(stderr, "[models] %s\n", o.cache_dir.c_str());
  struct ModelCase {
    std::string preset;
    std::vector<int64_t> prefill;
    int rounds;
    int reps;
  };
  const std::vector<ModelCase> cases = {
      {"small", o.small_prefill, o.rounds, o.reps},
      {"llama3-8b-layer", o.big_prefill, o.big_rounds, o.big_reps}};
  std::map<std::string, std::string> dirs;
  for (const auto& mc : cases) {
    kvlab::model::InitOptions io;
    io.config = kvlab::model::preset_config(mc.preset);
    io.dtype = kvlab::DType::kBF16;
    io.seed = 1;
    const std::string dir = (fs::path(o.cache_dir) / mc.preset).string();
    const double t0 = now_s();
    kvlab::model::write_random_model(io, dir);
    std::fprintf(stderr, "  wrote %s (%.1f s)\n", dir.c_str(), now_s() - t0);
    dirs[mc.preset] = dir;
  }

  // 3. prefill and decode, kvlab vs torch, alternating
  J["model_runs"] = json::array();
  struct Row {
    std::string model;
    int64_t T, M;
    double kp, kd, tp, td;
  };
  std::vector<Row> rows;
  double max_busy = si_busy;
  for (const auto& mc : cases) {
    auto m = kvlab::model::Model::load(dirs[mc.preset]);
    const auto& c = m->config();
    for (int64_t T : mc.prefill) {
      Row r{mc.preset, T, o.decode, std::nan(""), std::nan(""), std::nan(""), std::nan("")};
      json rounds = json::array();
      for (int rd = 0; rd < mc.rounds; ++rd) {
        const double busy = wait_for_quiet(o);
        const std::string l0 = load_str();
        std::fprintf(stderr, "[%s T=%lld round %d] load %s, others busy %.2f cores\n",
                     mc.preset.c_str(), static_cast<long long>(T), rd + 1, l0.c_str(), busy);
        max_busy = std::max(max_busy, busy);
        const double kp = kvlab_prefill(m, T, mc.reps);
        const double kd = kvlab_decode(m, T, o.decode, mc.reps);
        std::fprintf(stderr, "  kvlab: prefill %.1f tok/s, decode %.2f tok/s\n", kp, kd);
        const json tj = run_peer(o, "--model " + dirs[mc.preset] + " --prefill " +
                                        std::to_string(T) + " --decode " +
                                        std::to_string(o.decode) + " --repeats " +
                                        std::to_string(mc.reps));
        const double tp = jget(tj, "prefill_tok_s"), td = jget(tj, "decode_tok_s");
        std::fprintf(stderr, "  torch: prefill %.1f tok/s, decode %.2f tok/s\n", tp, td);
        rounds.push_back({{"load_average", l0},
                          {"other_busy_cores", busy},
                          {"kvlab_prefill_tok_s", kp},
                          {"kvlab_decode_tok_s", kd},
                          {"torch", tj}});
        r.kp = nanmax(r.kp, kp);
        r.kd = nanmax(r.kd, kd);
        r.tp = nanmax(r.tp, tp);
        r.td = nanmax(r.td, td);
      }
      J["model_runs"].push_back({{"model", mc.preset},
                                 {"hidden", c.hidden_size},
                                 {"layers", c.num_hidden_layers},
                                 {"heads", c.num_attention_heads},
                                 {"kv_heads", c.num_key_value_heads},
                                 {"head_dim", c.head_dim},
                                 {"mlp", c.intermediate_size},
                                 {"vocab", c.vocab_size},
                                 {"weight_dtype", "bf16"},
                                 {"prefill_tokens", T},
                                 {"decode_tokens", o.decode},
                                 {"rounds_run", mc.rounds},
                                 {"reps_per_round", mc.reps},
                                 {"kvlab_prefill_chunk", 512},
                                 {"kvlab_prefill_tok_s", r.kp},
                                 {"kvlab_decode_tok_s", r.kd},
                                 {"torch_prefill_tok_s", r.tp},
                                 {"torch_decode_tok_s", r.td},
                                 {"prefill_ratio_kvlab_over_torch", r.kp / r.tp},
                                 {"decode_ratio_kvlab_over_torch", r.kd / r.td},
                                 {"rounds", rounds}});
      rows.push_back(r);
    }
  }

  // 4a. 8B layer decode at a long context, cache filled directly
  const double long_busy = wait_for_quiet(o);
  max_busy = std::max(max_busy, long_busy);
  std::fprintf(stderr, "[llama3-8b-layer decode at S=%lld, cache filled directly] load %s\n",
               static_cast<long long>(o.long_context), load_str().c_str());
  const std::string long_load = load_str();
  double long_decode = std::nan("");
  {
    auto m = kvlab::model::Model::load(dirs["llama3-8b-layer"]);
    long_decode = kvlab_decode_filled(m, o.long_context, o.decode, o.reps);
  }
  J["long_context_decode"] = {
      {"model", "llama3-8b-layer"},
      {"context", o.long_context},
      {"decode_tokens", o.decode},
      {"kvlab_decode_tok_s", long_decode},
      {"load_average", long_load},
      {"other_busy_cores", long_busy},
      {"note",
       "cache filled with random post-RoPE K/V via Sequence::cache(l).append (positions -S..-1) "
       "instead of a prefill: prefilling 32K tokens on 2 cores takes too long (and torch's eager "
       "attention would need a [32, 32K, 32K] f32 score matrix, 128 GiB), so there is no torch "
       "figure here; compare the attention-only rows"}};

  // 4b. decode attention alone
  const int64_t H = 32, G = 8, D = 128;
  struct ARow {
    int64_t S;
    double bytes, k_hot, k_cold, t_us;
    int copies;
  };
  std::vector<ARow> arows;
  J["attention_decode"] = json::array();
  for (int64_t S : o.attn_contexts) {
    const double bytes = static_cast<double>(S) * G * D * 2 * 4;
    ARow ar{S, bytes, std::nan(""), std::nan(""), std::nan(""), 0};
    json rounds = json::array();
    const int reps = S >= 16384 ? 20 : 100;
    for (int rd = 0; rd < o.rounds; ++rd) {
      const double busy = wait_for_quiet(o);
      max_busy = std::max(max_busy, busy);
      const std::string l0 = load_str();
      std::fprintf(stderr, "[attention S=%lld round %d] load %s, others busy %.2f cores\n",
                   static_cast<long long>(S), rd + 1, l0.c_str(), busy);
      const AttnResult a = kvlab_attention(S, H, G, D, reps);
      const json tj = run_peer(o, "--attention-only --context " + std::to_string(S) +
                                      " --heads 32 --kv-heads 8 --head-dim 128 --repeats " +
                                      std::to_string(reps));
      std::fprintf(stderr, "  kvlab hot %.0f us, cold %.0f us; torch %.0f us\n", a.us_hot,
                   a.us_cold, jget(tj, "attn_us"));
      rounds.push_back({{"load_average", l0},
                        {"other_busy_cores", busy},
                        {"kvlab_us_hot", a.us_hot},
                        {"kvlab_us_cold", a.us_cold},
                        {"torch", tj}});
      ar.k_hot = nanmin(ar.k_hot, a.us_hot);
      ar.k_cold = nanmin(ar.k_cold, a.us_cold);
      ar.t_us = nanmin(ar.t_us, jget(tj, "attn_us"));
      ar.copies = a.copies;
    }
    auto gbs = [&](double us) { return bytes / (us * 1e-6) / 1e9; };
    J["attention_decode"].push_back(
        {{"context", S},
         {"heads", H},
         {"kv_heads", G},
         {"head_dim", D},
         {"layout", "head-major [G, S, D] (full_cache), f32"},
         {"kv_bytes", bytes},
         {"kvlab_us_hot", ar.k_hot},
         {"kvlab_gb_s_hot", gbs(ar.k_hot)},
         {"kvlab_fraction_of_read_bw_hot", gbs(ar.k_hot) / si.mem_bandwidth_gbs},
         {"kvlab_us_cold", ar.k_cold},
         {"kvlab_gb_s_cold", gbs(ar.k_cold)},
         {"kvlab_fraction_of_read_bw_cold", gbs(ar.k_cold) / si.mem_bandwidth_gbs},
         {"cold_copies", ar.copies},
         {"torch_us", ar.t_us},
         {"torch_gb_s", gbs(ar.t_us)},
         {"torch_fraction_of_read_bw", gbs(ar.t_us) / si.mem_bandwidth_gbs},
         {"ratio_torch_time_over_kvlab_hot", ar.t_us / ar.k_hot},
         {"rounds", rounds}});
    arows.push_back(ar);
  }
  J["load_average_end"] = load_str();
  J["max_other_busy_cores"] = max_busy;
  J["load_note"] =
      "load_average counts this benchmark's own threads; other_busy_cores is the CPU other "
      "processes used (from /proc/stat over 1 s) just before each section, while perf_bench idled";
  J["wall_seconds"] = now_s() - t_start;

  // 5. table
  std::printf("\nPrefill and decode, tokens/s (best of %d rounds x %d reps, kvlab and torch "
              "alternating; torch f32 like kvlab; bf16 weights)\n", o.rounds, o.reps);
  std::printf("  8B layer: %d round(s) x %d reps; kvlab prefills in chunks of 512 tokens (its default)\n",
              o.big_rounds, o.big_reps);
  std::printf("%-16s %6s | %10s %10s %6s | %9s %9s %6s\n", "model", "T", "kv prefill",
              "pt prefill", "ratio", "kv decode", "pt decode", "ratio");
  for (const auto& r : rows)
    std::printf("%-16s %6lld | %10s %10s %6s | %9s %9s %6s\n", r.model.c_str(),
                static_cast<long long>(r.T), fmt(r.kp).c_str(), fmt(r.tp).c_str(),
                fmt(r.kp / r.tp, "%.2f").c_str(), fmt(r.kd, "%.2f").c_str(),
                fmt(r.td, "%.2f").c_str(), fmt(r.kd / r.td, "%.2f").c_str());
  std::printf("\n8B layer decode at context %lld (cache filled directly with random K/V; a 32K "
              "prefill on %d cores is too slow): kvlab %.2f tok/s (%.1f ms/token); no torch "
              "figure (its eager attention would need a 128 GiB score matrix for the prefill)\n",
              static_cast<long long>(o.long_context), threads, long_decode, 1e3 / long_decode);
  std::printf("\nDecode attention alone (T=1, H=32 G=8 D=128, f32 K/V head-major; GB/s = K+V "
              "bytes / time; read bandwidth %.2f GB/s)\n", si.mem_bandwidth_gbs);
  std::printf("  hot: the same cache every step (at 4K it fits in the last-level cache); cold: "
              "rotating over copies totalling >= 1 GiB\n");
  std::printf("%6s %8s | %9s %7s %5s | %9s %7s %5s | %9s %7s %5s\n", "S", "KV MB", "kv hot us",
              "GB/s", "bw%", "kv coldus", "GB/s", "bw%", "torch us", "GB/s", "bw%");
  for (const auto& a : arows) {
    auto gbs = [&](double us) { return a.bytes / (us * 1e-6) / 1e9; };
    auto pct = [&](double us) { return fmt(100 * gbs(us) / si.mem_bandwidth_gbs, "%.0f%%"); };
    std::printf("%6lld %8.1f | %9s %7s %5s | %9s %7s %5s | %9s %7s %5s\n",
                static_cast<long long>(a.S), a.bytes / 1e6, fmt(a.k_hot, "%.0f").c_str(),
                fmt(gbs(a.k_hot)).c_str(), pct(a.k_hot).c_str(), fmt(a.k_cold, "%.0f").c_str(),
                fmt(gbs(a.k_cold)).c_str(), pct(a.k_cold).c_str(), fmt(a.t_us, "%.0f").c_str(),
                fmt(gbs(a.t_us)).c_str(), pct(a.t_us).c_str());
  }
  std::printf("\nload average at end %s (includes this benchmark); other processes kept at most "
              "%.2f of %u cores busy just before a section (sysinfo: %.2f); wall %.0f s\n",
              load_str().c_str(), max_busy, std::thread::hardware_concurrency(), si_busy,
              now_s() - t_start);

  if (!o.out.empty()) {
    fs::path p(o.out);
    if (p.has_parent_path()) fs::create_directories(p.parent_path());
    std::ofstream f(o.out);
    f << J.dump(2) << "\n";
    std::printf("wrote %s\n", o.out.c_str());
  }
  return 0;
}
