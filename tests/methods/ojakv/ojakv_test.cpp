// OjaKV (methods/ojakv): exact properties through a real model forward, path agreement against an
// f64 reference, Oja-step algebra, subspace tracking, stale-coefficient policies, parameter errors
// and byte accounting.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "framework/core/error.h"
#include "methods/ojakv/oja_update.h"
#include "tests/methods/ojakv/ojakv_support.h"
#include "tests/support/close.h"

namespace kvlab {
namespace {

using methods::OjaKvCache;
using methods::OjaKvParams;
using testing::layer_info;
using testing::ojakv_params;
using testing::random_bases;

kv::KvFactory ojakv_factory(std::shared_ptr<const kv::Bases> b, const OjaKvParams& p) {
  return [b, p](const kv::LayerInfo& info) {
    return std::unique_ptr<kv::KvCache>(new OjaKvCache(info, p, b));
  };
}

kv::KvFactory full_factory() {
  return kv::make_kv_factory("full_cache", ParamValues(std::vector<ParamDecl>{}));
}

// Largest |a - b| relative to max |b| (logit-scale comparison).
double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0.0, s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]));
    s = std::max(s, std::fabs(static_cast<double>(b[i])));
  }
  return m / s;
}

// ---- exact properties through the tiny model ----

// rank = head_dim: every basis (initial and Oja-updated) spans R^D, so c U^T = k up to rounding
// and the model's logits equal the full cache's, for both attention paths, compressed and exact
// prefill, chunked prefill and decode with several basis updates. Tolerance: f32 projection and
// reconstruction (coefficients at f32) perturb keys by ~1e-6 relative; 2e-4 of the logit scale
// leaves room for two layers of that. A rank of D/2 must break it (the check can fail).
TEST(OjaKvModel, FullRankReproducesFullCacheLogits) {
  const auto ids = testing::token_ids(120, 3);
  const int64_t prompt = 80;
  const auto want = testing::model_logits(full_factory(), ids, prompt, 32);
  auto bases = random_bases(2, 2, 16, 9);
  for (const char* path : {"reconstruct", "latent"})
    for (const char* pf : {"compressed", "exact"})
      for (const char* anchors : {"positional", "residual_topk"}) {
        const auto p = ojakv_params({{"rank_mode", "fixed"}, {"rank_k", "16"}, {"rank_v", "16"},
                                     {"coeff_dtype", "f32"}, {"attention_path", path},
                                     {"prefill_attention", pf}, {"anchor_policy", anchors},
                                     {"n_start", "2"}, {"n_recent", "3"}, {"k_full", "5"},
                                     {"update_period", "8"}, {"tile_tokens", "37"}});
        const auto got = testing::model_logits(ojakv_factory(bases, p), ids, prompt, 32);
        EXPECT_LT(max_rel_diff(got, want), 2e-4) << path << " " << pf << " " << anchors;
      }
  const auto p = ojakv_params({{"rank_mode", "fixed"}, {"rank_k", "8"}, {"rank_v", "8"},
                               {"coeff_dtype", "f32"}, {"n_start", "2"}, {"n_recent", "3"}});
  const auto got = testing::model_logits(ojakv_factory(bases, p), ids, prompt, 32);
  EXPECT_GT(max_rel_diff(got, want), 1e-2) << "rank D/2 should change the logits";
}

// Anchors covering the whole context: nothing is ever compressed, whatever the rank and the basis
// updates, so the logits equal the full cache's (one tile: the same kernel over the same values).
TEST(OjaKvModel, AnchorsCoveringContextReproduceFullCache) {
  const auto ids = testing::token_ids(100, 4);
  const int64_t prompt = 70;
  const auto want = testing::model_logits(full_factory(), ids, prompt);
  auto bases = random_bases(2, 2, 16, 10);
  for (const auto& set : std::vector<std::vector<std::pair<std::string, std::string>>>{
           {{"n_start", "100"}, {"n_recent", "0"}},
           {{"n_start", "0"}, {"n_recent", "100"}},
           {{"anchor_policy", "residual_topk"}, {"k_full", "70"}, {"update_period", "64"}}}) {
    for (const char* path : {"reconstruct", "latent"}) {
      auto s = set;
      s.push_back({"rank_mode", "fixed"});
      s.push_back({"rank_k", "3"});
      s.push_back({"rank_v", "2"});
      s.push_back({"attention_path", path});
      const auto got = testing::model_logits(ojakv_factory(bases, ojakv_params(s)), ids, prompt);
      EXPECT_TRUE(testing::all_close(got.data(), want.data(), static_cast<int64_t>(got.size()),
                                     1e-5, 1e-5))
          << path << " " << s[0].first;
    }
  }
}

// ---- layer-level stream ----

struct Stream {
  int64_t H, G, D, S;
  std::vector<float> k, v, q;
  std::vector<int32_t> pos;
  Stream(int64_t H_, int64_t G_, int64_t D_, int64_t S_, uint64_t seed)
      : H(H_), G(G_), D(D_), S(S_) {
    Rng rng(seed);
    k.resize(static_cast<size_t>(S * G * D));
    v.resize(k.size());
    q.resize(static_cast<size_t>(S * H * D));
    for (auto& x : k) x = static_cast<float>(rng.normal());
    for (auto& x : v) x = static_cast<float>(rng.normal());
    for (auto& x : q) x = static_cast<float>(1.5 * rng.normal());
    for (int64_t i = 0; i < S; ++i) pos.push_back(static_cast<int32_t>(3 + 2 * i));  // gaps
  }
};

// Prefill in two chunks, end_prefill, then one-token decode; `check(cache, t0, T)` runs after
// every attend with the outputs of tokens [t0, t0 + T).
void drive(OjaKvCache& c, const Stream& st, int64_t prompt, std::vector<float>& out,
           const std::function<void(int64_t, int64_t)>& check) {
  const int64_t G = st.G, H = st.H, D = st.D;
  out.assign(static_cast<size_t>(st.S * H * D), 0.f);
  int64_t done = 0;
  for (int64_t T : {prompt / 3, prompt - prompt / 3}) {
    c.append(st.k.data() + done * G * D, st.v.data() + done * G * D, T, st.pos.data() + done);
    c.attend(st.q.data() + done * H * D, T, st.pos.data() + done, out.data() + done * H * D);
    check(done, T);
    done += T;
  }
  c.end_prefill(kv::PrefillContext{prompt});
  for (; done < st.S; ++done) {
    c.append(st.k.data() + done * G * D, st.v.data() + done * G * D, 1, st.pos.data() + done);
    c.attend(st.q.data() + done * H * D, 1, st.pos.data() + done, out.data() + done * H * D);
    check(done, 1);
  }
}

