#include "framework/optim/target_modules.h"

#include <sstream>

#include "framework/core/error.h"

namespace kvlab::optim {

std::vector<std::string> parse_target_modules(const std::string& list, const std::string& key) {
  std::vector<std::string> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto b = item.find_first_not_of(" \t");
    const auto e = item.find_last_not_of(" \t");
    if (b == std::string::npos) fail(key, ": empty module name in '", list, "'");
    item = item.substr(b, e - b + 1);
    for (const char* s : {"q", "k", "v", "o", "up", "down", "gate"})
      if (item == s) item += "_proj";
    out.push_back(item);
  }
  if (out.empty()) fail(key, ": no module names in '", list, "'");
  return out;
}

bool is_target_matrix(const ParamBlock& b, const std::vector<std::string>& modules) {
  if (b.shape.size() != 2) return false;
  std::stringstream ss(b.name);
  std::string part;
  while (std::getline(ss, part, '.'))
    for (const auto& m : modules)
      if (part == m) return true;
  return false;
}

}  // namespace kvlab::optim
