// SGC and GaLore inside the training loop (framework/train/trainer.h) on a 2-layer model: the
// loss goes down, and every step's record and trace carry the exact optimizer-state bytes
// (methods.md 3.4, recomputed here from the model's shapes), the trainable parameter count and
// the process's peak RSS (VmHWM), next to the optimizer's own traces (optim/sgc/...).
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "baselines/adamw/adamw.h"
#include "baselines/galore/galore.h"
#include "framework/core/rng.h"
#include "framework/core/thread_pool.h"
#include "framework/model/model_init.h"
#include "framework/optim/target_modules.h"
#include "framework/train/trainer.h"
#include "methods/sgc/sgc.h"
#include "tests/support/temp_dir.h"

namespace kvlab::train {
namespace {

// token[t+1] = (token[t] + 1) % 32 from a random start: learnable in a few dozen steps.
class CountingSource : public BatchSource {
 public:
  TrainBatch next(int64_t) override {
    TrainBatch b;
    b.B = 4;
    b.T = 32;
    Rng rng(1000 + static_cast<uint64_t>(n_++));
    for (int64_t r = 0; r < b.B; ++r) {
      int32_t x = static_cast<int32_t>(rng.below(32));
      for (int64_t t = 0; t < b.T; ++t) {
        b.tokens.push_back(x);
        x = (x + 1) % 32;
        b.targets.push_back(x);
      }
    }
    return b;
  }
  std::string state() const override { return nlohmann::json{{"n", n_}}.dump(); }
  void restore(const std::string& s) override {
    n_ = nlohmann::json::parse(s).at("n").get<int64_t>();
  }

