// Checkpoints (framework/train/checkpoint.h): bit-exact round trip, AdamW resume equivalence,
// name/shape checks, atomic writes and keep-last pruning.
#include "framework/train/checkpoint.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "baselines/adamw/adamw.h"
#include "framework/core/error.h"

namespace kvlab::train {
namespace {

namespace fs = std::filesystem;
using baselines::AdamW;
using baselines::AdamWParams;

fs::path scratch(const std::string& name) {
  const fs::path d = fs::path(KVLAB_BINARY_DIR) / "test_scratch" / "checkpoint" / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// A small model: 3 blocks (a matrix, a norm vector without decay, a second matrix) with
// deterministic values and a gradient stream that depends only on (step, block, element).
struct Model {
  std::vector<std::vector<float>> data, grad;
  std::vector<optim::ParamBlock> blocks;
  explicit Model(uint32_t seed) {
    const std::vector<std::vector<int64_t>> shapes = {{6, 5}, {5}, {3, 7}};
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd;
    for (const auto& s : shapes) {
      int64_t n = 1;
      for (auto d : s) n *= d;
      data.emplace_back(n);
      for (auto& x : data.back()) x = nd(rng);
      grad.emplace_back(n, 0.0f);
    }
    const char* names[] = {"model.layers.0.mlp.up_proj.weight", "model.norm.weight",
                           "lm_head.weight"};
    for (size_t i = 0; i < shapes.size(); ++i)
      blocks.push_back({names[i], data[i].data(), grad[i].data(), shapes[i], i != 1});
  }
  void set_grads(int step) {
    for (size_t i = 0; i < grad.size(); ++i) {
      std::mt19937 rng(1000 * step + static_cast<uint32_t>(i));
      std::normal_distribution<float> nd(0.0f, 0.5f);
      for (auto& g : grad[i]) g = nd(rng);
    }
  }
};

void run_steps(Model& m, AdamW& opt, int from, int to) {
  for (int s = from; s < to; ++s) {
    m.set_grads(s);
    opt.step(m.blocks, 1e-2 * (1.0 + 0.1 * s));
  }
}

bool same_bytes(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(Checkpoint, SaveMutateLoadRestoresIdenticalBytes) {
  const auto dir = scratch("roundtrip");
  Model m(7);
  AdamW opt(AdamWParams{});
  run_steps(m, opt, 0, 2);
  const auto saved_data = m.data;
  std::vector<std::vector<float>> saved_state;
  for (const auto& s : opt.state()) saved_state.emplace_back(s.data, s.data + s.numel);
  nlohmann::json loop = {{"step", 2},
                         {"data_position", 123456789012LL},
                         {"rng", {18446744073709551615ULL, 42ULL}},
                         {"loss", {2.5, 2.25}}};
  const std::string path = (dir / "ck.safetensors").string();
  save_checkpoint(path, m.blocks, opt, loop);

  for (auto& d : m.data) d.assign(d.size(), -1.0f);
  for (auto& s : opt.state()) std::fill(s.data, s.data + s.numel, 7.0f);
  opt.set_step_count(99);

  const auto got = load_checkpoint(path, m.blocks, opt);
  for (size_t i = 0; i < m.data.size(); ++i) EXPECT_TRUE(same_bytes(m.data[i], saved_data[i])) << i;
  auto st = opt.state();
  ASSERT_EQ(st.size(), saved_state.size());
  for (size_t i = 0; i < st.size(); ++i)
    EXPECT_TRUE(same_bytes(std::vector<float>(st[i].data, st[i].data + st[i].numel),
                           saved_state[i])) << st[i].name;
  EXPECT_EQ(opt.step_count(), 2);
  EXPECT_EQ(got, loop);  // uint64 RNG words survive exactly
  EXPECT_EQ(got["rng"][0].get<uint64_t>(), 18446744073709551615ULL);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST(Checkpoint, AdamWResumeIsBitIdenticalToStraightRun) {
  const auto dir = scratch("resume");
  Model straight(11);
  AdamW opt_a(AdamWParams{});
  run_steps(straight, opt_a, 0, 6);

  Model first(11);
  AdamW opt_b(AdamWParams{});
  run_steps(first, opt_b, 0, 3);
  const std::string path = (dir / "ck.safetensors").string();
  save_checkpoint(path, first.blocks, opt_b, {{"step", 3}});

  Model fresh(999);  // different initial values: all must come from the file
  AdamW opt_c(AdamWParams{});
  opt_c.prepare(fresh.blocks);
  const auto loop = load_checkpoint(path, fresh.blocks, opt_c);
  const int resume_at = loop["step"].get<int>();
  EXPECT_EQ(resume_at, 3);
  EXPECT_EQ(opt_c.step_count(), 3);
  run_steps(fresh, opt_c, resume_at, 6);
  for (size_t i = 0; i < straight.data.size(); ++i)
    EXPECT_TRUE(same_bytes(fresh.data[i], straight.data[i])) << straight.blocks[i].name;
  auto sa = opt_a.state(), sc = opt_c.state();
  for (size_t i = 0; i < sa.size(); ++i)
    EXPECT_EQ(std::memcmp(sa[i].data, sc[i].data, sa[i].numel * sizeof(float)), 0) << sa[i].name;
}

std::string load_error(const std::string& path, Model& m, AdamW& opt) {
  try {
    load_checkpoint(path, m.blocks, opt);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Checkpoint, MismatchesNameFileAndTensorAndChangeNothing) {
  const auto dir = scratch("mismatch");
  Model m(3);
  AdamW opt(AdamWParams{});
  run_steps(m, opt, 0, 1);
  const std::string path = (dir / "ck.safetensors").string();
  save_checkpoint(path, m.blocks, opt, {{"step", 1}});

  {  // a block with another shape
    Model other(3);
    AdamW o(AdamWParams{});
    other.blocks[2].shape = {7, 3};
    o.prepare(other.blocks);
    const auto before = other.data;
    const auto e = load_error(path, other, o);
    EXPECT_NE(e.find(path), std::string::npos) << e;
    EXPECT_NE(e.find("param/lm_head.weight"), std::string::npos) << e;
    EXPECT_NE(e.find("[3, 7]"), std::string::npos) << e;
    for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(same_bytes(other.data[i], before[i]));
  }
  {  // a block the file lacks
    Model other(3);
    AdamW o(AdamWParams{});
    other.blocks[1].name = "model.final_norm.weight";
    o.prepare(other.blocks);
    const auto e = load_error(path, other, o);
    EXPECT_NE(e.find("param/model.final_norm.weight"), std::string::npos) << e;
  }
  {  // the file has a block the model lacks
    Model other(3);
    AdamW o(AdamWParams{});
    other.blocks.pop_back();
    o.prepare(other.blocks);
    const auto e = load_error(path, other, o);
    EXPECT_NE(e.find("lm_head.weight"), std::string::npos) << e;
    EXPECT_NE(e.find("no counterpart"), std::string::npos) << e;
  }
  {  // optimizer without state
    Model other(3);
    AdamW o(AdamWParams{});
    const auto e = load_error(path, other, o);
    EXPECT_NE(e.find("holds no state"), std::string::npos) << e;
  }
  {  // not a checkpoint at all
    const std::string bad = (dir / "bad.safetensors").string();
    std::ofstream(bad) << "garbage";
    Model other(3);
    AdamW o(AdamWParams{});
    o.prepare(other.blocks);
    EXPECT_NE(load_error(bad, other, o).find(bad), std::string::npos);
  }
}

TEST(Checkpoint, DirKeepsTheNewestK) {
  const auto dir = scratch("keep");
  Model m(5);
  AdamW opt(AdamWParams{});
  CheckpointDir cd(dir.string(), 2);
  EXPECT_FALSE(cd.latest().has_value());
  for (int s = 1; s <= 4; ++s) {
    run_steps(m, opt, s - 1, s);
    cd.save(s * 10, m.blocks, opt, {{"step", s * 10}});
  }
  // A leftover temp file of an interrupted save is neither listed nor loaded.
  std::ofstream(dir / "step-000000050.safetensors.tmp") << "partial";
  const auto l = cd.list();
  ASSERT_EQ(l.size(), 2u);
  EXPECT_EQ(fs::path(l[0]).filename(), "step-000000030.safetensors");
  EXPECT_EQ(fs::path(l[1]).filename(), "step-000000040.safetensors");
  EXPECT_EQ(*cd.latest(), cd.path_for(40));
  Model back(0);
  AdamW o(AdamWParams{});
  o.prepare(back.blocks);
  EXPECT_EQ(load_checkpoint(*cd.latest(), back.blocks, o)["step"], 40);
  EXPECT_THROW(CheckpointDir(dir.string(), 0), Error);
}

}  // namespace
}  // namespace kvlab::train