// Every attend output (both paths; tiles smaller than the context, so tile merging runs) equals
// f64 softmax attention over what materialize() reports for that head, and the two paths agree.
// Tolerance: f32 accumulation over <= 150 tokens of O(1) values, 2e-5.
TEST(OjaKvLayer, ReconstructAndLatentAgreeWithF64Reference) {
  ThreadPool pool(2);
  const int64_t H = 4, G = 2, D = 16, S = 150, prompt = 90;
  const Stream st(H, G, D, S, 21);
  auto bases = random_bases(1, G, D, 22);
  for (const char* anchors : {"positional", "residual_topk"})
    for (const char* pf : {"compressed", "exact"}) {
      std::vector<float> outs[2];
      int which = 0;
      for (const char* path : {"reconstruct", "latent"}) {
        const auto p = ojakv_params({{"rank_mode", "fixed"}, {"rank_k", "5"}, {"rank_v", "4"},
                                     {"attention_path", path}, {"anchor_policy", anchors},
                                     {"prefill_attention", pf}, {"n_start", "4"},
                                     {"n_recent", "6"}, {"k_full", "12"}, {"update_period", "16"},
                                     {"tile_tokens", "23"}, {"coeff_dtype", "bf16"}});
        OjaKvCache c(layer_info(pool, H, G, D), p, bases);
        std::vector<float>& out = outs[which++];
        int64_t checked = 0;
        drive(c, st, prompt, out, [&](int64_t t0, int64_t T) {
          for (int64_t g = 0; g < G; ++g) {
            std::vector<float> K, V;
            std::vector<int32_t> pos;
            c.materialize(g, &K, &V, &pos);
            for (int64_t t = t0; t < t0 + T; ++t)
              for (int64_t h = g * (H / G); h < (g + 1) * (H / G); ++h) {
                const auto ref = testing::attention_f64(st.q.data() + (t * H + h) * D,
                                                        st.pos[static_cast<size_t>(t)], K, V, pos,
                                                        D, 1.0 / std::sqrt(double(D)));
                std::vector<float> reff(ref.begin(), ref.end());
                EXPECT_TRUE(testing::all_close(out.data() + (t * H + h) * D, reff.data(), D,
                                               2e-5, 2e-5))
                    << path << " " << anchors << " " << pf << " t=" << t << " h=" << h;
                ++checked;
              }
          }
        });
        EXPECT_EQ(checked, S * H);
        EXPECT_GT(c.basis_updates(), 2);
      }
      EXPECT_TRUE(testing::all_close(outs[1].data(), outs[0].data(),
                                     static_cast<int64_t>(outs[0].size()), 2e-5, 2e-5))
          << anchors << " " << pf;
    }
}

// The compressed tokens really are compressed: materialize() of a compressed token equals
// k U U^T with the basis it was compressed with (positional, no online update: the calibrated
// basis), checked in f64; anchors are exact.
TEST(OjaKvLayer, MaterializeIsProjectionOntoTheBasis) {
  ThreadPool pool(1);
  const int64_t H = 2, G = 1, D = 8, S = 40, prompt = 30;
  const Stream st(H, G, D, S, 5);
  auto bases = random_bases(1, G, D, 6);
  const auto p = ojakv_params({{"rank_mode", "fixed"}, {"rank_k", "3"}, {"rank_v", "2"},
                               {"online_update", "false"}, {"n_start", "2"}, {"n_recent", "4"},
                               {"coeff_dtype", "f32"}});
  OjaKvCache c(layer_info(pool, H, G, D), p, bases);
  std::vector<float> out;
  drive(c, st, prompt, out, [](int64_t, int64_t) {});
  std::vector<float> K, V;
  std::vector<int32_t> pos;
  c.materialize(0, &K, &V, &pos);
  ASSERT_EQ(static_cast<int64_t>(pos.size()), S);
  const linalg::Mat& Uk = c.basis_k(0);
  const linalg::Mat& Uv = c.basis_v(0);
  EXPECT_EQ(Uk.cols, 3);
  EXPECT_EQ(Uv.cols, 2);
  for (int64_t i = 0; i < S; ++i) {
    const bool anchor = i < 2 || i >= S - 4;
    for (int which = 0; which < 2; ++which) {
      const linalg::Mat& U = which ? Uv : Uk;
      const float* x = (which ? st.v.data() : st.k.data()) + i * D;
      const float* got = (which ? V.data() : K.data()) + i * D;
      for (int64_t d = 0; d < D; ++d) {
        double want = x[d];
        if (!anchor) {
          want = 0.0;
          for (int64_t j = 0; j < U.cols; ++j) {
            double c_j = 0.0;
            for (int64_t e = 0; e < D; ++e) c_j += static_cast<double>(x[e]) * U(e, j);
            want += c_j * U(d, j);
          }
        }
        EXPECT_NEAR(got[d], want, 1e-5) << "token " << i << (which ? " v" : " k") << " d=" << d;
      }
    }
  }
}

// ---- prefill (methods.md 1.3 steps 1-2), against independent f64 computations ----

