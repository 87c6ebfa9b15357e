// The KV-cache interface every method plugs into (DESIGN.md section 2). One KvCache per layer
// per sequence. The engine computes q/k/v, applies RoPE, then calls append() with the new
// tokens' post-RoPE keys and values and attend() with their queries; the method owns how it
// stores and attends (dense, latent, retrieved). Plan vs apply: a method decides what to keep in
// end_prefill()/append(); only the cache mutates its own state.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "framework/backend/cpu/kernels.h"
#include "framework/core/memory.h"
#include "framework/core/params.h"
#include "framework/core/thread_pool.h"
#include "framework/core/trace_sink.h"

namespace kvlab::model {
class Tokenizer;
}

namespace kvlab::kv {

// What a layer's cache knows about the model. Small, named, no YAML/CLI types (style.md 5.5).
struct LayerInfo {
  int64_t layer = 0;     // index in [0, n_layers)
  int64_t n_layers = 0;  // L
  int64_t H = 0;         // query heads
  int64_t G = 0;         // KV heads
  int64_t D = 0;         // head dim
  float scale = 0.f;     // softmax scale (1/sqrt(D))
  int64_t max_context = 0;          // upper bound on tokens this sequence will hold (capacity hint)
  const cpu::Rope* rope = nullptr;  // the model's RoPE (for pre-RoPE storage or key re-rotation)
  ThreadPool* pool = nullptr;
  // The model's tokenizer when it has one (methods that look at token strings, e.g. SentenceKV's
  // sentence boundaries); null otherwise.
  const model::Tokenizer* tokenizer = nullptr;
};

struct PrefillContext {
  int64_t prompt_tokens = 0;  // tokens appended before end_prefill
};

class KvCache {
 public:
  virtual ~KvCache() = default;
  // Stores T new tokens: keys and values [T, G, D] (post-RoPE keys), positions [T] increasing.
  virtual void append(const float* keys, const float* values, int64_t T,
                      const int32_t* positions) = 0;
  // Token ids [T] of the next append(); the engine calls it before append() on every layer.
  // Methods that need the ids (SentenceKV's sentence boundaries) override it; default: ignored.
  virtual void observe_tokens(const int32_t* ids, int64_t T) {}
  // Causal attention of queries [T, H, D] at q_positions [T] over everything the cache keeps;
  // writes out [T, H, D]. Called after append() of the same tokens.
  virtual void attend(const float* queries, int64_t T, const int32_t* q_positions,
                      float* out) = 0;
  // The prompt is complete: prompt-level decisions (selection, comprehensive updates) happen here.
  virtual void end_prefill(const PrefillContext& ctx) {}
  // Bytes by tier and tokens by state, as kept now.
  virtual MemoryReport memory() const = 0;
  // Method-specific traces (nothing by default).
  virtual void trace(TraceSink& sink) const {}
  // Tokens appended so far (kept or not).
  virtual int64_t tokens_seen() const = 0;
};

using KvFactory = std::function<std::unique_ptr<KvCache>(const LayerInfo&)>;

// A registered method: its declared parameters and how to build one layer's cache.
struct KvMethod {
  std::string name;
  std::string help;  // one paragraph: paper, algorithm, budget meaning
  std::vector<ParamDecl> params;
  std::function<std::unique_ptr<KvCache>(const LayerInfo&, const ParamValues&)> make;
  // Checks across parameters that need no model (exactly one of budget/ratio, a bases file that
  // must exist); run on every point before a sweep starts any work. Optional; throws kvlab::Error.
  std::function<void(const ParamValues&)> check;
};

class KvRegistry {
 public:
  static KvRegistry& instance();
  // Returns true so a registration can initialise a static (KVLAB_REGISTER_KV_METHOD).
  bool add(KvMethod m);
  // Throws kvlab::Error listing the registered names (with a "did you mean") when unknown.
  const KvMethod& find(const std::string& name) const;
  std::vector<std::string> names() const;

 private:
  std::vector<KvMethod> methods_;
};

// A factory for every layer of a sequence from a method name and its resolved parameters.
KvFactory make_kv_factory(const std::string& method, const ParamValues& params);
// Runs the method's `check` on resolved parameters (nothing when it has none).
void check_kv_params(const std::string& method, const ParamValues& params);

}  // namespace kvlab::kv

// One line in the method's own .cpp: KVLAB_REGISTER_KV_METHOD(full_cache, make_full_cache_method());
#define KVLAB_REGISTER_KV_METHOD(id, expr) \
  static const bool kvlab_kv_registered_##id = ::kvlab::kv::KvRegistry::instance().add(expr)
