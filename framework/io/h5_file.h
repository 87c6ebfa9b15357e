// Minimal HDF5 writing and reading for kvlab's files (logits dumps, goldens, traces).
// Writes go to PATH.tmp and are renamed into place by close(), so a crash never leaves a
// half-written file under the final name.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace kvlab::io {

class H5Writer {
 public:
  explicit H5Writer(const std::string& path);
  ~H5Writer();  // closes without renaming if close() was not called (the .tmp stays for inspection)
  H5Writer(const H5Writer&) = delete;
  H5Writer& operator=(const H5Writer&) = delete;

  // Writes a contiguous dataset at `name` (intermediate groups created) with shape `dims`.
  void write_f32(const std::string& name, const float* data, const std::vector<int64_t>& dims);
  void write_i32(const std::string& name, const int32_t* data, const std::vector<int64_t>& dims);
  // String attribute on the file root ("/") or on an existing dataset/group.
  void set_attr(const std::string& object, const std::string& key, const std::string& value);
  // Flushes, closes and renames PATH.tmp -> PATH.
  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Reads a whole dataset as f32 / i32 (converting from the stored numeric type); dims receives
// its shape. Errors name the file and dataset.
std::vector<float> read_f32(const std::string& path, const std::string& name,
                            std::vector<int64_t>* dims = nullptr);
std::vector<int32_t> read_i32(const std::string& path, const std::string& name,
                              std::vector<int64_t>* dims = nullptr);
// String attribute `key` of `object` ("/" for the root group, else a dataset or group path).
std::string read_attr(const std::string& path, const std::string& object, const std::string& key);

}  // namespace kvlab::io
