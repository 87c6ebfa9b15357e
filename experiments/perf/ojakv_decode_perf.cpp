// ojakv_decode_perf: per-layer decode cost of OjaKV's attention paths against the full cache, at an
// 8B-shaped layer (H = 32, G = 8, D = 128; Llama-3.1-8B), methods.md 1.6 "decode overhead of the
// online update: about +11-13 % over Full" (on an H100, where decode is memory-bound).
//
//   build/experiments/ojakv_decode_perf [--threads 2] [--contexts 2048,8192] [--steps 128]
//       [--ratio 0.6] [--period 64] [--out FILE.json]
//
// Per context N: the cache is filled with N random prompt tokens (prefill_attention exact,
// prefill_update pooled, so the fill itself stays cheap), end_prefill, then `steps` decode steps
// (append one token, attend one query [1, H, D]), timed as a whole: ms per step per layer. Each
// OjaKV step includes its share of the decode Oja updates (one every `period` tokens). Methods:
// full_cache; ojakv (reconstruct, latent); static_pca (reconstruct, latent; no updates). Also the
// device bytes per layer (memory()) and their ratio to the full cache. Random data, CPU, f32
// arithmetic: a cost model of this implementation, not of the paper's GPU kernels.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "framework/core/rng.h"
#include "framework/kv/kv_cache.h"
#include "methods/ojakv/ojakv.h"

namespace {

using namespace kvlab;

std::shared_ptr<kv::Bases> random_bases(int64_t G, int64_t D, uint64_t seed) {
  Rng rng(seed);
  auto b = std::make_shared<kv::Bases>();
  b->n_layers = 1;
  b->G = G;
  b->D = D;
  for (auto* v : {&b->qk, &b->k, &b->v})
    for (int64_t g = 0; g < G; ++g) {
      linalg::Mat A(D, D);
      for (auto& x : A.a) x = rng.normal();
      kv::Eigenbasis e;
      e.vectors = linalg::qr_q(A);
      for (int64_t j = 0; j < D; ++j) e.values.push_back(1.0 / double(j + 1));
      v->push_back(e);
    }
  return b;
}

struct Result {
  std::string method;
  int64_t N = 0;
  double ms_per_step = 0.0;
  int64_t device_bytes = 0;
  int64_t updates = 0;
};

}  // namespace

