// gemm_nt (kvlab's packed AVX-512 SGEMM) vs cblas_sgemm (Debian OpenBLAS, whatever core type
// it picks; OPENBLAS_CORETYPE left as set) vs linear() on the OpenBLAS path (forced by running
// it with the AVX2 ISA) vs linear() as dispatched now, at Llama-3-8B shapes (K = 4096,
// N = 4096 / 14336) and small-model shapes (K = 256, N = 256..704, M = 512..2048).
// Reports GFLOP/s and frac_peak = achieved / (threads x one core's AVX-512 FMA peak), the peak
// measured at start-up with a register-only FMA loop (detail::fma_peak_loop), printed first.
// Use --benchmark_repetitions=N: a "max" statistic is added (best run, as other processes may
// share the cores).
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "framework/backend/cpu/cpu_features.h"
#include "framework/backend/cpu/gemm.h"
#include "framework/backend/cpu/kernels.h"

namespace kvlab::cpu {
namespace {

double g_peak_gflops = 0;  // one core

double measure_fma_peak() {
  if (!isa_supported(Isa::kAvx512)) return 0;
  float sink = 0;
  double best = 0;
  for (int rep = 0; rep < 7; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t flops = detail::fma_peak_loop(20'000'000, &sink);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, flops / s / 1e9);
  }
  benchmark::DoNotOptimize(sink);
  std::printf("one-core AVX-512 FMA peak (register-only loop, best of 7): %.1f GFLOP/s\n", best);
  return best;
}

ThreadPool& pool_for(int threads) {
  static std::map<int, std::unique_ptr<ThreadPool>> pools;
  auto& p = pools[threads];
  if (!p) p = std::make_unique<ThreadPool>(threads);
  return *p;
}

std::vector<float> randu(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

struct Problem {
  std::vector<float> a, wf, c;
  std::vector<uint16_t> wh;
  MatRef w;
};
Problem make(DType dt, int64_t M, int64_t N, int64_t K) {
  Problem p;
  p.a = randu(static_cast<size_t>(M * K), 1);
  p.wf = randu(static_cast<size_t>(N * K), 2);
  p.c.resize(static_cast<size_t>(M * N));
  p.w = MatRef{p.wf.data(), dt, N, K, K};
  if (dt != DType::kF32) {
    p.wh.resize(p.wf.size());
    from_f32(dt, p.wf.data(), p.wh.data(), p.wf.size());
    p.w.data = p.wh.data();
  }
  return p;
}

void report(benchmark::State& st, int threads, double flops) {
  st.counters["GFLOP/s"] =
      benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["frac_peak"] = benchmark::Counter(flops / (threads * g_peak_gflops * 1e9),
                                                benchmark::Counter::kIsIterationInvariantRate);
}

DType dtype_arg(int64_t v) { return v == 0 ? DType::kF32 : v == 1 ? DType::kBF16 : DType::kF16; }

// args: dtype (0 f32, 1 bf16, 2 f16), M, N, K, threads.
void BM_GemmNt(benchmark::State& st) {
  if (!isa_supported(Isa::kAvx512)) {
    st.SkipWithError("no AVX-512");
    return;
  }
  const int64_t M = st.range(1), N = st.range(2), K = st.range(3);
  const int threads = static_cast<int>(st.range(4));
  Problem p = make(dtype_arg(st.range(0)), M, N, K);
  ThreadPool& pool = pool_for(threads);
  for (auto _ : st) {
    gemm_nt(p.a.data(), K, M, p.w, p.c.data(), N, pool);
    benchmark::DoNotOptimize(p.c.data());
  }
  report(st, threads, 2.0 * M * N * K);
}

// f32 W only (cblas has no bf16 input). OpenBLAS threads = threads for the run.
void BM_Cblas(benchmark::State& st) {
  const int64_t M = st.range(1), N = st.range(2), K = st.range(3);
  const int threads = static_cast<int>(st.range(4));
  Problem p = make(DType::kF32, M, N, K);
  const int prev = openblas_get_num_threads();
  openblas_set_num_threads(threads);
  for (auto _ : st) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(M),
                static_cast<int>(N), static_cast<int>(K), 1.f, p.a.data(), static_cast<int>(K),
                p.wf.data(), static_cast<int>(K), 0.f, p.c.data(), static_cast<int>(N));
    benchmark::DoNotOptimize(p.c.data());
  }
  openblas_set_num_threads(prev);
  report(st, threads, 2.0 * M * N * K);
}

// linear() with the ISA forced to AVX2: the OpenBLAS path (panel conversion + cblas_sgemm).
void BM_LinearOpenBlasPath(benchmark::State& st) {
  const int64_t M = st.range(1), N = st.range(2), K = st.range(3);
  const int threads = static_cast<int>(st.range(4));
  Problem p = make(dtype_arg(st.range(0)), M, N, K);
  ThreadPool& pool = pool_for(threads);
  ScopedIsa isa(Isa::kAvx2);
  for (auto _ : st) {
    linear(p.a.data(), M, p.w, nullptr, p.c.data(), pool);
    benchmark::DoNotOptimize(p.c.data());
  }
  report(st, threads, 2.0 * M * N * K);
}

// linear() as dispatched (gemm_nt where AVX-512 is available).
void BM_Linear(benchmark::State& st) {
  const int64_t M = st.range(1), N = st.range(2), K = st.range(3);
  const int threads = static_cast<int>(st.range(4));
  Problem p = make(dtype_arg(st.range(0)), M, N, K);
  ThreadPool& pool = pool_for(threads);
  for (auto _ : st) {
    linear(p.a.data(), M, p.w, nullptr, p.c.data(), pool);
    benchmark::DoNotOptimize(p.c.data());
  }
  report(st, threads, 2.0 * M * N * K);
}

double stat_max(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }

void shapes(benchmark::internal::Benchmark* b, bool with_dtypes) {
  b->ArgNames({"dt", "M", "N", "K", "thr"})->Unit(benchmark::kMillisecond)->UseRealTime();
  b->ComputeStatistics("max", stat_max);
  const std::vector<int64_t> dts = with_dtypes ? std::vector<int64_t>{0, 1} : std::vector<int64_t>{0};
  for (int64_t thr : {1, 2})
    for (int64_t dt : dts) {
      for (int64_t M : {128, 512}) b->Args({dt, M, 4096, 4096, thr});
      b->Args({dt, 512, 14336, 4096, thr});
      for (int64_t M : {512, 2048})
        for (int64_t N : {256, 704}) b->Args({dt, M, N, 256, thr});
    }
}

BENCHMARK(BM_GemmNt)->Apply([](auto* b) { shapes(b, true); });
BENCHMARK(BM_Cblas)->Apply([](auto* b) { shapes(b, false); });
BENCHMARK(BM_LinearOpenBlasPath)->Apply([](auto* b) { shapes(b, true); });
BENCHMARK(BM_Linear)->Apply([](auto* b) { shapes(b, true); });

}  // namespace
}  // namespace kvlab::cpu

int main(int argc, char** argv) {
  kvlab::cpu::g_peak_gflops = kvlab::cpu::measure_fma_peak();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
