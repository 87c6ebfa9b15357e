#include "framework/harness/run_config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "framework/core/error.h"

namespace kvlab::harness {
namespace {

namespace fs = std::filesystem;

const std::vector<ParamDecl>& method_decls(const std::string& name) {
  static const std::vector<ParamDecl> none;
  static const std::vector<ParamDecl> lowrank = {
      {"rank", ParamDecl::Type::kInt, int64_t{32}, 1.0, 128.0, {}, "rank"}};
  if (name == "full_cache") return none;
  if (name == "lowrank") return lowrank;
  fail("unknown KV-cache method '", name, "'");
}
const std::vector<ParamDecl>& exp_decls(const std::string& name) {
  static const std::vector<ParamDecl> ppl = {
      {"max_tokens", ParamDecl::Type::kInt, int64_t{2048}, 2.0, std::nullopt, {}, "n"}};
  if (name == "ppl") return ppl;
  fail("unknown experiment '", name, "'");
}

std::string write(const std::string& text) {
  static int n = 0;
  const fs::path p = fs::temp_directory_path() / ("kvlab_cfg_" + std::to_string(getpid()) + "_" +
                                                  std::to_string(n++) + ".yaml");
  std::ofstream(p) << text;
  return p.string();
}

std::string error_of(const std::string& text, const std::vector<std::string>& sets = {}) {
  try {
    load_run_config(write(text), sets, method_decls, exp_decls);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

const char* kGood =
    "name: t\nexperiment: ppl\nmodel: {preset: tiny}\nmethod:\n  name: lowrank\n  rank: 16\n"
    "task:\n  max_tokens: 100\n";

TEST(RunConfig, ParsesAndResolvesDefaults) {
  const RunConfig c = load_run_config(write(kGood), {}, method_decls, exp_decls);
  EXPECT_EQ(c.name, "t");
  EXPECT_EQ(c.model.preset, "tiny");
  EXPECT_EQ(c.model.dtype, "bf16");
  EXPECT_EQ(c.method, "lowrank");
  EXPECT_EQ(c.method_params.get_int("rank"), 16);
  EXPECT_EQ(c.task.get_int("max_tokens"), 100);
  EXPECT_NE(c.resolved_yaml().find("rank: 16"), std::string::npos);
  EXPECT_EQ(c.point_id().size(), 12u);
}

TEST(RunConfig, OverridesChangeThePointId) {
  const std::string f = write(kGood);
  const RunConfig a = load_run_config(f, {}, method_decls, exp_decls);
  const RunConfig b = load_run_config(f, {"method.rank=8"}, method_decls, exp_decls);
  const RunConfig a2 = load_run_config(f, {}, method_decls, exp_decls);
  EXPECT_EQ(b.method_params.get_int("rank"), 8);
  EXPECT_NE(a.point_id(), b.point_id());
  EXPECT_EQ(a.point_id(), a2.point_id());
  const RunConfig m = load_run_config(f, {"model=some/dir"}, method_decls, exp_decls);
  EXPECT_EQ(m.model.path, "some/dir");
}

TEST(RunConfig, ErrorsNameFileLineAndKey) {
  std::string e = error_of("name: t\nexperiment: ppl\nmodel: {preset: tiny}\nmethdo: {name: x}\n");
  EXPECT_NE(e.find(":4: methdo: unknown key (did you mean 'method'?)"), std::string::npos) << e;
  e = error_of(std::string(kGood) + "seed: 1\n", {"method.rank=500"});
  EXPECT_NE(e.find("rank = 500 is out of range [1, 128]"), std::string::npos) << e;
  e = error_of(
      "name: t\nexperiment: ppl\nmodel: {preset: tiny}\nmethod:\n  name: lowrank\n  rnak: 3\n");
  EXPECT_NE(e.find(":6: method: unknown parameter 'rnak' (did you mean 'rank'?)"),
            std::string::npos)
      << e;
  e = error_of("name: t\nexperiment: pll\nmodel: {preset: tiny}\n");
  EXPECT_NE(e.find(":2: experiment"), std::string::npos) << e;
  e = error_of("name: t\nexperiment: ppl\nmodel: {preset: tiny}\ntask:\n  max_tokens: lots\n");
  EXPECT_NE(e.find(":5: task: max_tokens must be an integer"), std::string::npos) << e;
  e = error_of("name: t\nexperiment: ppl\nmodel: {preset: tiny, path: x}\n");
  EXPECT_NE(e.find("exactly one of path, preset, config"), std::string::npos) << e;
  e = error_of("name: t\n  experiment: [ppl\n");
  EXPECT_NE(e.find("malformed YAML"), std::string::npos) << e;
  e = error_of("name: t\nmodel: x\n");
  EXPECT_NE(e.find("missing required key 'experiment'"), std::string::npos) << e;
  e = error_of(kGood, {"task.max_tokens"});
  EXPECT_NE(e.find("expected KEY.PATH=VALUE"), std::string::npos) << e;
  EXPECT_NE(error_of("name: a/b\nexperiment: ppl\nmodel: x\n").find("names a folder"),
            std::string::npos);
}

}  // namespace
}  // namespace kvlab::harness
