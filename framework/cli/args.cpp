#include "framework/cli/args.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "framework/core/error.h"
#include "framework/core/params.h"

namespace kvlab::cli {

Args::Args(std::string command, std::string summary, std::vector<OptionSpec> options,
           std::vector<std::string> positionals)
    : command_(std::move(command)),
      summary_(std::move(summary)),
      options_(std::move(options)),
      positionals_(std::move(positionals)) {}

const OptionSpec* Args::find(const std::string& name) const {
  for (const auto& o : options_)
    if (o.name == name) return &o;
  return nullptr;
}

std::string Args::help() const {
  std::ostringstream os;
  os << "usage: kvlab " << command_;
  for (const auto& p : positionals_) os << " " << p;
  if (!options_.empty()) os << " [options]";
  os << "\n\n" << summary_ << "\n";
  if (!options_.empty()) os << "\noptions:\n";
  for (const auto& o : options_) {
    std::string lhs = "  --" + o.name + (o.metavar.empty() ? "" : " " + o.metavar);
    os << lhs;
    if (lhs.size() < 30) os << std::string(30 - lhs.size(), ' ');
    else os << "\n" << std::string(30, ' ');
    os << o.help;
    if (o.required) os << " (required)";
    if (!o.default_value.empty()) os << " [default: " << o.default_value << "]";
    if (o.repeated) os << " (may repeat)";
    os << "\n";
  }
  os << "  --help                      show this help\n";
  return os.str();
}

bool Args::parse(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(help().c_str(), stdout);
      return false;
    }
    if (a.rfind("--", 0) == 0) {
      std::string name = a.substr(2), value;
      bool has_eq = false;
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        has_eq = true;
      }
      const OptionSpec* o = find(name);
      if (!o) {
        std::vector<std::string> names;
        for (const auto& x : options_) names.push_back(x.name);
        std::string msg = str("kvlab ", command_, ": unknown option --", name);
        if (auto s = did_you_mean(name, names)) msg += str(" (did you mean --", *s, "?)");
        msg += "; see kvlab " + command_ + " --help";
        throw Error(msg);
      }
      if (o->metavar.empty()) {
        if (has_eq) fail("kvlab ", command_, ": --", name, " takes no value");
        value = "true";
      } else if (!has_eq) {
        if (i + 1 >= argc) fail("kvlab ", command_, ": --", name, " needs a value (", o->metavar, ")");
        value = argv[++i];
      }
      auto& slot = values_[name];
      if (!slot.empty() && !o->repeated) fail("kvlab ", command_, ": --", name, " given twice");
      slot.push_back(value);
    } else {
      if (pos_values_.size() >= positionals_.size())
        fail("kvlab ", command_, ": unexpected argument '", a, "'; see kvlab ", command_, " --help");
      pos_values_.push_back(a);
    }
  }
  if (pos_values_.size() < positionals_.size())
    fail("kvlab ", command_, ": missing ", positionals_[pos_values_.size()], "; see kvlab ",
         command_, " --help");
  for (const auto& o : options_)
    if (o.required && !values_.count(o.name))
      fail("kvlab ", command_, ": --", o.name, " is required; see kvlab ", command_, " --help");
  return true;
}

bool Args::has(const std::string& name) const { return values_.count(name) != 0; }

std::string Args::get(const std::string& name) const {
  const OptionSpec* o = find(name);
  KVLAB_CHECK(o) << "option --" << name << " is not declared for " << command_;
  if (auto it = values_.find(name); it != values_.end()) return it->second.back();
  if (!o->default_value.empty()) return o->default_value;
  fail("kvlab ", command_, ": --", name, " is required here");
}

std::vector<std::string> Args::get_all(const std::string& name) const {
  if (auto it = values_.find(name); it != values_.end()) return it->second;
  return {};
}

int64_t Args::get_int(const std::string& name) const {
  const std::string v = get(name);
  errno = 0;
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end || errno) fail("kvlab ", command_, ": --", name, " must be an integer, got '", v, "'");
  return x;
}

double Args::get_float(const std::string& name) const {
  const std::string v = get(name);
  errno = 0;
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end || errno || !std::isfinite(x))
    fail("kvlab ", command_, ": --", name, " must be a number, got '", v, "'");
  return x;
}

bool Args::flag(const std::string& name) const { return has(name); }

}  // namespace kvlab::cli
