// Optimizer step time against parameter-block size, and OMP's cost against s' and k
// (kvlab issue 7; methods.md section 3: no SGC timings were ever published, reviewers asked for
// them). One n x n target block ("...mlp.up_proj.weight"), gradient N(0, 1), lr 1e-4.
//   BM_Step/<opt>/<n>: one optimizer step after a warm-up step (state allocated; GaLore's and
//     CESGC's first SVD done, so timed steps are non-refresh steps at gap 200).
//     opt 0 adamw | 1 galore r=128 | 2 sgc k=256 s=16 gaussian regenerate | 3 sgc same with
//     rademacher | 4 mesgc c=4 | 5 mesgc c=16 (gaussian regenerate, k=256, s=16) |
//     6 cesgc r=32 k=256 s=16 (gaussian regenerate).
//   BM_SvdRefresh/<n>: a GaLore step with update_proj_gap = 1 (the SVD every step; CESGC's
//     refresh costs the same SVD).
//   BM_Omp/<k>/<s'>/<storage>/<solver>: one OMP call on d = 16384 (a 128 x 128 block), y a
//     random R^k vector; storage 0 stored gaussian A (OMP algebra only), 1 regenerated gaussian,
//     2 regenerated rademacher; solver 0 cholesky, 1 qr.
//   BM_Generate/<kind>: column generation, ns per entry (kind 0 gaussian, 1 rademacher).
// The optimizers are single-threaded (LAPACK's SVD uses OpenBLAS threads: set
// OPENBLAS_NUM_THREADS). Slow points run a fixed small number of iterations.
// Measured output: results/reference/microbench/optim_bench.txt.
#include <benchmark/benchmark.h>

#include <memory>
#include <string>
#include <vector>

#include "baselines/adamw/adamw.h"
#include "baselines/galore/galore.h"
#include "framework/core/rng.h"
#include "methods/sgc/omp.h"
#include "methods/sgc/projection.h"
#include "methods/sgc/sgc.h"

