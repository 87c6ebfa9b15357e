#include "framework/backend/cuda/device.h"

#include <cstdio>
#include <utility>

namespace kvlab::cuda {

namespace {
struct Probe {
  bool available = false;
  std::string status;
};

const Probe& probe() {
  static const Probe p = [] {
    Probe r;
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      r.status = str("no CUDA device: ", cudaGetErrorName(e), ": ", cudaGetErrorString(e));
      return r;
    }
    if (n == 0) {
      r.status = "no CUDA device: the driver reports 0 devices";
      return r;
    }
    cudaDeviceProp prop{};
    const cudaError_t pe = cudaGetDeviceProperties(&prop, 0);
    if (pe != cudaSuccess) {
      (void)cudaGetLastError();
      r.status = str("no usable CUDA device: ", cudaGetErrorName(pe), ": ", cudaGetErrorString(pe));
      return r;
    }
    char gib[32];
    std::snprintf(gib, sizeof gib, "%.1f", static_cast<double>(prop.totalGlobalMem) / (1 << 30));
    r.available = true;
    r.status = str("device 0 of ", n, ": ", prop.name, " (sm_", prop.major, prop.minor, ", ", gib,
                   " GiB)");
    return r;
  }();
  return p;
}
}  // namespace

bool cuda_device_available() { return probe().available; }
std::string cuda_device_status() { return probe().status; }

DeviceBuffer::DeviceBuffer(size_t bytes) : bytes_(bytes) {
  if (bytes > 0) KVLAB_CUDA_CHECK(cudaMalloc(&p_, bytes));
}

// cudaFree's error cannot be thrown from a destructor; a failure here means the context has
// already faulted, which the next checked call reports.
DeviceBuffer::~DeviceBuffer() {
  if (p_) (void)cudaFree(p_);
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (p_) (void)cudaFree(p_);
    p_ = std::exchange(o.p_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

void DeviceBuffer::upload(const void* src, size_t bytes, size_t offset) {
  KVLAB_CHECK(offset <= bytes_ && bytes <= bytes_ - offset)
      << "upload of " << bytes << " bytes at offset " << offset << " into a " << bytes_
      << "-byte device buffer";
  if (bytes == 0) return;
  KVLAB_CUDA_CHECK(cudaMemcpy(static_cast<char*>(p_) + offset, src, bytes, cudaMemcpyHostToDevice));
}

void DeviceBuffer::download(void* dst, size_t bytes, size_t offset) const {
  KVLAB_CHECK(offset <= bytes_ && bytes <= bytes_ - offset)
      << "download of " << bytes << " bytes at offset " << offset << " from a " << bytes_
      << "-byte device buffer";
  if (bytes == 0) return;
  KVLAB_CUDA_CHECK(cudaMemcpy(dst, static_cast<char*>(p_) + offset, bytes, cudaMemcpyDeviceToHost));
}

}  // namespace kvlab::cuda
