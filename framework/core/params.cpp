#include "framework/core/params.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "framework/core/error.h"

namespace kvlab {

std::string param_type_name(ParamDecl::Type t) {
  switch (t) {
    case ParamDecl::Type::kBool: return "bool";
    case ParamDecl::Type::kInt: return "int";
    case ParamDecl::Type::kFloat: return "float";
    case ParamDecl::Type::kString: return "string";
    case ParamDecl::Type::kChoice: return "choice";
  }
  return "?";
}

ParamDecl param_decl(std::string name, ParamDecl::Type type, ParamValue def, std::string help,
                     std::optional<double> min, std::optional<double> max,
                     std::vector<std::string> choices) {
  ParamDecl d;
  d.name = std::move(name);
  d.type = type;
  d.default_value = std::move(def);
  d.help = std::move(help);
  d.min = min;
  d.max = max;
  d.choices = std::move(choices);
  return d;
}

std::string param_value_to_string(const ParamValue& v) {
  if (auto* b = std::get_if<bool>(&v)) return *b ? "true" : "false";
  if (auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  if (auto* d = std::get_if<double>(&v)) {
    std::ostringstream os;
    os.precision(17);
    os << *d;
    return os.str();
  }
  return std::get<std::string>(v);
}

ParamValues::ParamValues(const std::vector<ParamDecl>& decls) : decls_(decls) {
  for (const auto& d : decls_) values_[d.name] = d.default_value;
}

const ParamDecl& ParamValues::decl(const std::string& name, const std::string& where) const {
  for (const auto& d : decls_)
    if (d.name == name) return d;
  std::vector<std::string> names;
  for (const auto& d : decls_) names.push_back(d.name);
  std::string msg = str(where, ": unknown parameter '", name, "'");
  if (auto s = did_you_mean(name, names)) msg += str(" (did you mean '", *s, "'?)");
  if (names.empty()) {
    msg += "; this method takes no parameters";
  } else {
    msg += "; known:";
    for (const auto& n : names) msg += " " + n;
  }
  throw Error(msg);
}

void ParamValues::set(const std::string& name, ParamValue v, const std::string& where) {
  const ParamDecl& d = decl(name, where);
  auto range_check = [&](double x) {
    if ((d.min && x < *d.min) || (d.max && x > *d.max)) {
      fail(where, ": ", name, " = ", param_value_to_string(v), " is out of range [",
           d.min ? param_value_to_string(*d.min) : "-inf", ", ",
           d.max ? param_value_to_string(*d.max) : "inf", "]");
    }
  };
  switch (d.type) {
    case ParamDecl::Type::kBool:
      if (!std::holds_alternative<bool>(v)) fail(where, ": ", name, " must be a bool");
      break;
    case ParamDecl::Type::kInt:
      if (auto* f = std::get_if<double>(&v)) {
        if (std::floor(*f) != *f) fail(where, ": ", name, " must be an integer, got ", *f);
        v = static_cast<int64_t>(*f);
      }
      if (!std::holds_alternative<int64_t>(v)) fail(where, ": ", name, " must be an integer");
      range_check(static_cast<double>(std::get<int64_t>(v)));
      break;
    case ParamDecl::Type::kFloat:
      if (auto* i = std::get_if<int64_t>(&v)) v = static_cast<double>(*i);
      if (!std::holds_alternative<double>(v)) fail(where, ": ", name, " must be a number");
      range_check(std::get<double>(v));
      break;
    case ParamDecl::Type::kString:
      if (!std::holds_alternative<std::string>(v)) fail(where, ": ", name, " must be a string");
      break;
    case ParamDecl::Type::kChoice: {
      if (!std::holds_alternative<std::string>(v)) fail(where, ": ", name, " must be a string");
      const auto& s = std::get<std::string>(v);
      if (std::find(d.choices.begin(), d.choices.end(), s) == d.choices.end()) {
        std::string msg = str(where, ": ", name, " = '", s, "' is not one of:");
        for (const auto& c : d.choices) msg += " " + c;
        if (auto m = did_you_mean(s, d.choices)) msg += str(" (did you mean '", *m, "'?)");
        throw Error(msg);
      }
      break;
    }
  }
  if (d.check) {
    try {
      d.check(v);
    } catch (const Error& e) {
      fail(where, ": ", name, " = '", param_value_to_string(v), "': ", e.what());
    }
  }
  values_[name] = std::move(v);
}

void ParamValues::set_from_string(const std::string& name, const std::string& text,
                                  const std::string& where) {
  const ParamDecl& d = decl(name, where);
  switch (d.type) {
    case ParamDecl::Type::kBool:
      if (text == "true" || text == "True" || text == "1") return set(name, true, where);
      if (text == "false" || text == "False" || text == "0") return set(name, false, where);
      fail(where, ": ", name, " must be true or false, got '", text, "'");
    case ParamDecl::Type::kInt: {
      errno = 0;
      char* end = nullptr;
      const long long x = std::strtoll(text.c_str(), &end, 10);
      if (text.empty() || *end != '\0' || errno)
        fail(where, ": ", name, " must be an integer, got '", text, "'");
      return set(name, static_cast<int64_t>(x), where);
    }
    case ParamDecl::Type::kFloat: {
      errno = 0;
      char* end = nullptr;
      const double x = std::strtod(text.c_str(), &end);
      if (text.empty() || *end != '\0' || errno || !std::isfinite(x))
        fail(where, ": ", name, " must be a finite number, got '", text, "'");
      return set(name, x, where);
    }
    default: return set(name, text, where);
  }
}

int64_t ParamValues::get_int(const std::string& name) const {
  return std::get<int64_t>(values_.at(decl(name, "parameter lookup").name));
}
double ParamValues::get_float(const std::string& name) const {
  return std::get<double>(values_.at(decl(name, "parameter lookup").name));
}
bool ParamValues::get_bool(const std::string& name) const {
  return std::get<bool>(values_.at(decl(name, "parameter lookup").name));
}
const std::string& ParamValues::get_string(const std::string& name) const {
  return std::get<std::string>(values_.at(decl(name, "parameter lookup").name));
}

std::optional<std::string> did_you_mean(const std::string& name,
                                        const std::vector<std::string>& candidates) {
  auto dist = [](const std::string& a, const std::string& b) {
    std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
      cur[0] = i;
      for (size_t j = 1; j <= b.size(); ++j)
        cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
      std::swap(prev, cur);
    }
    return prev[b.size()];
  };
  std::optional<std::string> best;
  size_t best_d = 0;
  for (const auto& c : candidates) {
    const size_t d = dist(name, c);
    if (!best || d < best_d) {
      best = c;
      best_d = d;
    }
  }
  if (best && best_d <= std::max<size_t>(2, name.size() / 3)) return best;
  return std::nullopt;
}

}  // namespace kvlab
