#include "framework/model/llama_train.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <vector>

#include "framework/backend/cpu/gemm.h"
#include "framework/backend/cpu/train_kernels.h"
#include "framework/core/error.h"
#include "framework/core/file_io.h"
#include "framework/core/params.h"
#include "framework/core/rng.h"
#include "framework/model/safetensors.h"

namespace kvlab::model {

namespace fs = std::filesystem;

namespace {

constexpr int64_t kHeadChunk = 1024;  // rows of [N, V] logits materialised at once

// OpenBLAS's thread count is process-global; set for the scope of one call, then restored.
class BlasThreads {
 public:
  explicit BlasThreads(int n) : prev_(openblas_get_num_threads()) { openblas_set_num_threads(n); }
  ~BlasThreads() { openblas_set_num_threads(prev_); }
  BlasThreads(const BlasThreads&) = delete;
  BlasThreads& operator=(const BlasThreads&) = delete;

 private:
  int prev_;
};

int I(int64_t x) { return static_cast<int>(x); }

// GEMMs run single-threaded in OpenBLAS, split over the ThreadPool by independent output rows
// (OpenBLAS's own threads spin in sched_yield between calls and compete with the pool's
// attention work on a 2-core machine). Splits below kMinRows rows per worker are not made.
constexpr int64_t kMinRows = 64;

void split(ThreadPool& pool, int64_t M, const std::function<void(int64_t, int64_t)>& fn) {
  if (pool.threads() == 1 || M < 2 * kMinRows) {
    fn(0, M);
    return;
  }
  pool.parallel_for(M, [&](int64_t m0, int64_t m1, int) {
    if (m1 > m0) fn(m0, m1);
  });
}

// With AVX-512 active every product runs on kvlab's packed SGEMM (cpu::gemm_nt / gemm_nn /
// gemm_tn, ~5x OpenBLAS's SSE3 kernels here; gemm_nn and gemm_tn pack straight from memory, no
// transposed copies). The partition depends only on the thread count: results are deterministic.
// Without AVX-512 the OpenBLAS path below is used unchanged.
bool use_packed() { return cpu::gemm_nt_available(); }


// C[M, N] = A[M, K] . B[N, K]^T + beta C   (forward of y = x W^T: 2 M N K flops); beta 0 or 1.
void gemm_nt(ThreadPool& pool, const float* A, const float* B, float* C, int64_t M, int64_t N,
             int64_t K, float beta) {
  if (use_packed()) {
    cpu::gemm_nt(A, K, M, MatRef{B, DType::kF32, N, K, K}, C, N, pool, beta != 0.f);
    return;
  }
  split(pool, M, [&](int64_t m0, int64_t m1) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, I(m1 - m0), I(N), I(K), 1.f, A + m0 * K,
                I(K), B, I(K), beta, C + m0 * N, I(N));
  });
}
// C[M, K] = A[M, N] . B[N, K] + beta C   (dx = dy W); beta 0 or 1.
void gemm_nn(ThreadPool& pool, const float* A, const float* B, float* C, int64_t M, int64_t N,
             int64_t K, float beta) {
  if (use_packed()) {
    cpu::gemm_nn(A, N, B, K, M, N, K, C, K, pool, beta != 0.f);
    return;
  }
  split(pool, M, [&](int64_t m0, int64_t m1) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, I(m1 - m0), I(K), I(N), 1.f,
                A + m0 * N, I(N), B, I(K), beta, C + m0 * K, I(K));
  });
}
// C[N, K] += A[M, N]^T . B[M, K]   (dW += dy^T x), split over the N rows of C.
void gemm_tn_acc(ThreadPool& pool, const float* A, const float* B, float* C, int64_t M, int64_t N,
                 int64_t K) {
  if (use_packed()) {
    if (M == 0) return;
    cpu::gemm_tn(A, N, B, K, M, N, K, C, K, pool, true);
    return;
  }
  split(pool, N, [&](int64_t n0, int64_t n1) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, I(n1 - n0), I(K), I(M), 1.f, A + n0,
                I(N), B, I(K), 1.f, C + n0 * K, I(K));
  });
}

// y[N, n] += b[n]
void add_bias(float* y, const float* b, int64_t N, int64_t n) {
  for (int64_t t = 0; t < N; ++t)
    for (int64_t i = 0; i < n; ++i) y[t * n + i] += b[i];
}
// db[n] += sum_t dy[t, n]
void bias_grad(const float* dy, float* db, int64_t N, int64_t n) {
  for (int64_t t = 0; t < N; ++t)
    for (int64_t i = 0; i < n; ++i) db[i] += dy[t * n + i];
}

}  // namespace

const char* lora_target_hf(LoraTarget t) {
  static const char* kNames[kLoraTargets] = {"self_attn.q_proj", "self_attn.k_proj",
                                             "self_attn.v_proj", "self_attn.o_proj",
                                             "mlp.gate_proj",    "mlp.up_proj",
                                             "mlp.down_proj"};
  return kNames[static_cast<int>(t)];
}

namespace {
uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
const char* kLoraShort[kLoraTargets] = {"q", "k", "v", "o", "gate", "up", "down"};
}  // namespace

uint64_t lora_mask_key(uint64_t seed, uint64_t call, int64_t layer, LoraTarget target) {
  return mix64(mix64(mix64(seed) ^ call) ^
               (static_cast<uint64_t>(layer) * 8 + static_cast<uint64_t>(target)));
}

// One adapted projection W [out, in] of one layer (methods.md 3.4: r (in + out) trainable floats).
struct TrainModel::Adapter {
  bool on = false;
  LoraTarget target = LoraTarget::kQ;
  int64_t in = 0, out = 0;
  float *A = nullptr, *B = nullptr;    // [r, in], [out, r]
  float *dA = nullptr, *dB = nullptr;  // gradients, same shapes
  float* W = nullptr;                  // the frozen base weight [out, in]
};

