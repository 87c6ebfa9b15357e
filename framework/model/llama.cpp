#include "framework/model/llama.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>

#include "framework/core/error.h"

namespace kvlab::model {

namespace fs = std::filesystem;

std::shared_ptr<const Model> Model::load(const std::string& dir) {
  if (!fs::is_directory(dir)) fail(dir, ": not a model directory (expected config.json and model.safetensors)");
  std::shared_ptr<Model> m(new Model());
  m->dir_ = dir;
  m->cfg_ = load_model_config((fs::path(dir) / "config.json").string());
  const ModelConfig& c = m->cfg_;
  m->st_ = SafeTensors::open(dir);
  if (fs::exists(fs::path(dir) / "tokenizer.json"))
    m->tokenizer_ = std::make_unique<Tokenizer>(Tokenizer::load((fs::path(dir) / "tokenizer.json").string()));
  m->rope_ = std::make_unique<cpu::Rope>(c.rope);

  const int64_t C = c.hidden_size, H = c.num_attention_heads, G = c.num_key_value_heads,
                D = c.head_dim, F = c.intermediate_size, V = c.vocab_size;
  const SafeTensors& st = m->st_;
  m->embed_ = st.matrix("model.embed_tokens.weight", V, C);
  if (c.tie_word_embeddings) {
    m->lm_head_ = m->embed_;
  } else {
    if (!st.has("lm_head.weight"))
      fail(dir, ": config.json says tie_word_embeddings=false but the weights have no lm_head.weight");
    m->lm_head_ = st.matrix("lm_head.weight", V, C);
  }
  m->final_norm_ = st.vector("model.norm.weight", C);
  auto opt_bias = [&](const std::string& name, int64_t n, bool expected) -> std::optional<VecRef> {
    if (!expected) {
      if (st.has(name))
        fail(dir, ": tensor ", name, " is present but config.json does not enable this bias");
      return std::nullopt;
    }
    return st.vector(name, n);
  };
  const bool qkv_bias = c.attention_bias;
  m->layers_.resize(c.num_hidden_layers);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    LayerWeights& w = m->layers_[i];
    w.attn_norm = st.vector(p + "input_layernorm.weight", C);
    w.mlp_norm = st.vector(p + "post_attention_layernorm.weight", C);
    w.wq = st.matrix(p + "self_attn.q_proj.weight", H * D, C);
    w.wk = st.matrix(p + "self_attn.k_proj.weight", G * D, C);
    w.wv = st.matrix(p + "self_attn.v_proj.weight", G * D, C);
    w.wo = st.matrix(p + "self_attn.o_proj.weight", C, H * D);
    w.bq = opt_bias(p + "self_attn.q_proj.bias", H * D, qkv_bias);
    w.bk = opt_bias(p + "self_attn.k_proj.bias", G * D, qkv_bias);
    w.bv = opt_bias(p + "self_attn.v_proj.bias", G * D, qkv_bias);
    w.bo = opt_bias(p + "self_attn.o_proj.bias", C, c.o_proj_bias);
    w.w_gate = st.matrix(p + "mlp.gate_proj.weight", F, C);
    w.w_up = st.matrix(p + "mlp.up_proj.weight", F, C);
    w.w_down = st.matrix(p + "mlp.down_proj.weight", C, F);
    if (c.mlp_bias) fail(dir, ": config.json: mlp_bias=true is not supported");
  }
  return m;
}

int64_t Model::weight_bytes() const {
  int64_t n = 0;
  for (const auto& [name, t] : st_.tensors()) n += static_cast<int64_t>(t.nbytes);
  return n;
}

Sequence::Sequence(std::shared_ptr<const Model> model, const kv::KvFactory& make_cache,
                   ThreadPool& pool, SequenceOptions opt)
    : model_(std::move(model)), pool_(pool), opt_(opt) {
  const ModelConfig& c = model_->config();
  KVLAB_CHECK(opt_.prefill_chunk > 0) << "prefill_chunk must be positive";
  if (opt_.max_context <= 0) opt_.max_context = c.max_position_embeddings;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    kv::LayerInfo info;
    info.layer = l;
    info.n_layers = c.num_hidden_layers;
    info.H = c.num_attention_heads;
    info.G = c.num_key_value_heads;
    info.D = c.head_dim;
    info.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    info.max_context = opt_.max_context;
    info.rope = &model_->rope();
    info.pool = &pool_;
    info.tokenizer = model_->tokenizer();
    caches_.push_back(make_cache(info));
  }
}

void Sequence::forward(std::span<const int32_t> tokens, float* logits, bool all_logits) {
  const int64_t V = model_->config().vocab_size;
  const int64_t n = static_cast<int64_t>(tokens.size());
  for (int64_t b = 0; b < n; b += opt_.prefill_chunk) {
    const int64_t T = std::min(opt_.prefill_chunk, n - b);
    const bool last = b + T == n;
    float* out = nullptr;
    if (logits && all_logits) out = logits + b * V;
    else if (logits && last) out = logits;
    forward_chunk(tokens.data() + b, T, out, all_logits);
  }
}

