// The Llama-family forward pass against PyTorch goldens (DESIGN.md section 5; style.md 4.2, 4.3).
//
// Each case is a small random model in tests/golden/models/<case>/ (HF layout) and a golden
// tests/golden/<case>.h5 holding `tokens` [T] int32 and `logits` [T, V] f32 computed by
// tests/golden/torch_llama.py (a PyTorch transcription of HF's LlamaForCausalLM /
// MistralForCausalLM / Qwen2ForCausalLM forward, in f32 from the stored weights). Regenerate with
// `/usr/bin/python3 tests/golden/make_goldens.py`; tests/golden/README.md lists what each case
// covers (GQA, head_dim 80, llama3 and linear RoPE scaling, tied embeddings, q/k/v/o biases,
// Qwen2 biases; f32, bf16 and f16 storage).
//
// Three ways per case, every logit row compared:
//   (a) the whole sequence through Sequence::forward in prefill chunks of 16, all logits [T, V];
//   (b) the first half as one prefill (all logits), then one token per forward call (decode,
//       all_logits=false gives [V] for that token): rows T/2 .. T-1 come from the decode path;
//   (c) (a) and (b) again with a one-thread pool (the parallel split must not change results
//       beyond summation order).
//
// Tolerance: |got - want| <= atol with atol = 1e-4 * max|want| (the case's logit scale, 7.8 to
// 12.3 here, so atol ~ 1e-3), rtol = 0. Both sides compute in f32 from bit-identical weights (bf16
// and f16 upcast exactly), so the only differences are rounding: summation order in the GEMMs
// (K <= 256 here), in softmax and in RMSNorm's mean. Each dot product then differs by
// O(sqrt(K) * eps_f32 * sum|x_i w_i|) ~ 16 * 6e-8 * O(10) ~ 1e-5 relative; two layers, softmax
// and the final norm amplify that by a small factor. Measured: an independent float64 evaluation of
// the same models differs from the goldens by at most 1.5e-5 (2e-6 of the logit scale), and
// computing inv_freq in f64 then rounding (instead of HF's f32 pow) moves logits by at most
// 1.1e-5. So 1e-4 of the scale is ~50x the expected error, yet far below what any real mistake
// produces: wrong RoPE pairing, unscaled llama3/linear RoPE, a wrong GQA head mapping or a
// missing bias all move logits by 0.3 to 13 (tests/golden/README.md), and bf16 activations
// instead of f32 arithmetic would cost ~1e-2.
#include <H5Cpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "framework/kv/kv_cache.h"
#include "framework/model/llama.h"
#include "tests/support/close.h"

namespace kvlab::model {
namespace {

struct Golden {
  std::vector<int32_t> tokens;  // [T]
  std::vector<float> logits;    // [T, V]
  int64_t T = 0, V = 0;
};

Golden read_golden(const std::string& path) {
  Golden g;
  H5::H5File file(path, H5F_ACC_RDONLY);
  {
    H5::DataSet ds = file.openDataSet("tokens");
    H5::DataSpace sp = ds.getSpace();
    EXPECT_EQ(sp.getSimpleExtentNdims(), 1) << path << ": tokens";
    hsize_t dims[1] = {0};
    sp.getSimpleExtentDims(dims);
    g.T = static_cast<int64_t>(dims[0]);
    g.tokens.resize(g.T);
    ds.read(g.tokens.data(), H5::PredType::NATIVE_INT32);
  }
  {
    H5::DataSet ds = file.openDataSet("logits");
    H5::DataSpace sp = ds.getSpace();
    EXPECT_EQ(sp.getSimpleExtentNdims(), 2) << path << ": logits";
    hsize_t dims[2] = {0, 0};
    sp.getSimpleExtentDims(dims);
    EXPECT_EQ(static_cast<int64_t>(dims[0]), g.T) << path << ": logits rows vs tokens";
    g.V = static_cast<int64_t>(dims[1]);
    g.logits.resize(dims[0] * dims[1]);
    ds.read(g.logits.data(), H5::PredType::NATIVE_FLOAT);
  }
  return g;
}

class ForwardGolden : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string root = std::string(KVLAB_SOURCE_DIR) + "/tests/golden/";
    golden_ = read_golden(root + GetParam() + ".h5");
    model_ = Model::load(root + "models/" + GetParam());
    ASSERT_NE(model_, nullptr);
    ASSERT_EQ(model_->config().vocab_size, golden_.V) << "golden vs config.json vocab_size";
    ASSERT_GT(golden_.T, 1);
    scale_ = 0;
    for (float x : golden_.logits) scale_ = std::max(scale_, static_cast<double>(std::fabs(x)));
    ASSERT_GT(scale_, 1.0) << "golden logits should have an O(1) spread";
    auto& reg = kv::KvRegistry::instance();
    ParamValues pv(reg.find("full_cache").params);
    factory_ = kv::make_kv_factory("full_cache", pv);
  }

