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
//
// Kernel A/B (2026-11-25, same VM at load 8-10, so the CPU-time column; in-process or
// alternating binaries): BM_AttentionBwd, 1 thread, full-tile rows 2 -> 4 at a time: T 512 x 8:
// 46 -> 32 ms, T 2048 x 2: 169 -> 115 ms (3 of 3 runs). BM_CrossEntropy [1024, 4096] ref ->
// fast: 20.3 -> 1.6 ms (main thread of 2). BM_SwigluBwd [4096, 704]: 13.5 -> 4.5 ms.
// BM_GemmDw 4096 tokens x 256 x 704, transpose + gemm_nt -> gemm_tn: 9.3 -> 6.5 ms (main thread
// of 2). BM_FmaPeak: ~174 GFLOP/s per core (CPU time), the scale for the GFLOP/s counters.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "framework/backend/cpu/gemm.h"
#include "framework/backend/cpu/train_kernels.h"
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

// ---- Backward products of the kvlab-tiny step at B*T = 4096 tokens (C 256, F 704, V 4096
// head chunk of 1024 rows) as TrainModel's wrappers issue them (transposed copies + gemm_nt)
// and as gemm_tn / gemm_nn do them directly. Args: M (tokens), N, K, threads.
std::vector<float> randv(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<float>(rng.normal());
  return v;
}

// dW[N, K] += dY[M, N]^T X[M, K].  mode 0: two transpose_f32 + gemm_nt; 1: gemm_tn.
void BM_GemmDw(benchmark::State& st) {
  const int64_t M = st.range(0), N = st.range(1), K = st.range(2);
  ThreadPool pool(static_cast<int>(st.range(3)));
  const bool direct = st.range(4) == 1;
  const auto A = randv(M * N, 1), B = randv(M * K, 2);
  std::vector<float> C(static_cast<size_t>(N * K)), at(static_cast<size_t>(N * M)),
      bt(static_cast<size_t>(K * M));
  for (auto _ : st) {
    if (direct) {
      cpu::gemm_tn(A.data(), N, B.data(), K, M, N, K, C.data(), K, pool, true);
    } else {
      cpu::transpose_f32(A.data(), N, M, N, at.data(), M, pool);
      cpu::transpose_f32(B.data(), K, M, K, bt.data(), M, pool);
      cpu::gemm_nt(at.data(), M, N, MatRef{bt.data(), DType::kF32, K, M, M}, C.data(), K, pool,
                   true);
    }
    benchmark::ClobberMemory();
  }
  st.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * M * N * K * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  st.SetLabel(direct ? "gemm_tn" : "transpose+gemm_nt");
}

// dX[M, K] = dY[M, N] W[N, K].  mode 0: transpose_f32 of W + gemm_nt; 1: gemm_nn.
void BM_GemmDx(benchmark::State& st) {
  const int64_t M = st.range(0), N = st.range(1), K = st.range(2);
  ThreadPool pool(static_cast<int>(st.range(3)));
  const bool direct = st.range(4) == 1;
  const auto A = randv(M * N, 1), B = randv(N * K, 2);
  std::vector<float> C(static_cast<size_t>(M * K)), bt(static_cast<size_t>(K * N));
  for (auto _ : st) {
    if (direct) {
      cpu::gemm_nn(A.data(), N, B.data(), K, M, N, K, C.data(), K, pool, false);
    } else {
      cpu::transpose_f32(B.data(), K, N, K, bt.data(), N, pool);
      cpu::gemm_nt(A.data(), N, M, MatRef{bt.data(), DType::kF32, K, N, N}, C.data(), K, pool);
    }
    benchmark::ClobberMemory();
  }
  st.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * M * N * K * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  st.SetLabel(direct ? "gemm_nn" : "transpose+gemm_nt");
}

