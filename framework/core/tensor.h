// Non-owning tensor views (pointer + shape + strides in elements) and a small owning f32 buffer.
// Kernels see only views: no YAML, HDF5 or CLI type reaches them (DESIGN.md section 1).
#pragma once

#include <array>
#include <memory>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "framework/core/dtype.h"
#include "framework/core/error.h"

namespace kvlab {

// Row-major view of rank N over elements of type T. strides[i] in elements.
template <class T, int N>
struct View {
  T* data = nullptr;
  std::array<int64_t, N> shape{};
  std::array<int64_t, N> strides{};

  View() = default;
  // Contiguous row-major view.
  View(T* p, std::array<int64_t, N> s) : data(p), shape(s) {
    int64_t st = 1;
    for (int i = N - 1; i >= 0; --i) {
      strides[i] = st;
      st *= shape[i];
    }
  }
  View(T* p, std::array<int64_t, N> s, std::array<int64_t, N> st) : data(p), shape(s), strides(st) {}

  int64_t size(int i) const { return shape[i]; }
  int64_t numel() const {
    int64_t n = 1;
    for (auto s : shape) n *= s;
    return n;
  }
  bool contiguous() const {
    int64_t st = 1;
    for (int i = N - 1; i >= 0; --i) {
      if (shape[i] != 1 && strides[i] != st) return false;
      st *= shape[i];
    }
    return true;
  }
  template <class... I>
  T& operator()(I... idx) const {
    static_assert(sizeof...(I) == N);
    const int64_t ix[] = {static_cast<int64_t>(idx)...};
    int64_t off = 0;
    for (int i = 0; i < N; ++i) off += ix[i] * strides[i];
    return data[off];
  }
  // Pointer to the start of index i along dimension 0.
  T* row(int64_t i) const { return data + i * strides[0]; }
  operator View<const T, N>() const { return View<const T, N>(data, shape, strides); }
};

template <class T>
using View1 = View<T, 1>;
template <class T>
using View2 = View<T, 2>;
template <class T>
using View3 = View<T, 3>;

// A typed-erased weight view: a 2-D matrix [rows, cols] stored as f32, bf16 or f16, row-major
// with leading dimension `ld` elements. Weights stay in their stored dtype (DESIGN.md section 4).
struct MatRef {
  const void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t ld = 0;
  const char* row_ptr(int64_t r) const {
    return static_cast<const char*>(data) + r * ld * static_cast<int64_t>(dtype_size(dtype));
  }
};

// A typed-erased vector (e.g. a norm weight or a bias) in its stored dtype.
struct VecRef {
  const void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t n = 0;
  float at(int64_t i) const;
};

// Owning, 64-byte aligned f32 storage.
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t n) { resize(n); }
  void resize(size_t n);
  size_t size() const { return n_; }
  float* data() { return p_.get(); }
  const float* data() const { return p_.get(); }
  float& operator[](size_t i) { return p_.get()[i]; }
  float operator[](size_t i) const { return p_.get()[i]; }

 private:
  struct Free {
    void operator()(float* p) const;
  };
  std::unique_ptr<float[], Free> p_;
  size_t n_ = 0;
};

}  // namespace kvlab
