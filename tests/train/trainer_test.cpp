// The training loop (framework/train/trainer.h) on a 2-layer model with a synthetic, learnable
// batch source: loss goes down; 6 steps straight == 3 steps + stop + resume + 3 steps, bit for
// bit (losses, gradient norms, parameters); the stop flag checkpoints after the current step;
// and `kvlab train` config errors name file:line:key (experiments/train/train_config.h).
#include "framework/train/trainer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include <nlohmann/json.hpp>

#include "baselines/adamw/adamw.h"
#include "experiments/train/train_config.h"
#include "framework/core/error.h"
#include "framework/core/rng.h"
#include "framework/core/thread_pool.h"
#include "framework/model/model_init.h"
#include "tests/support/temp_dir.h"

namespace kvlab::train {
namespace {

namespace fs = std::filesystem;

model::ModelConfig tiny() {
  model::ModelConfig c = model::preset_config("tiny");  // C 64, L 2, H 4 / G 2 x D 16, F 172
  c.vocab_size = 264;
  return c;
}

// Rows count up modulo 32 from a random start: token[t+1] = (token[t] + 1) % 32 — learnable in
// a few dozen steps. Row r of micro-batch n is a function of (seed, n, r); state = n.
class CountingSource : public BatchSource {
 public:
  CountingSource(int64_t B, int64_t T, uint64_t seed) : B_(B), T_(T), seed_(seed) {}
  TrainBatch next(int64_t step) override {
    TrainBatch b;
    b.B = B_;
    b.T = T_;
    b.tokens.resize(B_ * T_);
    b.targets.resize(B_ * T_);
    b.weights.assign(B_ * T_, 1.0f);
    for (int64_t r = 0; r < B_; ++r) {
      Rng rng(seed_ * 1000003ull + static_cast<uint64_t>(n_) * 131ull + static_cast<uint64_t>(r));
      int32_t x = static_cast<int32_t>(rng.below(32));
      for (int64_t t = 0; t < T_; ++t) {
        b.tokens[r * T_ + t] = x;
        x = (x + 1) % 32;
        b.targets[r * T_ + t] = x;
      }
      b.weights[r * T_] = 0.5f;  // exercise the weights
    }
    ++n_;
    return b;
  }
  std::string state() const override { return nlohmann::json{{"n", n_}}.dump(); }
  void restore(const std::string& s) override { n_ = nlohmann::json::parse(s).at("n").get<int64_t>(); }