struct TrainModel::Layer {
  // Parameter and gradient pointers (bias pointers null when absent).
  float *attn_norm, *wq, *wk, *wv, *wo, *bq, *bk, *bv, *bo, *mlp_norm, *wg, *wu, *wd;
  float *d_attn_norm, *dwq, *dwk, *dwv, *dwo, *dbq, *dbk, *dbv, *dbo, *d_mlp_norm, *dwg, *dwu,
      *dwd;
};

// Saved activations of one layer for N = B*T rows.
struct LayerActs {
  float* xin;    // [N, C] residual entering the layer
  float* rstd1;  // [N]
  float* xn1;    // [N, C]
  float* q;      // [N, H*D] post-RoPE
  float* k;      // [N, G*D] post-RoPE
  float* v;      // [N, G*D]
  float* att;    // [N, H*D] attention output (pre o_proj)
  float* lse;    // [N, H]
  float* xmid;   // [N, C] residual after attention
  float* rstd2;  // [N]
  float* xn2;    // [N, C]
  float* gate;   // [N, F]
  float* up;     // [N, F]
};

struct TrainModel::Acts {
  int64_t cap = 0;  // rows (B*T) the buffers hold
  bool saved = false;
  Buffer layer_buf, misc;
  std::vector<LayerActs> layers;  // L entries when saved, else 1 (reused by every layer)
  float *x = nullptr;             // [N, C] residual (no-save mode) / final residual
  float *rstdf = nullptr, *xnf = nullptr;
  // backward scratch
  float *dx, *dxn, *dq, *dk, *dv, *datt, *dg, *du, *act, *attn_ws, *norm_ws, *logits;
  std::vector<int32_t> pos;  // [N] t within its sequence
  std::vector<float> dw_scratch;  // [C]: RMSNorm weight gradient of a frozen base, discarded
  // LoRA: us [slot][target] -> [rows, r] (slot = layer when saved, else 0); x_drop, tmp
  // [rows, max_in] (dropped adapter input; dx before the dropout mask); du [rows, r].
  Buffer lora_buf;
  int64_t lora_rows = 0, lora_slots = 0;
  std::vector<std::vector<float*>> lora_us;
  float *lora_x = nullptr, *lora_tmp = nullptr, *lora_du = nullptr;
};

TrainModel::TrainModel(const ModelConfig& cfg, ThreadPool& pool, bool base_grads)
    : cfg_(cfg), pool_(pool), acts_(std::make_unique<Acts>()) {
  cfg_.validate("TrainModel");
  if (cfg_.mlp_bias) fail("TrainModel: mlp_bias=true is not supported");
  if (cfg_.sliding_window > 0)
    fail("TrainModel: sliding_window = ", cfg_.sliding_window, " is not supported (full causal attention only)");
  rope_ = std::make_unique<cpu::Rope>(cfg_.rope);
  build_params(base_grads);
}

TrainModel::~TrainModel() = default;

void TrainModel::build_params(bool base_grads) {
  const ModelConfig& c = cfg_;
  const int64_t C = c.hidden_size, F = c.intermediate_size, V = c.vocab_size;
  const int64_t H = c.num_attention_heads, G = c.num_key_value_heads, D = c.head_dim;
  struct Spec {
    std::string name;
    std::vector<int64_t> shape;
    bool matrix;
  };
  std::vector<Spec> specs;
  specs.push_back({"model.embed_tokens.weight", {V, C}, true});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    specs.push_back({p + "input_layernorm.weight", {C}, false});
    specs.push_back({p + "self_attn.q_proj.weight", {H * D, C}, true});
    specs.push_back({p + "self_attn.k_proj.weight", {G * D, C}, true});
    specs.push_back({p + "self_attn.v_proj.weight", {G * D, C}, true});
    specs.push_back({p + "self_attn.o_proj.weight", {C, H * D}, true});
    if (c.attention_bias) {
      specs.push_back({p + "self_attn.q_proj.bias", {H * D}, false});
      specs.push_back({p + "self_attn.k_proj.bias", {G * D}, false});
      specs.push_back({p + "self_attn.v_proj.bias", {G * D}, false});
    }
    if (c.o_proj_bias) specs.push_back({p + "self_attn.o_proj.bias", {C}, false});
    specs.push_back({p + "post_attention_layernorm.weight", {C}, false});
    specs.push_back({p + "mlp.gate_proj.weight", {F, C}, true});
    specs.push_back({p + "mlp.up_proj.weight", {F, C}, true});
    specs.push_back({p + "mlp.down_proj.weight", {C, F}, true});
  }
  specs.push_back({"model.norm.weight", {C}, false});
  if (!c.tie_word_embeddings) specs.push_back({"lm_head.weight", {V, C}, true});

  int64_t total = 0;
  for (const auto& s : specs) {
    int64_t n = 1;
    for (int64_t d : s.shape) n *= d;
    total += (n + 15) / 16 * 16;  // 64-byte aligned starts
  }
  data_.resize(static_cast<size_t>(total));
  if (base_grads) grad_.resize(static_cast<size_t>(total));  // zeroed by Buffer
  std::memset(data_.data(), 0, sizeof(float) * static_cast<size_t>(total));
  int64_t off = 0;
  params_.clear();
  for (const auto& s : specs) {
    TrainParam p{s.name, data_.data() + off, base_grads ? grad_.data() + off : nullptr, s.shape,
                 s.matrix};
    off += (p.numel() + 15) / 16 * 16;
    params_.push_back(std::move(p));
  }
  auto find = [&](const std::string& name, bool data) -> float* {
    for (auto& p : params_)
      if (p.name == name) return data ? p.data : p.grad;
    return nullptr;
  };
  embed_ = find("model.embed_tokens.weight", true);
  dembed_ = find("model.embed_tokens.weight", false);
  final_norm_ = find("model.norm.weight", true);
  dfinal_norm_ = find("model.norm.weight", false);
  head_ = c.tie_word_embeddings ? embed_ : find("lm_head.weight", true);
  dhead_ = c.tie_word_embeddings ? dembed_ : find("lm_head.weight", false);
  layers_.resize(static_cast<size_t>(c.num_hidden_layers));
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    Layer& L = layers_[static_cast<size_t>(i)];
    auto both = [&](const std::string& n, float*& w, float*& g) {
      w = find(p + n, true);
      g = find(p + n, false);
    };
    both("input_layernorm.weight", L.attn_norm, L.d_attn_norm);
    both("self_attn.q_proj.weight", L.wq, L.dwq);
    both("self_attn.k_proj.weight", L.wk, L.dwk);
    both("self_attn.v_proj.weight", L.wv, L.dwv);
    both("self_attn.o_proj.weight", L.wo, L.dwo);
    both("self_attn.q_proj.bias", L.bq, L.dbq);
    both("self_attn.k_proj.bias", L.bk, L.dbk);
    both("self_attn.v_proj.bias", L.bv, L.dbv);
    both("self_attn.o_proj.bias", L.bo, L.dbo);
    both("post_attention_layernorm.weight", L.mlp_norm, L.d_mlp_norm);
    both("mlp.gate_proj.weight", L.wg, L.dwg);
    both("mlp.up_proj.weight", L.wu, L.dwu);
    both("mlp.down_proj.weight", L.wd, L.dwd);
  }
}

