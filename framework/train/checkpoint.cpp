#include "framework/train/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "framework/core/error.h"
#include "framework/model/safetensors.h"

namespace kvlab::train {

namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

constexpr const char* kFormat = "kvlab-checkpoint-1";
const std::string kParam = "param/", kOptim = "optim/";

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

void save_checkpoint(const std::string& path, std::span<const optim::ParamBlock> params,
                     optim::Optimizer& opt, const Json& loop_state) {
  std::vector<model::TensorToWrite> tensors;
  for (const auto& b : params) {
    KVLAB_CHECK(b.data != nullptr || b.numel() == 0) << "block '" << b.name << "' has no data";
    tensors.push_back({kParam + b.name, DType::kF32, b.shape, b.data});
  }
  for (const auto& s : opt.state())
    tensors.push_back({kOptim + s.name, DType::kF32, {s.numel}, s.data});
  const std::map<std::string, std::string> meta = {
      {"kvlab.format", kFormat},
      {"kvlab.optimizer_step", std::to_string(opt.step_count())},
      {"kvlab.loop_state", loop_state.dump()},
  };
  model::write_safetensors(path, tensors, meta);
}

Json load_checkpoint(const std::string& path, std::span<optim::ParamBlock> params,
                     optim::Optimizer& opt) {
  const auto st = model::SafeTensors::open(path);
  const auto& meta = st.metadata();
  auto field = [&](const char* key) -> const std::string& {
    auto it = meta.find(key);
    if (it == meta.end()) fail(path, ": not a kvlab checkpoint (no '", key, "' in __metadata__)");
    return it->second;
  };
  if (field("kvlab.format") != kFormat)
    fail(path, ": checkpoint format '", field("kvlab.format"), "', expected '", kFormat, "'");
  int64_t opt_step = 0;
  try {
    size_t used = 0;
    opt_step = std::stoll(field("kvlab.optimizer_step"), &used);
    if (used != field("kvlab.optimizer_step").size() || opt_step < 0) throw std::invalid_argument("");
  } catch (const std::logic_error&) {
    fail(path, ": bad kvlab.optimizer_step '", field("kvlab.optimizer_step"), "'");
  }
  Json loop;
  try {
    loop = Json::parse(field("kvlab.loop_state"));
  } catch (const Json::exception& e) {
    fail(path, ": kvlab.loop_state is not valid JSON: ", e.what());
  }

  // Pass 1: check every expected tensor and that the file holds nothing else.
  struct Copy {
    void* dst;
    const void* src;
    size_t nbytes;
  };
  std::vector<Copy> copies;
  size_t expected = 0;
  auto expect = [&](const std::string& name, const std::vector<int64_t>& shape, void* dst) {
    ++expected;
    if (!st.has(name)) fail(path, ": checkpoint has no tensor '", name, "'");
    const auto& t = st.get(name);
    if (t.dtype != DType::kF32)
      fail(path, ": tensor '", name, "' is ", dtype_name(t.dtype), ", expected F32");
    if (t.shape != shape)
      fail(path, ": tensor '", name, "' has shape ", shape_str(t.shape), ", expected ",
           shape_str(shape));
    copies.push_back({dst, t.data, t.nbytes});
  };
  for (auto& b : params) expect(kParam + b.name, b.shape, b.data);
  const auto state = opt.state();
  for (const auto& s : state) expect(kOptim + s.name, {s.numel}, s.data);
  if (st.tensors().size() != expected) {
    for (const auto& [name, t] : st.tensors()) {
      bool known = false;
      if (name.rfind(kParam, 0) == 0)
        for (const auto& b : params) known |= (kParam + b.name == name);
      if (name.rfind(kOptim, 0) == 0)
        for (const auto& s : state) known |= (kOptim + s.name == name);
      if (!known)
        fail(path, ": tensor '", name, "' in the checkpoint has no counterpart in the model or ",
             "optimizer", state.empty() ? " (the optimizer holds no state yet: prepare it or "
                                          "step once before loading)" : "");
    }
  }
  // Pass 2: copy (nothing has been modified before this point).
  for (const auto& c : copies)
    if (c.nbytes) std::memcpy(c.dst, c.src, c.nbytes);
  opt.set_step_count(opt_step);
  return loop;
}

CheckpointDir::CheckpointDir(std::string dir, int64_t keep_last)
    : dir_(std::move(dir)), keep_last_(keep_last) {
  if (keep_last_ < 1) fail("checkpoint: keep_last = ", keep_last_, " must be >= 1");
}

std::string CheckpointDir::path_for(int64_t step) const {
  char name[64];
  std::snprintf(name, sizeof name, "step-%09lld.safetensors", static_cast<long long>(step));
  return (fs::path(dir_) / name).string();
}

std::vector<std::string> CheckpointDir::list() const {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  if (!fs::is_directory(dir_, ec)) return {};
  for (const auto& e : fs::directory_iterator(dir_)) {
    const std::string n = e.path().filename().string();
    const std::string pre = "step-", suf = ".safetensors";
    if (n.size() <= pre.size() + suf.size() || n.rfind(pre, 0) != 0 ||
        n.compare(n.size() - suf.size(), suf.size(), suf) != 0)
      continue;
    const std::string digits = n.substr(pre.size(), n.size() - pre.size() - suf.size());
    if (digits.find_first_not_of("0123456789") != std::string::npos) continue;
    found.emplace_back(std::stoll(digits), e.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

std::optional<std::string> CheckpointDir::latest() const {
  auto l = list();
  if (l.empty()) return std::nullopt;
  return l.back();
}

std::string CheckpointDir::save(int64_t step, std::span<const optim::ParamBlock> params,
                                optim::Optimizer& opt, const Json& loop_state) {
  if (step < 0) fail("checkpoint: step ", step, " must be >= 0");
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) fail(dir_, ": cannot create checkpoint folder: ", ec.message());
  const std::string path = path_for(step);
  save_checkpoint(path, params, opt, loop_state);
  // Prune only after the new file is complete under its final name.
  auto all = list();
  for (size_t i = 0; i + static_cast<size_t>(keep_last_) < all.size(); ++i) {
    fs::remove(all[i], ec);
    if (ec) fail(all[i], ": cannot remove old checkpoint: ", ec.message());
  }
  return path;
}

const std::vector<ParamDecl>& checkpoint_param_decls() {
  using T = ParamDecl::Type;
  static const std::vector<ParamDecl> decls = {
      {"checkpoint_every", T::kInt, int64_t{0}, 0.0, {}, {}, "save every N steps (0: never)"},
      {"keep_last", T::kInt, int64_t{3}, 1.0, {}, {}, "checkpoints kept; older ones are deleted"},
  };
  return decls;
}

}  // namespace kvlab::train
