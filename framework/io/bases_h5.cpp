#include "framework/io/bases_h5.h"

#include <cstdio>
#include <map>
#include <mutex>

#include "framework/core/error.h"
#include "framework/io/h5_file.h"

namespace kvlab::io {

namespace {
constexpr kv::BasisKind kKinds[] = {kv::BasisKind::qk, kv::BasisKind::k, kv::BasisKind::v};

std::string layer_group(int64_t l) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "/layer_%02lld", static_cast<long long>(l));
  return buf;
}

std::vector<kv::Eigenbasis>& kind_vec(kv::Bases& b, kv::BasisKind k) {
  return k == kv::BasisKind::qk ? b.qk : k == kv::BasisKind::k ? b.k : b.v;
}

int64_t attr_int(const std::string& path, const std::string& key) {
  const std::string s = read_attr(path, "/", key);
  try {
    size_t used = 0;
    const long long v = std::stoll(s, &used);
    if (used == s.size()) return v;
  } catch (const std::exception&) {
  }
  fail(path, ": root attribute ", key, " is not an integer: '", s, "'");
}
}  // namespace

void save_bases_h5(const std::string& path, const kv::Bases& b) {
  const int64_t G = b.G, D = b.D;
  H5Writer w(path);
  for (int64_t l = 0; l < b.n_layers; ++l) {
    for (kv::BasisKind kind : kKinds) {
      std::vector<float> vec(static_cast<size_t>(G * D * D)), val(static_cast<size_t>(G * D));
      for (int64_t g = 0; g < G; ++g) {
        const kv::Eigenbasis& e = b.get(kind, l, g);
        KVLAB_CHECK(e.vectors.rows == D && e.vectors.cols == D && (int64_t)e.values.size() == D)
            << "layer " << l << " head " << g << " " << kv::basis_kind_name(kind);
        for (int64_t i = 0; i < D * D; ++i) vec[g * D * D + i] = static_cast<float>(e.vectors.a[i]);
        for (int64_t i = 0; i < D; ++i) val[g * D + i] = static_cast<float>(e.values[i]);
      }
      const std::string base = layer_group(l) + "/" + kv::basis_kind_name(kind);
      w.write_f32(base + "/vectors", vec.data(), {G, D, D});
      w.write_f32(base + "/values", val.data(), {G, D});
    }
  }
  w.set_attr("/", "kvlab_bases_version", "1");
  w.set_attr("/", "frame", b.frame);
  w.set_attr("/", "source", b.source);
  w.set_attr("/", "n_layers", std::to_string(b.n_layers));
  w.set_attr("/", "kv_heads", std::to_string(G));
  w.set_attr("/", "head_dim", std::to_string(D));
  w.set_attr("/", "tokens", std::to_string(b.tokens));
  w.close();
}

kv::Bases load_bases_h5(const std::string& path) {
  const std::string version = read_attr(path, "/", "kvlab_bases_version");
  if (version != "1")
    fail(path, ": unsupported kvlab_bases_version '", version, "' (this kvlab reads 1)");
  kv::Bases b;
  b.frame = read_attr(path, "/", "frame");
  if (b.frame != "post_rope" && b.frame != "pre_rope")
    fail(path, ": root attribute frame must be post_rope or pre_rope, got '", b.frame, "'");
  b.source = read_attr(path, "/", "source");
  b.n_layers = attr_int(path, "n_layers");
  b.G = attr_int(path, "kv_heads");
  b.D = attr_int(path, "head_dim");
  b.tokens = attr_int(path, "tokens");
  if (b.n_layers <= 0 || b.G <= 0 || b.D <= 0)
    fail(path, ": n_layers, kv_heads and head_dim must be positive");
  const int64_t G = b.G, D = b.D;
  for (kv::BasisKind kind : kKinds) kind_vec(b, kind).resize(static_cast<size_t>(b.n_layers * G));
  for (int64_t l = 0; l < b.n_layers; ++l) {
    for (kv::BasisKind kind : kKinds) {
      const std::string base = layer_group(l) + "/" + kv::basis_kind_name(kind);
      std::vector<int64_t> dv, dl;
      std::vector<float> vec = read_f32(path, base + "/vectors", &dv);
      std::vector<float> val = read_f32(path, base + "/values", &dl);
      if (dv != std::vector<int64_t>{G, D, D} || dl != std::vector<int64_t>{G, D})
        fail(path, ": ", base, " has the wrong shape (expected vectors [", G, ",", D, ",", D,
             "] and values [", G, ",", D, "])");
      for (int64_t g = 0; g < G; ++g) {
        linalg::Mat m(D, D);
        for (int64_t i = 0; i < D * D; ++i) m.a[i] = vec[g * D * D + i];
        kv::Eigenbasis& e = kind_vec(b, kind)[l * G + g];
        e.vectors = linalg::qr_q(m);
        e.values.assign(val.begin() + g * D, val.begin() + (g + 1) * D);
      }
    }
  }
  return b;
}

std::shared_ptr<const kv::Bases> load_bases_h5_cached(const std::string& path) {
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<const kv::Bases>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(path);
  if (it != cache.end()) return it->second;
  auto b = std::make_shared<const kv::Bases>(load_bases_h5(path));
  cache.emplace(path, b);
  return b;
}

}  // namespace kvlab::io