 private:
  int64_t n_ = 0;
};

struct Sink : TraceSink {
  std::map<std::string, std::vector<double>> scalars;
  std::map<std::string, size_t> rows;
  void append_scalar(std::string_view p, double v, std::string_view) override {
    scalars[std::string(p)].push_back(v);
  }
  void append_row(std::string_view p, std::span<const float>, std::string_view) override {
    ++rows[std::string(p)];
  }
  void set_attribute(std::string_view, std::string_view, std::string_view) override {}
};

struct Result {
  TrainResult r;
  Sink sink;
  int64_t want_bytes = 0, numel = 0;
};

// Runs `steps` steps; want(params) gives the expected state bytes from the model's shapes.
template <class Want>
void train(optim::Optimizer& opt, int64_t steps, double lr, Want want, Result& out) {
  testing::TempDir tmp("sgc_trainer");
  ThreadPool pool(1);
  model::ModelConfig c = model::preset_config("tiny");
  c.vocab_size = 264;
  model::TrainModel m(c, 3, 0.02, pool);
  CountingSource src;
  TrainerOptions o;
  o.steps = steps;
  o.clip_norm = 1.0;
  o.schedule = {lr, lr / 10, 2, steps, 0.1};
  o.out_dir = tmp.sub("out");
  o.progress = "off";
  Trainer t(m, opt, src, o);
  t.set_log({});
  t.set_trace(&out.sink);
  out.r = t.run();
  out.want_bytes = 0;
  out.numel = 0;
  for (const auto& b : t.blocks()) {
    out.numel += b.numel();
    out.want_bytes += want(b);
  }
}

void expect_accounting(const Result& res, int64_t steps) {
  ASSERT_EQ(res.r.records.size(), static_cast<size_t>(steps));
  int64_t prev_rss = 0;
  for (const auto& rec : res.r.records) {
    EXPECT_EQ(rec.optimizer_state_bytes, res.want_bytes);
    EXPECT_EQ(rec.trainable_params, res.numel);
    EXPECT_GT(rec.peak_rss_bytes, 1 << 20);
    EXPECT_GE(rec.peak_rss_bytes, prev_rss);  // a high-water mark never falls
    prev_rss = rec.peak_rss_bytes;
  }
  const auto& sc = res.sink.scalars;
  ASSERT_EQ(sc.at("optim/state_bytes").size(), static_cast<size_t>(steps));
  EXPECT_EQ(sc.at("optim/state_bytes").back(), static_cast<double>(res.want_bytes));
  EXPECT_EQ(sc.at("optim/trainable_params").back(), static_cast<double>(res.numel));
  EXPECT_EQ(sc.at("mem/peak_rss_bytes").size(), static_cast<size_t>(steps));
}

double loss_drop(const TrainResult& r) {
  const size_t n = r.records.size();
  double first = 0, last = 0;
  for (size_t i = 0; i < 5; ++i)
    first += r.records[i].loss / 5, last += r.records[n - 5 + i].loss / 5;
  return first - last;
}

const std::vector<std::string> kTargets = {"q_proj",  "k_proj",    "v_proj",   "o_proj",
                                           "up_proj", "down_proj", "gate_proj"};

TEST(SgcInTrainer, AdamWRecordsTwoMomentsPerParameter) {
  baselines::AdamW opt(baselines::AdamWParams{});
  Result res;
  train(
      opt, 12, 3e-3, [](const optim::ParamBlock& b) { return 8 * b.numel(); }, res);
  expect_accounting(res, 12);
}

TEST(SgcInTrainer, SgcTrainsAndRecordsTwoKFloatsPerMatrix) {
  sgc::SgcParams p;
  p.k = 256;
  p.s = 16;
  p.storage = sgc::Storage::kSharedPerShape;  // fast here; regenerate gives the same steps
  Result res;
  sgc::Sgc opt(p);
  train(
      opt, 30, 3e-3,
      [&](const optim::ParamBlock& b) {
        return optim::is_target_matrix(b, kTargets) ? 2 * 4 * 256 : 8 * b.numel();
      },
      res);
  // shared_per_shape: one stored 256 x d projector per distinct d among the target matrices.
  std::set<int64_t> ds;
  {
    ThreadPool pool(1);
    model::ModelConfig c = model::preset_config("tiny");
    c.vocab_size = 264;
    model::TrainModel m(c, 3, 0.02, pool);
    for (const auto& tp : m.params())
      if (optim::is_target_matrix({tp.name, nullptr, nullptr, tp.shape, true}, kTargets))
        ds.insert(tp.numel());
  }
  for (int64_t d : ds) res.want_bytes += 4 * 256 * d;
  expect_accounting(res, 30);
  EXPECT_GE(ds.size(), 2u);
  EXPECT_GT(loss_drop(res.r), 0.3) << "SGC (embeddings, norms and head by AdamW) did not learn";
  EXPECT_EQ(res.sink.rows.at("optim/sgc/energy_kept"), 30u);
  EXPECT_EQ(res.sink.scalars.at("optim/sgc/omp_s").size(), 30u);
}

TEST(SgcInTrainer, GaLoreAndCesgcRecordTheirFormulas) {
  baselines::GaLoreParams gp;
  gp.rank = 8;
  baselines::GaLore galore(gp);
  Result res;
  train(
      galore, 6, 3e-3,
      [&](const optim::ParamBlock& b) -> int64_t {
        if (!optim::is_target_matrix(b, kTargets)) return 8 * b.numel();
        const int64_t m = b.shape[0], n = b.shape[1], r = std::min<int64_t>({8, m, n});
        return 4 * (2 * r * std::max(m, n) + r * std::min(m, n));
      },
      res);
  expect_accounting(res, 6);
  sgc::SgcParams p;
  p.variant = sgc::Variant::kCesgc;
  p.k = 64;
  p.s = 8;
  p.svd_rank = 4;
  sgc::Sgc cesgc(p);
  Result res2;
  train(
      cesgc, 4, 3e-3,
      [&](const optim::ParamBlock& b) -> int64_t {
        if (!optim::is_target_matrix(b, kTargets)) return 8 * b.numel();
        return 4 * (2 * 64 + b.shape[0] * std::min<int64_t>({4, b.shape[0], b.shape[1]}));
      },
      res2);
  expect_accounting(res2, 4);
}

}  // namespace
}  // namespace kvlab::train
