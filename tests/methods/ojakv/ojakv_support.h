// Shared by the OjaKV and StaticPCA tests: random calibrated bases, a random tiny model, a
// layer-level token stream and an f64 attention reference over what a cache materialises.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "framework/core/rng.h"
#include "framework/kv/bases.h"
#include "framework/kv/kv_cache.h"
#include "framework/linalg/linalg.h"
#include "framework/model/llama.h"
#include "framework/model/model_init.h"
#include "methods/ojakv/ojakv.h"

namespace kvlab::testing {

// Random orthonormal [D, D] (QR of a Gaussian matrix) with descending eigenvalues 1/(j+1).
inline kv::Eigenbasis random_eigenbasis(int64_t D, Rng& rng) {
  linalg::Mat A(D, D);
  for (auto& x : A.a) x = rng.normal();
  kv::Eigenbasis e;
  e.vectors = linalg::qr_q(A);
  for (int64_t j = 0; j < D; ++j) e.values.push_back(1.0 / static_cast<double>(j + 1));
  return e;
}

inline std::shared_ptr<kv::Bases> random_bases(int64_t L, int64_t G, int64_t D, uint64_t seed,
                                               const std::string& frame = "post_rope") {
  Rng rng(seed);
  auto b = std::make_shared<kv::Bases>();
  b->n_layers = L;
  b->G = G;
  b->D = D;
  b->frame = frame;
  b->source = "test: random";
  for (auto* v : {&b->qk, &b->k, &b->v})
    for (int64_t i = 0; i < L * G; ++i) v->push_back(random_eigenbasis(D, rng));
  return b;
}

inline kv::LayerInfo layer_info(ThreadPool& pool, int64_t H, int64_t G, int64_t D,
                                const cpu::Rope* rope = nullptr, int64_t max_context = 4096) {
  kv::LayerInfo info;
  info.n_layers = 1;
  info.H = H;
  info.G = G;
  info.D = D;
  info.scale = 1.0f / std::sqrt(static_cast<float>(D));
  info.max_context = max_context;
  info.rope = rope;
  info.pool = &pool;
  return info;
}

// OjaKV parameters: the declared defaults with `set` applied (as a config would).
inline methods::OjaKvParams ojakv_params(
    const std::vector<std::pair<std::string, std::string>>& set) {
  ParamValues p(methods::ojakv_params());
  for (const auto& [k, v] : set) p.set_from_string(k, v, "test");
  return methods::OjaKvParams::from_values(p);
}

// A random `tiny` Llama (L=2, H=4, G=2, D=16), written once per process.
inline std::shared_ptr<const model::Model> tiny_model() {
  static std::shared_ptr<const model::Model> m = [] {
    const auto dir = std::filesystem::temp_directory_path() /
                     ("kvlab_ojakv_tiny_" + std::to_string(::getpid()));
    model::InitOptions o;
    o.config = model::preset_config("tiny");
    o.dtype = DType::kF32;
    o.seed = 5;
    o.init_std = 0.2;  // attention far from uniform
    model::write_random_model(o, dir.string());
    return model::Model::load(dir.string());
  }();
  return m;
}

// Logits [n, V] of `ids`: prefill of the first `prompt` tokens (chunks of `chunk`), end_prefill,
// then one-token decode steps.
inline std::vector<float> model_logits(const kv::KvFactory& f, const std::vector<int32_t>& ids,
                                       int64_t prompt, int64_t chunk = 512,
                                       model::Sequence** keep = nullptr) {
  static ThreadPool pool(2);
  auto m = tiny_model();
  auto* seq = new model::Sequence(m, f, pool, {.prefill_chunk = chunk});
  const int64_t V = m->config().vocab_size, n = static_cast<int64_t>(ids.size());
  std::vector<float> logits(static_cast<size_t>(n * V));
  seq->forward(std::span<const int32_t>(ids.data(), prompt), logits.data(), true);
  seq->end_prefill();
  for (int64_t t = prompt; t < n; ++t)
    seq->forward(std::span<const int32_t>(ids.data() + t, 1), logits.data() + t * V, false);
  if (keep)
    *keep = seq;
  else
    delete seq;
  return logits;
}

inline std::vector<int32_t> token_ids(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& x : ids) x = static_cast<int32_t>(rng.next_u64() % 256);
  return ids;
}

// f64 causal softmax attention of one query head row q [D] over K, V [N, D] with positions.
inline std::vector<double> attention_f64(const float* q, int32_t q_pos, const std::vector<float>& K,
                                         const std::vector<float>& V,
                                         const std::vector<int32_t>& pos, int64_t D,
                                         double scale) {
  const int64_t N = static_cast<int64_t>(pos.size());
  std::vector<double> logit(static_cast<size_t>(N), -INFINITY), out(static_cast<size_t>(D), 0.0);
  double mx = -INFINITY;
  for (int64_t i = 0; i < N; ++i) {
    if (pos[static_cast<size_t>(i)] > q_pos) continue;
    double a = 0.0;
    for (int64_t d = 0; d < D; ++d) a += static_cast<double>(q[d]) * K[static_cast<size_t>(i * D + d)];
    logit[static_cast<size_t>(i)] = scale * a;
    mx = std::max(mx, scale * a);
  }
  double z = 0.0;
  for (int64_t i = 0; i < N; ++i) {
    if (logit[static_cast<size_t>(i)] == -INFINITY) continue;
    const double p = std::exp(logit[static_cast<size_t>(i)] - mx);
    z += p;
    for (int64_t d = 0; d < D; ++d) out[static_cast<size_t>(d)] += p * V[static_cast<size_t>(i * D + d)];
  }
  for (auto& x : out) x /= z;
  return out;
}

}  // namespace kvlab::testing
