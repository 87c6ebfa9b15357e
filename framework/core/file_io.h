// Whole-file reads and crash-safe writes. Writes go to PATH.tmp, are fsynced and renamed over
// PATH, so a crash never leaves a half-written file under the final name (DESIGN.md section 7).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace kvlab {

// The whole file as bytes; errors name the path.
std::string read_file(const std::string& path);

// Streams bytes into PATH.tmp; commit() fsyncs and renames it to PATH. Destroyed without
// commit() (an exception on the way), the temporary file is removed.
class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* p, size_t n);
  void commit();

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

// write_file_atomic(path, bytes) = AtomicFile + write + commit.
void write_file_atomic(const std::string& path, std::string_view bytes);

}  // namespace kvlab