int main(int argc, char** argv) {
  int threads = 2;
  std::vector<int64_t> contexts = {2048, 8192};
  int64_t steps = 128, period = 64;
  double ratio = 0.6;
  std::string out;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--threads")
      threads = std::atoi(next().c_str());
    else if (a == "--steps")
      steps = std::atoll(next().c_str());
    else if (a == "--period")
      period = std::atoll(next().c_str());
    else if (a == "--ratio")
      ratio = std::atof(next().c_str());
    else if (a == "--out")
      out = next();
    else if (a == "--contexts") {
      contexts.clear();
      std::stringstream ss(next());
      std::string t;
      while (std::getline(ss, t, ',')) contexts.push_back(std::atoll(t.c_str()));
    } else {
      std::fprintf(stderr,
                   "usage: ojakv_decode_perf [--threads N] [--contexts A,B] [--steps M] "
                   "[--ratio R] [--period T] [--out FILE.json]\n");
      return 2;
    }
  }
  const int64_t H = 32, G = 8, D = 128;
  ThreadPool pool(threads);
  auto bases = random_bases(G, D, 1);
  std::vector<Result> results;
  for (int64_t N : contexts) {
    Rng rng(7);
    const int64_t S = N + steps;
    std::vector<float> k(static_cast<size_t>(S * G * D)), v(k.size()),
        q(static_cast<size_t>(H * D));
    for (auto& x : k) x = static_cast<float>(rng.normal());
    for (auto& x : v) x = static_cast<float>(rng.normal());
    for (auto& x : q) x = static_cast<float>(rng.normal());
    std::vector<int32_t> pos(static_cast<size_t>(S));
    for (int64_t i = 0; i < S; ++i) pos[static_cast<size_t>(i)] = static_cast<int32_t>(i);
    kv::LayerInfo info;
    info.n_layers = 1;
    info.H = H;
    info.G = G;
    info.D = D;
    info.scale = 1.0f / std::sqrt(float(D));
    info.max_context = S;
    info.pool = &pool;
    struct Variant {
      std::string name, method, path;
    };
    const std::vector<Variant> variants = {{"full_cache", "full_cache", ""},
                                           {"ojakv/reconstruct", "ojakv", "reconstruct"},
                                           {"ojakv/latent", "ojakv", "latent"},
                                           {"static_pca/reconstruct", "static_pca", "reconstruct"},
                                           {"static_pca/latent", "static_pca", "latent"}};
    int64_t full_bytes = 0;
    for (const auto& var : variants) {
      std::unique_ptr<kv::KvCache> c;
      if (var.method == "full_cache") {
        c = kv::make_kv_factory("full_cache", ParamValues(std::vector<ParamDecl>{}))(info);
      } else {
        ParamValues p(methods::ojakv_params());
        p.set("ratio", ParamValue(ratio), "perf");
        p.set("attention_path", ParamValue(var.path), "perf");
        p.set("prefill_attention", ParamValue(std::string("exact")), "perf");
        p.set("prefill_update", ParamValue(std::string("pooled")), "perf");
        p.set("update_period", ParamValue(period), "perf");
        if (var.method == "static_pca") {
          p.set("online_update", ParamValue(false), "perf");
          p.set("n_start", ParamValue(int64_t{0}), "perf");
          p.set("n_recent", ParamValue(int64_t{0}), "perf");
        }
        c = std::make_unique<methods::OjaKvCache>(info, methods::OjaKvParams::from_values(p), bases,
                                                  var.method);
      }
      c->append(k.data(), v.data(), N, pos.data());
      c->end_prefill(kv::PrefillContext{N});
      std::vector<float> o(static_cast<size_t>(H * D));
      const auto t0 = std::chrono::steady_clock::now();
      for (int64_t s = 0; s < steps; ++s) {
        const int64_t i = N + s;
        c->append(k.data() + i * G * D, v.data() + i * G * D, 1, pos.data() + i);
        c->attend(q.data(), 1, pos.data() + i, o.data());
      }
      const double sec =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      Result r;
      r.method = var.name;
      r.N = N;
      r.ms_per_step = 1e3 * sec / double(steps);
      r.device_bytes = c->memory().device_bytes;
      if (auto* oj = dynamic_cast<methods::OjaKvCache*>(c.get())) r.updates = oj->basis_updates();
      if (var.method == "full_cache") full_bytes = r.device_bytes;
      std::printf("N=%-6lld %-24s %9.3f ms/step  %10lld bytes (%.3f of full)  %lld Oja steps\n",
                  static_cast<long long>(N), r.method.c_str(), r.ms_per_step,
                  static_cast<long long>(r.device_bytes),
                  full_bytes ? double(r.device_bytes) / double(full_bytes) : 1.0,
                  static_cast<long long>(r.updates));
      std::fflush(stdout);
      results.push_back(r);
    }
  }
  if (!out.empty()) {
    std::ofstream f(out);
    f << "{\n  \"shape\": {\"H\": " << H << ", \"G\": " << G << ", \"D\": " << D
      << "},\n  \"threads\": " << threads << ",\n  \"steps\": " << steps
      << ",\n  \"ratio\": " << ratio << ",\n  \"update_period\": " << period
      << ",\n  \"openblas_coretype\": \""
      << (std::getenv("OPENBLAS_CORETYPE") ? std::getenv("OPENBLAS_CORETYPE") : "")
      << "\",\n  \"results\": [\n";
    for (size_t i = 0; i < results.size(); ++i) {
      const auto& r = results[i];
      f << "    {\"method\": \"" << r.method << "\", \"context\": " << r.N
        << ", \"ms_per_step\": " << r.ms_per_step << ", \"device_bytes\": " << r.device_bytes
        << ", \"oja_steps\": " << r.updates << "}" << (i + 1 < results.size() ? "," : "") << "\n";
    }
    f << "  ]\n}\n";
  }
  return 0;
}