TrainModel::TrainModel(const ModelConfig& cfg, uint64_t seed, double init_std, ThreadPool& pool)
    : TrainModel(cfg, pool) {
  if (!(init_std >= 0)) fail("TrainModel: init_std (", init_std, ") must be >= 0");
  Rng rng(seed);
  for (auto& p : params_) {
    const bool norm = p.name.find("norm.weight") != std::string::npos;
    const int64_t n = p.numel();
    for (int64_t i = 0; i < n; ++i)
      p.data[i] = norm ? 1.f : static_cast<float>(init_std * rng.normal());
  }
}

std::unique_ptr<TrainModel> TrainModel::load(const std::string& dir, ThreadPool& pool,
                                             bool base_grads) {
  if (!fs::is_directory(dir)) fail(dir, ": not a model directory (expected config.json and model.safetensors)");
  const ModelConfig cfg = load_model_config((fs::path(dir) / "config.json").string());
  std::unique_ptr<TrainModel> m(new TrainModel(cfg, pool, base_grads));
  const SafeTensors st = SafeTensors::open(dir);
  for (auto& p : m->params_) {
    const TensorInfo& t = st.get(p.name);
    if (t.shape != p.shape) {
      std::string want, got;
      for (int64_t d : p.shape) want += (want.empty() ? "" : ", ") + std::to_string(d);
      for (int64_t d : t.shape) got += (got.empty() ? "" : ", ") + std::to_string(d);
      fail(t.file, ": tensor ", p.name, " has shape [", got, "], config.json implies [", want, "]");
    }
    if (t.dtype != DType::kF32 && t.dtype != DType::kBF16 && t.dtype != DType::kF16)
      fail(t.file, ": tensor ", p.name, " has dtype ", dtype_name(t.dtype), " (want f32/bf16/f16)");
    to_f32(t.dtype, t.data, p.data, static_cast<size_t>(p.numel()));
  }
  return m;
}

void TrainModel::zero_grad() {
  if (grad_.size()) std::memset(grad_.data(), 0, sizeof(float) * grad_.size());
  if (lora_grad_.size()) std::memset(lora_grad_.data(), 0, sizeof(float) * lora_grad_.size());
}

double TrainModel::lora_scale() const {
  return lora_cfg_.alpha / static_cast<double>(lora_cfg_.rank);
}

int64_t TrainModel::trainable_params() const {
  if (!lora_on_) return base_frozen() ? 0 : num_params();
  int64_t n = 0;
  for (const auto& p : lora_params_) n += p.numel();
  return n;
}

