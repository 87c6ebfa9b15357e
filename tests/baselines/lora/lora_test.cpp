// LoRA (baselines/lora + TrainModel::enable_lora) against PyTorch goldens made by
// tests/golden/make_lora_goldens.py (plain torch, PEFT's adapter formula, the dropout mask rule
// of llama_train.h re-implemented in numpy), and exact properties: merged forward == adapter
// forward, merged export == adapter forward, frozen base unchanged by training, state bytes ==
// methods.md 3.4.
//
// Tolerances (both sides f32 from identical weights; they differ in summation order only):
//   logits: atol 2e-5 * max|logit| (the TrainModel-vs-inference test measured ~1e-6 relative);
//   loss: rtol 1e-5; adapter gradients: per tensor atol 5e-5 * max|golden grad| (as the full-model
//   backward golden, tests/train/llama_train_test.cpp, whose measured worst is 3e-6).
//   One AdamW step: at step 1 the update is lr * g / (|g| + eps) ~ lr * sign(g), so an element
//   whose golden |g| is within the gradient tolerance could legitimately flip sign; those (if any)
//   get atol 2 lr, every other element atol 1e-6 + 1e-5 |p| (f32 rounding of p, m, v).
// A wrong scale (alpha vs alpha/r), a missing dropout rescale, a transposed B or an adapter on
// the wrong side of RoPE moves these by O(10%) of scale.
#include "baselines/lora/lora.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "baselines/adamw/adamw.h"
#include "framework/backend/cpu/cpu_features.h"
#include "framework/core/error.h"
#include "framework/core/file_io.h"
#include "framework/core/rng.h"
#include "framework/core/thread_pool.h"
#include "framework/io/h5_file.h"
#include "framework/model/llama_train.h"
#include "framework/model/model_init.h"
#include "framework/model/safetensors.h"
#include "tests/support/close.h"