// f64 softmax probabilities of the last w queries over the prompt keys, summed over the window and
// averaged over each KV head's query heads: [G][N].
std::vector<std::vector<double>> window_attention_f64(const Stream& st, int64_t N, int64_t w) {
  const int64_t H = st.H, G = st.G, D = st.D, group = H / G;
  std::vector<std::vector<double>> s(static_cast<size_t>(G), std::vector<double>(N, 0.0));
  for (int64_t t = N - w; t < N; ++t)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / group;
      std::vector<double> l(static_cast<size_t>(N), -INFINITY);
      double mx = -INFINITY;
      for (int64_t i = 0; i <= t; ++i) {
        double a = 0.0;
        for (int64_t d = 0; d < D; ++d)
          a += double(st.q[(t * H + h) * D + d]) * st.k[(i * G + g) * D + d];
        l[i] = a / std::sqrt(double(D));
        mx = std::max(mx, l[i]);
      }
      double z = 0.0;
      for (int64_t i = 0; i <= t; ++i) z += std::exp(l[i] - mx);
      for (int64_t i = 0; i <= t; ++i) s[g][i] += std::exp(l[i] - mx) / z / double(group);
    }
  return s;
}

std::vector<int64_t> top_k_f64(const std::vector<double>& score, int64_t k) {
  std::vector<int64_t> idx(score.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int64_t>(i);
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return score[a] > score[b]; });
  idx.resize(static_cast<size_t>(k));
  std::sort(idx.begin(), idx.end());
  return idx;
}

// The prefill comprehensive update: salient_pooled selects the top salient_fraction of prompt
// tokens by window attention (f64 reference), mean-pools groups of pool_width, forms C (trace
// normalised) and applies prefill_steps Oja steps per mini-batch of prefill_batch rows; pooled
// uses every token. The resulting bases equal that computation from the calibrated basis.
TEST(OjaKvLayer, PrefillUpdateMatchesReference) {
  ThreadPool pool(2);
  const int64_t H = 4, G = 2, D = 12, N = 50, w = 8, pw = 3, r = 4;
  const Stream st(H, G, D, N, 81);
  auto bases = random_bases(1, G, D, 82);
  for (const char* mode : {"salient_pooled", "pooled"})
    for (int64_t batch : {int64_t{0}, int64_t{4}}) {
      const auto p = ojakv_params({{"rank_mode", "fixed"}, {"rank_k", std::to_string(r)},
                                   {"rank_v", std::to_string(r)}, {"prefill_update", mode},
                                   {"salient_fraction", "0.4"}, {"salient_window", std::to_string(w)},
                                   {"pool_width", std::to_string(pw)}, {"prefill_steps", "2"},
                                   {"prefill_batch", std::to_string(batch)}, {"eta_pre", "0.7"}});
      OjaKvCache c(layer_info(pool, H, G, D), p, bases);
      std::vector<float> out;
      drive(c, st, N, out, [](int64_t, int64_t) {});
      const auto att = window_attention_f64(st, N, w);
      int64_t rows_total = 0;
      for (int64_t g = 0; g < G; ++g) {
        std::vector<int64_t> sel;
        if (std::string(mode) == "salient_pooled") {
          sel = top_k_f64(att[g], 20);  // round(0.4 * 50)
        } else {
          for (int64_t i = 0; i < N; ++i) sel.push_back(i);
        }
        const int64_t rows = (static_cast<int64_t>(sel.size()) + pw - 1) / pw;
        rows_total = rows;
        for (int key = 0; key < 2; ++key) {
          const std::vector<float>& X = key ? st.k : st.v;
          std::vector<double> pooled(static_cast<size_t>(rows * D), 0.0);
          for (int64_t rr = 0; rr < rows; ++rr) {
            const int64_t b = rr * pw, e = std::min<int64_t>(b + pw, sel.size());
            for (int64_t j = b; j < e; ++j)
              for (int64_t d = 0; d < D; ++d)
                pooled[rr * D + d] += X[(sel[j] * G + g) * D + d] / double(e - b);
          }
          linalg::Mat U = (key ? bases->qk : bases->v)[g].top(r);
          const int64_t mb = batch > 0 ? batch : rows;
          for (int64_t b = 0; b < rows; b += mb) {
            const int64_t m = std::min(mb, rows - b);
            linalg::Mat C(D, D);
            double tr = 0.0;
            for (int64_t rr = b; rr < b + m; ++rr)
              for (int64_t x = 0; x < D; ++x)
                for (int64_t y = 0; y < D; ++y) C(x, y) += pooled[rr * D + x] * pooled[rr * D + y];
            for (int64_t x = 0; x < D; ++x) tr += C(x, x);
            for (auto& v : C.a) v /= tr;
            for (int s = 0; s < 2; ++s) methods::oja_step(U, C, 0.7);
          }
          const linalg::Mat& got = key ? c.basis_k(g) : c.basis_v(g);
          double diff = 0.0;
          for (size_t i = 0; i < U.a.size(); ++i) diff = std::max(diff, std::fabs(U.a[i] - got.a[i]));
          // Pooled rows are f32 sums in the cache (f64 here): 1e-5 is a few f32 ulps of O(1).
          EXPECT_LT(diff, 1e-5) << mode << " batch " << batch << " g" << g << (key ? " k" : " v");
        }
      }
      const int64_t per_batch = batch > 0 ? (rows_total + batch - 1) / batch : 1;
      EXPECT_EQ(c.basis_updates(), 2 * per_batch) << mode << " " << batch;
    }
}