void TrainModel::enable_lora(const LoraConfig& c) {
  if (lora_on_) fail("enable_lora: LoRA adapters are already enabled on this model");
  if (c.rank < 1) fail("lora.rank = ", c.rank, ": must be >= 1");
  if (!(c.alpha > 0)) fail("lora.alpha = ", c.alpha, ": must be > 0");
  if (!(c.dropout >= 0 && c.dropout < 1)) fail("lora.dropout = ", c.dropout, ": must be in [0, 1)");
  if (c.targets.empty()) fail("lora.target_modules is empty: name at least one of q,k,v,o,gate,up,down");
  bool want[kLoraTargets] = {};
  std::vector<std::string> known;
  for (int t = 0; t < kLoraTargets; ++t) {
    known.push_back(kLoraShort[t]);
    known.push_back(std::string(kLoraShort[t]) + "_proj");
  }
  for (const auto& name : c.targets) {
    int hit = -1;
    for (int t = 0; t < kLoraTargets; ++t)
      if (name == kLoraShort[t] || name == std::string(kLoraShort[t]) + "_proj") hit = t;
    if (hit < 0) {
      std::string msg = str("lora.target_modules: unknown module '", name, "'");
      if (auto s = did_you_mean(name, known)) msg += str(" (did you mean '", *s, "'?)");
      fail(msg, "; known: q,k,v,o,gate,up,down (or q_proj, ...)");
    }
    if (want[hit]) fail("lora.target_modules: '", name, "' is named twice");
    want[hit] = true;
  }
  const ModelConfig& m = cfg_;
  const int64_t C = m.hidden_size, F = m.intermediate_size;
  const int64_t HD = m.num_attention_heads * m.head_dim, GD = m.num_key_value_heads * m.head_dim;
  const int64_t shape[kLoraTargets][2] = {{HD, C}, {GD, C}, {GD, C}, {C, HD},
                                          {F, C},  {F, C},  {C, F}};  // [out, in]
  const int64_t r = c.rank, L = m.num_hidden_layers;
  auto pad = [](int64_t n) { return (n + 15) / 16 * 16; };
  int64_t total = 0;
  for (int t = 0; t < kLoraTargets; ++t)
    if (want[t]) total += L * (pad(r * shape[t][1]) + pad(shape[t][0] * r));
  lora_data_.resize(static_cast<size_t>(total));
  lora_grad_.resize(static_cast<size_t>(total));
  lora_params_.clear();
  adapters_.assign(static_cast<size_t>(L), std::vector<Adapter>(kLoraTargets));
  int64_t off = 0;
  for (int64_t l = 0; l < L; ++l) {
    const Layer& W = layers_[static_cast<size_t>(l)];
    float* base[kLoraTargets] = {W.wq, W.wk, W.wv, W.wo, W.wg, W.wu, W.wd};
    for (int t = 0; t < kLoraTargets; ++t) {
      if (!want[t]) continue;
      Adapter& ad = adapters_[static_cast<size_t>(l)][static_cast<size_t>(t)];
      ad.on = true;
      ad.target = static_cast<LoraTarget>(t);
      ad.out = shape[t][0];
      ad.in = shape[t][1];
      ad.W = base[t];
      const std::string p = str("model.layers.", l, ".", lora_target_hf(ad.target), ".");
      ad.A = lora_data_.data() + off;
      ad.dA = lora_grad_.data() + off;
      lora_params_.push_back({p + "lora_A.weight", ad.A, ad.dA, {r, ad.in}, true});
      off += pad(r * ad.in);
      ad.B = lora_data_.data() + off;
      ad.dB = lora_grad_.data() + off;
      lora_params_.push_back({p + "lora_B.weight", ad.B, ad.dB, {ad.out, r}, true});
      off += pad(ad.out * r);
    }
  }
  // PEFT reset_lora_parameters: kaiming_uniform_(A, a=sqrt(5)) -> U(-b, b), b = gain sqrt(3 /
  // fan_in), gain = sqrt(2 / (1 + 5)): b = 1/sqrt(in); B = 0 (so the model starts unchanged).
  Rng rng(c.seed);
  for (auto& p : lora_params_) {
    if (p.name.find("lora_A") == std::string::npos) continue;
    const double b = 1.0 / std::sqrt(static_cast<double>(p.shape[1]));
    for (int64_t i = 0; i < p.numel(); ++i)
      p.data[i] = static_cast<float>((2.0 * rng.uniform() - 1.0) * b);
  }
  // Freeze the base: no gradient buffer, no gradient pointers (backward skips every dW).
  grad_ = Buffer();
  for (auto& p : params_) p.grad = nullptr;
  dembed_ = dfinal_norm_ = dhead_ = nullptr;
  for (Layer& W : layers_) {
    W.d_attn_norm = W.dwq = W.dwk = W.dwv = W.dwo = W.dbq = W.dbk = W.dbv = W.dbo = nullptr;
    W.d_mlp_norm = W.dwg = W.dwu = W.dwd = nullptr;
  }
  lora_cfg_ = c;
  lora_on_ = true;
  lora_calls_ = 0;
}

void TrainModel::merged_weight(const Adapter& ad, float* w) const {
  const int64_t r = lora_cfg_.rank;
  const float s = static_cast<float>(lora_scale());
  std::vector<float> bs(static_cast<size_t>(ad.out * r));  // scale * B [out, r]
  for (int64_t i = 0; i < ad.out * r; ++i) bs[static_cast<size_t>(i)] = s * ad.B[i];
  BlasThreads bt(1);
  gemm_nn(pool_, bs.data(), ad.A, w, ad.out, r, ad.in, 1.f);  // w [out, in] += sB [out, r] A [r, in]
}

void TrainModel::merge_lora() {
  if (!lora_on_) fail("merge_lora: no LoRA adapters are enabled");
  for (const auto& layer : adapters_)
    for (const Adapter& ad : layer)
      if (ad.on) merged_weight(ad, ad.W);
  lora_on_ = false;
  adapters_.clear();
  lora_params_.clear();
  lora_data_ = Buffer();
  lora_grad_ = Buffer();
  acts_->lora_buf = Buffer();
  acts_->lora_rows = acts_->lora_slots = 0;
}

void TrainModel::ensure_lora(int64_t rows, int64_t slots) {
  Acts& a = *acts_;
  if (rows <= a.lora_rows && slots <= a.lora_slots) return;
  a.lora_rows = std::max(rows, a.lora_rows);
  a.lora_slots = std::max(slots, a.lora_slots);
  const ModelConfig& c = cfg_;
  const int64_t r = lora_cfg_.rank, n = a.lora_rows;
  const int64_t max_in = std::max({c.hidden_size, c.intermediate_size,
                                   c.num_attention_heads * c.head_dim});
  a.lora_buf = Buffer();
  a.lora_buf.resize(static_cast<size_t>(a.lora_slots * kLoraTargets * n * r + 2 * n * max_in + n * r));
  float* p = a.lora_buf.data();
  a.lora_us.assign(static_cast<size_t>(a.lora_slots), std::vector<float*>(kLoraTargets));
  for (auto& slot : a.lora_us)
    for (auto& u : slot) {
      u = p;
      p += n * r;
    }
  a.lora_x = p;
  p += n * max_in;
  a.lora_tmp = p;
  p += n * max_in;
  a.lora_du = p;
}

