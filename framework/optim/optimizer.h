// The Optimizer interface every optimizer plugs into (DESIGN.md section 2): AdamW, SGC, GaLore,
// LoRA's optimizer side. Parameters are f32 master weights in blocks (one per model tensor);
// gradients arrive as f32 of the same shape. The training loop owns the learning-rate schedule
// and gradient clipping and passes the step's learning rate in.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "framework/core/params.h"
#include "framework/core/trace_sink.h"

namespace kvlab::optim {

// One trainable tensor. data and grad are contiguous f32 of numel = prod(shape) elements.
struct ParamBlock {
  std::string name;            // Hugging Face tensor name, e.g. "model.layers.0.mlp.up_proj.weight"
  float* data = nullptr;
  const float* grad = nullptr;
  std::vector<int64_t> shape;  // [rows, cols] for matrices, [n] for vectors
  bool weight_decay = true;    // false for norms and biases (the usual AdamW exclusion)
  int64_t numel() const {
    int64_t n = 1;
    for (auto s : shape) n *= s;
    return n;
  }
};

// A named piece of optimizer state, exposed so checkpoints save and restore it bit-exactly.
struct StateTensor {
  std::string name;  // unique within the optimizer, e.g. "m/model.norm.weight"
  float* data = nullptr;
  int64_t numel = 0;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // One update of every block with learning rate lr (already scheduled). Blocks come in the same
  // order and shapes on every call; state is created lazily on the first call.
  virtual void step(std::span<ParamBlock> params, double lr) = 0;
  // Allocates the (zero) state for `params` — what step() does lazily on its first call — so a
  // checkpoint can be loaded into a fresh optimizer. Idempotent for the same blocks; an error
  // naming the block if names or sizes differ from the state already held.
  virtual void prepare(std::span<const ParamBlock> params) = 0;
  // Exact bytes of optimizer state held now (moments, projections, buffers).
  virtual int64_t state_bytes() const = 0;
  // All state, for checkpoints; after a restore the next step() continues exactly.
  virtual std::vector<StateTensor> state() = 0;
  virtual int64_t step_count() const = 0;
  virtual void set_step_count(int64_t n) = 0;
  virtual void trace(TraceSink& sink) const {}
};

struct OptimizerMethod {
  std::string name;
  std::string help;
  std::vector<ParamDecl> params;
  std::function<std::unique_ptr<Optimizer>(const ParamValues&)> make;
};

class OptimizerRegistry {
 public:
  static OptimizerRegistry& instance();
  bool add(OptimizerMethod m);
  const OptimizerMethod& find(const std::string& name) const;  // "did you mean" on a miss
  std::vector<std::string> names() const;

 private:
  std::vector<OptimizerMethod> items_;
};

}  // namespace kvlab::optim

#define KVLAB_REGISTER_OPTIMIZER(id, expr) \
  static const bool kvlab_optimizer_registered_##id = \
      ::kvlab::optim::OptimizerRegistry::instance().add(expr)
