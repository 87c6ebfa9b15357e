#include "framework/model/model_init.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "framework/core/error.h"
#include "tests/support/temp_dir.h"
#include "framework/model/safetensors.h"

namespace kvlab::model {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

using kvlab::testing::TempDir;

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << path;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<float> values(const TensorInfo& t) {
  size_t n = 1;
  for (int64_t d : t.shape) n *= static_cast<size_t>(d);
  std::vector<float> v(n);
  to_f32(t.dtype, t.data, v.data(), n);
  return v;
}

void mean_std(const std::vector<float>& v, double* mean, double* std) {
  double s = 0, s2 = 0;
  for (float x : v) s += x;
  *mean = s / static_cast<double>(v.size());
  for (float x : v) s2 += (x - *mean) * (x - *mean);
  *std = std::sqrt(s2 / static_cast<double>(v.size()));
}

// Expected tensor names and shapes for `c` (HF LlamaForCausalLM layout).
std::map<std::string, std::vector<int64_t>> expected_tensors(const ModelConfig& c) {
  const int64_t C = c.hidden_size, F = c.intermediate_size, V = c.vocab_size;
  const int64_t HD = c.num_attention_heads * c.head_dim, GD = c.num_key_value_heads * c.head_dim;
  std::map<std::string, std::vector<int64_t>> m;
  m["model.embed_tokens.weight"] = {V, C};
  m["model.norm.weight"] = {C};
  if (!c.tie_word_embeddings) m["lm_head.weight"] = {V, C};
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    m[p + "input_layernorm.weight"] = {C};
    m[p + "post_attention_layernorm.weight"] = {C};
    m[p + "self_attn.q_proj.weight"] = {HD, C};
    m[p + "self_attn.k_proj.weight"] = {GD, C};
    m[p + "self_attn.v_proj.weight"] = {GD, C};
    m[p + "self_attn.o_proj.weight"] = {C, HD};
    if (c.attention_bias) {
      m[p + "self_attn.q_proj.bias"] = {HD};
      m[p + "self_attn.k_proj.bias"] = {GD};
      m[p + "self_attn.v_proj.bias"] = {GD};
    }
    if (c.o_proj_bias) m[p + "self_attn.o_proj.bias"] = {C};
    m[p + "mlp.gate_proj.weight"] = {F, C};
    m[p + "mlp.up_proj.weight"] = {F, C};
    m[p + "mlp.down_proj.weight"] = {C, F};
    if (c.mlp_bias) {
      m[p + "mlp.gate_proj.bias"] = {F};
      m[p + "mlp.up_proj.bias"] = {F};
      m[p + "mlp.down_proj.bias"] = {C};
    }
  }
  return m;
}

void check_model(const std::string& dir, const ModelConfig& want, DType dtype, double init_std) {
  const ModelConfig got = load_model_config(dir + "/config.json");
  EXPECT_EQ(got.architecture, want.architecture);
  EXPECT_EQ(got.hidden_size, want.hidden_size);
  EXPECT_EQ(got.head_dim, want.head_dim);
  EXPECT_EQ(got.num_key_value_heads, want.num_key_value_heads);
  EXPECT_EQ(got.rope.type, want.rope.type);
  EXPECT_EQ(got.rope.theta, want.rope.theta);
  EXPECT_EQ(got.tie_word_embeddings, want.tie_word_embeddings);
  EXPECT_EQ(got.bos_token_ids, std::vector<int64_t>{256});
  EXPECT_EQ(got.eos_token_ids, std::vector<int64_t>{257});
  EXPECT_EQ(got.torch_dtype, dtype == DType::kF32    ? "float32"
                             : dtype == DType::kBF16 ? "bfloat16"
                                                     : "float16");

  const SafeTensors st = SafeTensors::open(dir);
  const auto expected = expected_tensors(want);
  EXPECT_EQ(st.tensors().size(), expected.size());
  std::vector<float> weights;  // every weight matrix and bias, pooled
  for (const auto& [name, shape] : expected) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(st.has(name));
    const TensorInfo& t = st.get(name);
    EXPECT_EQ(t.shape, shape);
    EXPECT_EQ(t.dtype, dtype);
    const std::vector<float> v = values(t);
    double mean, sd;
    mean_std(v, &mean, &sd);
    if (name.find("norm") != std::string::npos) {
      // 1 + 0.1 * normal over C values: mean within ~4 standard errors of 1, std near 0.1.
      const double se = 0.1 / std::sqrt(static_cast<double>(v.size()));
      EXPECT_NEAR(mean, 1.0, 4 * se + 0.01);
      EXPECT_NEAR(sd, 0.1, 0.035);
    } else {
      weights.insert(weights.end(), v.begin(), v.end());
    }
  }
  double mean, sd;
  mean_std(weights, &mean, &sd);
  // > 1e5 samples: the sample std's relative error is ~1/sqrt(2n) < 0.3%; bf16 rounding adds
  // < 0.4% relative noise. 3% is far outside both.
  EXPECT_NEAR(sd, init_std, 0.03 * init_std);
  EXPECT_NEAR(mean, 0.0, 0.03 * init_std);
}

