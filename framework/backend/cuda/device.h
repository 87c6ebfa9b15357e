// CUDA device access: an availability probe, checked CUDA / cuBLAS calls and owning device
// memory. Every CUDA runtime and cuBLAS call in kvlab goes through KVLAB_CUDA_CHECK or
// KVLAB_CUBLAS_CHECK, which throw kvlab::Error naming file, line, the call and CUDA's own
// message (error tier (c), style.md 4.14; framework/core/error.h).
#pragma once

#include <cublas_api.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>

#include "framework/core/error.h"

namespace kvlab::cuda {

namespace detail {
// Throws on failure. A failed call also leaves its code in CUDA's per-thread "last error";
// it is cleared here so the next launch check (cudaGetLastError) does not report it again.
// Sticky errors (a faulted context) cannot be cleared and keep failing every later call.
inline void check_cuda(cudaError_t e, const char* call, const char* file, int line) {
  if (e == cudaSuccess) return;
  (void)cudaGetLastError();
  fail(file, ":", line, ": CUDA call ", call, " failed: ", cudaGetErrorName(e), ": ",
       cudaGetErrorString(e));
}
inline void check_cublas(cublasStatus_t s, const char* call, const char* file, int line) {
  if (s == CUBLAS_STATUS_SUCCESS) return;
  fail(file, ":", line, ": cuBLAS call ", call, " failed: ", cublasGetStatusName(s), ": ",
       cublasGetStatusString(s));
}
}  // namespace detail

// True when a CUDA driver is loaded and at least one device is visible. Never throws: no
// driver, a driver older than the runtime, or no device all give false. Probed once.
bool cuda_device_available();
// One line for logs and test skips: "device 0: NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)", or
// why no device is usable ("no CUDA device: cudaErrorInsufficientDriver: ...").
std::string cuda_device_status();

// Owning device allocation of `bytes` bytes (cudaMalloc; freed in the destructor). Copies are
// synchronous and bounds-checked. Movable, not copyable.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), bytes_(o.bytes_) {
    o.p_ = nullptr, o.bytes_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return p_; }
  size_t bytes() const { return bytes_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }
  // Host -> device: `bytes` bytes from `src` to data() + offset.
  void upload(const void* src, size_t bytes, size_t offset = 0);
  // Device -> host: `bytes` bytes from data() + offset to `dst`.
  void download(void* dst, size_t bytes, size_t offset = 0) const;

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace kvlab::cuda

#define KVLAB_CUDA_CHECK(call) ::kvlab::cuda::detail::check_cuda((call), #call, __FILE__, __LINE__)
#define KVLAB_CUBLAS_CHECK(call) \
  ::kvlab::cuda::detail::check_cublas((call), #call, __FILE__, __LINE__)
