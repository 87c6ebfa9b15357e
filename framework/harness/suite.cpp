#include "framework/harness/suite.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>

#include "framework/core/error.h"
#include "framework/harness/config_tree.h"

namespace kvlab::harness {

std::optional<Suite> load_suite(const std::string& file) {
  const YAML::Node root = detail::load_yaml(file, {});
  if (!root.IsMap() || !root["suite"]) return std::nullopt;
  detail::check_keys(file, root, "", {"name", "suite", "report"});
  Suite s;
  s.file = file;
  const YAML::Node name = root["name"];
  if (!name || !name.IsScalar() || name.Scalar().empty())
    fail(detail::where(file, root, "name"), ": a suite needs a name");
  s.name = name.Scalar();
  const YAML::Node list = root["suite"];
  if (!list.IsSequence() || list.size() == 0)
    fail(detail::where(file, list, "suite"), ": expected a non-empty list of config files");
  const std::filesystem::path base = std::filesystem::path(file).parent_path();
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string key = "suite." + std::to_string(i);
    if (!list[i].IsScalar()) fail(detail::where(file, list[i], key), ": expected a file path");
    const std::filesystem::path p = base / list[i].Scalar();
    if (!std::filesystem::is_regular_file(p))
      fail(detail::where(file, list[i], key), ": no such config file: ", p.string());
    s.members.push_back(p.lexically_normal().string());
  }
  if (const YAML::Node r = root["report"]) {
    try {
      s.report = r.as<bool>();
    } catch (const YAML::Exception&) {
      fail(detail::where(file, r, "report"), ": expected true or false, got '", r.Scalar(), "'");
    }
  }
  return s;
}

}  // namespace kvlab::harness
