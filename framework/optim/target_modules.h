// Which parameter blocks a projection optimizer (SGC, GaLore) compresses: 2-D blocks whose
// Hugging Face name has a dotted component equal to a listed module, e.g. "q_proj" matches
// "model.layers.3.self_attn.q_proj.weight". Short names q, k, v, o, up, down, gate stand for
// q_proj ... gate_proj (the LLM-Adapters / GaLore commonsense protocol, methods.md section 3.5).
#pragma once

#include <string>
#include <vector>

#include "framework/optim/optimizer.h"

namespace kvlab::optim {

// "q,k,v,o,up,down,gate" -> {"q_proj", ..., "gate_proj"}; entries trimmed; an empty entry or an
// empty list throws kvlab::Error naming `key`.
std::vector<std::string> parse_target_modules(const std::string& list, const std::string& key);
// True when b is 2-D and one of its name's dotted components is in `modules`.
bool is_target_matrix(const ParamBlock& b, const std::vector<std::string>& modules);

}  // namespace kvlab::optim
