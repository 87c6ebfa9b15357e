// Sweep expansion (grid, zip, methods), its order and ids, and the errors of swept keys.
#include "framework/harness/sweep.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "framework/core/error.h"

namespace kvlab::harness {
namespace {

namespace fs = std::filesystem;

const std::vector<ParamDecl>& method_decls(const std::string& name) {
  static const std::vector<ParamDecl> none;
  static const std::vector<ParamDecl> lowrank = {
      {"rank", ParamDecl::Type::kInt, int64_t{32}, 1.0, 128.0, {}, "rank"},
      {"window", ParamDecl::Type::kInt, int64_t{16}, 0.0, std::nullopt, {}, "recent tokens"}};
  static const std::vector<ParamDecl> evict = {
      {"window", ParamDecl::Type::kInt, int64_t{16}, 0.0, std::nullopt, {}, "recent tokens"}};
  if (name == "full_cache") return none;
  if (name == "lowrank") return lowrank;
  if (name == "evict") return evict;
  fail("unknown KV-cache method '", name, "'");
}
const std::vector<ParamDecl>& exp_decls(const std::string& name) {
  static const std::vector<ParamDecl> ppl = {
      {"max_tokens", ParamDecl::Type::kInt, int64_t{2048}, 2.0, std::nullopt, {}, "n"},
      {"text", ParamDecl::Type::kString, std::string("x"), std::nullopt, std::nullopt, {}, "t"}};
  if (name == "ppl") return ppl;
  fail("unknown experiment '", name, "'");
}

std::string write(const std::string& text) {
  static int n = 0;
  const fs::path p = fs::temp_directory_path() / ("kvlab_sweep_" + std::to_string(getpid()) + "_" +
                                                  std::to_string(n++) + ".yaml");
  std::ofstream(p) << text;
  return p.string();
}

const std::string kHead = "name: t\nexperiment: ppl\nmodel: {preset: tiny}\n";

Sweep load(const std::string& text, const std::vector<std::string>& sets = {}) {
  return load_sweep(write(text), sets, method_decls, exp_decls);
}

std::string error_of(const std::string& text, const std::vector<std::string>& sets = {}) {
  try {
    load(text, sets);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

std::vector<std::string> listing(const Sweep& s) {
  std::vector<std::string> out;
  for (const auto& p : s.points) out.push_back(p.swept_text());
  return out;
}

void expect_distinct_ids(const Sweep& s) {
  std::set<std::string> ids;
  for (const auto& p : s.points) ids.insert(p.config.point_id());
  EXPECT_EQ(ids.size(), s.points.size());
}

TEST(Sweep, NoSweepIsOnePoint) {
  const Sweep s = load(kHead);
  ASSERT_EQ(s.points.size(), 1u);
  EXPECT_FALSE(s.has_sweep);
  EXPECT_TRUE(s.points[0].swept.empty());
  EXPECT_EQ(s.dir(), "results/t");
}

TEST(Sweep, GridIsACartesianProductFirstKeySlowest) {
  const Sweep s =
      load(kHead +
           "method: {name: lowrank}\n"
           "sweep:\n  grid:\n    method.rank: [8, 16]\n    task.max_tokens: [100, 200, 300]\n");
  ASSERT_EQ(s.points.size(), 6u);
  EXPECT_EQ(listing(s),
            (std::vector<std::string>{
                "method.rank=8 task.max_tokens=100", "method.rank=8 task.max_tokens=200",
                "method.rank=8 task.max_tokens=300", "method.rank=16 task.max_tokens=100",
                "method.rank=16 task.max_tokens=200", "method.rank=16 task.max_tokens=300"}));
  EXPECT_EQ(s.points[4].config.method_params.get_int("rank"), 16);
  EXPECT_EQ(s.points[4].config.task.get_int("max_tokens"), 200);
  expect_distinct_ids(s);
}

TEST(Sweep, ZipTakesListsTogetherAndCrossesWithTheGrid) {
  Sweep s = load(kHead + "sweep:\n  zip:\n    task.max_tokens: [100, 200]\n    seed: [1, 2]\n");
  EXPECT_EQ(listing(s),
            (std::vector<std::string>{"task.max_tokens=100 seed=1", "task.max_tokens=200 seed=2"}));
  EXPECT_EQ(s.points[1].config.seed, 2);
  s = load(kHead +
           "sweep:\n  zip:\n    task.max_tokens: [100, 200]\n    seed: [1, 2]\n  grid:\n    "
           "threads: [1, 2, 4]\n");
  ASSERT_EQ(s.points.size(), 6u);
  EXPECT_EQ(s.points[0].swept_text(), "threads=1 task.max_tokens=100 seed=1");
  EXPECT_EQ(s.points[1].swept_text(), "threads=1 task.max_tokens=200 seed=2");
  EXPECT_EQ(s.points[5].swept_text(), "threads=4 task.max_tokens=200 seed=2");
  expect_distinct_ids(s);
}

TEST(Sweep, MethodsEachWithTheirOwnBlockCrossedWithTheGrid) {
  const Sweep s =
      load(kHead +
           "sweep:\n  methods:\n    - {name: full_cache}\n    - {name: lowrank, rank: 8}\n"
           "    - evict\n  grid:\n    task.max_tokens: [100, 200]\n");
  ASSERT_EQ(s.points.size(), 6u);
  EXPECT_EQ(listing(s),
            (std::vector<std::string>{
                "method=full_cache task.max_tokens=100", "method=full_cache task.max_tokens=200",
                "method=lowrank method.rank=8 task.max_tokens=100",
                "method=lowrank method.rank=8 task.max_tokens=200",
                "method=evict task.max_tokens=100", "method=evict task.max_tokens=200"}));
  EXPECT_EQ(s.points[2].config.method, "lowrank");
  EXPECT_EQ(s.points[2].config.method_params.get_int("rank"), 8);
  EXPECT_EQ(s.points[4].config.method, "evict");
  expect_distinct_ids(s);
}

TEST(Sweep, SharedMethodBlockReachesTheMethodsThatDeclareIt) {
  // --set method.window=7 next to sweep.methods: evict and lowrank take it (over lowrank's own
  // value), full_cache does not declare it.
  const std::string cfg = kHead +
                          "sweep:\n  methods: [full_cache, {name: lowrank, window: 3}, evict]\n";
  const Sweep s = load(cfg, {"method.window=7"});
  ASSERT_EQ(s.points.size(), 3u);
  EXPECT_EQ(listing(s), (std::vector<std::string>{"method=full_cache",
                                                  "method=lowrank method.window=7",
                                                  "method=evict method.window=7"}));
  EXPECT_EQ(s.points[1].config.method_params.get_int("window"), 7);
  // The same in the file.
  const Sweep f = load(kHead + "method: {window: 5}\n" +
                       "sweep:\n  methods: [full_cache, lowrank]\n");
  EXPECT_EQ(f.points[1].config.method_params.get_int("window"), 5);
  // A key no listed method declares, or a method name, is an error.
  EXPECT_NE(error_of(cfg, {"method.rnak=7"}).find("no method in sweep.methods declares 'rnak'"),
            std::string::npos)
      << error_of(cfg, {"method.rnak=7"});
  EXPECT_NE(error_of(cfg, {"method.name=evict"}).find("not both"), std::string::npos);
}

TEST(Sweep, SweptMethodKeyAppliesOnlyWhereDeclared) {
  // full_cache has no window: it runs once; lowrank and evict take both windows.
  const Sweep s = load(kHead +
                       "sweep:\n  methods: [full_cache, {name: lowrank, rank: 4}, evict]\n"
                       "  grid:\n    method.window: [32, 64]\n");
  EXPECT_EQ(listing(s), (std::vector<std::string>{
                            "method=full_cache", "method=lowrank method.rank=4 method.window=32",
                            "method=lowrank method.rank=4 method.window=64",
                            "method=evict method.window=32", "method=evict method.window=64"}));
  EXPECT_EQ(s.duplicates_dropped, 1u);
  expect_distinct_ids(s);
}

TEST(Sweep, OrderAndIdsAreDeterministic) {
  const std::string text = kHead +
                           "sweep:\n  methods: [full_cache, {name: lowrank, rank: 4}]\n"
                           "  grid: {seed: [3, 1, 2]}\n  zip: {task.max_tokens: [10, 20]}\n";
  const Sweep a = load(text), b = load(text);
  ASSERT_EQ(a.points.size(), 12u);
  ASSERT_EQ(b.points.size(), 12u);
  for (size_t i = 0; i < a.points.size(); ++i) {
    EXPECT_EQ(a.points[i].config.point_id(), b.points[i].config.point_id());
    EXPECT_EQ(a.points[i].swept_text(), b.points[i].swept_text());
  }
  EXPECT_EQ(a.points[0].swept_text(), "method=full_cache seed=3 task.max_tokens=10");
  EXPECT_EQ(a.points[11].swept_text(), "method=lowrank method.rank=4 seed=2 task.max_tokens=20");
  // A point's id is its resolved config's: the same as the equivalent single run.
  const Sweep single =
      load(kHead + "method: {name: lowrank, rank: 4}\nseed: 2\ntask: {max_tokens: 20}\n");
  EXPECT_EQ(single.points[0].config.point_id(), a.points[11].config.point_id());
  expect_distinct_ids(a);
}

TEST(Sweep, OverridesReachTheSweep) {
  const Sweep s =
      load(kHead + "sweep:\n  grid: {seed: [1, 2]}\n", {"sweep.grid.seed=[5, 6, 7]", "threads=3"});
  ASSERT_EQ(s.points.size(), 3u);
  EXPECT_EQ(s.points[2].config.seed, 7);
  EXPECT_EQ(s.points[2].config.threads, 3);
}

TEST(Sweep, SweptValueErrorsNameFileLineAndKey) {
  // Line 6 holds the bad value (rank 500 out of range): every point is checked before any runs.
  std::string e = error_of(
      kHead + "method: lowrank\nsweep:\n  grid:\n    method.rank:\n      - 8\n      - 500\n");
  EXPECT_NE(e.find(".yaml:9: method: rank = 500 is out of range [1, 128] (in sweep point 1: "
                   "method.rank=500)"),
            std::string::npos)
      << e;
  e = error_of(kHead + "sweep:\n  grid:\n    task.max_tokns: [100]\n");
  EXPECT_NE(e.find(".yaml:6: task: unknown parameter 'max_tokns' (did you mean 'max_tokens'?)"),
            std::string::npos)
      << e;
  e = error_of(kHead + "sweep:\n  grid:\n    tsak.max_tokens: [100]\n");
  EXPECT_NE(
      e.find(".yaml:6: sweep.grid.tsak.max_tokens: unknown key 'tsak' (did you mean 'task'?)"),
      std::string::npos)
      << e;
  e = error_of(kHead + "sweep:\n  zip:\n    seed: [1, 2]\n    task.max_tokens: [100]\n");
  EXPECT_NE(e.find(".yaml:7: sweep.zip.task.max_tokens: has 1 values but sweep.zip.seed has 2"),
            std::string::npos)
      << e;
  e = error_of(kHead + "sweep:\n  gird: {seed: [1]}\n");
  EXPECT_NE(e.find(".yaml:5: sweep.gird: unknown key (did you mean 'sweep.grid'?)"),
            std::string::npos)
      << e;
  e = error_of(kHead + "sweep:\n  grid: {name: [a, b]}\n");
  EXPECT_NE(e.find(".yaml:5: sweep.grid.name: 'name' cannot be swept"), std::string::npos) << e;
  e = error_of(kHead + "sweep:\n  grid: {seed: 3}\n");
  EXPECT_NE(e.find(".yaml:5: sweep.grid.seed: expected a non-empty list"), std::string::npos) << e;
  e = error_of(kHead + "sweep:\n  methods:\n    - full_cache\n    - {name: lowrank, rnak: 4}\n");
  EXPECT_NE(e.find(".yaml:7: method: unknown parameter 'rnak' (did you mean 'rank'?)"),
            std::string::npos)
      << e;
  e = error_of(kHead + "sweep:\n  methods:\n    - full_cache\n    - lowrnak\n");
  EXPECT_NE(e.find(".yaml:7: method.name: unknown KV-cache method 'lowrnak'"), std::string::npos)
      << e;
  e = error_of(kHead + "method: lowrank\nsweep:\n  methods: [full_cache]\n");
  EXPECT_NE(e.find(".yaml:4: method: give the method either here or in sweep.methods"),
            std::string::npos)
      << e;
  e = error_of(kHead +
               "sweep:\n  methods: [{name: lowrank, rank: 4}]\n  grid: {method.rank: [1, 2]}\n");
  EXPECT_NE(e.find("sets 'method.rank', which the sweep also varies"), std::string::npos) << e;
  // A method key no swept method declares is a typo, reported at its value's line.
  e = error_of(kHead + "sweep:\n  methods: [full_cache, lowrank]\n  grid:\n    method.rnak: [1]\n");
  EXPECT_NE(e.find(".yaml:7: method: unknown parameter 'rnak'"), std::string::npos) << e;
  e = error_of(kHead + "sweep:\n  grid: {seed: [1, x]}\n");
  EXPECT_NE(e.find(".yaml:5: seed: expected an integer, got 'x' (in sweep point 1: seed=x)"),
            std::string::npos)
      << e;
  e = error_of(kHead + "sweep:\n  grid: {seed: [1]}\n", {"sweep.grid.seed=[1, y]"});
  EXPECT_NE(e.find("(--set): seed: expected an integer, got 'y'"), std::string::npos) << e;
}

TEST(Sweep, DuplicatePointsAreKeptOnce) {
  const Sweep s = load(kHead + "sweep:\n  grid: {seed: [1, 2, 1]}\n");
  EXPECT_EQ(listing(s), (std::vector<std::string>{"seed=1", "seed=2"}));
  EXPECT_EQ(s.duplicates_dropped, 1u);
}

TEST(Sweep, LoadRunConfigRefusesManyPoints) {
  const std::string f = write(kHead + "sweep:\n  grid: {seed: [1, 2]}\n");
  try {
    load_run_config(f, {}, method_decls, exp_decls);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("has a sweep of 2 points"), std::string::npos) << e.what();
  }
  EXPECT_EQ(
      load_run_config(write(kHead + "sweep:\n  grid: {seed: [4]}\n"), {}, method_decls, exp_decls)
          .seed,
      4);
}

}  // namespace
}  // namespace kvlab::harness
