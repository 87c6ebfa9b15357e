// The finetune experiment end to end on a random tiny model (byte-level tokenizer): training
// lowers the loss on the task, results carry before/after held-out metrics, state bytes equal
// methods.md 3.4's formulas (LoRA; AdamW on the chosen blocks), trainable parameter counts,
// peak memory; the trace holds the loss curve; `kvlab run` writes results.json; bad settings are
// refused naming the key. Needs Debian's bible-kjv (skips without it).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "framework/cli/commands.h"
#include "framework/core/error.h"
#include "framework/io/h5_file.h"
#include "framework/io/trace_h5.h"
#include "framework/model/config.h"
#include "tests/experiments/experiment_support.h"
#include "tests/support/temp_dir.h"

namespace kvlab::experiments {
namespace {

namespace fs = std::filesystem;

bool have_bible() { return std::system("command -v bible >/dev/null 2>&1") == 0; }

// A trace sink that keeps every scalar series in memory.
struct MemSink : TraceSink {
  std::map<std::string, std::vector<double>> s;
  void append_scalar(std::string_view p, double v, std::string_view) override {
    s[std::string(p)].push_back(v);
  }
  void append_row(std::string_view, std::span<const float>, std::string_view) override {}
  void set_attribute(std::string_view, std::string_view, std::string_view) override {}
};

TEST(Finetune, LoraLowersTrainingLossAndReportsStateBytes) {
  if (!have_bible()) GTEST_SKIP() << "bible-kjv not installed";
  MemSink sink;
  const auto r = kvlab::testing::run_experiment("finetune",
                                                {{"dataset", "kjv_genealogy"},
                                                 {"n_train", "8"},
                                                 {"n_heldout", "6"},
                                                 {"adapter", "lora"},
                                                 {"lora_rank", "4"},
                                                 {"lora_alpha", "8"},
                                                 {"lora_target_modules", "q,v,down"},
                                                 {"steps", "40"},
                                                 {"batch", "4"},
                                                 {"lr", "2e-2"},
                                                 {"min_lr", "2e-2"},
                                                 {"warmup_steps", "0"},
                                                 {"gen_tokens", "3"},
                                                 {"optimizer_args", "weight_decay=0"}},
                                                &sink, 1);
  EXPECT_LT(r.at("loss_last").get<double>(), 0.7 * r.at("loss_first").get<double>()) << r.dump(1);
  EXPECT_EQ(r.at("n_train"), 8);
  EXPECT_EQ(r.at("n_heldout"), 6);
  EXPECT_EQ(r.at("adapter"), "lora");
  // methods.md 3.4 for q [HD, C], v [GD, C], down [C, F] of the tiny preset, per layer.
  const model::ModelConfig c = kvlab::testing::tiny_model()->config();
  const int64_t HD = c.num_attention_heads * c.head_dim, GD = c.num_key_value_heads * c.head_dim;
  const int64_t C = c.hidden_size, F = c.intermediate_size;
  const int64_t rmn = 4 * ((HD + C) + (GD + C) + (C + F)) * c.num_hidden_layers;
  EXPECT_EQ(r.at("trainable_params"), rmn);
  EXPECT_EQ(r.at("optimizer_state_bytes"), 2 * 4 * rmn);
  EXPECT_EQ(r.at("lora").at("formula_state_bytes"), 2 * 4 * rmn);
  // Full AdamW on the same three matrices (methods.md 3.4: 2 m n floats each).
  EXPECT_EQ(r.at("adamw_state_bytes_full_ft"),
            2 * 4 * (HD * C + GD * C + C * F) * c.num_hidden_layers);
  EXPECT_GT(r.at("peak_rss_bytes").get<int64_t>(), 0);
  for (const char* k : {"heldout_accuracy", "heldout_answer_loss"}) {
    EXPECT_TRUE(r.at("before").contains(k)) << k;
    EXPECT_TRUE(r.at("after").contains(k)) << k;
  }
  EXPECT_EQ(sink.s.at("train/loss").size(), 40u);
  EXPECT_EQ(sink.s.at("final/optimizer_state_bytes").at(0), 2.0 * 4 * rmn);
  EXPECT_EQ(sink.s.count("eval_after/heldout_accuracy"), 1u);
}

TEST(Finetune, FullAdamWOnChosenBlocksAndLmTask) {
  MemSink sink;
  nlohmann::json r;
  try {
    r = kvlab::testing::run_experiment("finetune",
                                       {{"dataset", "lm"},
                                        {"n_train", "6"},
                                        {"n_heldout", "4"},
                                        {"passage_chars", "200"},
                                        {"train_modules", "q,k,v,o,gate,up,down"},
                                        {"steps", "30"},
                                        {"batch", "3"},
                                        {"lr", "5e-3"},
                                        {"min_lr", "5e-3"},
                                        {"warmup_steps", "0"},
                                        {"max_len", "96"},
                                        {"optimizer_args", "weight_decay=0"},
                                        {"original", "file:" KVLAB_SOURCE_DIR "/README.md"}},
                                       &sink, 2);
  } catch (const Error& e) {
    GTEST_SKIP() << e.what();  // Opticks' package missing
  }
  EXPECT_LT(r.at("loss_last").get<double>(), r.at("loss_first").get<double>()) << r.dump(1);
  // AdamW on the 7 projection matrices of each layer: 2 f32 moments per element.
  const model::ModelConfig c = kvlab::testing::tiny_model()->config();
  const int64_t HD = c.num_attention_heads * c.head_dim, GD = c.num_key_value_heads * c.head_dim;
  const int64_t C = c.hidden_size, F = c.intermediate_size;
  const int64_t n = (HD * C + 2 * GD * C + C * HD + 3 * F * C) * c.num_hidden_layers;
  EXPECT_EQ(r.at("trainable_params"), n);
  EXPECT_EQ(r.at("optimizer_state_bytes"), 2 * 4 * n);
  EXPECT_EQ(r.at("adamw_state_bytes_full_ft"), 2 * 4 * n);
  for (const char* k : {"heldout_perplexity", "original_perplexity"}) {
    EXPECT_GT(r.at("before").at(k).get<double>(), 1.0) << k;
    EXPECT_GT(r.at("after").at(k).get<double>(), 1.0) << k;
  }
  EXPECT_LT(r.at("after").at("heldout_perplexity").get<double>(),
            r.at("before").at("heldout_perplexity").get<double>())
      << "fine-tuning on the book lowers its held-out perplexity";
}

TEST(Finetune, RefusesBadSettingsNamingTheKey) {
  auto expect_error = [](const std::map<std::string, std::string>& task,
                         const std::string& needle) {
    try {
      kvlab::testing::run_experiment("finetune", task);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error({{"optimizer", "adamv"}}, "did you mean 'adamw'");
  expect_error({{"optimizer_args", "weight_decai=0"}}, "weight_decai");
  expect_error({{"optimizer_args", "weight_decay"}}, "KEY=VALUE");
  expect_error({{"lora_target_modules", "q,qq"}}, "unknown module 'qq'");
  expect_error({{"train_modules", "q,emb"}}, "unknown module 'emb'");
  expect_error({{"warmup_steps", "500"}, {"steps", "10"}}, "task.warmup_steps");
  expect_error({{"dataset", "kjv_sect"}}, "kjv_section");
}

// `kvlab run` on a finetune config with a random preset model writes the run folder.
TEST(Finetune, KvlabRunWritesResultsAndTrace) {
  if (!have_bible()) GTEST_SKIP() << "bible-kjv not installed";
  kvlab::testing::TempDir tmp("kvlab_finetune_run");
  const fs::path cfg = tmp.path() / "ft.yaml";
  std::ofstream(cfg)
      << "name: ft\nexperiment: finetune\nmodel: {preset: tiny, dtype: f32, seed: 1}\n"
         "task:\n  dataset: kjv_section\n  n_train: 12\n  n_heldout: 6\n"
         "  adapter: lora\n  lora_rank: 2\n  steps: 4\n  warmup_steps: 0\n  batch: 2\n  "
         "gen_tokens: 2\n"
         "seed: 0\nthreads: 1\noutput: "
      << (tmp.path() / "results").string() << "\n";
  std::vector<std::string> args = {"kvlab", "run", cfg.string()};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  ASSERT_EQ(cli::cmd_run(static_cast<int>(argv.size()), argv.data(), 2), 0);
  fs::path point;
  for (const auto& e : fs::directory_iterator(tmp.path() / "results" / "ft"))
    if (fs::exists(e.path() / "results.json")) point = e.path();
  ASSERT_FALSE(point.empty());
  std::ifstream f(point / "results.json");
  const auto r = nlohmann::json::parse(f);
  EXPECT_EQ(r.at("dataset"), "kjv_section");
  EXPECT_EQ(r.at("steps"), 4);
  EXPECT_TRUE(fs::exists(point / "COMPLETE"));
  EXPECT_EQ(io::read_f32((point / "trace.h5").string(), "train/loss").size(), 4u);
}

}  // namespace
}  // namespace kvlab::experiments