namespace kvlab::baselines {
namespace {

namespace fs = std::filesystem;
using model::TrainModel;

std::string golden(const std::string& c) {
  return std::string(KVLAB_SOURCE_DIR) + "/tests/golden/lora_" + c + ".h5";
}

double max_abs(const float* v, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, static_cast<double>(std::fabs(v[i])));
  return m;
}

// The golden's base weights as an HF folder (config.json + f32 model.safetensors).
std::string write_folder(const std::string& c) {
  const std::string path = golden(c);
  const auto cj = io::read_i32(path, "config_json");
  std::string json(cj.begin(), cj.end());
  const model::ModelConfig cfg = model::parse_model_config(json, path);
  ThreadPool pool(1);
  TrainModel names(cfg, 0, 0.0, pool);
  std::vector<std::vector<float>> data;
  std::vector<model::TensorToWrite> w;
  data.reserve(names.params().size());
  for (const auto& p : names.params()) {
    data.push_back(io::read_f32(path, "weights/" + p.name));
    w.push_back({p.name, DType::kF32, p.shape, data.back().data()});
  }
  const fs::path dir = fs::path(::testing::TempDir()) / ("kvlab_lora_" + c);
  fs::create_directories(dir);
  model::write_safetensors((dir / "model.safetensors").string(), w);
  write_file_atomic((dir / "config.json").string(), json);
  return dir.string();
}

model::LoraConfig golden_lora(const std::string& path) {
  model::LoraConfig lc;
  lc.rank = std::stoll(io::read_attr(path, "/", "rank"));
  lc.alpha = std::stod(io::read_attr(path, "/", "alpha"));
  lc.dropout = std::stod(io::read_attr(path, "/", "dropout"));
  lc.seed = std::stoull(io::read_attr(path, "/", "lora_seed"));
  lc.targets = split_modules(io::read_attr(path, "/", "targets"), "targets");
  return lc;
}

class LoraGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(LoraGolden, LogitsGradientsAndOneAdamWStep) {
  const std::string c = GetParam(), path = golden(c);
  const std::string dir = write_folder(c);
  std::vector<int64_t> dims;
  const auto tokens = io::read_i32(path, "tokens", &dims);
  const int64_t B = dims[0], T = dims[1];
  const auto targets = io::read_i32(path, "targets");
  const auto weight = io::read_f32(path, "loss_weight");
  const auto want_logits = io::read_f32(path, "logits");
  const float want_loss = io::read_f32(path, "loss")[0];
  const double lr = std::stod(io::read_attr(path, "/", "lr"));
  const model::LoraConfig lc = golden_lora(path);
  double worst_grad = 0;
  for (auto [threads, isa] : {std::pair{1, cpu::Isa::kScalar}, std::pair{2, cpu::Isa::kScalar},
                              std::pair{1, cpu::Isa::kAvx512}, std::pair{2, cpu::Isa::kAvx512}}) {
    if (!cpu::isa_supported(isa)) continue;
    cpu::ScopedIsa scoped(isa);
    ThreadPool pool(threads);
    auto m = TrainModel::load(dir, pool, /*base_grads=*/false);
    m->enable_lora(lc);
    for (auto& p : m->lora_params()) {
      const auto a = io::read_f32(path, "adapters/" + p.name);
      ASSERT_EQ(static_cast<int64_t>(a.size()), p.numel()) << p.name;
      std::copy(a.begin(), a.end(), p.data);
    }
    const int64_t V = m->config().vocab_size;
    std::vector<float> logits(B * T * V);
    m->forward_logits(tokens.data(), B, T, logits.data());
    EXPECT_TRUE(testing::all_close(logits.data(), want_logits.data(), B * T * V,
                                   2e-5 * max_abs(want_logits.data(), B * T * V), 0))
        << c << " logits threads=" << threads << " " << cpu::isa_name(isa);
    m->zero_grad();
    const double loss = m->forward_backward(tokens.data(), targets.data(), weight.data(), B, T);
    EXPECT_NEAR(loss, want_loss, 1e-5 * std::fabs(want_loss)) << c << " threads=" << threads;
    std::vector<std::vector<float>> want_g;
    for (const auto& p : m->lora_params()) {
      want_g.push_back(io::read_f32(path, "grads/" + p.name));
      const auto& want = want_g.back();
      const double scale = max_abs(want.data(), p.numel());
      ASSERT_GT(scale, 0) << p.name;
      EXPECT_TRUE(testing::all_close(p.grad, want.data(), p.numel(), 5e-5 * scale, 0))
          << c << " grad " << p.name << " threads=" << threads << " " << cpu::isa_name(isa);
      double err = 0;
      for (int64_t j = 0; j < p.numel(); ++j)
        err = std::max(err, static_cast<double>(std::fabs(p.grad[j] - want[j])));
      worst_grad = std::max(worst_grad, err / scale);
    }
    // One AdamW step (torch defaults but lr, weight_decay from the golden).
    AdamWParams ap;
    ap.weight_decay = std::stod(io::read_attr(path, "/", "weight_decay"));
    AdamW opt(ap);
    auto blocks = lora_blocks(*m);
    opt.step(blocks, lr);
    size_t bi = 0;
    for (const auto& p : m->lora_params()) {
      const auto want = io::read_f32(path, "after_step/" + p.name);
      const auto& g = want_g[bi++];
      const double gtol = 5e-5 * max_abs(g.data(), p.numel());
      int64_t bad = 0, flippable = 0;
      for (int64_t j = 0; j < p.numel(); ++j) {
        const bool near_zero = std::fabs(g[j]) <= gtol;
        flippable += near_zero;
        const double tol = near_zero ? 2 * lr : 1e-6 + 1e-5 * std::fabs(want[j]);
        bad += std::fabs(p.data[j] - want[j]) > tol;
      }
      EXPECT_EQ(bad, 0) << c << " after_step " << p.name << " (" << flippable
                        << " near-zero gradients)";
    }
  }
  std::cout << c << ": worst adapter-gradient error " << worst_grad << " of its tensor's max\n";
}

INSTANTIATE_TEST_SUITE_P(Lora, LoraGolden, ::testing::Values("llama_all", "qwen2_dropout"));

// A random model with random (non-zero) B: the adapter forward equals (a) the exported merged
// folder loaded back and (b) the model after merge_lora(); atol 1e-5 * max|logit| (f32: the
// merged weight W + s B A rounds once per element, the adapter path sums two extra products).
TEST(Lora, MergedForwardEqualsAdapterForward) {
  ThreadPool pool(2);
  for (bool tie : {false, true}) {
    model::ModelConfig cfg = model::preset_config("tiny");
    cfg.tie_word_embeddings = tie;
    TrainModel m(cfg, 5, 0.05, pool);
    model::LoraConfig lc;
    lc.rank = 4;
    lc.alpha = 12;
    lc.dropout = 0.3;  // train-only: must not affect forward_logits
    m.enable_lora(lc);
    Rng rng(9);
    for (auto& p : m.lora_params())
      if (p.name.find("lora_B") != std::string::npos)
        for (int64_t i = 0; i < p.numel(); ++i) p.data[i] = static_cast<float>(0.05 * rng.normal());
    const int64_t B = 2, T = 29, V = cfg.vocab_size;
    std::vector<int32_t> tok(B * T);
    for (int64_t i = 0; i < B * T; ++i) tok[i] = static_cast<int32_t>((i * 13 + 5) % V);
    std::vector<float> ad(B * T * V), ad2(B * T * V), exported(B * T * V), merged(B * T * V);
    m.forward_logits(tok.data(), B, T, ad.data());
    m.forward_logits(tok.data(), B, T, ad2.data());
    EXPECT_EQ(ad, ad2) << "eval forward must be deterministic (no dropout)";
    const double scale = max_abs(ad.data(), B * T * V);
    // The adapters change the output (else the comparisons below prove nothing).
    {
      TrainModel base(cfg, 5, 0.05, pool);
      std::vector<float> plain(B * T * V);
      base.forward_logits(tok.data(), B, T, plain.data());
      EXPECT_FALSE(testing::all_close(plain.data(), ad.data(), B * T * V, 1e-3 * scale, 0));
    }
    const std::string dir =
        (fs::path(::testing::TempDir()) / (tie ? "kvlab_lora_merged_tied" : "kvlab_lora_merged"))
            .string();
    m.export_hf(dir, DType::kF32);
    auto back = TrainModel::load(dir, pool);
    back->forward_logits(tok.data(), B, T, exported.data());
    EXPECT_TRUE(testing::all_close(exported.data(), ad.data(), B * T * V, 1e-5 * scale, 0))
        << "exported merged weights";
    m.merge_lora();
    EXPECT_FALSE(m.lora_enabled());
    m.forward_logits(tok.data(), B, T, merged.data());
    EXPECT_TRUE(testing::all_close(merged.data(), ad.data(), B * T * V, 1e-5 * scale, 0))
        << "merge_lora";
    EXPECT_TRUE(testing::all_close(merged.data(), exported.data(), B * T * V, 1e-6 * scale, 0));
  }
}

// Training through the adapters: base weights bit-identical afterwards, no base gradients
// exist, the training loss falls, and the optimizer holds exactly methods.md 3.4's state.
TEST(Lora, FrozenBaseUnchangedLossFallsAndStateBytesMatchFormula) {
  ThreadPool pool(2);
  const model::ModelConfig cfg = model::preset_config("tiny");
  // init std 0.1: the frozen tied head must be able to express peaked logits (at 0.02 its rows
  // bound |logit| to ~0.02 C and the loss cannot fall far whatever the adapters do).
  TrainModel m(cfg, 3, 0.1, pool);
  std::vector<float> before(m.params()[0].data, m.params()[0].data + m.num_params());
  model::LoraConfig lc;
  lc.rank = 8;
  lc.alpha = 16;
  lc.dropout = 0.1;
  lc.targets = {"q", "k", "v", "o", "gate", "up", "down"};
  m.enable_lora(lc);
  EXPECT_TRUE(m.base_frozen());
  for (const auto& p : m.params()) EXPECT_EQ(p.grad, nullptr) << p.name;
  EXPECT_EQ(static_cast<int64_t>(m.lora_params().size()), 2 * 7 * cfg.num_hidden_layers);
  // Init: B = 0 exactly; A within PEFT's kaiming bound 1/sqrt(in) and not all zero.
  for (const auto& p : m.lora_params()) {
    if (p.name.find("lora_B") != std::string::npos) {
      EXPECT_EQ(max_abs(p.data, p.numel()), 0.0) << p.name;
    } else {
      const double mx = max_abs(p.data, p.numel());
      EXPECT_GT(mx, 0.5 / std::sqrt(static_cast<double>(p.shape[1]))) << p.name;
      EXPECT_LE(mx, 1.0 / std::sqrt(static_cast<double>(p.shape[1]))) << p.name;
    }
  }
  const int64_t B = 2, T = 33;
  std::vector<int32_t> tok(B * T), tgt(B * T);
  for (int64_t i = 0; i < B * T; ++i) tok[i] = static_cast<int32_t>((i * 7) % 50);
  for (int64_t i = 0; i < B * T; ++i) tgt[i] = (i + 1) % T == 0 ? -1 : tok[i + 1];
  const double first = m.forward_loss(tok.data(), tgt.data(), nullptr, B, T);
  AdamWParams ap;
  ap.weight_decay = 0.0;
  AdamW opt(ap);
  auto blocks = lora_blocks(m);
  for (int step = 0; step < 100; ++step) {
    m.zero_grad();
    m.forward_backward(tok.data(), tgt.data(), nullptr, B, T);
    opt.step(blocks, 1e-2);
  }
  const double last = m.forward_loss(tok.data(), tgt.data(), nullptr, B, T);
  EXPECT_LT(last, 0.5 * first) << "first " << first << " last " << last;
  EXPECT_TRUE(std::equal(before.begin(), before.end(), m.params()[0].data))
      << "a frozen base weight changed";
  // methods.md 3.4: 2 * 4 * r * (m + n) bytes of AdamW state and r * (m + n) trainable floats
  // per adapted m x n matrix; summed by hand over this model's shapes here.
  const int64_t C = cfg.hidden_size, F = cfg.intermediate_size;
  const int64_t HD = cfg.num_attention_heads * cfg.head_dim;
  const int64_t GD = cfg.num_key_value_heads * cfg.head_dim;
  const int64_t per_layer_mn = (HD + C) + 2 * (GD + C) + (C + HD) + 2 * (F + C) + (C + F);
  const int64_t want_trainable = cfg.num_hidden_layers * lc.rank * per_layer_mn;
  EXPECT_EQ(m.trainable_params(), want_trainable);
  EXPECT_EQ(lora_trainable_floats(cfg, lc), want_trainable);
  EXPECT_EQ(opt.state_bytes(), 2 * 4 * want_trainable);
  EXPECT_EQ(lora_adamw_state_bytes(cfg, lc), opt.state_bytes());
  EXPECT_EQ(lora_adamw_state_bytes(F, C, 8), 2 * 4 * 8 * (F + C));
}

// Dropout is train-only and changes per call (new masks), deterministically for a given seed
// and independent of the thread count.
TEST(Lora, DropoutMasksPerCallAndThreadIndependent) {
  const model::ModelConfig cfg = model::preset_config("tiny");
  const int64_t B = 1, T = 20;
  std::vector<int32_t> tok(T), tgt(T);
  for (int64_t i = 0; i < T; ++i) tok[i] = static_cast<int32_t>((i * 5 + 1) % 60);
  for (int64_t i = 0; i < T; ++i) tgt[i] = i + 1 < T ? tok[i + 1] : -1;
  std::vector<std::vector<double>> losses;
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    TrainModel m(cfg, 4, 0.02, pool);
    model::LoraConfig lc;
    lc.rank = 2;
    lc.dropout = 0.5;
    m.enable_lora(lc);
    Rng rng(1);
    for (auto& p : m.lora_params())
      for (int64_t i = 0; i < p.numel(); ++i) p.data[i] = static_cast<float>(0.2 * rng.normal());
    std::vector<double> l;
    for (int k = 0; k < 3; ++k)
      l.push_back(m.forward_backward(tok.data(), tgt.data(), nullptr, B, T));
    l.push_back(m.forward_loss(tok.data(), tgt.data(), nullptr, B, T));
    l.push_back(m.forward_loss(tok.data(), tgt.data(), nullptr, B, T));
    losses.push_back(l);
  }
  const auto& l = losses[0];
  EXPECT_NE(l[0], l[1]);
  EXPECT_NE(l[1], l[2]);
  EXPECT_EQ(l[3], l[4]);
  for (size_t i = 0; i < l.size(); ++i) EXPECT_NEAR(losses[1][i], l[i], 1e-5 * std::fabs(l[i]));
}