namespace {
// out [N, in] = keep(row, col) ? x * inv : 0 (the mask of lora_keep).
void lora_dropout(const float* x, float* out, int64_t N, int64_t in, uint64_t key, uint64_t thr,
                  float inv, ThreadPool& pool) {
  pool.parallel_for(N, [&](int64_t r0, int64_t r1, int) {
    for (int64_t t = r0; t < r1; ++t)
      for (int64_t i = 0; i < in; ++i) {
        const uint64_t flat = static_cast<uint64_t>(t * in + i);
        out[t * in + i] = lora_keep(key, flat, thr) ? x[t * in + i] * inv : 0.f;
      }
  });
}
}  // namespace

void TrainModel::lora_fwd(const Adapter& ad, int64_t layer, const float* x, float* y, int64_t N,
                          float* us, bool train) {
  const int64_t r = lora_cfg_.rank;
  const float scale = static_cast<float>(lora_scale());
  const float* xd = x;
  if (train && lora_cfg_.dropout > 0) {
    const uint64_t thr = static_cast<uint64_t>(std::llround(lora_cfg_.dropout * 16777216.0));
    const float inv = static_cast<float>(1.0 / (1.0 - lora_cfg_.dropout));
    lora_dropout(x, acts_->lora_x, N, ad.in,
                 lora_mask_key(lora_cfg_.seed, lora_calls_, layer, ad.target), thr, inv, pool_);
    xd = acts_->lora_x;
  }
  gemm_nt(pool_, xd, ad.A, us, N, r, ad.in, 0.f);  // [N, r] = drop(x) A^T: 2 N r in flops
  for (int64_t i = 0; i < N * r; ++i) us[i] *= scale;
  gemm_nt(pool_, us, ad.B, y, N, ad.out, r, 1.f);  // y += us B^T: 2 N out r flops
}

void TrainModel::lora_bwd(const Adapter& ad, int64_t layer, const float* x, const float* us,
                          const float* dy, float* dx_acc, int64_t N) {
  const int64_t r = lora_cfg_.rank;
  const float scale = static_cast<float>(lora_scale());
  float* du = acts_->lora_du;
  gemm_tn_acc(pool_, dy, us, ad.dB, N, ad.out, r);  // dB [out, r] += dy^T us
  gemm_nn(pool_, dy, ad.B, du, N, ad.out, r, 0.f);  // d(us) [N, r] = dy B
  for (int64_t i = 0; i < N * r; ++i) du[i] *= scale;  // d(drop(x) A^T)
  if (lora_cfg_.dropout > 0) {
    const uint64_t thr = static_cast<uint64_t>(std::llround(lora_cfg_.dropout * 16777216.0));
    const float inv = static_cast<float>(1.0 / (1.0 - lora_cfg_.dropout));
    const uint64_t key = lora_mask_key(lora_cfg_.seed, lora_calls_, layer, ad.target);
    lora_dropout(x, acts_->lora_x, N, ad.in, key, thr, inv, pool_);  // recomputed, not saved
    gemm_tn_acc(pool_, du, acts_->lora_x, ad.dA, N, r, ad.in);    // dA [r, in] += du^T drop(x)
    float* tmp = acts_->lora_tmp;
    gemm_nn(pool_, du, ad.A, tmp, N, r, ad.in, 0.f);  // d(drop(x)) [N, in] = du A
    pool_.parallel_for(N, [&](int64_t r0, int64_t r1, int) {
      for (int64_t t = r0; t < r1; ++t)
        for (int64_t i = 0; i < ad.in; ++i)
          if (lora_keep(key, static_cast<uint64_t>(t * ad.in + i), thr))
            dx_acc[t * ad.in + i] += inv * tmp[t * ad.in + i];
    });
  } else {
    gemm_tn_acc(pool_, du, x, ad.dA, N, r, ad.in);  // dA [r, in] += du^T x
    gemm_nn(pool_, du, ad.A, dx_acc, N, r, ad.in, 1.f);  // dx += du A
  }
}

void TrainModel::ensure(int64_t B, int64_t T, bool save) {
  const ModelConfig& c = cfg_;
  const int64_t N = B * T;
  Acts& a = *acts_;
  a.pos.resize(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) a.pos[static_cast<size_t>(i)] = static_cast<int32_t>(i % T);
  if (N <= a.cap && (a.saved || !save)) return;
  const int64_t C = c.hidden_size, F = c.intermediate_size, V = c.vocab_size;
  const int64_t H = c.num_attention_heads, G = c.num_key_value_heads, D = c.head_dim;
  const int64_t L = c.num_hidden_layers;
  const int64_t HD = H * D, GD = G * D;
  a.cap = std::max(N, a.cap);
  a.saved = a.saved || save;
  const int64_t n = a.cap;
  const int64_t per_layer = n * (4 * C + 2 + 2 * HD + 2 * GD + H + 2 * F);
  const int64_t n_slots = a.saved ? L : 1;
  a.layer_buf = Buffer();
  a.layer_buf.resize(static_cast<size_t>(per_layer * n_slots));
  a.layers.assign(static_cast<size_t>(n_slots), LayerActs{});
  for (int64_t l = 0; l < n_slots; ++l) {
    float* p = a.layer_buf.data() + l * per_layer;
    auto take = [&](int64_t cnt) {
      float* r = p;
      p += cnt;
      return r;
    };
    LayerActs& la = a.layers[static_cast<size_t>(l)];
    la.xin = take(n * C);
    la.rstd1 = take(n);
    la.xn1 = take(n * C);
    la.q = take(n * HD);
    la.k = take(n * GD);
    la.v = take(n * GD);
    la.att = take(n * HD);
    la.lse = take(n * H);
    la.xmid = take(n * C);
    la.rstd2 = take(n);
    la.xn2 = take(n * C);
    la.gate = take(n * F);
    la.up = take(n * F);
  }
  const cpu::AttentionShape sh{H, G, D, 0.f};
  const int64_t attn_ws = cpu::attention_bwd_ws_floats(1, n, sh);
  const int64_t norm_ws = static_cast<int64_t>(pool_.threads()) * C;
  const int64_t chunk = std::min(n, kHeadChunk);
  const int64_t misc = n * C * 3 + n + (a.saved ? n * (C + HD * 2 + GD * 2 + F * 3) + attn_ws
                                                 : 0) +
                       norm_ws + chunk * V;
  a.misc = Buffer();
  a.misc.resize(static_cast<size_t>(misc));
  float* p = a.misc.data();
  auto take = [&](int64_t cnt) {
    float* r = p;
    p += cnt;
    return r;
  };
  a.x = take(n * C);
  a.rstdf = take(n);
  a.xnf = take(n * C);
  a.dxn = take(n * C);
  a.norm_ws = take(norm_ws);
  a.logits = take(chunk * V);
  a.dx = a.dq = a.dk = a.dv = a.datt = a.dg = a.du = a.act = a.attn_ws = nullptr;
  if (a.saved) {
    a.dx = take(n * C);
    a.dq = take(n * HD);
    a.dk = take(n * GD);
    a.dv = take(n * GD);
    a.datt = take(n * HD);
    a.dg = take(n * F);
    a.du = take(n * F);
    a.act = take(n * F);
    a.attn_ws = take(attn_ws);
  }
}

