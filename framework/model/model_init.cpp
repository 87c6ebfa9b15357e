#include "framework/model/model_init.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "framework/core/error.h"
#include "framework/core/file_io.h"
#include "framework/core/rng.h"
#include "framework/model/safetensors.h"
#include "framework/model/tokenizer.h"
#include "framework/model/tokenizer_train.h"

namespace kvlab::model {
namespace {

constexpr int64_t kBosId = 256;  // <|begin_of_text|>
constexpr int64_t kEosId = 257;  // <|end_of_text|>
constexpr int64_t kMinVocab = 258;

ModelConfig llama_base(int64_t c, int64_t layers, int64_t h, int64_t g, int64_t d, int64_t f,
                       int64_t max_pos) {
  ModelConfig m;
  m.architecture = "LlamaForCausalLM";
  m.model_type = "llama";
  m.hidden_size = c;
  m.intermediate_size = f;
  m.num_hidden_layers = layers;
  m.num_attention_heads = h;
  m.num_key_value_heads = g;
  m.head_dim = d;
  m.vocab_size = kMinVocab;
  m.max_position_embeddings = max_pos;
  m.rms_norm_eps = 1e-5;
  m.rope.head_dim = d;
  m.rope.theta = 10000.0;
  m.bos_token_ids = {kBosId};
  m.eos_token_ids = {kEosId};
  m.torch_dtype = "bfloat16";
  return m;
}

const char* torch_dtype_name(DType t) {
  switch (t) {
    case DType::kF32: return "float32";
    case DType::kBF16: return "bfloat16";
    case DType::kF16: return "float16";
    default: return nullptr;
  }
}

// One tensor's values, already converted to the storage dtype.
struct Generated {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

}  // namespace

std::vector<std::string> preset_names() {
  return {"tiny", "small", "llama3-8b-layer", "qwen2-tiny"};
}

ModelConfig preset_config(const std::string& name) {
  if (name == "tiny") return llama_base(64, 2, 4, 2, 16, 172, 4096);
  if (name == "small") {
    ModelConfig m = llama_base(256, 4, 8, 2, 32, 688, 8192);
    m.rope.theta = 500000.0;
    return m;
  }
  if (name == "llama3-8b-layer") {
    ModelConfig m = llama_base(4096, 1, 32, 8, 128, 14336, 131072);
    m.rope.theta = 500000.0;
    m.rope.type = cpu::RopeConfig::Type::kLlama3;
    m.rope.factor = 8.0;
    m.rope.low_freq_factor = 1.0;
    m.rope.high_freq_factor = 4.0;
    m.rope.original_max_position = 8192;
    return m;
  }
  if (name == "qwen2-tiny") {
    ModelConfig m = llama_base(64, 2, 4, 2, 16, 172, 4096);
    m.architecture = "Qwen2ForCausalLM";
    m.model_type = "qwen2";
    m.rms_norm_eps = 1e-6;
    m.rope.theta = 1000000.0;  // Qwen2's released configs
    m.attention_bias = true;   // q,k,v biases; no o bias
    m.tie_word_embeddings = true;
    return m;
  }
  std::string list;
  for (const auto& n : preset_names()) list += (list.empty() ? "" : ", ") + n;
  fail("unknown model preset '", name, "' (presets: ", list, ")");
}

std::string byte_level_tokenizer_json() {
  BpeModel m;  // 256 byte tokens in byte order, <|begin_of_text|>, <|end_of_text|>; no merges
  for (int b = 0; b < 256; ++b) m.tokens.push_back(std::string(1, static_cast<char>(b)));
  m.tokens.push_back("<|begin_of_text|>");
  m.tokens.push_back("<|end_of_text|>");
  m.special.assign(256, 0);
  m.special.push_back(1);
  m.special.push_back(1);
  return bpe_tokenizer_json(m);
}

void write_random_model(const InitOptions& opts, const std::string& out_dir) {
  const char* tdtype = torch_dtype_name(opts.dtype);
  if (!tdtype)
    fail("model init: dtype ", dtype_name(opts.dtype), " is not a weight dtype (f32, bf16, f16)");
  if (!(opts.init_std >= 0)) fail("model init: init_std (", opts.init_std, ") must be >= 0");
  ModelConfig cfg = opts.config;
  if (cfg.vocab_size < kMinVocab)
    fail("model init: vocab_size (", cfg.vocab_size, ") must be >= ", kMinVocab,
         " (256 byte tokens + <|begin_of_text|> + <|end_of_text|>)");
  cfg.bos_token_ids = {kBosId};
  cfg.eos_token_ids = {kEosId};
  cfg.torch_dtype = tdtype;
  cfg.validate("model init");

  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) fail(out_dir, ": cannot create folder: ", ec.message());