 private:
  int64_t B_, T_, n_ = 0;
  uint64_t seed_;
};

struct Rig {
  ThreadPool pool{1};
  model::TrainModel model;
  baselines::AdamW opt{baselines::AdamWParams{}};
  CountingSource src{4, 32, 7};
  std::unique_ptr<Trainer> trainer;
  Rig(const std::string& out, TrainerOptions o) : model(tiny(), 3, 0.02, pool) {
    o.out_dir = out;
    o.progress = "off";
    trainer = std::make_unique<Trainer>(model, opt, src, o);
    trainer->set_log({});
  }
};

TrainerOptions options(int64_t steps) {
  TrainerOptions o;
  o.steps = steps;
  o.grad_accum = 2;
  o.clip_norm = 0.5;  // active: the first steps' norms are above it
  o.schedule = {3e-3, 3e-4, 2, steps, 0.1};
  o.ckpt_every = 0;
  o.threads = 1;
  return o;
}

TEST(Trainer, LossGoesDown) {
  testing::TempDir tmp("trainer");
  Rig rig(tmp.sub("out"), options(40));
  const TrainResult r = rig.trainer->run();
  ASSERT_EQ(r.records.size(), 40u);
  EXPECT_TRUE(r.finished);
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) first += r.records[i].loss / 5, last += r.records[35 + i].loss / 5;
  EXPECT_LT(last, first - 1.0) << "first 5 steps " << first << ", last 5 steps " << last;
  EXPECT_GT(r.records[0].grad_norm, 0.5);  // clipping was active
  // The final checkpoint and nothing else (ckpt_every 0).
  EXPECT_TRUE(fs::exists(fs::path(tmp.sub("out")) / "checkpoints" / "step-000000040.safetensors"));
}

TEST(Trainer, ResumeIsBitExact) {
  testing::TempDir tmp("trainer");
  Rig straight(tmp.sub("a"), options(6));
  const TrainResult ra = straight.trainer->run();
  ASSERT_EQ(ra.records.size(), 6u);

  TrainerOptions o = options(6);
  o.stop_after = 3;
  std::vector<StepRecord> recs;
  {
    Rig first(tmp.sub("b"), o);
    EXPECT_EQ(first.trainer->resume(), 0);
    const TrainResult r1 = first.trainer->run();
    EXPECT_TRUE(r1.interrupted);
    EXPECT_EQ(r1.end_step, 3);
    recs = r1.records;
  }
  Rig second(tmp.sub("b"), options(6));  // a fresh process: new model, optimizer and source
  EXPECT_EQ(second.trainer->resume(), 3);
  const TrainResult r2 = second.trainer->run();
  EXPECT_TRUE(r2.finished);
  recs.insert(recs.end(), r2.records.begin(), r2.records.end());
  ASSERT_EQ(recs.size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    // Bit for bit, not within a tolerance.
    EXPECT_EQ(std::memcmp(&recs[i].loss, &ra.records[i].loss, sizeof(double)), 0)
        << "step " << i + 1 << ": " << recs[i].loss << " vs " << ra.records[i].loss;
    EXPECT_EQ(std::memcmp(&recs[i].grad_norm, &ra.records[i].grad_norm, sizeof(double)), 0) << "step " << i + 1;
    EXPECT_EQ(recs[i].lr, ra.records[i].lr);
  }
  ASSERT_EQ(straight.model.num_params(), second.model.num_params());
  EXPECT_EQ(std::memcmp(straight.model.params()[0].data, second.model.params()[0].data,
                        sizeof(float) * straight.model.num_params()),
            0);
  EXPECT_EQ(second.opt.step_count(), 6);
  EXPECT_EQ(second.trainer->tokens_seen(), straight.trainer->tokens_seen());
}

TEST(Trainer, StopFlagFinishesTheStepAndCheckpoints) {
  testing::TempDir tmp("trainer");
  TrainerOptions o = options(10);
  o.ckpt_every = 100;
  Rig rig(tmp.sub("out"), o);
  std::atomic<bool> stop{true};
  const TrainResult r = rig.trainer->run(&stop);
  EXPECT_TRUE(r.interrupted);
  EXPECT_FALSE(r.finished);
  EXPECT_EQ(r.end_step, 1);
  EXPECT_TRUE(fs::exists(fs::path(tmp.sub("out")) / "checkpoints" / "step-000000001.safetensors"));
}

TEST(Trainer, ResumeRefusesAnotherSeed) {
  testing::TempDir tmp("trainer");
  TrainerOptions o = options(4);
  o.stop_after = 1;
  {
    Rig rig(tmp.sub("out"), o);
    rig.trainer->run();
  }
  o.seed = 99;
  Rig other(tmp.sub("out"), o);
  try {
    other.trainer->resume();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("seed"), std::string::npos) << e.what();
  }
}

// ---- config errors: file:line: key ----