void TrainModel::forward(const int32_t* tokens, int64_t B, int64_t T, bool save) {
  const ModelConfig& c = cfg_;
  const int64_t C = c.hidden_size, F = c.intermediate_size, V = c.vocab_size;
  const int64_t H = c.num_attention_heads, G = c.num_key_value_heads, D = c.head_dim;
  const int64_t HD = H * D, GD = G * D, N = B * T;
  const float eps = static_cast<float>(c.rms_norm_eps);
  Acts& a = *acts_;
  // Residual stream: saved mode keeps x_in / x_mid per layer; otherwise one buffer, in place.
  float* x0 = save ? a.layers[0].xin : a.x;
  for (int64_t i = 0; i < N; ++i) {
    if (tokens[i] < 0 || tokens[i] >= V)
      fail("TrainModel: token id ", tokens[i], " at row ", i, " is outside the vocabulary [0, ", V, ")");
    std::memcpy(x0 + i * C, embed_ + static_cast<int64_t>(tokens[i]) * C, sizeof(float) * C);
  }
  const cpu::AttentionShape sh{H, G, D, 1.0f / std::sqrt(static_cast<float>(D))};
  if (lora_on_) ensure_lora(a.cap, save ? c.num_hidden_layers : 1);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const Layer& W = layers_[static_cast<size_t>(l)];
    LayerActs& A = a.layers[save ? static_cast<size_t>(l) : 0];
    // LoRA adapters of this layer (none when off) and their saved us [N, r].
    const Adapter* ad = lora_on_ ? adapters_[static_cast<size_t>(l)].data() : nullptr;
    float* const* us = lora_on_ ? a.lora_us[save ? static_cast<size_t>(l) : 0].data() : nullptr;
    auto adapt = [&](LoraTarget t, const float* x, float* y) {
      const int i = static_cast<int>(t);
      if (ad && ad[i].on) lora_fwd(ad[i], l, x, y, N, us[i], lora_train_);
    };
    float* xin = save ? A.xin : a.x;
    float* xmid = save ? A.xmid : a.x;
    float* xout = save ? (l + 1 < c.num_hidden_layers ? a.layers[static_cast<size_t>(l + 1)].xin : a.x)
                       : a.x;
    cpu::rmsnorm_fwd(xin, N, C, W.attn_norm, eps, A.xn1, A.rstd1, pool_);
    gemm_nt(pool_, A.xn1, W.wq, A.q, N, HD, C, 0.f);
    gemm_nt(pool_, A.xn1, W.wk, A.k, N, GD, C, 0.f);
    gemm_nt(pool_, A.xn1, W.wv, A.v, N, GD, C, 0.f);
    adapt(LoraTarget::kQ, A.xn1, A.q);
    adapt(LoraTarget::kK, A.xn1, A.k);
    adapt(LoraTarget::kV, A.xn1, A.v);
    if (W.bq) {
      add_bias(A.q, W.bq, N, HD);
      add_bias(A.k, W.bk, N, GD);
      add_bias(A.v, W.bv, N, GD);
    }
    rope_->apply(A.q, N, H, a.pos.data());
    rope_->apply(A.k, N, G, a.pos.data());
    cpu::attention_fwd(A.q, A.k, A.v, B, T, sh, A.att, A.lse, pool_);
    // xmid = xin + att . Wo^T (+ bo): o_proj output goes to xn2 as scratch.
    gemm_nt(pool_, A.att, W.wo, A.xn2, N, C, HD, 0.f);
    adapt(LoraTarget::kO, A.att, A.xn2);
    if (W.bo) add_bias(A.xn2, W.bo, N, C);
    for (int64_t i = 0; i < N * C; ++i) xmid[i] = xin[i] + A.xn2[i];
    cpu::rmsnorm_fwd(xmid, N, C, W.mlp_norm, eps, A.xn2, A.rstd2, pool_);
    gemm_nt(pool_, A.xn2, W.wg, A.gate, N, F, C, 0.f);
    gemm_nt(pool_, A.xn2, W.wu, A.up, N, F, C, 0.f);
    adapt(LoraTarget::kGate, A.xn2, A.gate);
    adapt(LoraTarget::kUp, A.xn2, A.up);
    // h [N, F] = silu(gate) * up: into act when saved (backward recomputes it anyway), else
    // over up (eval mode needs neither afterwards).
    float* h = save ? a.act : A.up;
    pool_.parallel_for(N, [&](int64_t r0, int64_t r1, int) {
      cpu::swiglu(A.gate + r0 * F, A.up + r0 * F, h + r0 * F, (r1 - r0) * F);
    });
    // xout = xmid + h . Wd^T
    if (xout != xmid) std::memcpy(xout, xmid, sizeof(float) * N * C);
    gemm_nt(pool_, h, W.wd, xout, N, C, F, 1.f);
    adapt(LoraTarget::kDown, h, xout);
  }
  cpu::rmsnorm_fwd(a.x, N, C, final_norm_, eps, a.xnf, a.rstdf, pool_);
}

