// Where methods and experiments write traces. framework/io implements it over HDF5; methods see
// only this interface (no HDF5 type reaches a method). Paths are '/'-separated, e.g.
// "steps/layer_03/kv_bytes"; each append adds one row to a growing dataset.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace kvlab {

class TraceSink {
 public:
  virtual ~TraceSink() = default;
  // Appends one scalar to the 1-D series at `path` (created on first use), with its unit.
  virtual void append_scalar(std::string_view path, double value, std::string_view unit) = 0;
  // Appends one row of values to the 2-D series at `path`; every row must have the same length.
  virtual void append_row(std::string_view path, std::span<const float> row,
                          std::string_view unit) = 0;
  // Sets a string attribute on the group or dataset at `path`.
  virtual void set_attribute(std::string_view path, std::string_view key,
                             std::string_view value) = 0;
};

}  // namespace kvlab
