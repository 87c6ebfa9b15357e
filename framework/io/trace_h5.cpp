#include "framework/io/trace_h5.h"

#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <limits>

#include "framework/core/error.h"

namespace kvlab::io {

namespace {

constexpr size_t kFlushRows = 4096;
constexpr hsize_t kChunkRows = 1024;

// Creates the groups on the way to `path` ("a/b/c" -> groups a, a/b).
void make_parents(hid_t file, const std::string& path) {
  for (size_t pos = path.find('/', 1); pos != std::string::npos; pos = path.find('/', pos + 1)) {
    const std::string g = path.substr(0, pos);
    if (H5Lexists(file, g.c_str(), H5P_DEFAULT) > 0) continue;
    const hid_t id = H5Gcreate2(file, g.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (id < 0) fail("cannot create HDF5 group ", g);
    H5Gclose(id);
  }
}

void write_string_attr(hid_t obj, const std::string& key, const std::string& value) {
  if (H5Aexists(obj, key.c_str()) > 0) H5Adelete(obj, key.c_str());
  const hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, std::max<size_t>(1, value.size()));
  H5Tset_cset(type, H5T_CSET_UTF8);
  const hid_t space = H5Screate(H5S_SCALAR);
  const hid_t attr = H5Acreate2(obj, key.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT);
  const herr_t rc = attr < 0 ? -1 : H5Awrite(attr, type, value.data());
  if (attr >= 0) H5Aclose(attr);
  H5Sclose(space);
  H5Tclose(type);
  if (rc < 0) fail("cannot write HDF5 attribute ", key);
}

}  // namespace

struct H5TraceSink::Impl {
  struct Series {
    hid_t dset = -1;
    int64_t cols = 0;      // 0: 1-D scalar series (f64); > 0: rows of `cols` f32
    hsize_t written = 0;   // rows on disk
    std::vector<double> pending_scalars;
    std::vector<float> pending_rows;
    size_t pending() const { return cols ? pending_rows.size() / cols : pending_scalars.size(); }
  };
  std::string path;
  hid_t file = -1;
  std::map<std::string, Series> series;

  std::string norm(std::string_view p) const {
    std::string s(p);
    if (s.empty() || s[0] != '/') s.insert(s.begin(), '/');
    return s;
  }

  Series& open_series(const std::string& name, int64_t cols, std::string_view unit) {
    auto it = series.find(name);
    if (it != series.end()) {
      if (it->second.cols != cols)
        fail(path, ": trace ", name, " was created with rows of ", it->second.cols,
             " values, now given ", cols);
      return it->second;
    }
    make_parents(file, name);
    const int rank = cols ? 2 : 1;
    hsize_t dims[2] = {0, static_cast<hsize_t>(cols)};
    hsize_t maxdims[2] = {H5S_UNLIMITED, static_cast<hsize_t>(cols)};
    hsize_t chunk[2] = {kChunkRows, static_cast<hsize_t>(std::max<int64_t>(cols, 1))};
    if (cols) chunk[0] = std::max<hsize_t>(1, std::min<hsize_t>(kChunkRows, (1 << 18) / cols));
    const hid_t space = H5Screate_simple(rank, dims, maxdims);
    const hid_t plist = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(plist, rank, chunk);
    H5Pset_deflate(plist, 4);
    const hid_t type = cols ? H5T_NATIVE_FLOAT : H5T_NATIVE_DOUBLE;
    const hid_t d = H5Dcreate2(file, name.c_str(), type, space, H5P_DEFAULT, plist, H5P_DEFAULT);
    H5Pclose(plist);
    H5Sclose(space);
    if (d < 0) fail(path, ": cannot create trace dataset ", name);
    write_string_attr(d, "unit", std::string(unit));
    Series s;
    s.dset = d;
    s.cols = cols;
    return series.emplace(name, std::move(s)).first->second;
  }

