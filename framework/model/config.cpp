#include "framework/model/config.h"

#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "framework/core/error.h"
#include "framework/core/file_io.h"

namespace kvlab::model {
namespace {

using Json = nlohmann::json;
using RopeType = cpu::RopeConfig::Type;

const char* json_type_name(const Json& v) { return v.type_name(); }

// A key that is absent or null counts as missing (HF writes null for "use the default").
bool present(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && !it->is_null();
}

const Json& required(const Json& j, const char* key, const std::string& what) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) fail(what, ": missing required key '", key, "'");
  return *it;
}

int64_t as_int(const Json& v, const std::string& what, const std::string& key) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail(what, ": ", key, " (", u, ") is too large");
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  fail(what, ": ", key, " must be an integer, got ", json_type_name(v), " ", v.dump());
}

double as_double(const Json& v, const std::string& what, const std::string& key) {
  if (!v.is_number())
    fail(what, ": ", key, " must be a number, got ", json_type_name(v), " ", v.dump());
  return v.get<double>();
}

int64_t get_int(const Json& j, const char* key, const std::string& what) {
  return as_int(required(j, key, what), what, key);
}
int64_t get_int_or(const Json& j, const char* key, int64_t def, const std::string& what) {
  return present(j, key) ? as_int(j.at(key), what, key) : def;
}
double get_double(const Json& j, const char* key, const std::string& what) {
  return as_double(required(j, key, what), what, key);
}
double get_double_or(const Json& j, const char* key, double def, const std::string& what) {
  return present(j, key) ? as_double(j.at(key), what, key) : def;
}
bool get_bool_or(const Json& j, const char* key, bool def, const std::string& what) {
  if (!present(j, key)) return def;
  const Json& v = j.at(key);
  if (!v.is_boolean()) fail(what, ": ", key, " must be true or false, got ", v.dump());
  return v.get<bool>();
}

// bos_token_id / eos_token_id: an int, a list of ints, or null/absent (empty).
std::vector<int64_t> get_ids(const Json& j, const char* key, const std::string& what) {
  std::vector<int64_t> ids;
  if (!present(j, key)) return ids;
  const Json& v = j.at(key);
  if (v.is_array()) {
    for (size_t i = 0; i < v.size(); ++i) ids.push_back(as_int(v[i], what, str(key, "[", i, "]")));
  } else {
    ids.push_back(as_int(v, what, key));
  }
  return ids;
}

// rope_scaling: null / absent / {"rope_type"|"type": "default"} -> none; "linear" (factor);
// "llama3" (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings).
void parse_rope_scaling(const Json& j, cpu::RopeConfig& rope, const std::string& what) {
  if (!present(j, "rope_scaling")) return;
  const Json& rs = j.at("rope_scaling");
  if (!rs.is_object())
    fail(what, ": rope_scaling must be an object or null, got ", json_type_name(rs));
  const std::string ctx = "rope_scaling";
  std::string type;
  const char* type_key = nullptr;
  for (const char* k : {"rope_type", "type"}) {
    if (!present(rs, k)) continue;
    if (!rs.at(k).is_string()) fail(what, ": rope_scaling.", k, " must be a string");
    const std::string t = rs.at(k).get<std::string>();
    if (type_key && t != type)
      fail(what, ": rope_scaling.rope_type ('", type, "') and rope_scaling.type ('", t,
           "') disagree");
    type = t;
    type_key = k;
  }
  if (!type_key) fail(what, ": rope_scaling has neither 'rope_type' nor 'type'");
  if (type == "default") return;
  if (type == "linear") {
    rope.type = RopeType::kLinear;
    rope.factor = as_double(required(rs, "factor", what + ": rope_scaling"), what, ctx + ".factor");
    return;
  }
  if (type == "llama3") {
    const std::string w = what + ": rope_scaling (llama3)";
    rope.type = RopeType::kLlama3;
    rope.factor = as_double(required(rs, "factor", w), what, ctx + ".factor");
    rope.low_freq_factor =
        as_double(required(rs, "low_freq_factor", w), what, ctx + ".low_freq_factor");
    rope.high_freq_factor =
        as_double(required(rs, "high_freq_factor", w), what, ctx + ".high_freq_factor");
    rope.original_max_position = as_int(required(rs, "original_max_position_embeddings", w), what,
                                        ctx + ".original_max_position_embeddings");
    return;
  }
  fail(what, ": rope_scaling.", type_key, " '", type,
       "' is not supported (supported: default, linear, llama3)");
}

const char* model_type_of(const std::string& arch) {
  if (arch == "LlamaForCausalLM") return "llama";
  if (arch == "MistralForCausalLM") return "mistral";
  if (arch == "Qwen2ForCausalLM") return "qwen2";
  return nullptr;
}

}  // namespace