double TrainModel::head_loss(const int32_t* targets, const float* w, int64_t N, bool grad) {
  const int64_t C = cfg_.hidden_size, V = cfg_.vocab_size;
  Acts& a = *acts_;
  double norm = 0;
  for (int64_t i = 0; i < N; ++i)
    if (targets[i] >= 0) norm += w ? w[i] : 1.0;
  if (norm == 0) return 0.0;
  double loss = 0;
  for (int64_t r0 = 0; r0 < N; r0 += kHeadChunk) {
    const int64_t rows = std::min(kHeadChunk, N - r0);
    gemm_nt(pool_, a.xnf + r0 * C, head_, a.logits, rows, V, C, 0.f);
    loss += cpu::cross_entropy_rows(a.logits, targets + r0, w ? w + r0 : nullptr, rows, V,
                                    1.0 / norm, grad, pool_);
    if (grad) {
      gemm_nn(pool_, a.logits, head_, a.dxn + r0 * C, rows, V, C, 0.f);
      if (dhead_) gemm_tn_acc(pool_, a.logits, a.xnf + r0 * C, dhead_, rows, V, C);
    }
  }
  return loss / norm;
}

void TrainModel::backward(const int32_t* tokens, int64_t B, int64_t T) {
  const ModelConfig& c = cfg_;
  const int64_t C = c.hidden_size, F = c.intermediate_size;
  const int64_t H = c.num_attention_heads, G = c.num_key_value_heads, D = c.head_dim;
  const int64_t HD = H * D, GD = G * D, N = B * T;
  Acts& a = *acts_;
  const cpu::AttentionShape sh{H, G, D, 1.0f / std::sqrt(static_cast<float>(D))};
  // dx: gradient w.r.t. the residual stream, walked from the top.
  std::memset(a.dx, 0, sizeof(float) * N * C);
  // A frozen base (LoRA) has null weight gradients: its matrix dW products are skipped; RMSNorm's
  // weight gradient (C floats, computed with dx by the same kernel) goes to a discarded scratch.
  a.dw_scratch.assign(static_cast<size_t>(C), 0.f);
  auto dw_or_scratch = [&](float* g) { return g ? g : a.dw_scratch.data(); };
  cpu::rmsnorm_bwd(a.dxn, a.x, final_norm_, a.rstdf, N, C, a.dx, dw_or_scratch(dfinal_norm_),
                   a.norm_ws, pool_);
  for (int64_t l = c.num_hidden_layers - 1; l >= 0; --l) {
    const Layer& W = layers_[static_cast<size_t>(l)];
    const LayerActs& A = a.layers[static_cast<size_t>(l)];
    const Adapter* ad = lora_on_ ? adapters_[static_cast<size_t>(l)].data() : nullptr;
    float* const* us = lora_on_ ? a.lora_us[static_cast<size_t>(l)].data() : nullptr;
    // Adapter backward for projection t: input x, output gradient dy, dx_acc += its dx.
    auto adapt = [&](LoraTarget t, const float* x, const float* dy, float* dx_acc) {
      const int i = static_cast<int>(t);
      if (ad && ad[i].on) lora_bwd(ad[i], l, x, us[i], dy, dx_acc, N);
    };
    // MLP: out = h . Wd^T, h = silu(gate) * up.
    pool_.parallel_for(N, [&](int64_t r0, int64_t r1, int) {
      cpu::swiglu(A.gate + r0 * F, A.up + r0 * F, a.act + r0 * F, (r1 - r0) * F);
    });
    gemm_nn(pool_, a.dx, W.wd, a.dg, N, C, F, 0.f);       // dh [N, F]
    if (W.dwd) gemm_tn_acc(pool_, a.dx, a.act, W.dwd, N, C, F);  // dWd [C, F]
    adapt(LoraTarget::kDown, a.act, a.dx, a.dg);
    pool_.parallel_for(N, [&](int64_t r0, int64_t r1, int) {
      cpu::swiglu_bwd(A.gate + r0 * F, A.up + r0 * F, a.dg + r0 * F, a.dg + r0 * F,
                      a.du + r0 * F, (r1 - r0) * F);
    });
    gemm_nn(pool_, a.dg, W.wg, a.dxn, N, F, C, 0.f);
    gemm_nn(pool_, a.du, W.wu, a.dxn, N, F, C, 1.f);
    if (W.dwg) gemm_tn_acc(pool_, a.dg, A.xn2, W.dwg, N, F, C);
    if (W.dwu) gemm_tn_acc(pool_, a.du, A.xn2, W.dwu, N, F, C);
    adapt(LoraTarget::kGate, A.xn2, a.dg, a.dxn);
    adapt(LoraTarget::kUp, A.xn2, a.du, a.dxn);
    cpu::rmsnorm_bwd(a.dxn, A.xmid, W.mlp_norm, A.rstd2, N, C, a.dx, dw_or_scratch(W.d_mlp_norm),
                     a.norm_ws, pool_);
    // Attention: out = att . Wo^T (+ bo).
    gemm_nn(pool_, a.dx, W.wo, a.datt, N, C, HD, 0.f);
    if (W.dwo) gemm_tn_acc(pool_, a.dx, A.att, W.dwo, N, C, HD);
    adapt(LoraTarget::kO, A.att, a.dx, a.datt);
    if (W.dbo) bias_grad(a.dx, W.dbo, N, C);
    cpu::attention_bwd(A.q, A.k, A.v, A.att, A.lse, a.datt, B, T, sh, a.dq, a.dk, a.dv,
                       a.attn_ws, pool_);
    // RoPE is a rotation: its backward is the inverse rotation.
    rope_->unapply(a.dq, N, H, a.pos.data());
    rope_->unapply(a.dk, N, G, a.pos.data());
    if (W.dbq) {
      bias_grad(a.dq, W.dbq, N, HD);
      bias_grad(a.dk, W.dbk, N, GD);
      bias_grad(a.dv, W.dbv, N, GD);
    }
    gemm_nn(pool_, a.dq, W.wq, a.dxn, N, HD, C, 0.f);
    gemm_nn(pool_, a.dk, W.wk, a.dxn, N, GD, C, 1.f);
    gemm_nn(pool_, a.dv, W.wv, a.dxn, N, GD, C, 1.f);
    if (W.dwq) gemm_tn_acc(pool_, a.dq, A.xn1, W.dwq, N, HD, C);
    if (W.dwk) gemm_tn_acc(pool_, a.dk, A.xn1, W.dwk, N, GD, C);
    if (W.dwv) gemm_tn_acc(pool_, a.dv, A.xn1, W.dwv, N, GD, C);
    adapt(LoraTarget::kQ, A.xn1, a.dq, a.dxn);
    adapt(LoraTarget::kK, A.xn1, a.dk, a.dxn);
    adapt(LoraTarget::kV, A.xn1, a.dv, a.dxn);
    cpu::rmsnorm_bwd(a.dxn, A.xin, W.attn_norm, A.rstd1, N, C, a.dx, dw_or_scratch(W.d_attn_norm),
                     a.norm_ws, pool_);
  }
  // Embedding: scatter-add rows (sequential: tokens repeat). Skipped when frozen.
  for (int64_t i = 0; i < N && dembed_; ++i) {
    float* g = dembed_ + static_cast<int64_t>(tokens[i]) * C;
    const float* d = a.dx + i * C;
    for (int64_t k = 0; k < C; ++k) g[k] += d[k];
  }
}