std::string config_error(const testing::TempDir& tmp, const std::string& yaml,
                         const std::vector<std::string>& overrides = {}) {
  const std::string path = tmp.sub("cfg.yaml");
  std::ofstream(path) << yaml;
  try {
    experiments::load_train_config(path, overrides);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

const char* kGood = R"(steps: 10
model:
  preset: tiny
data:
  seq_len: 64
  batch: 2
  min_tokens: 16
stages:
  - name: short
    steps: 4
    seq_len: 32
  - name: long
)";

TEST(TrainConfig, GoodConfigResolves) {
  testing::TempDir tmp("trainer");
  const std::string path = tmp.sub("cfg.yaml");
  std::ofstream(path) << kGood;
  const auto c = experiments::load_train_config(path, {"stages.1.batch=3", "schedule.lr=0.01"});
  ASSERT_EQ(c.stages.size(), 2u);
  EXPECT_EQ(c.stages[0].steps, 4);
  EXPECT_EQ(c.stages[1].steps, 6);
  EXPECT_EQ(c.stages[0].stream.seq_len, 32);
  EXPECT_EQ(c.stages[1].stream.seq_len, 64);
  EXPECT_EQ(c.stages[1].stream.batch, 3);
  EXPECT_EQ(c.schedule.max_lr, 0.01);
  EXPECT_EQ(c.schedule.total_steps, 10);
  EXPECT_EQ(c.model.hidden_size, 64);
}

TEST(TrainConfig, ErrorsNameFileLineAndKey) {
  testing::TempDir tmp("trainer");
  const std::string f = tmp.sub("cfg.yaml");
  auto has = [](const std::string& msg, const std::string& part) {
    return msg.find(part) != std::string::npos;
  };
  // Unknown top-level key with a suggestion.
  std::string m = config_error(tmp, std::string(kGood) + "clip_nrom: 1\n");
  EXPECT_TRUE(has(m, f + ":13: clip_nrom: unknown key")) << m;
  EXPECT_TRUE(has(m, "did you mean 'clip_norm'")) << m;
  // Unknown key inside a stage.
  m = config_error(tmp, "steps: 10\nmodel: {preset: tiny}\ndata: {seq_len: 64}\nstages:\n  - steps: 4\n    seq_lne: 32\n  - {}\n");
  EXPECT_TRUE(has(m, f + ":6: stages.0.seq_lne: unknown key")) << m;
  EXPECT_TRUE(has(m, "did you mean 'stages.0.seq_len'")) << m;
  // Wrong type.
  m = config_error(tmp, "steps: ten\nmodel: {preset: tiny}\ndata: {seq_len: 64}\n");
  EXPECT_TRUE(has(m, f + ":1: steps")) << m;
  EXPECT_TRUE(has(m, "integer")) << m;
  // Out of range.
  m = config_error(tmp, "steps: 10\nmodel: {preset: tiny}\ndata:\n  seq_len: 64\n  batch: 0\n");
  EXPECT_TRUE(has(m, f + ":5: data.batch")) << m;
  EXPECT_TRUE(has(m, "out of range")) << m;
  // Unknown mix source.
  m = config_error(tmp, "steps: 10\nmodel: {preset: tiny}\ndata:\n  mix: {corpus: 1, paskey: 0.5}\n");
  EXPECT_TRUE(has(m, f + ":4: data.mix.paskey: unknown key")) << m;
  EXPECT_TRUE(has(m, "did you mean 'data.mix.passkey'")) << m;
  // Optimizer parameter from the registry's declarations.
  m = config_error(tmp, "steps: 10\nmodel: {preset: tiny}\ndata: {seq_len: 64}\noptimizer:\n  name: adamw\n  beta3: 0.9\n");
  EXPECT_TRUE(has(m, f + ":6: optimizer.beta3: unknown key")) << m;
  // Unknown optimizer.
  m = config_error(tmp, "steps: 10\nmodel: {preset: tiny}\ndata: {seq_len: 64}\noptimizer: {name: adamv}\n");
  EXPECT_TRUE(has(m, f + ":4: optimizer.name")) << m;
  EXPECT_TRUE(has(m, "adamw")) << m;
  // Context above the model's max_position.
  m = config_error(tmp, "steps: 10\nmodel: {preset: tiny, max_position: 128}\ndata: {seq_len: 256}\n");
  EXPECT_TRUE(has(m, f + ":3: data.seq_len")) << m;
  // Stage steps that do not add up.
  m = config_error(tmp, "steps: 10\nmodel: {preset: tiny}\ndata: {seq_len: 64}\nstages:\n  - {steps: 4}\n  - {steps: 5}\n");
  EXPECT_TRUE(has(m, f + ":6: stages.1.steps")) << m;
  // Missing steps.
  m = config_error(tmp, "model: {preset: tiny}\ndata: {seq_len: 64}\n");
  EXPECT_TRUE(has(m, "missing required key 'steps'")) << m;
  // Overrides are checked the same way and say they came from --set.
  m = config_error(tmp, kGood, {"data.batch=-1"});
  EXPECT_TRUE(has(m, f + " (--set): data.batch")) << m;
  // Inline model shape errors name the model block.
  m = config_error(tmp, "steps: 10\nmodel: {hidden: 64, layers: 2, heads: 3, intermediate: 100}\ndata: {seq_len: 64}\n");
  EXPECT_TRUE(has(m, f + ":2: model")) << m;
}

}  // namespace
}  // namespace kvlab::train