// transpose_f32 of an activation [M, N] into a buffer whose start is 16 bytes past a line (as
// malloc returns for large blocks), ldd = M. mode 0: blocks of 16 rows from row 0 (the layout
// before line-aligned blocking: every store straddles two lines); 1: transpose_f32.
void BM_Transpose(benchmark::State& st) {
  const int64_t M = st.range(0), N = st.range(1);
  ThreadPool pool(static_cast<int>(st.range(2)));
  const bool aligned = st.range(3) == 1;
  const auto A = randv(M * N, 1);
  std::vector<float> buf(static_cast<size_t>(N * M + 32));
  float* dst = buf.data() + (16 - (reinterpret_cast<uintptr_t>(buf.data()) % 64) / 4) % 16 + 4;
  for (auto _ : st) {
    if (aligned) {
      cpu::transpose_f32(A.data(), N, M, N, dst, M, pool);
    } else {
      pool.parallel_for((M + 15) / 16, [&](int64_t b0, int64_t b1, int) {
        if (b1 > b0)
          cpu::detail::transpose_f32_avx512(A.data(), N, b0 * 16, std::min(M, b1 * 16), N, dst, M);
      });
    }
    benchmark::ClobberMemory();
  }
  st.counters["GB/s"] =
      benchmark::Counter(2.0 * 4 * M * N * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  st.SetLabel(aligned ? "line-aligned" : "from row 0");
}
BENCHMARK(BM_Transpose)
    ->Args({4096, 704, 2, 0})
    ->Args({4096, 704, 2, 1})
    ->Args({4096, 256, 2, 0})
    ->Args({4096, 256, 2, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void gemm_shapes(benchmark::internal::Benchmark* b) {
  // (M, N, K): MLP down/gate/up, o_proj, q, k/v, LM head chunk (tied embedding) of one step.
  const int64_t s[][3] = {
      {4096, 256, 704}, {4096, 704, 256}, {4096, 256, 256}, {4096, 64, 256}, {1024, 4096, 256}};
  for (auto& x : s)
    for (int64_t mode : {0, 1}) b->Args({x[0], x[1], x[2], 2, mode});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}
BENCHMARK(BM_GemmDw)->Apply(gemm_shapes);
BENCHMARK(BM_GemmDx)->Apply(gemm_shapes);

// Fused cross-entropy over a [1024, 4096] logits chunk (grad), mode 0: reference, 1: dispatch
// (AVX-512 where active). Args: rows, V, threads, mode.
void BM_CrossEntropy(benchmark::State& st) {
  const int64_t T = st.range(0), V = st.range(1);
  ThreadPool pool(static_cast<int>(st.range(2)));
  const bool fast = st.range(3) == 1;
  const auto z0 = randv(T * V, 4);
  std::vector<int32_t> y(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) y[t] = static_cast<int32_t>((t * 7919) % V);
  std::vector<float> z = z0;
  for (auto _ : st) {
    st.PauseTiming();
    z = z0;
    st.ResumeTiming();
    const double l =
        fast ? cpu::cross_entropy_rows(z.data(), y.data(), nullptr, T, V, 1.0 / T, true, pool)
             : cpu::cross_entropy_rows_ref(z.data(), y.data(), nullptr, T, V, 1.0 / T, true, pool);
    benchmark::DoNotOptimize(l);
  }
  st.SetLabel(fast ? "fast" : "ref");
}
BENCHMARK(BM_CrossEntropy)
    ->Args({1024, 4096, 2, 0})
    ->Args({1024, 4096, 2, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// SwiGLU backward over [4096, 704], mode 0: reference, 1: dispatch. Args: n, mode.
void BM_SwigluBwd(benchmark::State& st) {
  const int64_t n = st.range(0);
  const bool fast = st.range(1) == 1;
  const auto g = randv(n, 5), u = randv(n, 6), dh = randv(n, 7);
  std::vector<float> dg(static_cast<size_t>(n)), du(static_cast<size_t>(n));
  for (auto _ : st) {
    if (fast)
      cpu::swiglu_bwd(g.data(), u.data(), dh.data(), dg.data(), du.data(), n);
    else
      cpu::swiglu_bwd_ref(g.data(), u.data(), dh.data(), dg.data(), du.data(), n);
    benchmark::ClobberMemory();
  }
  st.SetLabel(fast ? "fast" : "ref");
}
BENCHMARK(BM_SwigluBwd)
    ->Args({4096 * 704, 0})
    ->Args({4096 * 704, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Causal GQA attention of one kvlab-tiny layer (H 8, G 2, D 32) at B*T = 4096: forward
// (attention_fwd) and backward (attention_bwd). Args: T, B, threads. With 1 thread the CPU
// time column is the kernel's own cost (robust to other jobs on the machine).
void BM_AttentionFwd(benchmark::State& st) {
  const int64_t T = st.range(0), B = st.range(1);
  ThreadPool pool(static_cast<int>(st.range(2)));
  const cpu::AttentionShape sh{8, 2, 32, 1.0f / std::sqrt(32.0f)};
  const auto q = randv(B * T * 256, 1), k = randv(B * T * 64, 2), v = randv(B * T * 64, 3);
  std::vector<float> o(static_cast<size_t>(B * T * 256)), lse(static_cast<size_t>(B * T * 8));
  for (auto _ : st) {
    cpu::attention_fwd(q.data(), k.data(), v.data(), B, T, sh, o.data(), lse.data(), pool);
    benchmark::ClobberMemory();
  }
  st.counters["GFLOP/s"] = benchmark::Counter(4.0 * 32 * 8 * B * T * (T + 1) / 2 * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}
void BM_AttentionBwd(benchmark::State& st) {
  const int64_t T = st.range(0), B = st.range(1);
  ThreadPool pool(static_cast<int>(st.range(2)));
  const cpu::AttentionShape sh{8, 2, 32, 1.0f / std::sqrt(32.0f)};
  const auto q = randv(B * T * 256, 1), k = randv(B * T * 64, 2), v = randv(B * T * 64, 3);
  const auto dout = randv(B * T * 256, 4);
  std::vector<float> o(static_cast<size_t>(B * T * 256)), lse(static_cast<size_t>(B * T * 8));
  cpu::attention_fwd(q.data(), k.data(), v.data(), B, T, sh, o.data(), lse.data(), pool);
  std::vector<float> dq(o.size()), dk(k.size()), dv(v.size()),
      ws(static_cast<size_t>(cpu::attention_bwd_ws_floats(B, T, sh)));
  for (auto _ : st) {
    cpu::attention_bwd(q.data(), k.data(), v.data(), o.data(), lse.data(), dout.data(), B, T, sh,
                       dq.data(), dk.data(), dv.data(), ws.data(), pool);
    benchmark::ClobberMemory();
  }
  st.counters["GFLOP/s"] = benchmark::Counter(10.0 * 32 * 8 * B * T * (T + 1) / 2 * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}
// One core's AVX-512 FMA peak (register-only loop): the reference for the GFLOP/s above; read
// the CPU-time column on a shared machine (counters are per wall second).
void BM_FmaPeak(benchmark::State& st) {
  float sink = 0;
  int64_t flops = 0;
  for (auto _ : st) flops += cpu::detail::fma_peak_loop(1'000'000, &sink);
  benchmark::DoNotOptimize(sink);
  st.counters["GFLOP"] = static_cast<double>(flops) * 1e-9 / static_cast<double>(st.iterations());
}
BENCHMARK(BM_FmaPeak)->Unit(benchmark::kMillisecond);

BENCHMARK(BM_AttentionFwd)
    ->Args({512, 8, 1})
    ->Args({2048, 2, 1})
    ->Args({2048, 2, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_AttentionBwd)
    ->Args({512, 8, 1})
    ->Args({2048, 2, 1})
    ->Args({2048, 2, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

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
