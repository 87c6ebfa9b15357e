// Byte accounting by tier and token counts by state (DESIGN.md section 2, KvCache::memory()).
#pragma once

#include <cstdint>
#include <string>

namespace kvlab {

struct MemoryReport {
  // Bytes by tier.
  int64_t device_bytes = 0;     // resident where attention runs (GPU memory, or RAM on CPU runs)
  int64_t host_bytes = 0;       // offloaded tier (host pool), moved to device on demand
  int64_t workspace_bytes = 0;  // scratch that does not grow with context
  // Tokens by state.
  int64_t full_tokens = 0;        // stored at full rank and precision
  int64_t compressed_tokens = 0;  // stored in a compressed form (e.g. low-rank coefficients)
  int64_t evicted_tokens = 0;     // dropped for good

  int64_t total_bytes() const { return device_bytes + host_bytes + workspace_bytes; }
  MemoryReport& operator+=(const MemoryReport& o) {
    device_bytes += o.device_bytes;
    host_bytes += o.host_bytes;
    workspace_bytes += o.workspace_bytes;
    full_tokens += o.full_tokens;
    compressed_tokens += o.compressed_tokens;
    evicted_tokens += o.evicted_tokens;
    return *this;
  }
};

}  // namespace kvlab