TEST(Lora, RejectsBadConfig) {
  ThreadPool pool(1);
  const model::ModelConfig cfg = model::preset_config("tiny");
  auto fresh = [&] { return std::make_unique<TrainModel>(cfg, 1, 0.02, pool); };
  auto expect_error = [&](model::LoraConfig lc, const std::string& needle) {
    auto m = fresh();
    try {
      m->enable_lora(lc);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  model::LoraConfig lc;
  lc.rank = 0;
  expect_error(lc, "lora.rank");
  lc = {};
  lc.alpha = 0;
  expect_error(lc, "lora.alpha");
  lc = {};
  lc.dropout = 1.0;
  expect_error(lc, "lora.dropout");
  lc = {};
  lc.targets = {"q", "gaet"};
  expect_error(lc, "did you mean 'gate'");
  lc.targets = {"q", "q_proj"};
  expect_error(lc, "named twice");
  lc.targets = {};
  expect_error(lc, "target_modules is empty");
  auto m = fresh();
  m->enable_lora({});
  EXPECT_THROW(m->enable_lora({}), Error);
  // A model loaded without base gradients and without adapters has nothing to train.
  const std::string dir = (fs::path(::testing::TempDir()) / "kvlab_lora_frozen").string();
  fresh()->export_hf(dir, DType::kF32);
  auto frozen = TrainModel::load(dir, pool, /*base_grads=*/false);
  std::vector<int32_t> tok = {1, 2, 3}, tgt = {2, 3, -1};
  EXPECT_THROW(frozen->forward_backward(tok.data(), tgt.data(), nullptr, 1, 3), Error);
  EXPECT_THROW(frozen->merge_lora(), Error);
  // Declared parameters: a bad target list is refused when the config is read.
  ParamValues pv(lora_param_decls("lora_"));
  EXPECT_THROW(pv.set_from_string("lora_target_modules", "q,,v", "task.lora_target_modules"),
               Error);
  EXPECT_THROW(pv.set_from_string("lora_target_modules", "q,mlp", "task.lora_target_modules"),
               Error);
  EXPECT_THROW(pv.set_from_string("lora_rank", "0", "task.lora_rank"), Error);
  pv.set_from_string("lora_target_modules", "q_proj, v", "task.lora_target_modules");
  const model::LoraConfig got = lora_config_from(pv, "lora_");
  EXPECT_EQ(got.targets, (std::vector<std::string>{"q_proj", "v"}));
}

}  // namespace
}  // namespace kvlab::baselines