// residual_topk at end_prefill: each KV head keeps full-rank the k_full prompt tokens with the
// largest ||k - k U U^T|| (U: the basis after the prefill update) x mean window attention (f64
// reference); the rest are compressed with the updated basis.
TEST(OjaKvLayer, ResidualAnchorsMatchReference) {
  ThreadPool pool(2);
  const int64_t H = 4, G = 2, D = 12, N = 60, w = 10, kf = 9;
  const Stream st(H, G, D, N, 91);
  auto bases = random_bases(1, G, D, 92);
  const auto p = ojakv_params({{"rank_mode", "fixed"}, {"rank_k", "3"}, {"rank_v", "3"},
                               {"anchor_policy", "residual_topk"}, {"k_full", std::to_string(kf)},
                               {"residual_window", std::to_string(w)}});
  OjaKvCache c(layer_info(pool, H, G, D), p, bases);
  std::vector<float> out;
  drive(c, st, N, out, [](int64_t, int64_t) {});
  const auto att = window_attention_f64(st, N, w);
  for (int64_t g = 0; g < G; ++g) {
    const linalg::Mat& U = c.basis_k(g);
    std::vector<double> score(static_cast<size_t>(N));
    for (int64_t i = 0; i < N; ++i) {
      double r2 = 0.0;
      for (int64_t d = 0; d < D; ++d) {
        double proj = 0.0;
        for (int64_t j = 0; j < U.cols; ++j) {
          double cj = 0.0;
          for (int64_t e = 0; e < D; ++e) cj += double(st.k[(i * G + g) * D + e]) * U(e, j);
          proj += cj * U(d, j);
        }
        const double rd = st.k[(i * G + g) * D + d] - proj;
        r2 += rd * rd;
      }
      score[i] = std::sqrt(r2) * att[g][i] / double(w);
    }
    std::vector<int32_t> want;
    for (int64_t i : top_k_f64(score, kf)) want.push_back(st.pos[i]);
    EXPECT_EQ(c.full_rank_positions(g), want) << "g" << g;
    // Different heads pick different sets (the policy is per KV head).
  }
  EXPECT_NE(c.full_rank_positions(0), c.full_rank_positions(1));
  EXPECT_EQ(c.memory().full_tokens, kf);
  EXPECT_EQ(c.memory().compressed_tokens, N - kf);
}

// Compressed prefill: between chunks, attention sees the prompt projected on the calibrated basis
// except the current anchors (positional: first n_start and last n_recent of what is held), which
// are exact.
TEST(OjaKvLayer, CompressedPrefillViewUsesCalibratedBasis) {
  ThreadPool pool(1);
  const int64_t H = 2, G = 1, D = 10, N = 30;
  const Stream st(H, G, D, N, 95);
  auto bases = random_bases(1, G, D, 96);
  const auto p = ojakv_params({{"rank_mode", "fixed"}, {"rank_k", "3"}, {"rank_v", "2"},
                               {"n_start", "2"}, {"n_recent", "3"}, {"coeff_dtype", "f32"}});
  OjaKvCache c(layer_info(pool, H, G, D), p, bases);
  const linalg::Mat Uk = bases->qk[0].top(3);
  for (int64_t held : {int64_t{12}, int64_t{30}}) {
    const int64_t from = held == 12 ? 0 : 12;
    c.append(st.k.data() + from * D, st.v.data() + from * D, held - from, st.pos.data() + from);
    std::vector<float> K, V;
    std::vector<int32_t> pos;
    c.materialize(0, &K, &V, &pos);
    ASSERT_EQ(static_cast<int64_t>(pos.size()), held);
    for (int64_t i = 0; i < held; ++i) {
      const bool anchor = i < 2 || i >= held - 3;
      for (int64_t d = 0; d < D; ++d) {
        double want = st.k[i * D + d];
        if (!anchor) {
          want = 0.0;
          for (int64_t j = 0; j < 3; ++j) {
            double cj = 0.0;
            for (int64_t e = 0; e < D; ++e) cj += double(st.k[i * D + e]) * Uk(e, j);
            want += cj * Uk(d, j);
          }
        }
        EXPECT_NEAR(K[i * D + d], want, 1e-5) << "held " << held << " token " << i;
      }
    }
  }
}

// ---- Oja step ----

// Gram-Schmidt with positive diagonal, f64, as an independent QR.
linalg::Mat gram_schmidt(linalg::Mat Y) {
  for (int64_t j = 0; j < Y.cols; ++j) {
    for (int pass = 0; pass < 2; ++pass)
      for (int64_t i = 0; i < j; ++i) {
        double dot = 0.0;
        for (int64_t r = 0; r < Y.rows; ++r) dot += Y(r, i) * Y(r, j);
        for (int64_t r = 0; r < Y.rows; ++r) Y(r, j) -= dot * Y(r, i);
      }
    double n = 0.0;
    for (int64_t r = 0; r < Y.rows; ++r) n += Y(r, j) * Y(r, j);
    n = std::sqrt(n);
    for (int64_t r = 0; r < Y.rows; ++r) Y(r, j) /= n;
  }
  return Y;
}

// oja_step equals the ACL rule written out (U + eta (C U - U U^T C U), then Gram-Schmidt) and keeps
// U orthonormal to 1e-5 over many steps with large and small eta.
TEST(OjaStep, MatchesRuleAndStaysOrthonormal) {
  Rng rng(8);
  const int64_t D = 24, r = 6;
  linalg::Mat X(200, D);
  // Column d has variance 9 * 2^-d (a clear eigengap); values exactly representable in f32.
  for (int64_t i = 0; i < 200; ++i)
    for (int64_t d = 0; d < D; ++d)
      X(i, d) = static_cast<float>(rng.normal() * 3.0 * std::pow(2.0, -0.5 * double(d)));
  std::vector<float> Xf(X.a.begin(), X.a.end());
  const linalg::Mat C = methods::batch_second_moment(Xf.data(), 200, D, D, methods::CovNorm::kNone);
  // C = X^T X / m, f64 reference.
  const linalg::Mat XtX = linalg::matmul_tn(X, X);
  for (int64_t i = 0; i < D * D; ++i) EXPECT_NEAR(C.a[i], XtX.a[i] / 200.0, 1e-9 * (1 + std::fabs(C.a[i])));
  linalg::Mat A(D, r);
  for (auto& x : A.a) x = rng.normal();
  linalg::Mat U = linalg::qr_q(A);
  for (double eta : {0.5, 0.01, 2.0}) {
    const linalg::Mat U0 = U;
    const auto s = methods::oja_step(U, C, eta);
    linalg::Mat Y = U0;
    const linalg::Mat CU = linalg::matmul(C, U0);
    const linalg::Mat G = linalg::matmul(U0, linalg::matmul_tn(U0, CU));
    for (size_t i = 0; i < Y.a.size(); ++i) Y.a[i] += eta * (CU.a[i] - G.a[i]);
    const linalg::Mat Q = gram_schmidt(Y);
    for (size_t i = 0; i < Q.a.size(); ++i) EXPECT_NEAR(U.a[i], Q.a[i], 1e-9);
    EXPECT_LT(s.orth_error, 1e-5);
    EXPECT_NEAR(s.orth_error, linalg::orthonormality_error(U), 1e-15);
  }
  const linalg::Mat Ct =
      methods::batch_second_moment(Xf.data(), 200, D, D, methods::CovNorm::kTrace);
  // eta * lambda_max < 1 (lambda_max ~ 0.53 here): the step then contracts towards the top-r space.
  for (int i = 0; i < 1000; ++i) methods::oja_step(U, Ct, i % 2 ? 0.3 : 1.5);
  EXPECT_LT(linalg::orthonormality_error(U), 1e-5);
  // Converged: span(U) is the top-r eigenspace of C.
  const auto eig = linalg::sym_eig(Ct);
  const auto cos = linalg::principal_cosines(U, linalg::leading_columns(eig.vectors, r));
  EXPECT_GT(*std::min_element(cos.begin(), cos.end()), 0.999);
}

