#include "framework/io/h5_file.h"

#include <H5Cpp.h>

#include <cstdio>
#include <filesystem>

#include "framework/core/error.h"

namespace kvlab::io {

struct H5Writer::Impl {
  std::string path, tmp;
  std::unique_ptr<H5::H5File> file;
};

H5Writer::H5Writer(const std::string& path) : impl_(new Impl) {
  impl_->path = path;
  impl_->tmp = path + ".tmp";
  try {
    H5::Exception::dontPrint();
    impl_->file = std::make_unique<H5::H5File>(impl_->tmp, H5F_ACC_TRUNC);
  } catch (const H5::Exception& e) {
    fail(path, ": cannot create HDF5 file: ", e.getDetailMsg());
  }
}

H5Writer::~H5Writer() {
  if (impl_->file) {
    try {
      impl_->file->close();
    } catch (...) {
    }
  }
}

namespace {
void ensure_groups(H5::H5File& f, const std::string& name) {
  size_t pos = 0;
  while ((pos = name.find('/', pos + 1)) != std::string::npos) {
    const std::string g = name.substr(0, pos);
    if (g.empty()) continue;
    if (!H5Lexists(f.getId(), g.c_str(), H5P_DEFAULT)) f.createGroup(g);
  }
}

template <class T>
void write_dataset(H5::H5File& f, const std::string& path, const std::string& name, const T* data,
                   const std::vector<int64_t>& dims, const H5::PredType& type) {
  try {
    ensure_groups(f, name);
    std::vector<hsize_t> hd(dims.begin(), dims.end());
    H5::DataSpace space(static_cast<int>(hd.size()), hd.data());
    H5::DataSet ds = f.createDataSet(name, type, space);
    ds.write(data, type);
  } catch (const H5::Exception& e) {
    fail(path, ": cannot write dataset ", name, ": ", e.getDetailMsg());
  }
}
}  // namespace

void H5Writer::write_f32(const std::string& name, const float* data,
                         const std::vector<int64_t>& dims) {
  write_dataset(*impl_->file, impl_->path, name, data, dims, H5::PredType::NATIVE_FLOAT);
}

void H5Writer::write_i32(const std::string& name, const int32_t* data,
                         const std::vector<int64_t>& dims) {
  write_dataset(*impl_->file, impl_->path, name, data, dims, H5::PredType::NATIVE_INT32);
}

void H5Writer::set_attr(const std::string& object, const std::string& key,
                        const std::string& value) {
  try {
    H5::StrType st(H5::PredType::C_S1, value.empty() ? 1 : value.size());
    H5::DataSpace scalar(H5S_SCALAR);
    if (object == "/" || object.empty()) {
      H5::Group root = impl_->file->openGroup("/");
      root.createAttribute(key, st, scalar).write(st, value);
    } else {
      H5::DataSet ds = impl_->file->openDataSet(object);
      ds.createAttribute(key, st, scalar).write(st, value);
    }
  } catch (const H5::Exception& e) {
    fail(impl_->path, ": cannot set attribute ", key, " on ", object, ": ", e.getDetailMsg());
  }
}

void H5Writer::close() {
  if (!impl_->file) return;
  try {
    impl_->file->flush(H5F_SCOPE_GLOBAL);
    impl_->file->close();
  } catch (const H5::Exception& e) {
    fail(impl_->path, ": cannot close HDF5 file: ", e.getDetailMsg());
  }
  impl_->file.reset();
  std::error_code ec;
  std::filesystem::rename(impl_->tmp, impl_->path, ec);
  if (ec) fail(impl_->path, ": cannot rename from ", impl_->tmp, ": ", ec.message());
}

namespace {
template <class T>
std::vector<T> read_dataset(const std::string& path, const std::string& name,
                            std::vector<int64_t>* dims, const H5::PredType& type) {
  try {
    H5::Exception::dontPrint();
    H5::H5File f(path, H5F_ACC_RDONLY);
    H5::DataSet ds = f.openDataSet(name);
    H5::DataSpace sp = ds.getSpace();
    const int rank = sp.getSimpleExtentNdims();
    std::vector<hsize_t> hd(rank);
    sp.getSimpleExtentDims(hd.data());
    size_t n = 1;
    for (auto d : hd) n *= d;
    std::vector<T> out(n);
    ds.read(out.data(), type);
    if (dims) dims->assign(hd.begin(), hd.end());
    return out;
  } catch (const H5::Exception& e) {
    fail(path, ": cannot read dataset ", name, ": ", e.getDetailMsg());
  }
}
}  // namespace

std::vector<float> read_f32(const std::string& path, const std::string& name,
                            std::vector<int64_t>* dims) {
  return read_dataset<float>(path, name, dims, H5::PredType::NATIVE_FLOAT);
}
std::vector<int32_t> read_i32(const std::string& path, const std::string& name,
                              std::vector<int64_t>* dims) {
  return read_dataset<int32_t>(path, name, dims, H5::PredType::NATIVE_INT32);
}

std::string read_attr(const std::string& path, const std::string& object, const std::string& key) {
  try {
    H5::Exception::dontPrint();
    H5::H5File f(path, H5F_ACC_RDONLY);
    const std::string obj = object.empty() ? "/" : object;
    H5::Attribute a = obj != "/" && f.childObjType(obj) == H5O_TYPE_DATASET
                          ? f.openDataSet(obj).openAttribute(key)
                          : f.openGroup(obj).openAttribute(key);
    std::string value;
    a.read(a.getStrType(), value);
    return value;
  } catch (const H5::Exception& e) {
    fail(path, ": cannot read attribute ", key, " of ", object, ": ", e.getDetailMsg());
  }
}

}  // namespace kvlab::io