  const int64_t C = cfg.hidden_size, F = cfg.intermediate_size, V = cfg.vocab_size;
  const int64_t H = cfg.num_attention_heads, G = cfg.num_key_value_heads, D = cfg.head_dim;
  Rng rng(opts.seed);
  std::vector<Generated> tensors;
  std::vector<float> scratch;
  // Draws numel values (mean + scale * normal) in order and stores them in opts.dtype.
  auto add = [&](std::string name, std::vector<int64_t> shape, double mean, double scale) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    scratch.resize(static_cast<size_t>(n));
    for (auto& x : scratch) x = static_cast<float>(mean + scale * rng.normal());
    Generated g{std::move(name), std::move(shape), {}};
    g.bytes.resize(static_cast<size_t>(n) * dtype_size(opts.dtype));
    from_f32(opts.dtype, scratch.data(), g.bytes.data(), static_cast<size_t>(n));
    tensors.push_back(std::move(g));
  };
  const double s = opts.init_std;
  add("model.embed_tokens.weight", {V, C}, 0, s);
  for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    add(p + "input_layernorm.weight", {C}, 1.0, 0.1);
    add(p + "self_attn.q_proj.weight", {H * D, C}, 0, s);
    add(p + "self_attn.k_proj.weight", {G * D, C}, 0, s);
    add(p + "self_attn.v_proj.weight", {G * D, C}, 0, s);
    add(p + "self_attn.o_proj.weight", {C, H * D}, 0, s);
    if (cfg.attention_bias) {
      add(p + "self_attn.q_proj.bias", {H * D}, 0, s);
      add(p + "self_attn.k_proj.bias", {G * D}, 0, s);
      add(p + "self_attn.v_proj.bias", {G * D}, 0, s);
    }
    if (cfg.o_proj_bias) add(p + "self_attn.o_proj.bias", {C}, 0, s);
    add(p + "post_attention_layernorm.weight", {C}, 1.0, 0.1);
    add(p + "mlp.gate_proj.weight", {F, C}, 0, s);
    add(p + "mlp.up_proj.weight", {F, C}, 0, s);
    add(p + "mlp.down_proj.weight", {C, F}, 0, s);
    if (cfg.mlp_bias) {
      add(p + "mlp.gate_proj.bias", {F}, 0, s);
      add(p + "mlp.up_proj.bias", {F}, 0, s);
      add(p + "mlp.down_proj.bias", {C}, 0, s);
    }
  }
  add("model.norm.weight", {C}, 1.0, 0.1);
  if (!cfg.tie_word_embeddings) add("lm_head.weight", {V, C}, 0, s);
  scratch = {};

  std::vector<TensorToWrite> w;
  w.reserve(tensors.size());
  for (const auto& t : tensors) w.push_back({t.name, opts.dtype, t.shape, t.bytes.data()});
  const std::filesystem::path dir(out_dir);
  write_safetensors((dir / "model.safetensors").string(), w, {{"format", "pt"}});
  write_file_atomic((dir / "config.json").string(), model_config_to_json(cfg));
  nlohmann::ordered_json gen = {{"bos_token_id", kBosId}, {"eos_token_id", kEosId}};
  write_file_atomic((dir / "generation_config.json").string(), gen.dump(2) + "\n");
  write_file_atomic((dir / "tokenizer.json").string(), byte_level_tokenizer_json());
}

}  // namespace kvlab::model
