#include "framework/model/safetensors.h"

#include "framework/core/file_io.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "framework/core/error.h"

namespace kvlab::model {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // 100 MB, as the reference implementation

// Strict safetensors dtype names (uppercase only); anything else is unsupported.
bool safetensors_dtype(const std::string& s, DType* out) {
  static const std::pair<const char*, DType> kNames[] = {
      {"F32", DType::kF32}, {"BF16", DType::kBF16}, {"F16", DType::kF16},
      {"I32", DType::kI32}, {"I64", DType::kI64},   {"U8", DType::kU8}};
  for (const auto& [n, t] : kNames)
    if (s == n) {
      *out = t;
      return true;
    }
  return false;
}

const char* safetensors_dtype_name(DType t) {
  switch (t) {
    case DType::kF32: return "F32";
    case DType::kBF16: return "BF16";
    case DType::kF16: return "F16";
    case DType::kI32: return "I32";
    case DType::kI64: return "I64";
    case DType::kU8: return "U8";
  }
  return "?";
}

uint64_t json_u64(const Json& v, const std::string& what) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (i >= 0) return static_cast<uint64_t>(i);
  }
  fail(what, " must be a non-negative integer");
}

// numel * dtype_size with overflow checks; `what` names the tensor.
uint64_t checked_nbytes(const std::vector<int64_t>& shape, DType t, const std::string& what) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) fail(what, ": negative dimension ", d);
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) fail(what, ": shape overflows");
  }
  if (__builtin_mul_overflow(n, static_cast<uint64_t>(dtype_size(t)), &n))
    fail(what, ": byte size overflows");
  return n;
}

// Header JSON for `tensors`, padded with spaces so that 8 + header length is a multiple of 8.
// Data is laid out back to back (no holes, as the reference reader requires) with larger
// element sizes first (stable), so every tensor starts at a multiple of its element size.
// `order` receives the data order (indices into `tensors`).
std::string build_header(const std::vector<TensorToWrite>& tensors,
                         const std::map<std::string, std::string>& metadata,
                         const std::string& path, std::vector<size_t>* order,
                         std::vector<uint64_t>* sizes) {
  std::set<std::string> seen;
  sizes->assign(tensors.size(), 0);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    const std::string what = str(path, ": tensor '", t.name, "'");
    if (t.name.empty() || t.name == "__metadata__") fail(what, ": invalid tensor name");
    if (!seen.insert(t.name).second) fail(what, ": duplicate tensor name");
    (*sizes)[i] = checked_nbytes(t.shape, t.dtype, what);
    if ((*sizes)[i] != 0 && t.data == nullptr) fail(what, ": data is null");
  }
  order->resize(tensors.size());
  for (size_t i = 0; i < order->size(); ++i) (*order)[i] = i;
  std::stable_sort(order->begin(), order->end(), [&](size_t a, size_t b) {
    return dtype_size(tensors[a].dtype) > dtype_size(tensors[b].dtype);
  });
  std::vector<uint64_t> begin(tensors.size());
  uint64_t offset = 0;
  for (size_t i : *order) {
    begin[i] = offset;
    if (__builtin_add_overflow(offset, (*sizes)[i], &offset)) fail(path, ": data size overflows");
  }
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    h["__metadata__"] = m;
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    h[t.name] = {{"dtype", safetensors_dtype_name(t.dtype)},
                 {"shape", t.shape},
                 {"data_offsets", {begin[i], begin[i] + (*sizes)[i]}}};
  }
  std::string json = h.dump();
  json.append((8 - (8 + json.size()) % 8) % 8, ' ');
  return json;
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// Writes through path + ".tmp"; commit() renames over path. The temp file is removed when an
// error or exception leaves the writer uncommitted.

}  // namespace

// ---- parsing ----

