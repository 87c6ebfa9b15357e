// prefill_profile: where kvlab's prefill time goes on the llama3-8b-layer model, op by op, for
// one chunk of T tokens, next to one multi-threaded OpenBLAS cblas_sgemm on f32 weights for the
// same product (the GEMM kvlab used before its own packed AVX-512 SGEMM).
//   build/experiments/prefill_profile MODEL_DIR [--threads 2] [--T 512] [--reps 3]
#include <cblas.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "framework/backend/cpu/kernels.h"
#include "framework/cli/commands.h"
#include "framework/core/thread_pool.h"
#include "framework/model/llama.h"

namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
double best_of(int reps, const std::function<void()>& fn) {
  fn();
  double b = std::numeric_limits<double>::infinity();
  for (int i = 0; i < reps; ++i) {
    const double t0 = now_s();
    fn();
    b = std::min(b, now_s() - t0);
  }
  return b;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: prefill_profile MODEL_DIR [--threads N] [--T T] [--reps R]\n");
    return 2;
  }
  int threads = 2, reps = 3;
  int64_t T = 512;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--threads") threads = std::stoi(argv[i + 1]);
    else if (a == "--T") T = std::stoll(argv[i + 1]);
    else if (a == "--reps") reps = std::stoi(argv[i + 1]);
  }
  threads = kvlab::cli::set_threads(threads);
  auto& pool = kvlab::ThreadPool::global();
  auto m = kvlab::model::Model::load(argv[1]);
  const auto& w = m->layer(0);
  struct Op {
    const char* name;
    kvlab::MatRef W;
  };
  const Op ops[] = {{"q_proj", w.wq},        {"k_proj", w.wk},  {"v_proj", w.wv},
                    {"o_proj", w.wo},        {"gate_proj", w.w_gate}, {"up_proj", w.w_up},
                    {"down_proj", w.w_down}};
  std::mt19937 g(1);
  std::normal_distribution<float> d;
  std::printf("T=%lld threads=%d; times in ms (best of %d)\n", static_cast<long long>(T), threads,
              reps);
  std::printf("%-10s %12s | %10s %8s | %10s %8s | %9s\n", "op", "N x K", "kvlab bf16",
              "GFLOP/s", "sgemm f32", "GFLOP/s", "convert");
  double tot_k = 0, tot_s = 0;
  for (const auto& op : ops) {
    const int64_t N = op.W.rows, K = op.W.cols;
    std::vector<float> x(static_cast<size_t>(T * K)), y(static_cast<size_t>(T * N));
    for (auto& v : x) v = d(g);
    const double tk = best_of(reps, [&] { kvlab::cpu::linear(x.data(), T, op.W, nullptr, y.data(), pool); });
    std::vector<float> wf(static_cast<size_t>(N * K));
    const double tc = best_of(reps, [&] {
      for (int64_t n = 0; n < N; ++n)
        kvlab::to_f32(op.W.dtype, op.W.row_ptr(n), wf.data() + n * K, static_cast<size_t>(K));
    });
    openblas_set_num_threads(threads);
    const double ts = best_of(reps, [&] {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(T), static_cast<int>(N),
                  static_cast<int>(K), 1.f, x.data(), static_cast<int>(K), wf.data(),
                  static_cast<int>(K), 0.f, y.data(), static_cast<int>(N));
    });
    const double fl = 2.0 * T * N * K;
    std::printf("%-10s %5lldx%-6lld | %10.1f %8.1f | %10.1f %8.1f | %9.1f\n", op.name,
                static_cast<long long>(N), static_cast<long long>(K), tk * 1e3, fl / tk / 1e9,
                ts * 1e3, fl / ts / 1e9, tc * 1e3);
    tot_k += tk;
    tot_s += ts;
  }
  // attention for one chunk at the start of the sequence (causal over T keys)
  const auto& c = m->config();
  const int64_t H = c.num_attention_heads, G = c.num_key_value_heads, D = c.head_dim;
  std::vector<float> q(static_cast<size_t>(T * H * D)), k(static_cast<size_t>(T * G * D)),
      v(k.size()), out(q.size());
  for (auto* b : {&q, &k, &v})
    for (auto& e : *b) e = d(g);
  std::vector<int32_t> pos(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) pos[t] = static_cast<int32_t>(t);
  kvlab::cpu::KvView kv{k.data(), v.data(), T, D, G * D, pos.data()};
  const kvlab::cpu::AttentionShape sh{H, G, D, 1.0f / std::sqrt(static_cast<float>(D))};
  const double ta = best_of(reps, [&] {
    kvlab::cpu::attention(q.data(), T, pos.data(), kv, sh, out.data(), nullptr, pool);
  });
  std::printf("linear total: kvlab %.1f ms, f32 sgemm %.1f ms; causal attention over the chunk "
              "%.1f ms (%.1f GFLOP/s)\n", tot_k * 1e3, tot_s * 1e3, ta * 1e3,
              2.0 * T * T * H * D / ta / 1e9);
  return 0;
}
