#include "framework/backend/cpu/sysinfo.h"

#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <vector>

#include "framework/backend/cpu/cpu_features.h"
#include "framework/core/tensor.h"

namespace kvlab::cpu {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      const auto p = line.find(':');
      if (p != std::string::npos) return line.substr(std::min(p + 2, line.size()));
    }
  return "unknown";
}

// Sum of 64-bit words with 8 independent integer accumulators (associative, so the compiler
// vectorises it on baseline SSE2): one streaming read of n words.
uint64_t stream_sum(const uint64_t* p, int64_t n) {
  uint64_t a[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) a[j] += p[i + j];
  for (; i < n; ++i) a[0] += p[i];
  uint64_t s = 0;
  for (uint64_t v : a) s += v;
  return s;
}

}  // namespace

SysInfo measure_sysinfo(ThreadPool& pool, double seconds_budget) {
  SysInfo info;
  info.threads = pool.threads();
  info.isa = std::string(isa_name(detected_isa()));
  info.cpu_model = cpu_model();

  // ---- bandwidth: 1 GiB, first touched by the threads that later read it ----
  constexpr int64_t kBytes = int64_t{1} << 30;
  const int64_t n_words = kBytes / 8;
  Buffer buf(static_cast<size_t>(kBytes / 4));
  auto* words = reinterpret_cast<uint64_t*>(buf.data());
  pool.parallel_for(n_words, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) words[i] = static_cast<uint64_t>(i);
  });
  std::atomic<uint64_t> sink{0};
  const auto t_bw = Clock::now();
  for (int run = 0; run < 20; ++run) {
    const auto t0 = Clock::now();
    pool.parallel_for(n_words, [&](int64_t b, int64_t e, int) {
      sink.fetch_add(stream_sum(words + b, e - b), std::memory_order_relaxed);
    });
    info.mem_bandwidth_gbs = std::max(info.mem_bandwidth_gbs, kBytes / seconds_since(t0) / 1e9);
    if (run >= 2 && seconds_since(t_bw) > 0.35 * seconds_budget) break;
  }
  // Copy: first half -> second half (reads and writes 512 MiB each).
  const int64_t half = n_words / 2;
  for (int run = 0; run < 5; ++run) {
    const auto t0 = Clock::now();
    pool.parallel_for(half, [&](int64_t b, int64_t e, int) {
      std::memcpy(words + half + b, words + b, static_cast<size_t>(e - b) * 8);
    });
    info.copy_bandwidth_gbs = std::max(info.copy_bandwidth_gbs, kBytes / seconds_since(t0) / 1e9);
    if (run >= 1 && seconds_since(t_bw) > 0.5 * seconds_budget) break;
  }
  if (sink.load() == 42) info.cpu_model += " ";  // keeps the reads observable
  buf = Buffer();

  // ---- sgemm peak: C[n, n] = A[n, n] B[n, n], 2 n^3 flops ----
  constexpr int kN = 2048;
  std::vector<float> a(size_t{kN} * kN, 0.5f), b(size_t{kN} * kN, 0.25f), c(size_t{kN} * kN);
  const int prev = openblas_get_num_threads();
  openblas_set_num_threads(pool.threads());
  const auto t_gemm = Clock::now();
  for (int run = 0; run < 20; ++run) {
    const auto t0 = Clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, kN, kN, kN, 1.f, a.data(), kN,
                b.data(), kN, 0.f, c.data(), kN);
    info.gemm_gflops = std::max(info.gemm_gflops, 2.0 * kN * kN * kN / seconds_since(t0) / 1e9);
    if (run >= 1 && seconds_since(t_gemm) > 0.5 * seconds_budget) break;
  }
  openblas_set_num_threads(prev);
  return info;
}

}  // namespace kvlab::cpu
