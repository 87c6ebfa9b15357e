// kvlab sysinfo: this machine's measured limits, the denominators of every benchmark figure.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "framework/backend/cpu/sysinfo.h"
#include "framework/cli/args.h"
#include "framework/cli/commands.h"

namespace kvlab::cli {

int cmd_sysinfo(int argc, char** argv, int first) {
  Args a("sysinfo", "Measures memory read bandwidth (streaming, multi-threaded) and the sgemm peak.",
         {{"threads", "N", "worker threads (0: all hardware threads)", "0"},
          {"seconds", "S", "time budget for the measurements", "4"},
          {"json", "", "print a JSON object"}});
  if (!a.parse(argc, argv, first)) return 0;
  const int threads = set_threads(static_cast<int>(a.get_int("threads")));
  const auto s = cpu::measure_sysinfo(ThreadPool::global(), a.get_float("seconds"));
  if (a.flag("json")) {
    nlohmann::json j = {{"mem_bandwidth_gbs", s.mem_bandwidth_gbs}, {"gemm_gflops", s.gemm_gflops},
                        {"threads", threads}, {"isa", s.isa}, {"cpu_model", s.cpu_model}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("cpu            %s\nisa            %s\nthreads        %d\n", s.cpu_model.c_str(),
                s.isa.c_str(), threads);
    std::printf("mem bandwidth  %.2f GB/s (streaming read)\nsgemm peak     %.2f GFLOP/s\n",
                s.mem_bandwidth_gbs, s.gemm_gflops);
  }
  return 0;
}

}  // namespace kvlab::cli