TEST(ModelInit, PresetsMatchTheSpec) {
  const ModelConfig tiny = preset_config("tiny");
  EXPECT_EQ(tiny.architecture, "LlamaForCausalLM");
  EXPECT_EQ(tiny.hidden_size, 64);
  EXPECT_EQ(tiny.num_hidden_layers, 2);
  EXPECT_EQ(tiny.num_attention_heads, 4);
  EXPECT_EQ(tiny.num_key_value_heads, 2);
  EXPECT_EQ(tiny.head_dim, 16);
  EXPECT_EQ(tiny.intermediate_size, 172);
  EXPECT_EQ(tiny.vocab_size, 258);
  EXPECT_EQ(tiny.max_position_embeddings, 4096);

  const ModelConfig small = preset_config("small");
  EXPECT_EQ(small.hidden_size, 256);
  EXPECT_EQ(small.num_hidden_layers, 4);
  EXPECT_EQ(small.num_attention_heads, 8);
  EXPECT_EQ(small.num_key_value_heads, 2);
  EXPECT_EQ(small.head_dim, 32);
  EXPECT_EQ(small.intermediate_size, 688);
  EXPECT_EQ(small.max_position_embeddings, 8192);
  EXPECT_EQ(small.rope.theta, 500000.0);

  const ModelConfig big = preset_config("llama3-8b-layer");
  EXPECT_EQ(big.hidden_size, 4096);
  EXPECT_EQ(big.num_hidden_layers, 1);
  EXPECT_EQ(big.num_attention_heads, 32);
  EXPECT_EQ(big.num_key_value_heads, 8);
  EXPECT_EQ(big.head_dim, 128);
  EXPECT_EQ(big.intermediate_size, 14336);
  EXPECT_EQ(big.rope.type, cpu::RopeConfig::Type::kLlama3);
  EXPECT_EQ(big.rope.factor, 8.0);
  EXPECT_EQ(big.rope.low_freq_factor, 1.0);
  EXPECT_EQ(big.rope.high_freq_factor, 4.0);
  EXPECT_EQ(big.rope.original_max_position, 8192);
  EXPECT_EQ(big.max_position_embeddings, 131072);

  const ModelConfig qwen = preset_config("qwen2-tiny");
  EXPECT_EQ(qwen.architecture, "Qwen2ForCausalLM");
  EXPECT_TRUE(qwen.tie_word_embeddings);
  EXPECT_TRUE(qwen.attention_bias);
  EXPECT_FALSE(qwen.o_proj_bias);

  for (const auto& n : preset_names()) EXPECT_NO_THROW(preset_config(n).validate(n));
  EXPECT_THAT([] { preset_config("huge"); },
              ::testing::ThrowsMessage<Error>(
                  AllOf(HasSubstr("'huge'"), HasSubstr("tiny"), HasSubstr("small"),
                        HasSubstr("llama3-8b-layer"), HasSubstr("qwen2-tiny"))));
}