void ModelConfig::validate(const std::string& what) const {
  const char* mt = model_type_of(architecture);
  if (!mt)
    fail(what, ": architectures '", architecture,
         "' is not supported (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)");
  if (model_type != mt)
    fail(what, ": model_type '", model_type, "' does not match architecture ", architecture,
         " (expected '", mt, "')");
  const std::pair<const char*, int64_t> positive[] = {
      {"hidden_size", hidden_size},
      {"intermediate_size", intermediate_size},
      {"num_hidden_layers", num_hidden_layers},
      {"num_attention_heads", num_attention_heads},
      {"num_key_value_heads", num_key_value_heads},
      {"head_dim", head_dim},
      {"vocab_size", vocab_size},
      {"max_position_embeddings", max_position_embeddings}};
  for (const auto& [key, v] : positive)
    if (v <= 0) fail(what, ": ", key, " (", v, ") must be positive");
  if (num_attention_heads % num_key_value_heads != 0)
    fail(what, ": num_key_value_heads (", num_key_value_heads,
         ") must divide num_attention_heads (", num_attention_heads, ")");
  if (head_dim % 2 != 0) fail(what, ": head_dim (", head_dim, ") must be even for RoPE");
  if (rope.head_dim != head_dim)
    fail(what, ": rope head_dim (", rope.head_dim, ") differs from head_dim (", head_dim, ")");
  if (!(rms_norm_eps > 0)) fail(what, ": rms_norm_eps (", rms_norm_eps, ") must be positive");
  if (!(rope.theta > 0)) fail(what, ": rope_theta (", rope.theta, ") must be positive");
  if (rope.type != RopeType::kDefault && !(rope.factor > 0))
    fail(what, ": rope_scaling.factor (", rope.factor, ") must be positive");
  if (rope.type == RopeType::kLlama3) {
    // HF divides by (high_freq_factor - low_freq_factor) and by both factors.
    if (!(rope.low_freq_factor > 0) || !(rope.high_freq_factor > rope.low_freq_factor))
      fail(what, ": rope_scaling needs 0 < low_freq_factor (", rope.low_freq_factor,
           ") < high_freq_factor (", rope.high_freq_factor, ")");
    if (rope.original_max_position <= 0)
      fail(what, ": rope_scaling.original_max_position_embeddings (", rope.original_max_position,
           ") must be positive");
  }
  if (sliding_window < 0 || sliding_window >= max_position_embeddings)
    fail(what, ": sliding_window (", sliding_window,
         ") must be 0 (none) or below max_position_embeddings (", max_position_embeddings, ")");
  if (model_type == "llama" && sliding_window != 0)
    fail(what, ": LlamaForCausalLM has no sliding_window");
  // Bias layout per architecture (HF modeling files): Llama's attention_bias biases q,k,v,o;
  // Qwen2 always biases q,k,v and never o; Mistral has none. mlp_bias exists only in Llama.
  if (model_type == "llama" && o_proj_bias != attention_bias)
    fail(what, ": LlamaForCausalLM biases o_proj exactly when attention_bias is set");
  if (model_type == "qwen2" && (!attention_bias || o_proj_bias || mlp_bias))
    fail(what, ": Qwen2ForCausalLM has q,k,v biases only");
  if (model_type == "mistral" && (attention_bias || o_proj_bias || mlp_bias))
    fail(what, ": MistralForCausalLM has no biases");
  for (const auto* ids : {&bos_token_ids, &eos_token_ids})
    for (int64_t id : *ids)
      if (id < 0 || id >= vocab_size)
        fail(what, ": ", ids == &bos_token_ids ? "bos_token_id" : "eos_token_id", " (", id,
             ") is outside the vocabulary [0, ", vocab_size, ")");
}