  double atol() const { return 1e-4 * scale_; }  // see the tolerance note at the top

  // (a): the whole sequence, prefill chunks of 16, all logits [T, V].
  void check_chunked(int threads) {
    ThreadPool pool(threads);
    Sequence seq(model_, factory_, pool, {.prefill_chunk = 16});
    const int64_t T = golden_.T, V = golden_.V;
    std::vector<float> logits(T * V, NAN);
    seq.forward(std::span<const int32_t>(golden_.tokens), logits.data(), /*all_logits=*/true);
    EXPECT_EQ(seq.length(), T);
    const auto r = testing::all_close(logits.data(), golden_.logits.data(), T * V, atol(), 0.0);
    EXPECT_TRUE(r) << GetParam() << " chunked, threads=" << threads;
    std::cout << "[" << GetParam() << " chunked x16, threads=" << threads << "] " << r.message()
              << "\n";
  }

  // (b): prefill the first half (all logits), then decode one token per call ([V] each).
  void check_prefill_then_decode(int threads) {
    ThreadPool pool(threads);
    Sequence seq(model_, factory_, pool, {.prefill_chunk = 16});
    const int64_t T = golden_.T, V = golden_.V, half = T / 2;
    const std::span<const int32_t> tokens(golden_.tokens);
    std::vector<float> logits(T * V, NAN);
    seq.forward(tokens.subspan(0, half), logits.data(), /*all_logits=*/true);
    seq.end_prefill();
    for (int64_t t = half; t < T; ++t) {
      seq.forward(tokens.subspan(t, 1), logits.data() + t * V, /*all_logits=*/false);
      ASSERT_EQ(seq.length(), t + 1);
    }
    const auto pre = testing::all_close(logits.data(), golden_.logits.data(), half * V, atol(), 0.0);
    EXPECT_TRUE(pre) << GetParam() << " prefill rows [0, " << half << "), threads=" << threads;
    const auto dec = testing::all_close(logits.data() + half * V, golden_.logits.data() + half * V,
                                        (T - half) * V, atol(), 0.0);
    EXPECT_TRUE(dec) << GetParam() << " decode rows [" << half << ", " << T
                     << "), threads=" << threads;
    // Row by row, so a failure names the first position that goes wrong.
    for (int64_t t = 0; t < T; ++t) {
      const auto row = testing::all_close(logits.data() + t * V, golden_.logits.data() + t * V, V,
                                          atol(), 0.0);
      if (!row) {
        ADD_FAILURE() << GetParam() << " first bad row " << t << " (position " << t
                      << (t < half ? ", prefill" : ", decode") << "): " << row.message();
        break;
      }
    }
    std::cout << "[" << GetParam() << " prefill " << half << " + decode, threads=" << threads
              << "] prefill: " << pre.message() << "; decode: " << dec.message() << "\n";
  }

  Golden golden_;
  std::shared_ptr<const Model> model_;
  kv::KvFactory factory_;
  double scale_ = 0;
};

TEST_P(ForwardGolden, ChunkedPrefillAllLogits) { check_chunked(2); }
TEST_P(ForwardGolden, PrefillThenDecode) { check_prefill_then_decode(2); }
TEST_P(ForwardGolden, OneThread) {
  check_chunked(1);
  check_prefill_then_decode(1);
}

INSTANTIATE_TEST_SUITE_P(Cases, ForwardGolden,
                         ::testing::Values("llama_gqa_f32", "llama_hd80_bf16", "llama3_rope_bf16",
                                           "llama_tied_bias_f16", "qwen2_bias_bf16",
                                           "mistral_linear_f32"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace kvlab::model