double TrainModel::forward_backward(const int32_t* tokens, const int32_t* targets,
                                    const float* loss_weight, int64_t B, int64_t T) {
  KVLAB_CHECK(B > 0 && T > 0) << "forward_backward: B=" << B << " T=" << T;
  if (base_frozen() && !lora_on_)
    fail("forward_backward: the base parameters have no gradients (frozen) and no LoRA adapters "
         "are enabled: nothing to train");
  BlasThreads bt(1);
  ensure(B, T, /*save=*/true);
  lora_train_ = true;
  forward(tokens, B, T, /*save=*/true);
  lora_train_ = false;
  const double loss = head_loss(targets, loss_weight, B * T, /*grad=*/true);
  bool any = false;
  for (int64_t i = 0; i < B * T && !any; ++i) any = targets[i] >= 0;
  if (any) backward(tokens, B, T);
  if (lora_on_) ++lora_calls_;  // next call draws new dropout masks
  return loss;
}

double TrainModel::forward_loss(const int32_t* tokens, const int32_t* targets,
                                const float* loss_weight, int64_t B, int64_t T) {
  KVLAB_CHECK(B > 0 && T > 0) << "forward_loss: B=" << B << " T=" << T;
  BlasThreads bt(1);
  ensure(B, T, /*save=*/false);
  forward(tokens, B, T, acts_->saved);
  return head_loss(targets, loss_weight, B * T, /*grad=*/false);
}

void TrainModel::forward_logits(const int32_t* tokens, int64_t B, int64_t T, float* logits) {
  KVLAB_CHECK(B > 0 && T > 0) << "forward_logits: B=" << B << " T=" << T;
  BlasThreads bt(1);
  ensure(B, T, /*save=*/false);
  forward(tokens, B, T, acts_->saved);
  gemm_nt(pool_, acts_->xnf, head_, logits, B * T, cfg_.vocab_size, cfg_.hidden_size, 0.f);
}

void TrainModel::export_hf(const std::string& dir, DType dtype) const {
  const char* tname = dtype == DType::kF32    ? "float32"
                      : dtype == DType::kBF16 ? "bfloat16"
                      : dtype == DType::kF16  ? "float16"
                                              : nullptr;
  if (!tname) fail("export_hf: dtype ", dtype_name(dtype), " is not a weight dtype (f32, bf16, f16)");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail(dir, ": cannot create folder: ", ec.message());
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<TensorToWrite> w;
  bytes.reserve(params_.size());
  for (const auto& p : params_) {
    bytes.emplace_back(static_cast<size_t>(p.numel()) * dtype_size(dtype));
    const float* src = p.data;
    std::vector<float> merged;  // W + (alpha/r) B A for an adapted weight
    for (const auto& layer : adapters_)
      for (const Adapter& ad : layer)
        if (ad.on && ad.W == p.data) {
          merged.assign(p.data, p.data + p.numel());
          merged_weight(ad, merged.data());
          src = merged.data();
        }
    from_f32(dtype, src, bytes.back().data(), static_cast<size_t>(p.numel()));
    w.push_back({p.name, dtype, p.shape, bytes.back().data()});
  }
  ModelConfig cfg = cfg_;
  cfg.torch_dtype = tname;
  write_safetensors((fs::path(dir) / "model.safetensors").string(), w, {{"format", "pt"}});
  write_file_atomic((fs::path(dir) / "config.json").string(), model_config_to_json(cfg));
}

}  // namespace kvlab::model
