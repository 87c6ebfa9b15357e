#include "baselines/lora/lora.h"

#include "framework/core/error.h"

namespace kvlab::baselines {

std::vector<std::string> split_modules(const std::string& list, const std::string& key) {
  std::vector<std::string> out;
  size_t i = 0;
  while (true) {
    const size_t j = list.find(',', i);
    std::string item = list.substr(i, j == std::string::npos ? std::string::npos : j - i);
    const size_t a = item.find_first_not_of(" \t"), b = item.find_last_not_of(" \t");
    item = a == std::string::npos ? "" : item.substr(a, b - a + 1);
    if (item.empty())
      fail(key, ": empty module name in '", list, "' (write e.g. q,k,v,o,gate,up,down)");
    out.push_back(item);
    if (j == std::string::npos) break;
    i = j + 1;
  }
  return out;
}

std::vector<ParamDecl> lora_param_decls(const std::string& prefix) {
  using T = ParamDecl::Type;
  std::vector<ParamDecl> d;
  d.push_back({prefix + "rank",
               T::kInt,
               int64_t{8},
               1.0,
               4096.0,
               {},
               "adapter rank r: A [r, in], B [out, r] per adapted projection"});
  d.push_back({prefix + "alpha",
               T::kFloat,
               16.0,
               1e-9,
               std::nullopt,
               {},
               "scale numerator: the adapter output is multiplied by alpha / r (PEFT lora_alpha)"});
  d.push_back({prefix + "dropout",
               T::kFloat,
               0.0,
               0.0,
               0.999,
               {},
               "dropout probability on the adapter input, training only (PEFT lora_dropout)"});
  ParamDecl tm{prefix + "target_modules",
               T::kString,
               std::string("q,k,v,o,gate,up,down"),
               std::nullopt,
               std::nullopt,
               {},
               "comma list of adapted projections among q,k,v,o,gate,up,down (methods.md 3.5)"};
  const std::string key = prefix + "target_modules";
  tm.check = [key](const ParamValue& v) {
    const auto mods = split_modules(std::get<std::string>(v), key);
    static const std::vector<std::string> known = {"q", "k", "v", "o", "gate", "up", "down"};
    for (const auto& m : mods) {
      bool ok = false;
      for (const auto& k : known) ok = ok || m == k || m == k + "_proj";
      if (!ok) {
        std::string msg = str("unknown module '", m, "'");
        if (auto s = did_you_mean(m, known)) msg += str(" (did you mean '", *s, "'?)");
        throw Error(msg + "; known: q,k,v,o,gate,up,down");
      }
    }
  };
  d.push_back(tm);
  d.push_back({prefix + "seed",
               T::kInt,
               int64_t{0},
               0.0,
               std::nullopt,
               {},
               "seeds the A initialisation (U(-1/sqrt(in), 1/sqrt(in))) and the dropout masks"});
  return d;
}

model::LoraConfig lora_config_from(const ParamValues& v, const std::string& prefix) {
  model::LoraConfig c;
  c.rank = v.get_int(prefix + "rank");
  c.alpha = v.get_float(prefix + "alpha");
  c.dropout = v.get_float(prefix + "dropout");
  c.targets = split_modules(v.get_string(prefix + "target_modules"), prefix + "target_modules");
  c.seed = static_cast<uint64_t>(v.get_int(prefix + "seed"));
  return c;
}

std::vector<optim::ParamBlock> lora_blocks(model::TrainModel& m) {
  if (!m.lora_enabled()) fail("lora_blocks: the model has no LoRA adapters (call enable_lora)");
  std::vector<optim::ParamBlock> out;
  for (auto& p : m.lora_params()) out.push_back({p.name, p.data, p.grad, p.shape, true});
  return out;
}

namespace {
// Sum over layers and adapted targets of f(out, in, r).
template <class Fn>
int64_t over_targets(const model::ModelConfig& cfg, const model::LoraConfig& c, Fn f) {
  const int64_t C = cfg.hidden_size, F = cfg.intermediate_size;
  const int64_t HD = cfg.num_attention_heads * cfg.head_dim;
  const int64_t GD = cfg.num_key_value_heads * cfg.head_dim;
  int64_t total = 0;
  for (const auto& t : c.targets) {
    const std::string s = t.size() > 5 && t.ends_with("_proj") ? t.substr(0, t.size() - 5) : t;
    int64_t m = 0, n = 0;
    if (s == "q")
      m = HD, n = C;
    else if (s == "k" || s == "v")
      m = GD, n = C;
    else if (s == "o")
      m = C, n = HD;
    else if (s == "gate" || s == "up")
      m = F, n = C;
    else if (s == "down")
      m = C, n = F;
    else
      fail("lora.target_modules: unknown module '", t, "'");
    total += cfg.num_hidden_layers * f(m, n, c.rank);
  }
  return total;
}
}  // namespace

int64_t lora_trainable_floats(const model::ModelConfig& cfg, const model::LoraConfig& c) {
  return over_targets(
      cfg, c, [](int64_t m, int64_t n, int64_t r) { return lora_trainable_floats(m, n, r); });
}
int64_t lora_adamw_state_bytes(const model::ModelConfig& cfg, const model::LoraConfig& c) {
  return over_targets(
      cfg, c, [](int64_t m, int64_t n, int64_t r) { return lora_adamw_state_bytes(m, n, r); });
}

}  // namespace kvlab::baselines
