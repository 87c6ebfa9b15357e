#include "framework/model/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "framework/core/error.h"

namespace kvlab::model {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;
using RopeType = cpu::RopeConfig::Type;

Json llama_json() {
  return Json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
    "rope_theta": 500000.0, "max_position_embeddings": 131072, "vocab_size": 128256,
    "tie_word_embeddings": false, "attention_bias": false, "mlp_bias": false,
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "torch_dtype": "bfloat16"})");
}

Json mistral_json() {
  return Json::parse(R"({
    "architectures": ["MistralForCausalLM"], "model_type": "mistral",
    "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
    "rope_theta": 1000000.0, "max_position_embeddings": 32768, "vocab_size": 32768,
    "sliding_window": null, "tie_word_embeddings": false, "head_dim": null,
    "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16"})");
}

Json qwen2_json() {
  return Json::parse(R"({
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
    "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
    "num_attention_heads": 14, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0, "max_position_embeddings": 32768, "vocab_size": 151936,
    "sliding_window": 32768, "use_sliding_window": false, "max_window_layers": 21,
    "tie_word_embeddings": true, "attention_bias": false,
    "bos_token_id": 151643, "eos_token_id": 151645, "torch_dtype": "bfloat16"})");
}

ModelConfig parse(const Json& j) { return parse_model_config(j.dump(), "cfg/config.json"); }

// Parses j and returns the error message ("" when it parsed).
std::string error_of(const Json& j) {
  try {
    parse(j);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void expect_same(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.architecture, b.architecture);
  EXPECT_EQ(a.model_type, b.model_type);
  EXPECT_EQ(a.hidden_size, b.hidden_size);
  EXPECT_EQ(a.intermediate_size, b.intermediate_size);
  EXPECT_EQ(a.num_hidden_layers, b.num_hidden_layers);
  EXPECT_EQ(a.num_attention_heads, b.num_attention_heads);
  EXPECT_EQ(a.num_key_value_heads, b.num_key_value_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.max_position_embeddings, b.max_position_embeddings);
  EXPECT_EQ(a.sliding_window, b.sliding_window);
  EXPECT_EQ(a.rms_norm_eps, b.rms_norm_eps);
  EXPECT_EQ(a.rope.head_dim, b.rope.head_dim);
  EXPECT_EQ(a.rope.theta, b.rope.theta);
  EXPECT_EQ(a.rope.type, b.rope.type);
  EXPECT_EQ(a.rope.factor, b.rope.factor);
  EXPECT_EQ(a.rope.low_freq_factor, b.rope.low_freq_factor);
  EXPECT_EQ(a.rope.high_freq_factor, b.rope.high_freq_factor);
  EXPECT_EQ(a.rope.original_max_position, b.rope.original_max_position);
  EXPECT_EQ(a.tie_word_embeddings, b.tie_word_embeddings);
  EXPECT_EQ(a.attention_bias, b.attention_bias);
  EXPECT_EQ(a.o_proj_bias, b.o_proj_bias);
  EXPECT_EQ(a.mlp_bias, b.mlp_bias);
  EXPECT_EQ(a.bos_token_ids, b.bos_token_ids);
  EXPECT_EQ(a.eos_token_ids, b.eos_token_ids);
  EXPECT_EQ(a.torch_dtype, b.torch_dtype);
}

TEST(ModelConfig, ParsesLlama3WithLlama3RopeScaling) {
  const ModelConfig c = parse(llama_json());
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 14336);
  EXPECT_EQ(c.num_hidden_layers, 32);
  EXPECT_EQ(c.num_attention_heads, 32);
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_EQ(c.head_dim, 128);  // hidden / heads
  EXPECT_EQ(c.rope.head_dim, 128);
  EXPECT_EQ(c.rope.theta, 500000.0);
  EXPECT_EQ(c.rope.type, RopeType::kLlama3);
  EXPECT_EQ(c.rope.factor, 8.0);
  EXPECT_EQ(c.rope.low_freq_factor, 1.0);
  EXPECT_EQ(c.rope.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope.original_max_position, 8192);
  EXPECT_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.o_proj_bias);
  EXPECT_EQ(c.bos_token_ids, std::vector<int64_t>{128000});
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  EXPECT_EQ(c.sliding_window, 0);
}

TEST(ModelConfig, LlamaDefaults) {
  Json j = llama_json();
  for (const char* k :
       {"num_key_value_heads", "rope_theta", "rope_scaling", "tie_word_embeddings",
        "attention_bias", "mlp_bias", "bos_token_id", "eos_token_id", "torch_dtype"})
    j.erase(k);
  const ModelConfig c = parse(j);
  EXPECT_EQ(c.num_key_value_heads, 32);
  EXPECT_EQ(c.rope.theta, 10000.0);
  EXPECT_EQ(c.rope.type, RopeType::kDefault);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_TRUE(c.bos_token_ids.empty());
  EXPECT_TRUE(c.eos_token_ids.empty());
  EXPECT_EQ(c.torch_dtype, "");
}