ModelConfig parse_model_config(const std::string& json_text, const std::string& path) {
  Json j;
  try {
    j = Json::parse(json_text);
  } catch (const Json::exception& e) {
    fail(path, ": not valid JSON: ", e.what());
  }
  if (!j.is_object()) fail(path, ": expected a JSON object at the top level");

  ModelConfig c;
  const Json& archs = required(j, "architectures", path);
  if (!archs.is_array() || archs.empty() || !archs[0].is_string())
    fail(path, ": architectures must be a non-empty list of strings");
  c.architecture = archs[0].get<std::string>();
  const char* mt = model_type_of(c.architecture);
  if (!mt)
    fail(path, ": architectures '", c.architecture,
         "' is not supported (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)");
  c.model_type = mt;
  if (present(j, "model_type")) {
    const Json& v = j.at("model_type");
    if (!v.is_string() || v.get<std::string>() != mt)
      fail(path, ": model_type ", v.dump(), " does not match architecture ", c.architecture,
           " (expected \"", mt, "\")");
  }

  c.hidden_size = get_int(j, "hidden_size", path);
  c.intermediate_size = get_int(j, "intermediate_size", path);
  c.num_hidden_layers = get_int(j, "num_hidden_layers", path);
  c.num_attention_heads = get_int(j, "num_attention_heads", path);
  if (c.num_attention_heads <= 0)
    fail(path, ": num_attention_heads (", c.num_attention_heads, ") must be positive");
  c.num_key_value_heads = get_int_or(j, "num_key_value_heads", c.num_attention_heads, path);
  if (present(j, "head_dim")) {
    c.head_dim = get_int(j, "head_dim", path);
  } else {
    if (c.hidden_size % c.num_attention_heads != 0)
      fail(path, ": head_dim is absent and hidden_size (", c.hidden_size,
           ") is not a multiple of num_attention_heads (", c.num_attention_heads, ")");
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  c.vocab_size = get_int(j, "vocab_size", path);
  c.max_position_embeddings = get_int(j, "max_position_embeddings", path);
  c.rms_norm_eps = get_double(j, "rms_norm_eps", path);

  c.rope.head_dim = c.head_dim;
  c.rope.theta = get_double_or(j, "rope_theta", 10000.0, path);
  parse_rope_scaling(j, c.rope, path);

  c.tie_word_embeddings = get_bool_or(j, "tie_word_embeddings", false, path);
  if (c.model_type == "llama") {
    c.attention_bias = get_bool_or(j, "attention_bias", false, path);
    c.o_proj_bias = c.attention_bias;
    c.mlp_bias = get_bool_or(j, "mlp_bias", false, path);
  } else if (c.model_type == "qwen2") {
    // Qwen2Attention: q,k,v Linear(bias=True), o_proj bias=False; attention_bias is not read.
    c.attention_bias = true;
    c.o_proj_bias = false;
  }
  // MistralAttention/MistralMLP: every Linear has bias=False; HF ignores attention_bias there.

  int64_t window = 0;
  if (c.model_type == "mistral") {
    window = get_int_or(j, "sliding_window", 0, path);
  } else if (c.model_type == "qwen2" && get_bool_or(j, "use_sliding_window", false, path)) {
    window = get_int_or(j, "sliding_window", 0, path);
  }
  if (window < 0) fail(path, ": sliding_window (", window, ") must be >= 0 or null");
  c.sliding_window = window < c.max_position_embeddings ? window : 0;

  c.bos_token_ids = get_ids(j, "bos_token_id", path);
  c.eos_token_ids = get_ids(j, "eos_token_id", path);
  // transformers >= 4.56 writes "dtype"; older versions "torch_dtype".
  for (const char* k : {"torch_dtype", "dtype"}) {
    if (!present(j, k)) continue;
    if (!j.at(k).is_string()) fail(path, ": ", k, " must be a string");
    c.torch_dtype = j.at(k).get<std::string>();
    break;
  }
  c.validate(path);
  return c;
}

ModelConfig load_model_config(const std::string& path) {
  return parse_model_config(read_file(path), path);
}

std::string model_config_to_json(const ModelConfig& c) {
  c.validate("model_config_to_json");
  nlohmann::ordered_json j;
  j["architectures"] = {c.architecture};
  j["model_type"] = c.model_type;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["vocab_size"] = c.vocab_size;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope.theta;
  switch (c.rope.type) {
    case RopeType::kDefault: j["rope_scaling"] = nullptr; break;
    case RopeType::kLinear:
      j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", c.rope.factor}};
      break;
    case RopeType::kLlama3:
      j["rope_scaling"] = {{"rope_type", "llama3"},
                           {"factor", c.rope.factor},
                           {"low_freq_factor", c.rope.low_freq_factor},
                           {"high_freq_factor", c.rope.high_freq_factor},
                           {"original_max_position_embeddings", c.rope.original_max_position}};
      break;
  }
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  if (c.model_type == "llama") {
    j["attention_bias"] = c.attention_bias;
    j["mlp_bias"] = c.mlp_bias;
  }
  if (c.model_type == "mistral") {
    j["sliding_window"] = c.sliding_window > 0 ? Json(c.sliding_window) : Json(nullptr);
  } else if (c.model_type == "qwen2") {
    j["use_sliding_window"] = c.sliding_window > 0;
    j["sliding_window"] = c.sliding_window > 0 ? Json(c.sliding_window) : Json(nullptr);
  }
  auto ids = [](const std::vector<int64_t>& v) -> Json {
    if (v.empty()) return nullptr;
    if (v.size() == 1) return v[0];
    return v;
  };
  j["bos_token_id"] = ids(c.bos_token_ids);
  j["eos_token_id"] = ids(c.eos_token_ids);
  if (!c.torch_dtype.empty()) j["torch_dtype"] = c.torch_dtype;
  return j.dump(2) + "\n";
}

}  // namespace kvlab::model