  void write_pending(const std::string& name, Series& s) {
    const hsize_t n = s.pending();
    if (n == 0) return;
    const int rank = s.cols ? 2 : 1;
    hsize_t newdims[2] = {s.written + n, static_cast<hsize_t>(s.cols)};
    if (H5Dset_extent(s.dset, newdims) < 0) fail(path, ": cannot extend ", name);
    const hid_t fspace = H5Dget_space(s.dset);
    hsize_t start[2] = {s.written, 0}, count[2] = {n, static_cast<hsize_t>(s.cols)};
    H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, nullptr, count, nullptr);
    const hid_t mspace = H5Screate_simple(rank, count, nullptr);
    const herr_t rc = s.cols ? H5Dwrite(s.dset, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, s.pending_rows.data())
                             : H5Dwrite(s.dset, H5T_NATIVE_DOUBLE, mspace, fspace, H5P_DEFAULT, s.pending_scalars.data());
    H5Sclose(mspace);
    H5Sclose(fspace);
    if (rc < 0) fail(path, ": cannot write trace ", name);
    s.written += n;
    s.pending_rows.clear();
    s.pending_scalars.clear();
  }
};

H5TraceSink::H5TraceSink(const std::string& path) : impl_(new Impl) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  impl_->path = path;
  impl_->file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (impl_->file < 0) fail(path, ": cannot create HDF5 trace file");
}

H5TraceSink::~H5TraceSink() {
  try {
    close();
  } catch (...) {
  }
}

void H5TraceSink::append_scalar(std::string_view path, double value, std::string_view unit) {
  const std::string name = impl_->norm(path);
  auto& s = impl_->open_series(name, 0, unit);
  s.pending_scalars.push_back(value);
  if (s.pending() >= kFlushRows) impl_->write_pending(name, s);
}

void H5TraceSink::append_row(std::string_view path, std::span<const float> row,
                             std::string_view unit) {
  if (row.empty()) fail(impl_->path, ": trace ", path, ": empty row");
  const std::string name = impl_->norm(path);
  auto& s = impl_->open_series(name, static_cast<int64_t>(row.size()), unit);
  s.pending_rows.insert(s.pending_rows.end(), row.begin(), row.end());
  if (s.pending() >= kFlushRows) impl_->write_pending(name, s);
}

void H5TraceSink::set_attribute(std::string_view path, std::string_view key,
                                std::string_view value) {
  const std::string name = impl_->norm(path);
  if (name != "/" && H5Lexists(impl_->file, name.c_str(), H5P_DEFAULT) <= 0) {
    make_parents(impl_->file, name + "/");
  }
  const hid_t obj = H5Oopen(impl_->file, name.c_str(), H5P_DEFAULT);
  if (obj < 0) fail(impl_->path, ": cannot open ", name, " to set attribute ", key);
  try {
    write_string_attr(obj, std::string(key), std::string(value));
  } catch (...) {
    H5Oclose(obj);
    throw;
  }
  H5Oclose(obj);
}

void H5TraceSink::flush() {
  if (impl_->file < 0) return;
  for (auto& [name, s] : impl_->series) impl_->write_pending(name, s);
  H5Fflush(impl_->file, H5F_SCOPE_GLOBAL);
}

void H5TraceSink::close() {
  if (impl_->file < 0) return;
  flush();
  for (auto& [name, s] : impl_->series) H5Dclose(s.dset);
  impl_->series.clear();
  H5Fclose(impl_->file);
  impl_->file = -1;
}

// ---- reading ----