TEST(ModelConfig, LlamaAttentionBiasCoversOutputProjection) {
  Json j = llama_json();
  j["attention_bias"] = true;
  j["mlp_bias"] = true;
  const ModelConfig c = parse(j);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_TRUE(c.o_proj_bias);
  EXPECT_TRUE(c.mlp_bias);
}

TEST(ModelConfig, ExplicitHeadDimOverridesHiddenOverHeads) {
  Json j = llama_json();
  j["head_dim"] = 64;
  EXPECT_EQ(parse(j).head_dim, 64);
  EXPECT_EQ(parse(j).rope.head_dim, 64);
  j["head_dim"] = nullptr;
  EXPECT_EQ(parse(j).head_dim, 128);
}

TEST(ModelConfig, RopeScalingVariants) {
  Json j = llama_json();
  j["rope_scaling"] = nullptr;
  EXPECT_EQ(parse(j).rope.type, RopeType::kDefault);
  j["rope_scaling"] = {{"rope_type", "default"}};
  EXPECT_EQ(parse(j).rope.type, RopeType::kDefault);
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.5}};
  EXPECT_EQ(parse(j).rope.type, RopeType::kLinear);
  EXPECT_EQ(parse(j).rope.factor, 2.5);
  j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 4}};
  EXPECT_EQ(parse(j).rope.type, RopeType::kLinear);
  EXPECT_EQ(parse(j).rope.factor, 4.0);
}

TEST(ModelConfig, RopeScalingErrorsNameTheKey) {
  Json j = llama_json();
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  EXPECT_THAT(error_of(j), HasSubstr("rope_scaling.rope_type 'yarn' is not supported"));
  j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 4.0}};
  EXPECT_THAT(error_of(j), HasSubstr("rope_scaling.type 'dynamic'"));
  j["rope_scaling"] = {{"rope_type", "linear"}};
  EXPECT_THAT(error_of(j), HasSubstr("'factor'"));
  j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", "2"}};
  EXPECT_THAT(error_of(j), HasSubstr("rope_scaling.factor must be a number"));
  j["rope_scaling"] = llama_json()["rope_scaling"];
  j["rope_scaling"].erase("original_max_position_embeddings");
  EXPECT_THAT(error_of(j), HasSubstr("original_max_position_embeddings"));
  j["rope_scaling"] = {{"factor", 2.0}};
  EXPECT_THAT(error_of(j), HasSubstr("neither 'rope_type' nor 'type'"));
  j["rope_scaling"] = "linear";
  EXPECT_THAT(error_of(j), HasSubstr("rope_scaling must be an object"));
}

TEST(ModelConfig, MistralSlidingWindow) {
  Json j = mistral_json();
  ModelConfig c = parse(j);
  EXPECT_EQ(c.model_type, "mistral");
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.rope.theta, 1e6);
  j["sliding_window"] = 4096;
  EXPECT_EQ(parse(j).sliding_window, 4096);
  j["sliding_window"] = 32768;  // not smaller than the context: no effect
  EXPECT_EQ(parse(j).sliding_window, 0);
  j["sliding_window"] = "big";
  EXPECT_THAT(error_of(j), HasSubstr("sliding_window must be an integer"));
}

TEST(ModelConfig, Qwen2AlwaysHasQkvBiasesOnly) {
  Json j = qwen2_json();
  ModelConfig c = parse(j);
  EXPECT_EQ(c.model_type, "qwen2");
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_FALSE(c.o_proj_bias);
  EXPECT_FALSE(c.mlp_bias);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.sliding_window, 0);  // use_sliding_window false
  j["attention_bias"] = true;
  EXPECT_FALSE(parse(j).o_proj_bias);
  j.erase("attention_bias");
  EXPECT_TRUE(parse(j).attention_bias);
  j["use_sliding_window"] = true;
  j["sliding_window"] = 4096;
  EXPECT_EQ(parse(j).sliding_window, 4096);
}