TEST(ModelInit, TinyBf16HasEveryTensorWithRequestedStd) {
  TempDir tmp;
  InitOptions o{preset_config("tiny"), DType::kBF16, 7, 0.02};
  const std::string dir = tmp.sub("nested/tiny");  // created if missing
  write_random_model(o, dir);
  for (const char* f :
       {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"}) {
    EXPECT_TRUE(fs::exists(dir + "/" + f)) << f;
    EXPECT_FALSE(fs::exists(dir + "/" + f + ".tmp")) << f;
  }
  check_model(dir, o.config, DType::kBF16, 0.02);
  const auto gen = nlohmann::json::parse(read_all(dir + "/generation_config.json"));
  EXPECT_EQ(gen["bos_token_id"], 256);
  EXPECT_EQ(gen["eos_token_id"], 257);
}

TEST(ModelInit, Qwen2TinyF32HasBiasesAndTiedEmbeddings) {
  TempDir tmp;
  InitOptions o{preset_config("qwen2-tiny"), DType::kF32, 3, 0.05};
  write_random_model(o, tmp.sub("q"));
  check_model(tmp.sub("q"), o.config, DType::kF32, 0.05);
  const SafeTensors st = SafeTensors::open(tmp.sub("q"));
  EXPECT_FALSE(st.has("lm_head.weight"));
  EXPECT_TRUE(st.has("model.layers.1.self_attn.k_proj.bias"));
  EXPECT_FALSE(st.has("model.layers.1.self_attn.o_proj.bias"));
}

TEST(ModelInit, LlamaWithAllBiasesF16) {
  TempDir tmp;
  InitOptions o{preset_config("tiny"), DType::kF16, 11, 0.02};
  o.config.attention_bias = o.config.o_proj_bias = o.config.mlp_bias = true;
  o.config.vocab_size = 300;
  write_random_model(o, tmp.sub("b"));
  check_model(tmp.sub("b"), o.config, DType::kF16, 0.02);
  const SafeTensors st = SafeTensors::open(tmp.sub("b"));
  EXPECT_TRUE(st.has("model.layers.0.self_attn.o_proj.bias"));
  EXPECT_TRUE(st.has("model.layers.0.mlp.down_proj.bias"));
  EXPECT_EQ(st.matrix("model.embed_tokens.weight").rows, 300);
}

TEST(ModelInit, SameSeedGivesByteIdenticalFiles) {
  TempDir tmp;
  InitOptions o{preset_config("tiny"), DType::kBF16, 42, 0.02};
  write_random_model(o, tmp.sub("a"));
  write_random_model(o, tmp.sub("b"));
  o.seed = 43;
  write_random_model(o, tmp.sub("c"));
  for (const char* f :
       {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"}) {
    SCOPED_TRACE(f);
    EXPECT_EQ(read_all(tmp.sub("a/") + f), read_all(tmp.sub("b/") + f));
  }
  EXPECT_NE(read_all(tmp.sub("a/model.safetensors")), read_all(tmp.sub("c/model.safetensors")));
  // Overwriting an existing model folder works (rename over the old files).
  EXPECT_NO_THROW(write_random_model(o, tmp.sub("a")));
  EXPECT_EQ(read_all(tmp.sub("a/model.safetensors")), read_all(tmp.sub("c/model.safetensors")));
}

TEST(ModelInit, RejectsSmallVocabAndBadOptions) {
  TempDir tmp;
  InitOptions o{preset_config("tiny"), DType::kBF16, 0, 0.02};
  o.config.vocab_size = 257;
  EXPECT_THAT([&] { write_random_model(o, tmp.sub("v")); },
              ::testing::ThrowsMessage<Error>(HasSubstr("vocab_size (257) must be >= 258")));
  EXPECT_FALSE(fs::exists(tmp.sub("v")));
  o = InitOptions{preset_config("tiny"), DType::kI32, 0, 0.02};
  EXPECT_THROW(write_random_model(o, tmp.sub("d")), Error);
  o = InitOptions{preset_config("tiny"), DType::kBF16, 0, 0.02};
  o.config.num_key_value_heads = 3;
  EXPECT_THAT([&] { write_random_model(o, tmp.sub("g")); },
              ::testing::ThrowsMessage<Error>(HasSubstr("num_key_value_heads (3)")));
  EXPECT_THROW(write_random_model(InitOptions{}, tmp.sub("e")), Error);
}

TEST(ModelInit, TokenizerJsonIsByteLevelBpe) {
  const auto j = nlohmann::json::parse(byte_level_tokenizer_json());
  const auto& m = j["model"];
  EXPECT_EQ(m["type"], "BPE");
  EXPECT_EQ(m["byte_fallback"], false);
  EXPECT_EQ(m["ignore_merges"], false);
  EXPECT_TRUE(m["merges"].is_array());
  EXPECT_TRUE(m["merges"].empty());
  ASSERT_EQ(m["vocab"].size(), 256u);
  // GPT-2 bytes_to_unicode: printable ASCII maps to itself; space (0x20) -> U+0120 'Ġ',
  // newline (0x0A) -> U+010A 'Ċ', 0x00 -> U+0100 'Ā', 0xAD -> U+0143 'Ń', 0xFF -> 'ÿ'.
  EXPECT_EQ(m["vocab"]["A"], 65);
  EXPECT_EQ(m["vocab"]["!"], 33);
  EXPECT_EQ(m["vocab"]["\u0120"], 32);
  EXPECT_EQ(m["vocab"]["\u010A"], 10);
  EXPECT_EQ(m["vocab"]["\u0100"], 0);
  EXPECT_EQ(m["vocab"]["\u0143"], 0xAD);
  EXPECT_EQ(m["vocab"]["\u00FF"], 255);
  std::set<int> ids;
  for (const auto& [k, v] : m["vocab"].items()) ids.insert(v.get<int>());
  EXPECT_EQ(ids.size(), 256u);
  // Vocabulary written in id order.
  int expect = 0;
  const auto ordered = nlohmann::ordered_json::parse(byte_level_tokenizer_json());
  for (const auto& [k, v] : ordered["model"]["vocab"].items()) EXPECT_EQ(v.get<int>(), expect++);
  EXPECT_EQ(expect, 256);
  EXPECT_EQ(j["pre_tokenizer"]["type"], "ByteLevel");
  EXPECT_EQ(j["pre_tokenizer"]["add_prefix_space"], false);
  EXPECT_EQ(j["pre_tokenizer"]["trim_offsets"], true);
  EXPECT_EQ(j["pre_tokenizer"]["use_regex"], false);
  EXPECT_EQ(j["decoder"]["type"], "ByteLevel");
  EXPECT_TRUE(j["normalizer"].is_null());
  ASSERT_EQ(j["added_tokens"].size(), 2u);
  EXPECT_EQ(j["added_tokens"][0]["id"], 256);
  EXPECT_EQ(j["added_tokens"][0]["content"], "<|begin_of_text|>");
  EXPECT_EQ(j["added_tokens"][0]["special"], true);
  EXPECT_EQ(j["added_tokens"][1]["id"], 257);
  EXPECT_EQ(j["added_tokens"][1]["content"], "<|end_of_text|>");
}

}  // namespace
}  // namespace kvlab::model
