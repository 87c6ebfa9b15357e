// Machine figures benchmarks divide by (DESIGN.md section 6): streaming read bandwidth and
// sgemm peak, measured on the pool's threads. `kvlab sysinfo` prints them.
#pragma once

#include <string>

#include "framework/core/thread_pool.h"

namespace kvlab::cpu {

struct SysInfo {
  double mem_bandwidth_gbs = 0;  // best multi-threaded read-only streaming sum, GB/s (1e9 B/s)
  double copy_bandwidth_gbs = 0;  // best multi-threaded copy, GB/s counting read + write bytes
  double gemm_gflops = 0;        // best cblas_sgemm at 2048^3 on pool.threads() OpenBLAS threads
  int threads = 0;
  std::string isa;        // detected_isa(): "avx512" / "avx2" / "scalar"
  std::string cpu_model;  // /proc/cpuinfo "model name"
};

// Spends about seconds_budget (at least one run of each measurement): half on bandwidth over a
// 1 GiB buffer (well above any last-level cache here: 260 MiB L3), half on sgemm.
SysInfo measure_sysinfo(ThreadPool& pool, double seconds_budget);

}  // namespace kvlab::cpu