// One chunk of T tokens through every layer. Activations [T, C] f32; cost per layer
// 2*T*(C*(H+2G)*D + C*H*D + 3*C*F) flops in linear() plus attention.
void Sequence::forward_chunk(const int32_t* tokens, int64_t T, float* logits, bool all_logits) {
  const Model& m = *model_;
  const ModelConfig& c = m.config();
  const int64_t C = c.hidden_size, H = c.num_attention_heads, G = c.num_key_value_heads,
                D = c.head_dim, F = c.intermediate_size, V = c.vocab_size;
  if (pos_ + T > std::numeric_limits<int32_t>::max()) fail("sequence too long for int32 positions");
  if (c.sliding_window > 0 && pos_ + T > c.sliding_window)
    fail(m.dir(), ": config.json sets sliding_window = ", c.sliding_window,
         "; kvlab attends over the whole cache, which equals the model's attention only up to ",
         c.sliding_window, " tokens (sliding-window attention is not implemented)");
  auto ensure = [](Buffer& b, int64_t n) {
    if (static_cast<int64_t>(b.size()) < n) b.resize(static_cast<size_t>(n));
  };
  ensure(x_, T * C);
  ensure(xn_, T * C);
  ensure(q_, T * H * D);
  ensure(k_, T * G * D);
  ensure(v_, T * G * D);
  ensure(att_, T * std::max(H * D, C));
  ensure(gate_, T * F);
  ensure(up_, T * F);
  positions_.resize(T);
  for (int64_t t = 0; t < T; ++t) positions_[t] = static_cast<int32_t>(pos_ + t);

  const MatRef emb = m.embedding();
  for (int64_t t = 0; t < T; ++t) {
    if (tokens[t] < 0 || tokens[t] >= V)
      fail("token id ", tokens[t], " is outside the vocabulary [0, ", V, ") of ", m.dir());
    to_f32(emb.dtype, emb.row_ptr(tokens[t]), x_.data() + t * C, C);
  }

  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& w = m.layer(l);
    cpu::rmsnorm(x_.data(), T, C, w.attn_norm, static_cast<float>(c.rms_norm_eps), xn_.data());
    cpu::linear(xn_.data(), T, w.wq, w.bq ? &*w.bq : nullptr, q_.data(), pool_);
    cpu::linear(xn_.data(), T, w.wk, w.bk ? &*w.bk : nullptr, k_.data(), pool_);
    cpu::linear(xn_.data(), T, w.wv, w.bv ? &*w.bv : nullptr, v_.data(), pool_);
    m.rope().apply(q_.data(), T, H, positions_.data());
    m.rope().apply(k_.data(), T, G, positions_.data());
    kv::KvCache& cache = *caches_[l];
    cache.observe_tokens(tokens, T);
    cache.append(k_.data(), v_.data(), T, positions_.data());
    cache.attend(q_.data(), T, positions_.data(), att_.data());
    cpu::linear(att_.data(), T, w.wo, w.bo ? &*w.bo : nullptr, xn_.data(), pool_);
    for (int64_t i = 0; i < T * C; ++i) x_[i] += xn_[i];

    cpu::rmsnorm(x_.data(), T, C, w.mlp_norm, static_cast<float>(c.rms_norm_eps), xn_.data());
    cpu::linear(xn_.data(), T, w.w_gate, nullptr, gate_.data(), pool_);
    cpu::linear(xn_.data(), T, w.w_up, nullptr, up_.data(), pool_);
    cpu::swiglu(gate_.data(), up_.data(), gate_.data(), T * F);
    cpu::linear(gate_.data(), T, w.w_down, nullptr, xn_.data(), pool_);
    for (int64_t i = 0; i < T * C; ++i) x_[i] += xn_[i];
  }
  pos_ += T;

  if (!logits) return;
  const int64_t first = all_logits ? 0 : T - 1;
  const int64_t rows = T - first;
  cpu::rmsnorm(x_.data() + first * C, rows, C, m.final_norm(),
               static_cast<float>(c.rms_norm_eps), xn_.data());
  cpu::linear(xn_.data(), rows, m.lm_head(), nullptr, logits, pool_);
}

void Sequence::end_prefill() {
  kv::PrefillContext ctx;
  ctx.prompt_tokens = pos_;
  for (auto& c : caches_) c->end_prefill(ctx);
}

MemoryReport Sequence::memory() const {
  MemoryReport r;
  for (const auto& c : caches_) r += c->memory();
  return r;
}

}  // namespace kvlab::model
