// TrainModel against PyTorch autograd on whole 2-layer models (tests/golden/train_model_*.h5,
// made by tests/golden/make_train_goldens.py through torch_llama.py's HF forward in f32), and
// against kvlab's inference forward (llama.h) on the same weights.
//
// Tolerances. Both sides compute in f32 from identical weights; they differ by summation order
// (GEMMs over K <= 64, attention over <= 70 keys, softmax, RMSNorm) and kvlab's polynomial exp:
// ~1e-6 relative per op, amplified by two layers and the chain rule into gradients. Loss: rtol
// 1e-5. Gradients: per tensor, atol = 5e-5 * max|golden grad of that tensor| (rtol 0; measured worst 1.4e-6 untied,
// 3.1e-6 tied+bias over scalar and AVX-512 paths, so >= 16x headroom): every
// element's error is budgeted against the tensor's scale, so small entries of a tensor are not
// held to a relative bound their f32 sums cannot meet. Real mistakes (a missing RoPE unapply, a
// wrong GQA reduction, a lost bias gradient, an unscaled dS) move gradients by O(10%) of scale.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "framework/backend/cpu/cpu_features.h"
#include "framework/core/file_io.h"
#include "framework/core/thread_pool.h"
#include "framework/io/h5_file.h"
#include "framework/kv/kv_cache.h"
#include "framework/model/llama.h"
#include "framework/model/llama_train.h"
#include "framework/model/model_init.h"
#include "framework/model/safetensors.h"
#include "tests/support/close.h"

