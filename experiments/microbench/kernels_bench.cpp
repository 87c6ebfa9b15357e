// Micro-benchmarks of the CPU kernels at Llama-3-8B shapes (C = K = 4096, FFN N = 14336,
// H = 32, G = 8, D = 128) on ThreadPool::global(). Memory-bound kernels report bytes/s
// (SetBytesProcessed) and frac_bw = achieved / measured streaming read bandwidth; compute-bound
// ones report GFLOP/s and frac_peak = achieved / measured sgemm peak. The machine figures come
// from measure_sysinfo() once at start-up (printed first). OPENBLAS_CORETYPE is left as set.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "framework/backend/cpu/cpu_features.h"
#include "framework/backend/cpu/kernels.h"
#include "framework/backend/cpu/sysinfo.h"

namespace kvlab::cpu {
namespace {

SysInfo g_sys;

std::vector<float> randu(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

void report_bytes(benchmark::State& st, double bytes) {
  st.SetBytesProcessed(static_cast<int64_t>(bytes * st.iterations()));
  st.counters["frac_bw"] =
      benchmark::Counter(bytes / (g_sys.mem_bandwidth_gbs * 1e9), benchmark::Counter::kIsIterationInvariantRate);
}
void report_flops(benchmark::State& st, double flops) {
  st.counters["GFLOP/s"] = benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["frac_peak"] =
      benchmark::Counter(flops / (g_sys.gemm_gflops * 1e9), benchmark::Counter::kIsIterationInvariantRate);
}

// args: dtype (0 f32, 1 bf16, 2 f16), T, N; K = 4096.
void BM_Linear(benchmark::State& st) {
  const DType dt = st.range(0) == 0 ? DType::kF32 : st.range(0) == 1 ? DType::kBF16 : DType::kF16;
  const int64_t T = st.range(1), N = st.range(2), K = 4096;
  const auto wf = randu(static_cast<size_t>(N * K), 1);
  std::vector<uint16_t> wh;
  MatRef w{wf.data(), dt, N, K, K};
  if (dt != DType::kF32) {
    wh.resize(wf.size());
    from_f32(dt, wf.data(), wh.data(), wf.size());
    w.data = wh.data();
  }
  const auto x = randu(static_cast<size_t>(T * K), 2);
  std::vector<float> y(static_cast<size_t>(T * N));
  for (auto _ : st) {
    linear(x.data(), T, w, nullptr, y.data(), ThreadPool::global());
    benchmark::DoNotOptimize(y.data());
  }
  if (T <= 4) report_bytes(st, static_cast<double>(N * K * dtype_size(dt)));
  report_flops(st, 2.0 * T * N * K);
}
BENCHMARK(BM_Linear)
    ->ArgNames({"dtype", "T", "N"})
    ->ArgsProduct({{0, 1}, {1, 512}, {4096, 14336}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Decode: T = 1 query at the last position over S cached tokens, token-major [S, G, D] cache.
void BM_AttentionDecode(benchmark::State& st) {
  const int64_t S = st.range(0), T = 1, H = 32, G = 8, D = 128;
  const auto k = randu(static_cast<size_t>(S * G * D), 3);
  const auto v = randu(static_cast<size_t>(S * G * D), 4);
  std::vector<int32_t> pos(static_cast<size_t>(S));
  for (int64_t s = 0; s < S; ++s) pos[s] = static_cast<int32_t>(s);
  const int32_t qpos = static_cast<int32_t>(S - 1);
  const auto q = randu(static_cast<size_t>(T * H * D), 5);
  std::vector<float> out(q.size()), lse(static_cast<size_t>(T * H));
  KvView kv{k.data(), v.data(), S, D, G * D, pos.data()};
  AttentionShape sh{H, G, D, 0.08838834764f};
  for (auto _ : st) {
    attention(q.data(), T, &qpos, kv, sh, out.data(), lse.data(), ThreadPool::global());
    benchmark::DoNotOptimize(out.data());
  }
  report_bytes(st, 2.0 * S * G * D * 4);
}
BENCHMARK(BM_AttentionDecode)
    ->ArgName("S")
    ->Arg(1024)->Arg(4096)->Arg(16384)->Arg(32768)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// Prefill: T = 512 new tokens at the last positions of S (causal), head-major cache.
void BM_AttentionPrefill(benchmark::State& st) {
  const int64_t S = st.range(0), T = 512, H = 32, G = 8, D = 128;
  const auto k = randu(static_cast<size_t>(S * G * D), 3);
  const auto v = randu(static_cast<size_t>(S * G * D), 4);
  std::vector<int32_t> pos(static_cast<size_t>(S)), qpos(static_cast<size_t>(T));
  for (int64_t s = 0; s < S; ++s) pos[s] = static_cast<int32_t>(s);
  for (int64_t t = 0; t < T; ++t) qpos[t] = static_cast<int32_t>(S - T + t);
  const auto q = randu(static_cast<size_t>(T * H * D), 5);
  std::vector<float> out(q.size());
  KvView kv{k.data(), v.data(), S, S * D, D, pos.data()};
  AttentionShape sh{H, G, D, 0.08838834764f};
  for (auto _ : st) {
    attention(q.data(), T, qpos.data(), kv, sh, out.data(), nullptr, ThreadPool::global());
    benchmark::DoNotOptimize(out.data());
  }
  double visible = 0;  // (query, key) pairs under the causal mask
  for (int64_t t = 0; t < T; ++t) visible += static_cast<double>(qpos[t] + 1);
  report_flops(st, 4.0 * visible * H * D);
}
BENCHMARK(BM_AttentionPrefill)
    ->ArgName("S")
    ->Arg(512)->Arg(1024)->Arg(2048)->Arg(4096)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_RmsNorm(benchmark::State& st) {
  const int64_t T = st.range(0), C = 4096;
  const auto x = randu(static_cast<size_t>(T * C), 6);
  std::vector<uint16_t> wh(static_cast<size_t>(C));
  const auto wf = randu(static_cast<size_t>(C), 7);
  from_f32(DType::kBF16, wf.data(), wh.data(), wh.size());
  std::vector<float> y(x.size());
  VecRef w{wh.data(), DType::kBF16, C};
  for (auto _ : st) {
    rmsnorm(x.data(), T, C, w, 1e-5f, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  report_bytes(st, 2.0 * T * C * 4);
}
BENCHMARK(BM_RmsNorm)->ArgName("T")->Arg(1)->Arg(512)->UseRealTime();

void BM_Rope(benchmark::State& st) {
  const int64_t T = st.range(0), H = 32, D = 128;
  Rope rope({.head_dim = D, .theta = 500000.0, .type = RopeConfig::Type::kLlama3, .factor = 8.0});
  auto x = randu(static_cast<size_t>(T * H * D), 8);
  std::vector<int32_t> pos(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) pos[t] = static_cast<int32_t>(1000 + t);
  for (auto _ : st) {
    rope.apply(x.data(), T, H, pos.data());
    benchmark::DoNotOptimize(x.data());
  }
  report_bytes(st, 2.0 * T * H * D * 4);
}
BENCHMARK(BM_Rope)->ArgName("T")->Arg(1)->Arg(512)->UseRealTime();

void BM_SwiGlu(benchmark::State& st) {
  const int64_t n = st.range(0);
  const auto g = randu(static_cast<size_t>(n), 9), u = randu(static_cast<size_t>(n), 10);
  std::vector<float> y(g.size());
  for (auto _ : st) {
    swiglu(g.data(), u.data(), y.data(), n);
    benchmark::DoNotOptimize(y.data());
  }
  report_bytes(st, 3.0 * n * 4);
}
BENCHMARK(BM_SwiGlu)->ArgName("n")->Arg(14336)->Arg(512 * 14336)->UseRealTime();

}  // namespace
}  // namespace kvlab::cpu

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (const char* isa = std::getenv("KVLAB_ISA")) {  // scalar / avx2 / avx512
    for (auto i : {kvlab::cpu::Isa::kScalar, kvlab::cpu::Isa::kAvx2, kvlab::cpu::Isa::kAvx512})
      if (kvlab::cpu::isa_name(i) == isa) kvlab::cpu::force_isa(i);
  }
  kvlab::cpu::g_sys = kvlab::cpu::measure_sysinfo(kvlab::ThreadPool::global(), 3.0);
  const auto& s = kvlab::cpu::g_sys;
  std::printf("sysinfo: %s, isa %s (kernels: %s), %d threads, read %.1f GB/s, copy %.1f GB/s, "
              "sgemm %.1f GFLOP/s, OPENBLAS_CORETYPE=%s\n",
              s.cpu_model.c_str(), s.isa.c_str(),
              std::string(kvlab::cpu::isa_name(kvlab::cpu::active_isa())).c_str(), s.threads,
              s.mem_bandwidth_gbs, s.copy_bandwidth_gbs, s.gemm_gflops,
              std::getenv("OPENBLAS_CORETYPE") ? std::getenv("OPENBLAS_CORETYPE") : "(unset)");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