std::vector<TensorInfo> parse_safetensors(const uint8_t* base, size_t size,
                                          const std::string& file,
                                          std::map<std::string, std::string>* metadata) {
  if (size < 8)
    fail(file, ": truncated safetensors file (", size, " bytes, header length needs 8)");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | base[i];  // u64 little-endian
  if (n > kMaxHeaderBytes)
    fail(file, ": safetensors header length ", n, " exceeds the 100 MB limit");
  if (n > size - 8)
    fail(file, ": safetensors header length ", n, " runs past the end of the file (", size,
         " bytes)");
  const char* hdr = reinterpret_cast<const char*>(base + 8);
  Json j;
  try {
    j = Json::parse(hdr, hdr + n);
  } catch (const Json::exception& e) {
    fail(file, ": safetensors header is not valid JSON: ", e.what());
  }
  if (!j.is_object()) fail(file, ": safetensors header must be a JSON object");

  const uint8_t* buffer = base + 8 + n;
  const uint64_t buffer_size = size - 8 - n;
  std::vector<TensorInfo> out;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // [begin, end) per tensor, same order
  for (const auto& [name, v] : j.items()) {
    if (name == "__metadata__") {
      if (!v.is_object()) fail(file, ": __metadata__ must be an object of strings");
      for (const auto& [k, mv] : v.items()) {
        if (!mv.is_string()) fail(file, ": __metadata__ value for '", k, "' must be a string");
        if (metadata) (*metadata)[k] = mv.get<std::string>();
      }
      continue;
    }
    const std::string what = str(file, ": tensor '", name, "'");
    if (!v.is_object()) fail(what, ": entry must be an object");
    auto dt = v.find("dtype");
    if (dt == v.end() || !dt->is_string()) fail(what, ": missing or non-string 'dtype'");
    TensorInfo t;
    t.name = name;
    t.file = file;
    if (!safetensors_dtype(dt->get<std::string>(), &t.dtype))
      fail(what, ": unsupported dtype '", dt->get<std::string>(),
           "' (supported: F32, BF16, F16, I32, I64, U8)");
    auto sh = v.find("shape");
    if (sh == v.end() || !sh->is_array()) fail(what, ": missing or non-list 'shape'");
    for (size_t i = 0; i < sh->size(); ++i) {
      const uint64_t d = json_u64((*sh)[i], str(what, ": shape[", i, "]"));
      if (d > static_cast<uint64_t>(INT64_MAX)) fail(what, ": shape[", i, "] is too large");
      t.shape.push_back(static_cast<int64_t>(d));
    }
    const uint64_t nbytes = checked_nbytes(t.shape, t.dtype, what);
    auto off = v.find("data_offsets");
    if (off == v.end() || !off->is_array() || off->size() != 2)
      fail(what, ": 'data_offsets' must be a list [begin, end]");
    const uint64_t b = json_u64((*off)[0], what + ": data_offsets[0]");
    const uint64_t e = json_u64((*off)[1], what + ": data_offsets[1]");
    if (b > e) fail(what, ": data_offsets [", b, ", ", e, "] has begin > end");
    if (e > buffer_size)
      fail(what, ": data_offsets [", b, ", ", e, "] run past the data buffer (", buffer_size,
           " bytes; file truncated?)");
    if (e - b != nbytes)
      fail(what, ": data_offsets span ", e - b, " bytes but shape and dtype ",
           safetensors_dtype_name(t.dtype), " need ", nbytes);
    t.data = buffer + b;
    t.nbytes = static_cast<size_t>(nbytes);
    out.push_back(std::move(t));
    ranges.emplace_back(b, e);
  }
  // No two non-empty tensors may share bytes: sort by begin, each must start at or after the
  // previous end. O(n log n).
  std::vector<size_t> order(out.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ranges[a] < ranges[b]; });
  size_t prev = SIZE_MAX;
  for (size_t i : order) {
    if (ranges[i].first == ranges[i].second) continue;
    if (prev != SIZE_MAX && ranges[i].first < ranges[prev].second)
      fail(file, ": tensors '", out[prev].name, "' and '", out[i].name, "' overlap");
    if (prev == SIZE_MAX || ranges[i].second > ranges[prev].second) prev = i;
  }
  std::vector<TensorInfo> sorted;
  sorted.reserve(out.size());
  for (size_t i : order) sorted.push_back(std::move(out[i]));
  return sorted;
}

// ---- mapped files ----