TEST(ModelConfig, ErrorsNameFileAndKey) {
  Json j = llama_json();
  j["num_key_value_heads"] = 3;
  j["num_attention_heads"] = 8;
  j["hidden_size"] = 1024;
  EXPECT_EQ(error_of(j),
            "cfg/config.json: num_key_value_heads (3) must divide num_attention_heads (8)");

  j = llama_json();
  j.erase("hidden_size");
  EXPECT_EQ(error_of(j), "cfg/config.json: missing required key 'hidden_size'");

  j = llama_json();
  j["num_hidden_layers"] = "32";
  EXPECT_THAT(error_of(j), HasSubstr("cfg/config.json: num_hidden_layers must be an integer"));

  j = llama_json();
  j["intermediate_size"] = 14336.5;
  EXPECT_THAT(error_of(j), HasSubstr("intermediate_size must be an integer"));

  j = llama_json();
  j["tie_word_embeddings"] = 1;
  EXPECT_THAT(error_of(j), HasSubstr("tie_word_embeddings must be true or false"));

  j = llama_json();
  j["architectures"] = {"GPT2LMHeadModel"};
  EXPECT_THAT(error_of(j), HasSubstr("architectures 'GPT2LMHeadModel' is not supported"));

  j = llama_json();
  j.erase("architectures");
  EXPECT_THAT(error_of(j), HasSubstr("missing required key 'architectures'"));

  j = llama_json();
  j["model_type"] = "qwen2";
  EXPECT_THAT(error_of(j), HasSubstr("model_type"));

  j = llama_json();
  j["head_dim"] = 127;
  EXPECT_THAT(error_of(j), HasSubstr("head_dim (127) must be even"));

  j = llama_json();
  j["hidden_size"] = 100;  // 100 % 32 != 0 and no head_dim
  EXPECT_THAT(error_of(j), HasSubstr("head_dim is absent"));

  j = llama_json();
  j["vocab_size"] = 0;
  EXPECT_THAT(error_of(j), HasSubstr("vocab_size (0) must be positive"));

  j = llama_json();
  j["eos_token_id"] = {128001, "x"};
  EXPECT_THAT(error_of(j), HasSubstr("eos_token_id[1] must be an integer"));

  j = llama_json();
  j["bos_token_id"] = 999999;
  EXPECT_THAT(error_of(j), HasSubstr("bos_token_id (999999) is outside the vocabulary"));

  j = llama_json();
  j["rms_norm_eps"] = -1.0;
  EXPECT_THAT(error_of(j), HasSubstr("rms_norm_eps"));

  EXPECT_THAT([] { parse_model_config("{not json", "x/config.json"); },
              ::testing::ThrowsMessage<Error>(HasSubstr("x/config.json: not valid JSON")));
  EXPECT_THAT([] { parse_model_config("[1, 2]", "x/config.json"); },
              ::testing::ThrowsMessage<Error>(HasSubstr("x/config.json: expected a JSON object")));
  EXPECT_THAT([] { load_model_config("/nonexistent/config.json"); },
              ::testing::ThrowsMessage<Error>(HasSubstr("/nonexistent/config.json")));
}

TEST(ModelConfig, RoundTripsThroughJson) {
  Json linear = llama_json();
  linear["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  linear["attention_bias"] = true;
  linear["mlp_bias"] = true;
  linear["head_dim"] = 96;
  linear["rms_norm_eps"] = 1.0 / 3.0;
  Json mistral_window = mistral_json();
  mistral_window["sliding_window"] = 4096;
  Json qwen_window = qwen2_json();
  qwen_window["use_sliding_window"] = true;
  qwen_window["sliding_window"] = 1024;
  for (const Json& j :
       {llama_json(), linear, mistral_json(), mistral_window, qwen2_json(), qwen_window}) {
    const ModelConfig a = parse(j);
    const std::string text = model_config_to_json(a);
    SCOPED_TRACE(text);
    const ModelConfig b = parse_model_config(text, "roundtrip");
    expect_same(a, b);
    EXPECT_EQ(model_config_to_json(b), text);
    // HF key names are written.
    const Json out = Json::parse(text);
    EXPECT_EQ(out["architectures"][0], a.architecture);
    EXPECT_EQ(out["num_key_value_heads"], a.num_key_value_heads);
  }
}

TEST(ModelConfig, ValidateRejectsInconsistentStructs) {
  ModelConfig c = parse(llama_json());
  c.o_proj_bias = true;  // llama: o bias only with attention_bias
  EXPECT_THROW(c.validate("x"), Error);
  c = parse(llama_json());
  c.rope.head_dim = 64;
  EXPECT_THROW(c.validate("x"), Error);
  c = parse(llama_json());
  c.rope.high_freq_factor = c.rope.low_freq_factor;  // HF divides by their difference
  EXPECT_THAT([&] { c.validate("x"); },
              ::testing::ThrowsMessage<Error>(HasSubstr("low_freq_factor")));
  EXPECT_THROW(model_config_to_json(c), Error);
}

}  // namespace
}  // namespace kvlab::model