// cov_norm: trace gives tr C = 1 with the same eigenvectors; token_l2 gives tr C = 1 and weighs
// every token equally (a scaled copy of a row changes nothing).
TEST(OjaStep, CovarianceNormalisations) {
  const int64_t D = 4;
  std::vector<float> X = {1, 2, 0, 0, 0, 1, 1, 0, 3, 0, 0, 1};
  double raw = 0.0;
  const auto Ct = methods::batch_second_moment(X.data(), 3, D, D, methods::CovNorm::kTrace, &raw);
  EXPECT_NEAR(raw, (5.0 + 2.0 + 10.0) / 3.0, 1e-12);
  double tr = 0.0;
  for (int64_t i = 0; i < D; ++i) tr += Ct(i, i);
  EXPECT_NEAR(tr, 1.0, 1e-12);
  EXPECT_NEAR(Ct(0, 1), 2.0 / 17.0, 1e-12);
  std::vector<float> Y = X;
  for (int64_t d = 0; d < D; ++d) Y[static_cast<size_t>(8 + d)] *= 7.f;
  const auto A = methods::batch_second_moment(X.data(), 3, D, D, methods::CovNorm::kTokenL2);
  const auto B = methods::batch_second_moment(Y.data(), 3, D, D, methods::CovNorm::kTokenL2);
  for (size_t i = 0; i < A.a.size(); ++i) EXPECT_NEAR(A.a[i], B.a[i], 1e-7);
  EXPECT_NEAR(A(0, 1), (2.0 / 5.0) / 3.0, 1e-12);
}

// ---- subspace tracking ----