namespace kvlab::model {
namespace {

namespace fs = std::filesystem;

std::string golden(const std::string& c) {
  return std::string(KVLAB_SOURCE_DIR) + "/tests/golden/train_model_" + c + ".h5";
}

double max_abs(const float* v, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, static_cast<double>(std::fabs(v[i])));
  return m;
}

// Writes the golden's weights as an HF folder (config.json + f32 model.safetensors).
std::string write_folder(const std::string& c) {
  const std::string path = golden(c);
  const auto cj = io::read_i32(path, "config_json");
  std::string json(cj.begin(), cj.end());
  const ModelConfig cfg = parse_model_config(json, path);
  ThreadPool pool(1);
  TrainModel names(cfg, 0, 0.0, pool);  // only for the tensor list
  std::vector<std::vector<float>> data;
  std::vector<TensorToWrite> w;
  data.reserve(names.params().size());
  for (const auto& p : names.params()) {
    data.push_back(io::read_f32(path, "weights/" + p.name));
    EXPECT_EQ(static_cast<int64_t>(data.back().size()), p.numel()) << p.name;
    w.push_back({p.name, DType::kF32, p.shape, data.back().data()});
  }
  const fs::path dir = fs::path(::testing::TempDir()) / ("kvlab_train_" + c);
  fs::create_directories(dir);
  write_safetensors((dir / "model.safetensors").string(), w);
  write_file_atomic((dir / "config.json").string(), json);
  return dir.string();
}

std::vector<float> p_grad_copy(const std::vector<TrainParam>& ps) {
  std::vector<float> g;
  for (const auto& p : ps) g.insert(g.end(), p.grad, p.grad + p.numel());
  return g;
}

class TrainGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(TrainGolden, LossAndEveryGradient) {
  const std::string c = GetParam(), path = golden(c);
  const std::string dir = write_folder(c);
  std::vector<int64_t> dims;
  const auto tokens = io::read_i32(path, "tokens", &dims);
  const int64_t B = dims[0], T = dims[1];
  const auto targets = io::read_i32(path, "targets");
  const auto weight = io::read_f32(path, "loss_weight");
  const float want_loss = io::read_f32(path, "loss")[0];
  double worst_share = 0;  // max over tensors of max|err| / max|golden|
  // (threads, ISA): the parallel split and every kernel path (scalar, AVX-512 where present).
  for (auto [threads, isa] : {std::pair{1, cpu::Isa::kScalar}, std::pair{2, cpu::Isa::kScalar},
                              std::pair{1, cpu::Isa::kAvx512}, std::pair{2, cpu::Isa::kAvx512}}) {
    if (!cpu::isa_supported(isa)) continue;
    cpu::ScopedIsa scoped(isa);
    ThreadPool pool(threads);
    auto m = TrainModel::load(dir, pool);
    m->zero_grad();
    const double loss = m->forward_backward(tokens.data(), targets.data(), weight.data(), B, T);
    EXPECT_NEAR(loss, want_loss, 1e-5 * std::fabs(want_loss)) << c << " threads=" << threads << " " << cpu::isa_name(isa);
    EXPECT_NEAR(m->forward_loss(tokens.data(), targets.data(), weight.data(), B, T), loss,
                1e-6 * std::fabs(loss));
    for (const auto& p : m->params()) {
      const auto want = io::read_f32(path, "grads/" + p.name);
      ASSERT_EQ(static_cast<int64_t>(want.size()), p.numel()) << p.name;
      const double scale = max_abs(want.data(), p.numel());
      ASSERT_GT(scale, 0) << p.name;
      const auto r = testing::all_close(p.grad, want.data(), p.numel(), 5e-5 * scale, 0);
      EXPECT_TRUE(r) << c << " " << p.name << " threads=" << threads << " " << cpu::isa_name(isa);
      double err = 0;
      for (int64_t j = 0; j < p.numel(); ++j)
        err = std::max(err, static_cast<double>(std::fabs(p.grad[j] - want[j])));
      worst_share = std::max(worst_share, err / scale);
    }
    // Accumulation: a second call adds the same gradient again (up to the f32 rounding of the
    // sums, budgeted against each tensor's scale).
    std::vector<float> g1(p_grad_copy(m->params()));
    m->forward_backward(tokens.data(), targets.data(), weight.data(), B, T);
    int64_t i = 0;
    for (const auto& p : m->params()) {
      std::vector<float> twice(g1.begin() + i, g1.begin() + i + p.numel());
      for (float& x : twice) x *= 2;
      i += p.numel();
      EXPECT_TRUE(testing::all_close(p.grad, twice.data(), p.numel(),
                                     1e-5 * max_abs(twice.data(), p.numel()), 0))
          << "second forward_backward must add the same gradient: " << p.name;
    }
    m->zero_grad();
    for (const auto& p : m->params()) EXPECT_EQ(max_abs(p.grad, p.numel()), 0.0) << p.name;
  }
  std::cout << c << ": worst gradient error " << worst_share << " of its tensor's max|grad|\n";
}

INSTANTIATE_TEST_SUITE_P(Train, TrainGolden, ::testing::Values("llama_untied", "qwen2_tied_bias"));

// TrainModel's forward logits equal the inference forward (Sequence over a full cache) on the same
// f32 weights: the same kernels (rmsnorm_row, attention, sgemm) on the same rows, so only GEMM
// blocking may differ; atol 1e-5 * max|logit|.
TEST_P(TrainGolden, LogitsMatchInferenceForward) {
  const std::string c = GetParam();
  const std::string dir = write_folder(c);
  std::vector<int64_t> dims;
  const auto tokens = io::read_i32(golden(c), "tokens", &dims);
  const int64_t B = dims[0], T = dims[1];
  ThreadPool pool(2);
  auto tm = TrainModel::load(dir, pool);
  const int64_t V = tm->config().vocab_size;
  std::vector<float> got(B * T * V);
  tm->forward_logits(tokens.data(), B, T, got.data());
  auto model = Model::load(dir);
  ParamValues pv(kv::KvRegistry::instance().find("full_cache").params);
  const kv::KvFactory factory = kv::make_kv_factory("full_cache", pv);
  for (int64_t b = 0; b < B; ++b) {
    Sequence seq(model, factory, pool, {.prefill_chunk = 32});
    std::vector<float> want(T * V);
    seq.forward(std::span<const int32_t>(tokens.data() + b * T, T), want.data(), true);
    const double scale = max_abs(want.data(), T * V);
    EXPECT_TRUE(testing::all_close(got.data() + b * T * V, want.data(), T * V, 1e-5 * scale, 0))
        << c << " sequence " << b;
  }
}

TEST(TrainModel, ExportRoundTripAndRandomInit) {
  ModelConfig cfg = preset_config("tiny");
  ThreadPool pool(2);
  TrainModel m(cfg, 7, 0.02, pool);
  const auto& ps = m.params();
  ASSERT_FALSE(ps.empty());
  EXPECT_EQ(ps.front().name, "model.embed_tokens.weight");
  int64_t total = 0;
  for (const auto& p : ps) {
    total += p.numel();
    if (p.name.find("norm.weight") != std::string::npos) {
      EXPECT_FALSE(p.is_matrix);
      EXPECT_EQ(max_abs(p.data, p.numel()), 1.0) << p.name;
    } else {
      EXPECT_TRUE(p.is_matrix) << p.name;
    }
  }
  EXPECT_LE(total, m.num_params());
  const std::string dir = (fs::path(::testing::TempDir()) / "kvlab_train_export").string();
  m.export_hf(dir, DType::kF32);
  auto back = TrainModel::load(dir, pool);
  ASSERT_EQ(back->params().size(), ps.size());
  for (size_t i = 0; i < ps.size(); ++i) {
    EXPECT_EQ(back->params()[i].name, ps[i].name);
    EXPECT_TRUE(std::equal(ps[i].data, ps[i].data + ps[i].numel(), back->params()[i].data))
        << ps[i].name;
  }
  // bf16 export loads with bf16 rounding (relative 2^-9).
  m.export_hf(dir, DType::kBF16);
  auto bf = TrainModel::load(dir, pool);
  const auto& p0 = ps[1];
  EXPECT_TRUE(testing::all_close(bf->params()[1].data, p0.data, p0.numel(), 0, 4e-3));
  // Inference loads the exported folder too.
  EXPECT_NE(Model::load(dir), nullptr);
}

// The API as an optimizer sees it: plain SGD over params() memorises a short sequence.
TEST(TrainModel, SgdOverParamsLowersTheLoss) {
  ThreadPool pool(2);
  TrainModel m(preset_config("tiny"), 3, 0.02, pool);
  const int64_t B = 2, T = 33;
  std::vector<int32_t> tok(B * T), tgt(B * T);
  for (int64_t i = 0; i < B * T; ++i) tok[i] = static_cast<int32_t>((i * 7) % 50);
  for (int64_t i = 0; i < B * T; ++i) tgt[i] = (i + 1) % T == 0 ? -1 : tok[i + 1];
  const double first = m.forward_loss(tok.data(), tgt.data(), nullptr, B, T);
  for (int step = 0; step < 80; ++step) {
    m.zero_grad();
    m.forward_backward(tok.data(), tgt.data(), nullptr, B, T);
    for (auto& p : m.params())
      for (int64_t i = 0; i < p.numel(); ++i) p.data[i] -= 1.0f * p.grad[i];
  }
  const double last = m.forward_loss(tok.data(), tgt.data(), nullptr, B, T);
  EXPECT_LT(last, 0.5 * first) << "first " << first << " last " << last;
}

TEST(TrainModel, RejectsBadInput) {
  ModelConfig cfg = preset_config("tiny");
  ThreadPool pool(1);
  TrainModel m(cfg, 1, 0.02, pool);
  std::vector<int32_t> tok = {1, 2, 999999}, tgt = {2, 3, 4};
  EXPECT_THROW(m.forward_backward(tok.data(), tgt.data(), nullptr, 1, 3), Error);
  tok[2] = 3;
  tgt = {-1, -1, -1};  // nothing to predict: loss 0, no gradient
  m.zero_grad();
  EXPECT_EQ(m.forward_backward(tok.data(), tgt.data(), nullptr, 1, 3), 0.0);
  for (const auto& p : m.params()) EXPECT_EQ(max_abs(p.grad, p.numel()), 0.0);
  cfg.mlp_bias = true;
  EXPECT_THROW(TrainModel(cfg, 1, 0.02, pool), Error);
}

}  // namespace
}  // namespace kvlab::model