struct SafeTensors::Mapping {
  std::string path;
  void* addr = nullptr;
  size_t size = 0;
  explicit Mapping(const std::string& p) : path(p) {
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(p, ": cannot open safetensors file: ", std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      ::close(fd);
      fail(p, ": cannot stat: ", std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      fail(p, ": not a regular file");
    }
    size = static_cast<size_t>(st.st_size);
    if (size > 0) {
      addr = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (addr == MAP_FAILED) {
        const int err = errno;
        addr = nullptr;
        ::close(fd);
        fail(p, ": mmap failed: ", std::strerror(err));
      }
    }
    ::close(fd);  // the mapping keeps the file alive
  }
  ~Mapping() {
    if (addr) ::munmap(addr, size);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
};

namespace {


}  // namespace

SafeTensors SafeTensors::open(const std::string& path) {
  std::error_code ec;
  std::string file = path;
  if (fs::is_directory(path, ec)) {
    const fs::path index = fs::path(path) / "model.safetensors.index.json";
    const fs::path single = fs::path(path) / "model.safetensors";
    if (fs::exists(index, ec)) {
      file = index.string();
    } else if (fs::exists(single, ec)) {
      file = single.string();
    } else {
      fail(path, ": no model.safetensors.index.json or model.safetensors in this folder");
    }
  }
  SafeTensors st;
  st.source_ = file;
  const bool is_index = file.size() >= 5 && file.compare(file.size() - 5, 5, ".json") == 0;
  if (!is_index) {
    auto m = std::make_shared<Mapping>(file);
    for (auto& t : parse_safetensors(static_cast<const uint8_t*>(m->addr), m->size, file, &st.metadata_))
      st.tensors_.emplace(t.name, std::move(t));
    st.maps_.push_back(std::move(m));
    return st;
  }

  // Sharded: {"metadata": {...}, "weight_map": {tensor: shard file relative to the index}}.
  Json j;
  try {
    j = Json::parse(read_file(file));
  } catch (const Json::exception& e) {
    fail(file, ": not valid JSON: ", e.what());
  }
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    fail(file, ": missing 'weight_map' object");
  std::map<std::string, std::vector<std::string>> by_shard;  // shard -> listed tensors
  for (const auto& [name, shard] : j["weight_map"].items()) {
    if (!shard.is_string()) fail(file, ": weight_map['", name, "'] must be a file name");
    by_shard[shard.get<std::string>()].push_back(name);
  }
  if (by_shard.empty()) fail(file, ": weight_map is empty");
  const fs::path dir = fs::path(file).parent_path();
  for (const auto& [shard, names] : by_shard) {
    const std::string shard_path = (dir / shard).string();
    auto m = std::make_shared<Mapping>(shard_path);
    std::map<std::string, TensorInfo> in_shard;
    for (auto& t : parse_safetensors(static_cast<const uint8_t*>(m->addr), m->size, shard_path))
      in_shard.emplace(t.name, std::move(t));
    for (const auto& n : names)
      if (!in_shard.count(n))
        fail(file, ": tensor '", n, "' is listed in weight_map but missing from ", shard_path);
    for (auto& [n, t] : in_shard) {
      auto [it, inserted] = st.tensors_.emplace(n, std::move(t));
      if (!inserted)
        fail(file, ": tensor '", n, "' appears in both ", it->second.file, " and ", shard_path);
    }
    st.maps_.push_back(std::move(m));
  }
  return st;
}

const TensorInfo& SafeTensors::get(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    std::set<std::string> files;
    for (const auto& m : maps_) files.insert(m->path);
    std::string list;
    for (const auto& f : files) list += (list.empty() ? "" : ", ") + f;
    fail(source_.empty() ? std::string("safetensors") : source_, ": tensor '", name,
         "' not found (searched ", list.empty() ? "no files" : list, ")");
  }
  return it->second;
}

namespace {
void check_float(const TensorInfo& t) {
  if (t.dtype != DType::kF32 && t.dtype != DType::kBF16 && t.dtype != DType::kF16)
    fail(t.file, ": tensor '", t.name, "' has dtype ", dtype_name(t.dtype),
         "; expected f32, bf16 or f16");
}
std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}
// An expected dimension; -1 (any) prints as "?".
std::string dim_str(int64_t d) { return d < 0 ? "?" : std::to_string(d); }
}  // namespace

MatRef SafeTensors::matrix(const std::string& name, int64_t rows, int64_t cols) const {
  const TensorInfo& t = get(name);
  if (t.shape.size() != 2 || (rows >= 0 && t.shape[0] != rows) || (cols >= 0 && t.shape[1] != cols))
    fail(t.file, ": tensor '", name, "' has shape ", shape_str(t.shape), "; expected [",
         dim_str(rows), ", ", dim_str(cols), "]");
  check_float(t);
  return MatRef{t.data, t.dtype, t.shape[0], t.shape[1], t.shape[1]};
}

VecRef SafeTensors::vector(const std::string& name, int64_t n) const {
  const TensorInfo& t = get(name);
  if (t.shape.size() != 1 || (n >= 0 && t.shape[0] != n))
    fail(t.file, ": tensor '", name, "' has shape ", shape_str(t.shape), "; expected [", dim_str(n),
         "]");
  check_float(t);
  return VecRef{t.data, t.dtype, t.shape[0]};
}

// ---- writing ----

std::string safetensors_bytes(const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  std::vector<size_t> order;
  std::vector<uint64_t> sizes;
  const std::string header = build_header(tensors, metadata, "<memory>", &order, &sizes);
  std::string out = le64(header.size()) + header;
  for (size_t i : order)
    if (sizes[i] != 0) out.append(static_cast<const char*>(tensors[i].data), sizes[i]);
  return out;
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<size_t> order;
  std::vector<uint64_t> sizes;
  const std::string header = build_header(tensors, metadata, path, &order, &sizes);
  AtomicFile f(path);
  const std::string len = le64(header.size());
  f.write(len.data(), len.size());
  f.write(header.data(), header.size());
  for (size_t i : order) f.write(tensors[i].data, sizes[i]);
  f.commit();
}


}  // namespace kvlab::model
