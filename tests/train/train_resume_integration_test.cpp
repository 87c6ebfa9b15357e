// `kvlab train`'s wiring end to end (experiments/train/train_run.h) on configs/train/smoke.yaml,
// shortened: corpus + synthetic tasks through the curriculum source, tokenizer trained into the
// output folder, eval, checkpoints, trace segments. RESUME: 6 steps straight vs 3 steps, stop,
// resume, 3 steps — the stage boundary (step 4) falls in the resumed segment — give the same
// per-step losses bit for bit and byte-identical final checkpoint tensors.
// Needs the corpus packages (scripts/install-deps.sh).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "experiments/train/train_config.h"
#include "experiments/train/train_run.h"
#include "framework/core/file_io.h"
#include "tests/support/temp_dir.h"

namespace kvlab::experiments {
namespace {

namespace fs = std::filesystem;

TrainConfig smoke(const std::string& out, int64_t eval_every) {
  return load_train_config(std::string(KVLAB_SOURCE_DIR) + "/configs/train/smoke.yaml",
                           {"steps=6", "stages.0.steps=4", "stages.0.batch=2", "stages.1.batch=2",
                            "grad_accum=2", "ckpt_every=0", "schedule.warmup_steps=2", "eval_every=" + std::to_string(eval_every),
                            "output=" + out});
}

// The tensor bytes of a safetensors file (everything after the JSON header, whose metadata holds
// the loop state with wall-clock seconds).
std::string tensor_bytes(const std::string& path) {
  const std::string s = read_file(path);
  uint64_t n = 0;
  std::memcpy(&n, s.data(), 8);
  return s.substr(8 + n);
}

TEST(TrainRun, ResumedRunMatchesUninterruptedBitForBit) {
  testing::TempDir tmp("train_run");
  TrainRunOptions opt;
  opt.quiet = true;
  const std::string a = tmp.sub("a"), b = tmp.sub("b");
  const auto ra = run_training(smoke(a, 3), opt, nullptr);
  ASSERT_TRUE(ra.result.finished);
  ASSERT_EQ(ra.result.records.size(), 6u);

  // The second run reuses the first one's tokenizer, as a resumed run reuses its own.
  fs::create_directories(b);
  fs::copy_file(fs::path(a) / "tokenizer.json", fs::path(b) / "tokenizer.json");
  TrainRunOptions o1 = opt;
  o1.max_steps = 3;
  const auto r1 = run_training(smoke(b, 3), o1, nullptr);
  EXPECT_TRUE(r1.result.interrupted);
  EXPECT_EQ(r1.result.end_step, 3);
  EXPECT_FALSE(fs::exists(fs::path(b) / "COMPLETE"));
  const auto r2 = run_training(smoke(b, 3), opt, nullptr);
  EXPECT_EQ(r2.result.start_step, 3);
  EXPECT_TRUE(r2.result.finished);
  EXPECT_EQ(r2.trace_path, (fs::path(b) / "trace-from-step-3.h5").string());

  std::vector<double> resumed;
  for (const auto& r : r1.result.records) resumed.push_back(r.loss);
  for (const auto& r : r2.result.records) resumed.push_back(r.loss);
  ASSERT_EQ(resumed.size(), 6u);
  for (size_t i = 0; i < 6; ++i)
    EXPECT_EQ(std::memcmp(&resumed[i], &ra.result.records[i].loss, sizeof(double)), 0)
        << "step " << i + 1 << ": " << resumed[i] << " vs " << ra.result.records[i].loss;
  // Stage 0 has T 128, stage 1 T 256: the boundary was crossed after the resume.
  EXPECT_EQ(r2.result.records[0].seq_len, 128);
  EXPECT_EQ(r2.result.records[1].seq_len, 256);

  const std::string ck = "checkpoints/step-000000006.safetensors";
  EXPECT_TRUE(tensor_bytes((fs::path(a) / ck).string()) == tensor_bytes((fs::path(b) / ck).string()))
      << "final parameters or optimizer state differ";
  for (const auto& d : {a, b}) {
    EXPECT_TRUE(fs::exists(fs::path(d) / "COMPLETE"));
    EXPECT_TRUE(fs::exists(fs::path(d) / "export" / "model.safetensors"));
    EXPECT_TRUE(fs::exists(fs::path(d) / "export" / "tokenizer.json"));
    EXPECT_TRUE(fs::exists(fs::path(d) / "trace.h5"));
  }
}

TEST(TrainRun, SmokeLossGoesDown) {
  testing::TempDir tmp("train_run");
  TrainRunOptions opt;
  opt.quiet = true;
  const auto r = run_training(
      load_train_config(std::string(KVLAB_SOURCE_DIR) + "/configs/train/smoke.yaml",
                        {"steps=40", "stages.0.steps=20", "eval_every=0", "ckpt_every=0",
                         "output=" + tmp.sub("out")}),
      opt, nullptr);
  ASSERT_EQ(r.result.records.size(), 40u);
  double first = 0, last = 0;
  for (int i = 0; i < 3; ++i) first += r.result.records[i].loss / 3, last += r.result.records[17 + i].loss / 3;
  EXPECT_LT(last, first - 0.5) << first << " -> " << last;
}

}  // namespace
}  // namespace kvlab::experiments