namespace {

struct Visit {
  std::ostream* out;
  const InspectOptions* opt;
  hid_t file;
};

std::string type_name(hid_t type) {
  switch (H5Tget_class(type)) {
    case H5T_INTEGER: return str(H5Tget_sign(type) == H5T_SGN_NONE ? "u" : "i", 8 * H5Tget_size(type));
    case H5T_FLOAT: return str("f", 8 * H5Tget_size(type));
    case H5T_STRING: return "string";
    default: return "other";
  }
}

std::string attr_value(hid_t attr) {
  const hid_t type = H5Aget_type(attr);
  std::string out;
  if (H5Tget_class(type) == H5T_STRING) {
    if (H5Tis_variable_str(type) > 0) {
      char* s = nullptr;
      const hid_t mt = H5Tcopy(H5T_C_S1);
      H5Tset_size(mt, H5T_VARIABLE);
      if (H5Aread(attr, mt, &s) >= 0 && s) {
        out = s;
        H5free_memory(s);
      }
      H5Tclose(mt);
    } else {
      std::string buf(H5Tget_size(type), '\0');
      H5Aread(attr, type, buf.data());
      out = buf.c_str();
    }
  } else if (H5Tget_class(type) == H5T_INTEGER || H5Tget_class(type) == H5T_FLOAT) {
    const hid_t space = H5Aget_space(attr);
    const hssize_t n = H5Sget_simple_extent_npoints(space);
    std::vector<double> v(std::max<hssize_t>(n, 1));
    H5Aread(attr, H5T_NATIVE_DOUBLE, v.data());
    for (hssize_t i = 0; i < n; ++i) out += (i ? ", " : "") + std::to_string(v[i]);
    H5Sclose(space);
  } else {
    out = str("(", type_name(type), ")");
  }
  H5Tclose(type);
  return out;
}

herr_t print_attr(hid_t obj, const char* name, const H5A_info_t*, void* data) {
  auto* v = static_cast<Visit*>(data);
  const hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  std::string val = attr_value(a);
  H5Aclose(a);
  if (val.size() > 160) val = val.substr(0, 157) + "...";
  for (auto& ch : val)
    if (ch == '\n') ch = ' ';
  *v->out << "      @" << name << " = " << val << "\n";
  return 0;
}

// Reads a numeric dataset in slabs of rows along dimension 0 as f64, calling fn(values, n).
template <class Fn>
void read_numeric(hid_t d, Fn fn) {
  const hid_t space = H5Dget_space(d);
  const int rank = H5Sget_simple_extent_ndims(space);
  std::vector<hsize_t> dims(std::max(rank, 1), 1);
  if (rank > 0) H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  hsize_t row = 1;
  for (int i = 1; i < rank; ++i) row *= dims[i];
  const hsize_t rows = rank == 0 ? 1 : dims[0];
  const hsize_t step = std::max<hsize_t>(1, (1 << 20) / std::max<hsize_t>(row, 1));
  std::vector<double> buf;
  for (hsize_t r0 = 0; r0 < rows; r0 += step) {
    const hsize_t nr = std::min(step, rows - r0);
    buf.resize(nr * row);
    if (rank == 0) {
      H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data());
    } else {
      std::vector<hsize_t> start(rank, 0), count(dims);
      start[0] = r0;
      count[0] = nr;
      const hid_t fs = H5Scopy(space);
      H5Sselect_hyperslab(fs, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr);
      const hid_t ms = H5Screate_simple(rank, count.data(), nullptr);
      H5Dread(d, H5T_NATIVE_DOUBLE, ms, fs, H5P_DEFAULT, buf.data());
      H5Sclose(ms);
      H5Sclose(fs);
    }
    fn(buf.data(), nr * row, r0, row);
  }
  H5Sclose(space);
}