namespace kvlab {
namespace {

std::unique_ptr<optim::Optimizer> make_opt(int id) {
  if (id == 0) return std::make_unique<baselines::AdamW>(baselines::AdamWParams{});
  if (id == 1) {
    baselines::GaLoreParams p;
    p.rank = 128;
    return std::make_unique<baselines::GaLore>(p);
  }
  sgc::SgcParams p;
  p.k = 256;
  p.s = 16;
  if (id == 3) p.projection = sgc::ProjectionKind::kRademacher;
  if (id == 4 || id == 5) p.variant = sgc::Variant::kMesgc, p.chunks = id == 4 ? 4 : 16;
  if (id == 6) p.variant = sgc::Variant::kCesgc, p.svd_rank = 32;
  return std::make_unique<sgc::Sgc>(p);
}

const char* kOptNames[] = {"adamw",    "galore_r128", "sgc_gauss", "sgc_radem",
                           "mesgc_c4", "mesgc_c16",   "cesgc_r32"};

struct Block {
  std::vector<float> w, g;
  std::vector<optim::ParamBlock> blocks;
  explicit Block(int64_t n) : w(static_cast<size_t>(n * n)), g(w.size()) {
    Rng rng(1);
    for (auto& x : w) x = static_cast<float>(0.02 * rng.normal());
    for (auto& x : g) x = static_cast<float>(rng.normal());
    blocks = {{"model.layers.0.mlp.up_proj.weight", w.data(), g.data(), {n, n}, true}};
  }
};

void BM_Step(benchmark::State& st) {
  const int id = static_cast<int>(st.range(0));
  const int64_t n = st.range(1);
  Block b(n);
  auto opt = make_opt(id);
  opt->step(b.blocks, 1e-4);  // warm-up: state, first SVD
  for (auto _ : st) opt->step(b.blocks, 1e-4);
  st.SetLabel(kOptNames[id]);
  st.counters["state_KiB"] = static_cast<double>(opt->state_bytes()) / 1024.0;
  st.counters["params"] = static_cast<double>(n * n);
}

void BM_SvdRefresh(benchmark::State& st) {
  const int64_t n = st.range(0);
  Block b(n);
  baselines::GaLoreParams p;
  p.rank = 128;
  p.update_proj_gap = 1;
  baselines::GaLore opt(p);
  opt.step(b.blocks, 1e-4);
  for (auto _ : st) opt.step(b.blocks, 1e-4);
}

void BM_Omp(benchmark::State& st) {
  const int64_t k = st.range(0), sp = st.range(1), storage = st.range(2), solver = st.range(3);
  const int64_t d = 16384;
  const sgc::Projector A(
      storage == 2 ? sgc::ProjectionKind::kRademacher : sgc::ProjectionKind::kGaussian, k, d, 3, 0,
      storage == 0);
  Rng rng(2);
  std::vector<double> y(static_cast<size_t>(k));
  for (auto& v : y) v = rng.normal();
  const sgc::OmpOptions o{sp, 0.0, solver == 1 ? sgc::OmpSolver::kQr : sgc::OmpSolver::kCholesky};
  int64_t iters = 0;
  for (auto _ : st) {
    const sgc::OmpResult r = sgc::omp(A, y, o);
    iters = r.iterations;
    benchmark::DoNotOptimize(r.x.data());
  }
  st.counters["atoms"] = static_cast<double>(iters);
  // Time per (atom x k x d) entry visited by the correlation passes.
  st.counters["ns_per_entry"] = benchmark::Counter(
      static_cast<double>(iters * k * d) * 1e-9,
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void BM_Generate(benchmark::State& st) {
  const sgc::Projector A(
      st.range(0) == 0 ? sgc::ProjectionKind::kGaussian : sgc::ProjectionKind::kRademacher, 256,
      4096, 5, 0, false);
  std::vector<float> col(256);
  for (auto _ : st)
    for (int64_t j = 0; j < 4096; ++j) {
      A.column(j, col.data());
      benchmark::DoNotOptimize(col.data());
    }
  st.counters["ns_per_entry"] =
      benchmark::Counter(256.0 * 4096 * 1e-9, benchmark::Counter::kIsIterationInvariantRate |
                                                  benchmark::Counter::kInvert);
}

void step_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"opt", "n"})->Unit(benchmark::kMillisecond)->UseRealTime();
}

// Fast points: default iteration count; slow ones: a fixed count (seconds per step).
BENCHMARK(BM_Step)->Apply(step_args)->ArgsProduct({{0, 1}, {256, 512, 1024, 2048}});
BENCHMARK(BM_Step)->Apply(step_args)->ArgsProduct({{4, 5, 6}, {256, 512}})->Iterations(3);
BENCHMARK(BM_Step)->Apply(step_args)->ArgsProduct({{4, 5, 6}, {1024, 2048}})->Iterations(1);
BENCHMARK(BM_Step)->Apply(step_args)->ArgsProduct({{2, 3}, {256}})->Iterations(2);
BENCHMARK(BM_Step)->Apply(step_args)->Args({3, 512})->Iterations(1);
BENCHMARK(BM_Step)->Apply(step_args)->Args({2, 512})->Iterations(1);
BENCHMARK(BM_SvdRefresh)
    ->ArgName("n")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Arg(256)
    ->Arg(512)
    ->Arg(1024)
    ->Iterations(2);
BENCHMARK(BM_SvdRefresh)
    ->ArgName("n")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Arg(2048)
    ->Iterations(1);
BENCHMARK(BM_Omp)
    ->ArgNames({"k", "s", "storage", "solver"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->ArgsProduct({{64, 256, 1024}, {4, 16, 64}, {0}, {0}})
    ->Iterations(3);
BENCHMARK(BM_Omp)
    ->ArgNames({"k", "s", "storage", "solver"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Args({256, 16, 0, 1})
    ->Args({1024, 64, 0, 1})
    ->Args({256, 16, 1, 0})
    ->Args({256, 16, 2, 0})
    ->Iterations(3);
BENCHMARK(BM_Generate)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace kvlab

BENCHMARK_MAIN();
