// Declared command-line options: each subcommand lists its options once (name, value name,
// default, help); parsing, --help and "did you mean" errors derive from that list.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kvlab::cli {

struct OptionSpec {
  std::string name;      // without leading dashes, e.g. "max-new-tokens"
  std::string metavar;   // "" for a boolean flag
  std::string help;
  std::string default_value;  // "" = no default
  bool required = false;
  bool repeated = false;  // may be given several times (e.g. --set)
};

class Args {
 public:
  Args(std::string command, std::string summary, std::vector<OptionSpec> options,
       std::vector<std::string> positionals = {});
  // Parses argv[first..]; returns false when --help was printed (caller exits 0). Unknown
  // options, missing values and missing required options throw kvlab::Error.
  bool parse(int argc, char** argv, int first);
  std::string help() const;

  bool has(const std::string& name) const;
  std::string get(const std::string& name) const;  // value or default; error if neither
  std::vector<std::string> get_all(const std::string& name) const;
  int64_t get_int(const std::string& name) const;
  double get_float(const std::string& name) const;
  bool flag(const std::string& name) const;
  const std::vector<std::string>& positionals() const { return pos_values_; }

 private:
  const OptionSpec* find(const std::string& name) const;
  std::string command_, summary_;
  std::vector<OptionSpec> options_;
  std::vector<std::string> positionals_;
  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::string> pos_values_;
};

}  // namespace kvlab::cli
