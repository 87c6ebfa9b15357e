// HDF5 trace files (trace.h5): the TraceSink methods and experiments write through, and the
// reader behind `kvlab inspect`. Schema: results/README.md.
//   - append_scalar(path, v, unit): 1-D f64 dataset [n], extendible, chunked (1024) and
//     deflate-compressed; attribute "unit".
//   - append_row(path, row, unit): 2-D f32 dataset [n, len], extendible in n, chunked, compressed.
//   - Rows are buffered per dataset and written every kFlushRows rows, on flush() and on close();
//     flush() also flushes the file, so a crash keeps everything flushed so far (the file is
//     written in place: a run folder is complete only when its COMPLETE marker exists).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "framework/core/trace_sink.h"

namespace kvlab::io {

class H5TraceSink : public TraceSink {
 public:
  // Creates (truncates) `path`.
  explicit H5TraceSink(const std::string& path);
  ~H5TraceSink() override;  // flushes and closes; never throws
  void append_scalar(std::string_view path, double value, std::string_view unit) override;
  void append_row(std::string_view path, std::span<const float> row, std::string_view unit) override;
  void set_attribute(std::string_view path, std::string_view key, std::string_view value) override;
  // Writes buffered rows and flushes the file to disk.
  void flush();
  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct InspectOptions {
  bool stats = true;  // min / max / mean / std of numeric datasets (read in chunks)
};
// Prints the tree of `path`: groups, datasets with shape, type and statistics, attributes.
void inspect_h5(const std::string& path, std::ostream& out, const InspectOptions& opt = {});
// Writes one dataset as CSV: 1-D -> "index,value" rows; 2-D -> one row per first index.
void export_csv(const std::string& path, const std::string& dataset, std::ostream& out);

}  // namespace kvlab::io