// Keys (and values) lie in a planted r-dim subspace A for the prompt and the first half of decode,
// then in a different subspace B. The calibrated basis is A. With online updates the key and value
// bases converge to B (principal cosines near 1) and stay orthonormal; with online_update false
// they stay at A (far from B).
TEST(OjaKvLayer, OnlineBasisTracksSubspaceSwitchStaticDoesNot) {
  ThreadPool pool(1);
  const int64_t H = 2, G = 1, D = 16, r = 4, prompt = 64, S = 64 + 2 * 1024;
  Rng rng(31);
  linalg::Mat M(D, D);
  for (auto& x : M.a) x = rng.normal();
  const linalg::Mat Q = linalg::qr_q(M);
  linalg::Mat A = linalg::leading_columns(Q, r), B(D, r);
  // B: a second random subspace (generic position; an exactly orthogonal B would start Oja at a
  // saddle where C U = 0).
  for (auto& x : B.a) x = rng.normal();
  B = linalg::qr_q(B);
  auto bases = std::make_shared<kv::Bases>();
  bases->n_layers = 1;
  bases->G = G;
  bases->D = D;
  for (auto* v : {&bases->qk, &bases->k, &bases->v}) {
    kv::Eigenbasis e;
    e.vectors = Q;  // top r = A
    for (int64_t j = 0; j < D; ++j) e.values.push_back(j < r ? 1.0 : 1e-3);
    v->push_back(e);
  }
  auto sample = [&](const linalg::Mat& P, float* x) {
    double z[r];
    for (auto& zi : z) zi = rng.normal() * 2.0;
    for (int64_t d = 0; d < D; ++d) {
      double a = 0.01 * rng.normal();
      for (int64_t j = 0; j < r; ++j) a += z[j] * P(d, j);
      x[d] = static_cast<float>(a);
    }
  };
  std::vector<float> k(static_cast<size_t>(S * D)), v(k.size()), q(static_cast<size_t>(S * H * D));
  for (int64_t i = 0; i < S; ++i) {
    const linalg::Mat& P = i < prompt + 1024 ? A : B;
    sample(P, k.data() + i * D);
    sample(P, v.data() + i * D);
  }
  for (auto& x : q) x = static_cast<float>(rng.normal());
  std::vector<int32_t> pos(static_cast<size_t>(S));
  for (int64_t i = 0; i < S; ++i) pos[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  auto min_cos = [](const linalg::Mat& U, const linalg::Mat& P) {
    const auto c = linalg::principal_cosines(U, P);
    return *std::min_element(c.begin(), c.end());
  };
  ASSERT_LT(min_cos(A, B), 0.9);
  for (bool online : {true, false}) {
    const auto p = ojakv_params({{"rank_mode", "fixed"}, {"rank_k", "4"}, {"rank_v", "4"},
                                 {"online_update", online ? "true" : "false"},
                                 {"update_period", "16"}, {"eta_dec", "0.5"}});
    OjaKvCache c(layer_info(pool, H, G, D), p, bases);
    std::vector<float> out(static_cast<size_t>(prompt * H * D));
    c.append(k.data(), v.data(), prompt, pos.data());
    c.attend(q.data(), prompt, pos.data(), out.data());
    c.end_prefill(kv::PrefillContext{prompt});
    double mid = 0.0;
    for (int64_t i = prompt; i < S; ++i) {
      c.append(k.data() + i * D, v.data() + i * D, 1, pos.data() + i);
      c.attend(q.data() + i * H * D, 1, pos.data() + i, out.data());
      if (i == prompt + 1023) mid = min_cos(c.basis_k(0), A);
      EXPECT_LT(linalg::orthonormality_error(c.basis_k(0)), 1e-5);
    }
    EXPECT_GT(mid, 0.99) << "on A before the switch";
    if (online) {
      EXPECT_GT(min_cos(c.basis_k(0), B), 0.99);
      EXPECT_GT(min_cos(c.basis_v(0), B), 0.99);
      EXPECT_GT(c.basis_updates(), 100);
    } else {
      EXPECT_LT(min_cos(c.basis_k(0), B), 0.9);
      EXPECT_LT(min_cos(c.basis_v(0), B), 0.9);
      EXPECT_GT(min_cos(c.basis_k(0), A), 1.0 - 1e-9);
      EXPECT_EQ(c.basis_updates(), 0);
    }
  }
}

// ---- stale coefficients ----

// Across one decode update (U_old -> U_new) every previously compressed token reconstructs as
// keep:   (k U_old) U_new^T  (its coefficients are left as they were)
// rotate: (k U_old U_old^T) U_new U_new^T  (coefficients times U_old^T U_new)
// checked in f64 from materialize() before and after, and the two policies differ.
TEST(OjaKvLayer, StaleKeepVersusRotate) {
  ThreadPool pool(1);
  const int64_t H = 2, G = 2, D = 12, S = 60, prompt = 40, T = 20;
  Stream st(H, G, D, S, 41);
  // Anisotropic tokens (dims 0-2 ten times larger) so the Oja gradient is far from zero.
  for (size_t i = 0; i < st.k.size(); ++i)
    if (i % D < 3) {
      st.k[i] *= 10.f;
      st.v[i] *= 10.f;
    }
  auto bases = random_bases(1, G, D, 42);
  std::map<std::string, std::vector<float>> after;
  for (const char* policy : {"keep", "rotate"}) {
    const auto p = ojakv_params({{"rank_mode", "fixed"}, {"rank_k", "5"}, {"rank_v", "3"},
                                 {"n_start", "0"}, {"n_recent", "0"}, {"stale_policy", policy},
                                 {"update_period", std::to_string(T)}, {"eta_dec", "0.8"},
                                 {"coeff_dtype", "f32"}});
    OjaKvCache c(layer_info(pool, H, G, D), p, bases);
    std::vector<float> out(static_cast<size_t>(S * H * D));
    c.append(st.k.data(), st.v.data(), prompt, st.pos.data());
    c.end_prefill(kv::PrefillContext{prompt});
    for (int64_t i = prompt; i < prompt + T - 1; ++i)
      c.append(st.k.data() + i * G * D, st.v.data() + i * G * D, 1, st.pos.data() + i);
    const int64_t before_updates = c.basis_updates();
    std::vector<std::vector<float>> K0(G), V0(G);
    std::vector<linalg::Mat> Uk0, Uv0;
    std::vector<int32_t> pos;
    for (int64_t g = 0; g < G; ++g) {
      c.materialize(g, &K0[g], &V0[g], &pos);
      Uk0.push_back(c.basis_k(g));
      Uv0.push_back(c.basis_v(g));
    }
    const int64_t N0 = static_cast<int64_t>(pos.size());
    const int64_t i = prompt + T - 1;  // fills the buffer: one decode update
    c.append(st.k.data() + i * G * D, st.v.data() + i * G * D, 1, st.pos.data() + i);
    ASSERT_EQ(c.basis_updates(), before_updates + 1);
    for (int64_t g = 0; g < G; ++g) {
      std::vector<float> K1, V1;
      c.materialize(g, &K1, &V1, &pos);
      for (int which = 0; which < 2; ++which) {
        const linalg::Mat& U0 = which ? Uv0[g] : Uk0[g];
        const linalg::Mat& U1 = which ? c.basis_v(g) : c.basis_k(g);
        const std::vector<float>& X0 = which ? V0[g] : K0[g];
        const std::vector<float>& X1 = which ? V1 : K1;
        double moved = 0.0;
        for (int64_t n = 0; n < N0; ++n) {
          // c = x0 U0 (x0 is already c U0^T, so this recovers c exactly in arithmetic).
          std::vector<double> cf(static_cast<size_t>(U0.cols), 0.0);
          for (int64_t j = 0; j < U0.cols; ++j)
            for (int64_t d = 0; d < D; ++d) cf[j] += X0[n * D + d] * U0(d, j);
          std::vector<double> want(static_cast<size_t>(D), 0.0);
          if (std::string(policy) == "keep") {
            for (int64_t d = 0; d < D; ++d)
              for (int64_t j = 0; j < U1.cols; ++j) want[d] += cf[j] * U1(d, j);
          } else {
            std::vector<double> c1(static_cast<size_t>(U1.cols), 0.0);
            for (int64_t j = 0; j < U1.cols; ++j)
              for (int64_t d = 0; d < D; ++d) c1[j] += X0[n * D + d] * U1(d, j);
            for (int64_t d = 0; d < D; ++d)
              for (int64_t j = 0; j < U1.cols; ++j) want[d] += c1[j] * U1(d, j);
          }
          for (int64_t d = 0; d < D; ++d) {
            EXPECT_NEAR(X1[n * D + d], want[d], 2e-5) << policy << " g" << g << " n" << n;
            moved = std::max(moved, std::fabs(static_cast<double>(X1[n * D + d]) - X0[n * D + d]));
          }
        }
        EXPECT_GT(moved, 1e-2) << "the update should move reconstructions";
      }
      after[policy].insert(after[policy].end(), K1.begin(), K1.end());
    }
  }
  double diff = 0.0;
  for (size_t i = 0; i < after["keep"].size(); ++i)
    diff = std::max(diff, std::fabs(static_cast<double>(after["keep"][i]) - after["rotate"][i]));
  EXPECT_GT(diff, 1e-2);
}

// ---- parameters ----

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(OjaKvParams, BadValuesNameTheKey) {
  ThreadPool pool(1);
  auto bases = random_bases(1, 2, 16, 1);
  const auto info = layer_info(pool, 4, 2, 16, nullptr, 256);
  auto build = [&](const std::vector<std::pair<std::string, std::string>>& set) {
    return [&, set] { OjaKvCache c(info, ojakv_params(set), bases); };
  };
  EXPECT_NE(error_of(build({{"rank_mode", "fixed"}, {"rank_k", "17"}, {"rank_v", "4"}}))
                .find("ojakv.rank_k"), std::string::npos);
  EXPECT_NE(error_of(build({{"rank_mode", "fixed"}, {"rank_k", "4"}, {"rank_v", "40"}}))
                .find("ojakv.rank_v"), std::string::npos);
  EXPECT_NE(error_of(build({{"rank_mode", "fixed"}, {"rank_k", "4"}})).find("ojakv.rank_v"),
            std::string::npos);
  EXPECT_NE(error_of(build({{"rank_mode", "energy"}})).find("ojakv.energy_threshold"),
            std::string::npos);
  EXPECT_NE(error_of(build({{"n_start", "200"}, {"n_recent", "100"}})).find("ojakv.n_start"),
            std::string::npos);
  EXPECT_NE(error_of(build({{"anchor_policy", "residual_topk"}, {"k_full", "300"}}))
                .find("ojakv.k_full"), std::string::npos);
  EXPECT_NE(error_of(build({{"attention_path", "latent"}, {"rope_frame", "pre"}}))
                .find("ojakv.attention_path"), std::string::npos);
  // post-RoPE bases with rope_frame pre, and the reverse.
  EXPECT_NE(error_of(build({{"rope_frame", "pre"}})).find("ojakv.rope_frame"), std::string::npos);
  auto pre = random_bases(1, 2, 16, 1, "pre_rope");
  EXPECT_NE(error_of([&] { OjaKvCache c(info, ojakv_params({}), pre); }).find("ojakv.rope_frame"),
            std::string::npos);
  // Bases of another shape.
  auto other = random_bases(1, 2, 8, 1);
  EXPECT_NE(error_of([&] { OjaKvCache c(info, ojakv_params({}), other); }).find("ojakv.bases"),
            std::string::npos);
  // Declared ranges: ratio 0, eta 0, unknown choice and key (with a suggestion).
  EXPECT_NE(error_of([] { ojakv_params({{"ratio", "0"}}); }).find("ratio"), std::string::npos);
  EXPECT_NE(error_of([] { ojakv_params({{"ratio", "1.5"}}); }).find("ratio"), std::string::npos);
  EXPECT_NE(error_of([] { ojakv_params({{"eta_dec", "0"}}); }).find("eta_dec"), std::string::npos);
  EXPECT_NE(error_of([] { ojakv_params({{"stale_policy", "versioned"}}); }).find("stale_policy"),
            std::string::npos);
  EXPECT_NE(error_of([] { ojakv_params({{"rnak_k", "3"}}); }).find("rank_k"), std::string::npos);
  // Through the registry: no bases file, and a missing one (named).
  const auto& m = kv::KvRegistry::instance().find("ojakv");
  ParamValues p(m.params);
  EXPECT_NE(error_of([&] { m.make(info, p); }).find("ojakv.bases"), std::string::npos);
  p.set_from_string("bases", "/nonexistent/kvlab_bases.h5", "test");
  EXPECT_NE(error_of([&] { m.make(info, p); }).find("/nonexistent/kvlab_bases.h5"),
            std::string::npos);
}

// ---- memory ----

// memory() per layer equals the formula of methods.md 1.2 summed over KV heads:
// |F| 2 d 4 + N_c (r_k + r_v) bytes(coeff) + d (r_k + r_v) 8 (f64 bases) + |B| 2 d 4, plus the index
// (4 bytes of position per token, 5 bytes of state and slot per token and KV head), with |F|, N_c
// and |B| known from the positional policy.
TEST(OjaKvLayer, MemoryMatchesFormula) {
  ThreadPool pool(1);
  const int64_t H = 4, G = 2, D = 16, S = 150, prompt = 90, ns = 5, nr = 7, T = 16;
  const Stream st(H, G, D, S, 51);
  auto bases = random_bases(1, G, D, 52);
  for (const auto& [dt, bytes] : std::vector<std::pair<std::string, int64_t>>{
           {"f16", 2}, {"bf16", 2}, {"f32", 4}}) {
    const auto p = ojakv_params({{"rank_mode", "fixed"}, {"rank_k", "6"}, {"rank_v", "3"},
                                 {"n_start", std::to_string(ns)}, {"n_recent", std::to_string(nr)},
                                 {"update_period", std::to_string(T)}, {"coeff_dtype", dt}});
    OjaKvCache c(layer_info(pool, H, G, D), p, bases);
    std::vector<float> out;
    int64_t steps = 0;
    drive(c, st, prompt, out, [&](int64_t t0, int64_t n) {
      if (!c.prefill_done()) return;
      ++steps;
      const int64_t N = t0 + n, F = ns + nr, Nc = N - F, B = (N - prompt) % T;
      const MemoryReport r = c.memory();
      const auto t = c.tiers();
      EXPECT_EQ(t.anchors, G * F * 2 * D * 4);
      EXPECT_EQ(t.coefficients, G * Nc * (6 + 3) * bytes);
      EXPECT_EQ(t.bases, G * D * (6 + 3) * 8);
      EXPECT_EQ(t.buffer, B * G * 2 * D * 4);
      EXPECT_EQ(r.device_bytes, G * (F * 2 * D * 4 + Nc * (6 + 3) * bytes + D * (6 + 3) * 8) +
                                    B * G * 2 * D * 4 + N * 4 + N * G * 5);
      EXPECT_EQ(r.full_tokens, F);
      EXPECT_EQ(r.compressed_tokens, Nc);
      EXPECT_EQ(r.evicted_tokens, 0);
    });
    EXPECT_EQ(steps, S - prompt);
    EXPECT_EQ(c.tokens_seen(), S);
  }
}

// ---- RoPE frame ----

// rope_frame pre with rank D reproduces the full cache through the model (un-rotate, project,
// reconstruct, re-rotate is the identity up to rounding); with a lower rank, materialize() equals
// R(p) ((R(p)^T k) U U^T) in f64.
TEST(OjaKvModel, PreRopeFrame) {
  const auto ids = testing::token_ids(90, 6);
  const int64_t prompt = 60;
  const auto want = testing::model_logits(full_factory(), ids, prompt);
  auto bases = random_bases(2, 2, 16, 12, "pre_rope");
  const auto p = ojakv_params({{"rank_mode", "fixed"}, {"rank_k", "16"}, {"rank_v", "16"},
                               {"coeff_dtype", "f32"}, {"rope_frame", "pre"}, {"n_start", "1"},
                               {"n_recent", "2"}, {"update_period", "8"}});
  const auto got = testing::model_logits(ojakv_factory(bases, p), ids, prompt);
  EXPECT_LT(max_rel_diff(got, want), 2e-4);

  ThreadPool pool(1);
  const int64_t H = 2, G = 1, D = 16, S = 30;
  cpu::RopeConfig rc;
  rc.head_dim = D;
  const cpu::Rope rope(rc);
  const Stream st(H, G, D, S, 61);
  auto b1 = random_bases(1, G, D, 62, "pre_rope");
  const auto p2 = ojakv_params({{"rank_mode", "fixed"}, {"rank_k", "5"}, {"rank_v", "5"},
                                {"coeff_dtype", "f32"}, {"rope_frame", "pre"},
                                {"online_update", "false"}, {"n_start", "0"}, {"n_recent", "0"}});
  OjaKvCache c(layer_info(pool, H, G, D, &rope), p2, b1);
  c.append(st.k.data(), st.v.data(), S, st.pos.data());
  c.end_prefill(kv::PrefillContext{S});
  std::vector<float> K, V;
  std::vector<int32_t> pos;
  c.materialize(0, &K, &V, &pos);
  const linalg::Mat& U = c.basis_k(0);
  for (int64_t i = 0; i < S; ++i) {
    std::vector<float> k(st.k.begin() + i * D, st.k.begin() + (i + 1) * D);
    rope.unapply(k.data(), 1, 1, &st.pos[i]);
    std::vector<float> rec(static_cast<size_t>(D), 0.f);
    for (int64_t d = 0; d < D; ++d) {
      double a = 0.0;
      for (int64_t j = 0; j < U.cols; ++j) {
        double cj = 0.0;
        for (int64_t e = 0; e < D; ++e) cj += static_cast<double>(k[e]) * U(e, j);
        a += cj * U(d, j);
      }
      rec[d] = static_cast<float>(a);
    }
    rope.apply(rec.data(), 1, 1, &st.pos[i]);
    EXPECT_TRUE(testing::all_close(K.data() + i * D, rec.data(), D, 1e-5, 1e-5)) << i;
  }
}

// ---- traces ----

struct RecordingSink : TraceSink {
  std::map<std::string, std::vector<double>> series;
  void append_scalar(std::string_view path, double value, std::string_view) override {
    series[std::string(path)].push_back(value);
  }
  void append_row(std::string_view, std::span<const float>, std::string_view) override {}
  void set_attribute(std::string_view, std::string_view, std::string_view) override {}
};

// trace() writes one row per Oja step per head and basis (prefill + decode), each orthonormal to
// 1e-5, written once across calls, and a bytes/tokens snapshot per call that matches memory().
TEST(OjaKvLayer, TraceRecordsBasisHealthTiersAndTokens) {
  ThreadPool pool(1);
  const int64_t H = 4, G = 2, D = 16, S = 120, prompt = 80;
  const Stream st(H, G, D, S, 71);
  auto bases = random_bases(1, G, D, 72);
  const auto p = ojakv_params({{"update_period", "8"}, {"n_start", "4"}, {"n_recent", "4"}});
  OjaKvCache c(layer_info(pool, H, G, D), p, bases);
  std::vector<float> out;
  drive(c, st, prompt, out, [](int64_t, int64_t) {});
  RecordingSink sink;
  c.trace(sink);
  c.trace(sink);
  const int64_t steps = c.basis_updates();
  EXPECT_EQ(steps, 1 + (S - prompt) / 8);  // one prefill step + decode updates
  for (const char* b : {"ojakv/layer_00/head_00/k/", "ojakv/layer_00/head_01/v/"}) {
    const auto& orth = sink.series[std::string(b) + "orthonormality_error"];
    ASSERT_EQ(static_cast<int64_t>(orth.size()), steps) << b;
    for (double e : orth) EXPECT_LT(e, 1e-5);
    EXPECT_EQ(sink.series[std::string(b) + "prefill"].front(), 1.0);
    EXPECT_EQ(sink.series[std::string(b) + "prefill"].back(), 0.0);
    for (double x : sink.series[std::string(b) + "basis_delta"]) EXPECT_GT(x, 0.0);
    for (double x : sink.series[std::string(b) + "trace_c"]) EXPECT_GT(x, 0.0);
  }
  const auto t = c.tiers();
  EXPECT_EQ(sink.series["ojakv/layer_00/bytes/anchors"].size(), 2u);
  EXPECT_EQ(sink.series["ojakv/layer_00/bytes/coefficients"].back(), t.coefficients);
  EXPECT_EQ(sink.series["ojakv/layer_00/tokens/anchor"].back(), 8 * G);
  EXPECT_EQ(sink.series["ojakv/layer_00/tokens/compressed"].back(), (S - 8) * G);
}

// Registered: `ojakv` builds from a bases file and the help lists every knob of methods.md 1.8
// that kvlab implements.
TEST(OjaKvParams, RegisteredWithDeclaredKnobs) {
  const auto& m = kv::KvRegistry::instance().find("ojakv");
  std::vector<std::string> names;
  for (const auto& d : m.params) {
    names.push_back(d.name);
    EXPECT_FALSE(d.help.empty()) << d.name;
  }
  for (const char* k : {"anchor_policy", "n_start", "n_recent", "k_full", "residual_window",
                        "rank_mode", "ratio", "energy_threshold", "rank_k", "rank_v", "bases",
                        "key_basis", "online_update", "prefill_update", "salient_fraction",
                        "pool_width", "prefill_steps", "eta_pre", "eta_dec", "cov_norm",
                        "update_period", "rope_frame", "stale_policy", "prefill_attention",
                        "attention_path", "coeff_dtype"})
    EXPECT_NE(std::find(names.begin(), names.end(), k), names.end()) << k;
}

}  // namespace
}  // namespace kvlab
