// safetensors reader (mmap, zero-copy) and writer; sharded checkpoints through
// model.safetensors.index.json. Format: u64 little-endian header length N, N bytes of JSON
// {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the data buffer; offsets are relative to the buffer start.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "framework/core/dtype.h"
#include "framework/core/tensor.h"

namespace kvlab::model {

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // points into the mapped file; aligned to the element size for
                               // files written by kvlab or HF safetensors (not checked on read)
  size_t nbytes = 0;
  std::string file;  // file the tensor lives in (for errors)
};

// Parses and validates a safetensors header held in memory: every tensor's offsets lie inside
// the buffer, end - begin == numel * dtype size, no overlaps, no overflow. `file` names the file
// in errors. data pointers are set relative to `base` (which has `size` bytes in total).
// `metadata`, when given, receives the string map of "__metadata__".
std::vector<TensorInfo> parse_safetensors(const uint8_t* base, size_t size,
                                          const std::string& file,
                                          std::map<std::string, std::string>* metadata = nullptr);

// A set of tensors from one model.safetensors or from every shard of an index; files stay mapped
// for the object's lifetime.
class SafeTensors {
 public:
  // `path` is a .safetensors file, a .safetensors.index.json, or a model directory (looks for
  // model.safetensors.index.json, then model.safetensors).
  static SafeTensors open(const std::string& path);
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  // Throws kvlab::Error naming the tensor and the file(s) when missing.
  const TensorInfo& get(const std::string& name) const;
  // A 2-D weight as a MatRef; checks rank and (when given) expected shape, naming the tensor.
  MatRef matrix(const std::string& name, int64_t rows = -1, int64_t cols = -1) const;
  VecRef vector(const std::string& name, int64_t n = -1) const;
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  // "__metadata__" of a single-file open (empty for a sharded index).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  struct Mapping;
  std::vector<std::shared_ptr<Mapping>> maps_;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
  std::string source_;  // the path given to open() (named in errors)
};

// Writes a safetensors file (header entries in the order given; data bytes written as-is).
struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;
};
// Header JSON is padded with spaces so the data buffer starts at a multiple of 8 bytes; data is
// contiguous, larger element sizes first, so every tensor is aligned to its element size. Writes
// path + ".tmp" and renames it over `path` (atomic). Throws kvlab::Error naming path and tensor
// on a bad name/shape or an I/O failure.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});
// The same file as bytes in memory (tests, fuzz seeds).
std::string safetensors_bytes(const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata = {});


}  // namespace kvlab::model
