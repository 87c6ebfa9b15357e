// Training throughput of TrainModel::forward_backward (no optimizer step) on the kvlab-tiny
// shape of reference/tiny-model-notes.md: C 256, 6 layers, H 8, G 2, D 32, F 640, V 264,
// tied embeddings (4.0M parameters). Args: T, B with B*T = 4096 or 8192, threads.
// Reports tokens/s (items_per_second) and the share of time in the loss-only forward.
// OPENBLAS_CORETYPE is left as set by the environment.
//
// Measured (2026-11-25, 2-core AVX-512 Xeon VM shared with other jobs, 1 thread, tokens/s of
// forward+backward): OPENBLAS_CORETYPE=SkylakeX: T 512: 3,216; 1K: 2,603; 2K: 1,869; 4K: 1,197.
// Unset (this VM's CPUID makes OpenBLAS pick its SSE3 "Prescott" kernels): 512: 1,098;
// 2K: 894. PyTorch 1.13 on the same shape (torch_llama.py + autograd, plain softmax attention,
// 1 thread, same core type): SkylakeX 512: 1,796, 2K: 400; unset 512: ~600, 2K: 242.
// Two threads (GEMMs split by rows over the pool), best of runs while other jobs shared the
// cores: 512: 5,928; 2K (B 4): 2,215; 4K: 1,939 (wall figures varied up to 2x with the load).
#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

#include "framework/core/rng.h"
#include "framework/core/thread_pool.h"
#include "framework/model/llama_train.h"
#include "framework/model/model_init.h"

namespace kvlab::model {
namespace {

ModelConfig tiny_config() {
  ModelConfig c = preset_config("small");
  c.hidden_size = 256;
  c.num_hidden_layers = 6;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 2;
  c.head_dim = 32;
  c.intermediate_size = 640;
  c.vocab_size = 264;
  c.tie_word_embeddings = true;
  c.rope.head_dim = 32;
  c.rope.theta = 10000.0;
  c.max_position_embeddings = 8192;
  return c;
}

void BM_ForwardBackward(benchmark::State& st) {
  const int64_t T = st.range(0), B = st.range(1);
  const int threads = static_cast<int>(st.range(2));
  ThreadPool pool(threads);
  TrainModel m(tiny_config(), 1, 0.02, pool);
  std::vector<int32_t> tok(B * T), tgt(B * T);
  Rng rng(3);
  for (auto& x : tok) x = static_cast<int32_t>(rng.below(256));
  for (size_t i = 0; i < tok.size(); ++i) tgt[i] = tok[(i + 1) % tok.size()];
  m.forward_backward(tok.data(), tgt.data(), nullptr, B, T);  // warm-up: buffers allocated
  for (auto _ : st) {
    const double loss = m.forward_backward(tok.data(), tgt.data(), nullptr, B, T);
    benchmark::DoNotOptimize(loss);
  }
  st.SetItemsProcessed(st.iterations() * B * T);
  st.counters["tok/s"] =
      benchmark::Counter(static_cast<double>(B * T), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_ForwardLoss(benchmark::State& st) {
  const int64_t T = st.range(0), B = st.range(1);
  ThreadPool pool(static_cast<int>(st.range(2)));
  TrainModel m(tiny_config(), 1, 0.02, pool);
  std::vector<int32_t> tok(B * T), tgt(B * T);
  Rng rng(3);
  for (auto& x : tok) x = static_cast<int32_t>(rng.below(256));
  for (size_t i = 0; i < tok.size(); ++i) tgt[i] = tok[(i + 1) % tok.size()];
  for (auto _ : st) benchmark::DoNotOptimize(m.forward_loss(tok.data(), tgt.data(), nullptr, B, T));
  st.counters["tok/s"] =
      benchmark::Counter(static_cast<double>(B * T), benchmark::Counter::kIsIterationInvariantRate);
}

void shapes(benchmark::internal::Benchmark* b) {
  for (int threads : {2, 1})
    for (int64_t T : {512, 1024, 2048, 4096}) b->Args({T, 4096 / T, threads});
  for (int64_t T : {512, 2048}) b->Args({T, 8192 / T, 2});
  b->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
}

BENCHMARK(BM_ForwardBackward)->Apply(shapes);
BENCHMARK(BM_ForwardLoss)->Args({512, 8, 2})->Args({4096, 1, 2})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace kvlab::model

BENCHMARK_MAIN();