herr_t visit(hid_t root, const char* name, const H5O_info_t* info, void* data) {
  auto* v = static_cast<Visit*>(data);
  std::ostream& out = *v->out;
  const std::string path = std::string("/") + (std::string(name) == "." ? "" : name);
  if (info->type == H5O_TYPE_GROUP) {
    out << path << (path == "/" ? "" : "/") << "\n";
  } else if (info->type == H5O_TYPE_DATASET) {
    const hid_t d = H5Dopen2(root, name, H5P_DEFAULT);
    const hid_t type = H5Dget_type(d), space = H5Dget_space(d);
    const int rank = H5Sget_simple_extent_ndims(space);
    std::vector<hsize_t> dims(std::max(rank, 0));
    if (rank > 0) H5Sget_simple_extent_dims(space, dims.data(), nullptr);
    out << path << "  " << type_name(type) << " [";
    for (int i = 0; i < rank; ++i) out << (i ? ", " : "") << dims[i];
    out << "]";
    const auto cls = H5Tget_class(type);
    if (v->opt->stats && (cls == H5T_INTEGER || cls == H5T_FLOAT) && H5Sget_simple_extent_npoints(space) > 0) {
      double mn = std::numeric_limits<double>::infinity(), mx = -mn, s = 0, s2 = 0;
      int64_t n = 0, nonfinite = 0;
      read_numeric(d, [&](const double* x, size_t k, hsize_t, hsize_t) {
        for (size_t i = 0; i < k; ++i) {
          if (!std::isfinite(x[i])) {
            ++nonfinite;
            continue;
          }
          mn = std::min(mn, x[i]);
          mx = std::max(mx, x[i]);
          s += x[i];
          s2 += x[i] * x[i];
          ++n;
        }
      });
      if (n > 0) {
        const double mean = s / n, var = std::max(0.0, s2 / n - mean * mean);
        out << "  min " << mn << " max " << mx << " mean " << mean << " std " << std::sqrt(var);
      }
      if (nonfinite) out << " (" << nonfinite << " non-finite)";
    }
    out << "\n";
    H5Sclose(space);
    H5Tclose(type);
    H5Aiterate2(d, H5_INDEX_NAME, H5_ITER_INC, nullptr, print_attr, v);
    H5Dclose(d);
    return 0;
  }
  if (info->type == H5O_TYPE_GROUP) {
    const hid_t g = H5Oopen(root, name, H5P_DEFAULT);
    H5Aiterate2(g, H5_INDEX_NAME, H5_ITER_INC, nullptr, print_attr, v);
    H5Oclose(g);
  }
  return 0;
}

hid_t open_read(const std::string& path) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  if (H5Fis_hdf5(path.c_str()) <= 0) fail(path, ": not an HDF5 file (or missing)");
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) fail(path, ": cannot open HDF5 file");
  return f;
}

}  // namespace

void inspect_h5(const std::string& path, std::ostream& out, const InspectOptions& opt) {
  const hid_t f = open_read(path);
  Visit v{&out, &opt, f};
  out << std::setprecision(6);
  const herr_t rc = H5Ovisit2(f, H5_INDEX_NAME, H5_ITER_INC, visit, &v, H5O_INFO_BASIC);
  H5Fclose(f);
  if (rc < 0) fail(path, ": error while walking the HDF5 tree");
}

void export_csv(const std::string& path, const std::string& dataset, std::ostream& out) {
  const hid_t f = open_read(path);
  if (H5Lexists(f, dataset.c_str(), H5P_DEFAULT) <= 0) {
    H5Fclose(f);
    fail(path, ": no dataset '", dataset, "' (kvlab inspect ", path, " lists them)");
  }
  const hid_t d = H5Dopen2(f, dataset.c_str(), H5P_DEFAULT);
  if (d < 0) {
    H5Fclose(f);
    fail(path, ": '", dataset, "' is not a dataset");
  }
  const hid_t type = H5Dget_type(d);
  const auto cls = H5Tget_class(type);
  H5Tclose(type);
  if (cls != H5T_INTEGER && cls != H5T_FLOAT) {
    H5Dclose(d);
    H5Fclose(f);
    fail(path, ": ", dataset, " is not numeric; CSV export supports numeric datasets");
  }
  out << std::setprecision(9);
  read_numeric(d, [&](const double* x, size_t k, hsize_t r0, hsize_t row) {
    for (size_t i = 0; i < k; i += row) {
      out << r0 + i / row;
      for (hsize_t j = 0; j < row; ++j) out << "," << x[i + j];
      out << "\n";
    }
  });
  H5Dclose(d);
  H5Fclose(f);
}

}  // namespace kvlab::io
