// Parameters declared once (DESIGN.md section 2): name, type, default, range, one line of help.
// The declaration drives config parsing and validation, `kvlab help METHOD`, and the copy stored
// with results. Values are held as a small variant keyed by name.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace kvlab {

using ParamValue = std::variant<bool, int64_t, double, std::string>;

struct ParamDecl {
  enum class Type { kBool, kInt, kFloat, kString, kChoice };
  std::string name;
  Type type = Type::kInt;
  ParamValue default_value;
  std::optional<double> min;  // inclusive, numeric types
  std::optional<double> max;  // inclusive, numeric types
  std::vector<std::string> choices;  // kChoice
  std::string help;
  // Optional format check beyond type and range (e.g. a list "512,1024"); throws kvlab::Error
  // with its own message, which set() prefixes with the config location and key.
  std::function<void(const ParamValue&)> check;
};

// A declaration written help-first (long parameter lists read better this way).
ParamDecl param_decl(std::string name, ParamDecl::Type type, ParamValue def, std::string help,
                     std::optional<double> min = std::nullopt,
                     std::optional<double> max = std::nullopt,
                     std::vector<std::string> choices = {});

std::string param_type_name(ParamDecl::Type t);
std::string param_value_to_string(const ParamValue& v);

// Resolved values for one declaration list: every declared name present.
class ParamValues {
 public:
  ParamValues() = default;
  // Starts from the defaults of `decls`.
  explicit ParamValues(const std::vector<ParamDecl>& decls);
  // Sets `name` from text (YAML scalar or --set value), checking type and range against the
  // declaration. `where` prefixes errors (e.g. "configs/x.yaml:12: method.rank"). Unknown names
  // get a "did you mean".
  void set_from_string(const std::string& name, const std::string& text, const std::string& where);
  void set(const std::string& name, ParamValue v, const std::string& where);

  int64_t get_int(const std::string& name) const;
  double get_float(const std::string& name) const;
  bool get_bool(const std::string& name) const;
  const std::string& get_string(const std::string& name) const;
  const std::map<std::string, ParamValue>& values() const { return values_; }
  const std::vector<ParamDecl>& decls() const { return decls_; }

 private:
  const ParamDecl& decl(const std::string& name, const std::string& where) const;
  std::vector<ParamDecl> decls_;
  std::map<std::string, ParamValue> values_;
};

// The closest of `candidates` to `name` by edit distance, if close enough to suggest.
std::optional<std::string> did_you_mean(const std::string& name,
                                        const std::vector<std::string>& candidates);

}  // namespace kvlab
