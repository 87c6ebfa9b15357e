// kv::CalibrationRecorder / CalibrationStats (methods.md 1.3 step 0): the recorder leaves the
// model's computation unchanged, the saved eigenbases are eigendecompositions of moments
// computed independently (plain f64 loops over Q/K/V captured by a separate cache), and the
// pre-RoPE frame un-rotates keys and queries exactly.
#include "framework/kv/calibration.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "framework/core/error.h"
#include "framework/core/rng.h"
#include "framework/io/bases_h5.h"
#include "framework/model/llama.h"
#include "framework/model/model_init.h"
#include "tests/support/temp_dir.h"

namespace kvlab {
namespace {

kv::KvFactory full_cache_factory() {
  return kv::make_kv_factory("full_cache", ParamValues(std::vector<ParamDecl>{}));
}

std::shared_ptr<const model::Model> random_model(const std::string& dir) {
  model::InitOptions o;
  o.config = model::preset_config("tiny");  // L=2, H=4, G=2, D=16 (GQA groups of 2)
  o.dtype = DType::kF32;
  o.seed = 11;
  o.init_std = 0.2;
  model::write_random_model(o, dir);
  return model::Model::load(dir);
}

std::vector<int32_t> token_ids(int64_t n, int64_t V, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& t : ids) t = static_cast<int32_t>(rng.below(static_cast<uint64_t>(V)));
  return ids;
}

// Forwards to an inner cache and keeps copies of every key, value [T, G, D] and query [T, H, D]
// it receives, token-major, for an independent computation.
struct Captured {
  std::vector<float> k, v, q;
};
class CapturingCache : public kv::KvCache {
 public:
  CapturingCache(const kv::LayerInfo& info, std::unique_ptr<kv::KvCache> inner, Captured* c)
      : info_(info), inner_(std::move(inner)), c_(c) {}
  void append(const float* keys, const float* values, int64_t T, const int32_t* p) override {
    c_->k.insert(c_->k.end(), keys, keys + T * info_.G * info_.D);
    c_->v.insert(c_->v.end(), values, values + T * info_.G * info_.D);
    inner_->append(keys, values, T, p);
  }
  void attend(const float* q, int64_t T, const int32_t* p, float* out) override {
    c_->q.insert(c_->q.end(), q, q + T * info_.H * info_.D);
    inner_->attend(q, T, p, out);
  }
  MemoryReport memory() const override { return inner_->memory(); }
  int64_t tokens_seen() const override { return inner_->tokens_seen(); }

 private:
  kv::LayerInfo info_;
  std::unique_ptr<kv::KvCache> inner_;
  Captured* c_;
};

// sum_t x_t x_t^T / n over rows x_t = X[t * stride + off .. + D], plain f64 loops.
linalg::Mat moment_f64(const std::vector<float>& X, int64_t stride, int64_t off, int64_t D,
                       linalg::Mat m = {}, int64_t* count = nullptr) {
  if (m.rows == 0) m = linalg::Mat(D, D);
  const int64_t n = static_cast<int64_t>(X.size()) / stride;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < D; ++i)
      for (int64_t j = 0; j < D; ++j)
        m(i, j) += static_cast<double>(X[t * stride + off + i]) * X[t * stride + off + j];
  if (count) *count += n;
  return m;
}

linalg::Mat scaled(const linalg::Mat& a, double s) {
  linalg::Mat r = a;
  for (double& x : r.a) x *= s;
  return r;
}
linalg::Mat plus(const linalg::Mat& a, const linalg::Mat& b) {
  linalg::Mat r = a;
  for (size_t i = 0; i < r.a.size(); ++i) r.a[i] += b.a[i];
  return r;
}
double max_abs_diff(const linalg::Mat& a, const linalg::Mat& b) {
  double m = 0;
  for (size_t i = 0; i < a.a.size(); ++i) m = std::max(m, std::fabs(a.a[i] - b.a[i]));
  return m;
}

// The recorder forwards unchanged inputs: logits are bit-identical to the full cache's, over a
// prefill in two chunks and three decode steps.
TEST(CalibrationRecorder, LogitsEqualFullCache) {
  testing::TempDir tmp("kvlab_calib");
  auto m = random_model(tmp.sub("model"));
  const auto& c = m->config();
  ThreadPool pool(2);
  const auto ids = token_ids(40, c.vocab_size, 3);
  auto stats = std::make_shared<kv::CalibrationStats>(c.num_hidden_layers, c.num_attention_heads,
                                                      c.num_key_value_heads, c.head_dim,
                                                      kv::CalibrationFrame::pre_rope);
  model::SequenceOptions so;
  so.prefill_chunk = 16;  // 37-token prompt: chunks of 16, 16, 5
  model::Sequence ref(m, full_cache_factory(), pool, so);
  model::Sequence rec(m, kv::make_calibration_factory(full_cache_factory(), stats), pool, so);
  const int64_t V = c.vocab_size, P = 37;
  std::vector<float> a(P * V), b(P * V);
  ref.forward(std::span(ids).subspan(0, P), a.data(), true);
  rec.forward(std::span(ids).subspan(0, P), b.data(), true);
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
  for (int64_t t = P; t < 40; ++t) {
    ref.forward(std::span(ids).subspan(t, 1), a.data(), false);
    rec.forward(std::span(ids).subspan(t, 1), b.data(), false);
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), V * sizeof(float))) << "decode token " << t;
  }
  EXPECT_EQ(rec.cache(0).tokens_seen(), 40);
  EXPECT_EQ(rec.memory().device_bytes, ref.memory().device_bytes);
  EXPECT_EQ(stats->key_rows(1), 40);
  EXPECT_EQ(stats->query_rows(1), 40 * 2);  // two query heads per KV head
}

// Bases from the recorder, saved and loaded through the HDF5 file, against moments computed in
// plain f64 from Q/K/V captured by a separate cache in the same run: for each head and kind,
// the moment matches and the loaded (vectors, values) is its eigendecomposition (orthonormal,
// descending, M u_j = lambda_j u_j up to the file's f32 rounding).
TEST(CalibrationStats, SavedBasesAreEigenbasesOfIndependentMoments) {
  testing::TempDir tmp("kvlab_calib");
  auto m = random_model(tmp.sub("model"));
  const auto& c = m->config();
  const int64_t L = c.num_hidden_layers, H = c.num_attention_heads, G = c.num_key_value_heads,
                D = c.head_dim, rep = H / G;
  ThreadPool pool(2);
  auto stats = std::make_shared<kv::CalibrationStats>(L, H, G, D, kv::CalibrationFrame::post_rope);
  std::vector<Captured> cap(static_cast<size_t>(L));
  kv::KvFactory capture = [&](const kv::LayerInfo& info) {
    return std::unique_ptr<kv::KvCache>(new CapturingCache(info, full_cache_factory()(info),
                                                           &cap[static_cast<size_t>(info.layer)]));
  };
  // Two sequences (the stats accumulate across them), the second decoded token by token.
  const auto make = kv::make_calibration_factory(capture, stats);
  {
    model::Sequence s(m, make, pool);
    s.forward(token_ids(50, c.vocab_size, 5), nullptr, false);
  }
  {
    model::Sequence s(m, make, pool);
    for (int32_t t : token_ids(6, c.vocab_size, 6)) s.forward(std::span(&t, 1), nullptr, false);
  }
  const std::string path = tmp.sub("bases.h5");
  io::save_bases_h5(path, stats->bases("test", 56));
  const kv::Bases b = io::load_bases_h5(path);
  EXPECT_EQ(b.frame, "post_rope");
  EXPECT_EQ(b.tokens, 56);
  for (int64_t l = 0; l < L; ++l)
    for (int64_t g = 0; g < G; ++g) {
      const auto& cl = cap[static_cast<size_t>(l)];
      int64_t nk = 0, nq = 0;
      const linalg::Mat K = scaled(moment_f64(cl.k, G * D, g * D, D, {}, &nk), 1.0 / 56);
      const linalg::Mat Vm = scaled(moment_f64(cl.v, G * D, g * D, D), 1.0 / 56);
      linalg::Mat Qs(D, D);
      for (int64_t h = g * rep; h < (g + 1) * rep; ++h)
        Qs = moment_f64(cl.q, H * D, h * D, D, Qs, &nq);
      ASSERT_EQ(nk, 56);
      ASSERT_EQ(nq, 56 * rep);
      const linalg::Mat QK = plus(scaled(Qs, 1.0 / nq), K);
      // Same sums in a different order: f64 round-off only.
      EXPECT_LT(max_abs_diff(stats->moment(kv::BasisKind::k, l, g), K),
                1e-12 * (1 + linalg::frobenius(K)));
      EXPECT_LT(max_abs_diff(stats->moment(kv::BasisKind::v, l, g), Vm),
                1e-12 * (1 + linalg::frobenius(Vm)));
      EXPECT_LT(max_abs_diff(stats->moment(kv::BasisKind::qk, l, g), QK),
                1e-12 * (1 + linalg::frobenius(QK)));
      for (auto [kind, M] : {std::pair{kv::BasisKind::qk, &QK}, std::pair{kv::BasisKind::k, &K},
                             std::pair{kv::BasisKind::v, &Vm}}) {
        const kv::Eigenbasis& e = b.get(kind, l, g);
        const double scale = linalg::frobenius(*M);
        EXPECT_LT(linalg::orthonormality_error(e.vectors), 1e-12);
        double trace = 0, sum = 0;
        for (int64_t j = 0; j < D; ++j) {
          trace += (*M)(j, j);
          sum += e.values[j];
          if (j > 0) {
            EXPECT_LE(e.values[j], e.values[j - 1]);
          }
          // ||M u - lambda u|| with u, lambda stored in f32 (rel. rounding 6e-8 each): <= 1e-6
          // ||M||.
          double r2 = 0;
          for (int64_t i = 0; i < D; ++i) {
            double mu = 0;
            for (int64_t k = 0; k < D; ++k) mu += (*M)(i, k) * e.vectors(k, j);
            r2 += std::pow(mu - e.values[j] * e.vectors(i, j), 2);
          }
          EXPECT_LT(std::sqrt(r2), 1e-6 * scale)
              << "layer " << l << " head " << g << " " << kv::basis_kind_name(kind) << " col " << j;
        }
        EXPECT_NEAR(sum, trace, 1e-6 * trace);
      }
    }
}

// Pre-RoPE frame: keys and queries that live in a planted 3-dim subspace before RoPE, fed
// post-RoPE (rotated at positions 0..S-1), give pre-frame moments equal to those of the
// un-rotated rows (f32 rotation round trip: ~1e-6 relative) and a top-3 basis spanning the
// planted subspace; the post-RoPE frame sees the rotation spread them over many directions.
// Values carry no RoPE: both frames record the same value moment.
TEST(CalibrationStats, PreRopeFrameUnrotates) {
  const int64_t H = 4, G = 2, D = 16, S = 300, r = 3;
  cpu::RopeConfig rc;
  rc.head_dim = D;
  rc.theta = 100.0;  // fast rotation so the post frame is visibly spread
  cpu::Rope rope(rc);
  Rng rng(9);
  linalg::Mat X(D, r);
  for (double& x : X.a) x = rng.normal();
  const linalg::Mat U = linalg::qr_q(X);  // planted subspace [D, r]
  auto planted_rows = [&](int64_t rows) {
    std::vector<float> out(static_cast<size_t>(rows * D));
    for (int64_t t = 0; t < rows; ++t)
      for (int64_t j = 0; j < r; ++j) {
        const double c = rng.normal() * (1.0 + j);
        for (int64_t i = 0; i < D; ++i) out[t * D + i] += static_cast<float>(c * U(i, j));
      }
    return out;
  };
  const std::vector<float> k_pre = planted_rows(S * G), q_pre = planted_rows(S * H);
  std::vector<float> v(static_cast<size_t>(S * G * D));
  for (float& x : v) x = static_cast<float>(rng.normal());
  std::vector<int32_t> pos(S);
  for (int64_t t = 0; t < S; ++t) pos[t] = static_cast<int32_t>(t);
  std::vector<float> k_post = k_pre, q_post = q_pre;
  rope.apply(k_post.data(), S, G, pos.data());
  rope.apply(q_post.data(), S, H, pos.data());

  kv::CalibrationStats pre(1, H, G, D, kv::CalibrationFrame::pre_rope);
  kv::CalibrationStats post(1, H, G, D, kv::CalibrationFrame::post_rope);
  ThreadPool pool(2);
  for (auto* st : {&pre, &post}) {
    // In two calls (positions continue), like prefill then decode.
    st->add_keys_values(0, k_post.data(), v.data(), 200, pos.data(), &rope, &pool);
    st->add_keys_values(0, k_post.data() + 200 * G * D, v.data() + 200 * G * D, S - 200,
                        pos.data() + 200, &rope, &pool);
    st->add_queries(0, q_post.data(), S, pos.data(), &rope, nullptr);
  }
  const kv::Bases bp = pre.bases("pre", S), bq = post.bases("post", S);
  EXPECT_EQ(bp.frame, "pre_rope");
  for (int64_t g = 0; g < G; ++g) {
    const linalg::Mat K = scaled(moment_f64(k_pre, G * D, g * D, D), 1.0 / S);
    const linalg::Mat Kp = pre.moment(kv::BasisKind::k, 0, g);
    EXPECT_LT(max_abs_diff(Kp, K), 1e-5 * linalg::frobenius(K)) << "head " << g;
    EXPECT_EQ(max_abs_diff(pre.moment(kv::BasisKind::v, 0, g), post.moment(kv::BasisKind::v, 0, g)),
              0.0);
    for (kv::BasisKind kind : {kv::BasisKind::k, kv::BasisKind::qk}) {
      // Pre frame: the planted subspace, up to the f32 round trip.
      EXPECT_LT(linalg::projection_distance(bp.get(kind, 0, g).top(r), U), 1e-4)
          << kv::basis_kind_name(kind) << " head " << g;
      // Post frame: rotation by position mixes each pair (i, i+D/2) at many angles.
      EXPECT_GT(linalg::projection_distance(bq.get(kind, 0, g).top(r), U), 0.5)
          << kv::basis_kind_name(kind) << " head " << g;
      // Energy beyond rank r: ~0 pre, clearly not post.
      const auto& ep = bp.get(kind, 0, g).values;
      const auto& eq = bq.get(kind, 0, g).values;
      EXPECT_LT(ep[r] / ep[0], 1e-8);
      EXPECT_GT(eq[r] / eq[0], 1e-2);
    }
  }
}

TEST(CalibrationStats, ErrorsName) {
  EXPECT_THROW(kv::parse_calibration_frame("post", "--frame"), Error);
  try {
    kv::parse_calibration_frame("post", "--frame");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--frame"), std::string::npos);
  }
  kv::CalibrationStats st(1, 2, 1, 4, kv::CalibrationFrame::post_rope);
  std::vector<float> k(4, 1.f);
  int32_t p = 0;
  st.add_keys_values(0, k.data(), k.data(), 1, &p, nullptr, nullptr);
  // qk needs queries: a recorder that never saw attend() cannot produce one.
  EXPECT_THROW(st.bases("x", 1), Error);
  // Pre-RoPE needs the model's RoPE.
  kv::CalibrationStats pre(1, 2, 1, 4, kv::CalibrationFrame::pre_rope);
  EXPECT_THROW(pre.add_keys_values(0, k.data(), k.data(), 1, &p, nullptr, nullptr), Error);
}

}  // namespace
}  // namespace kvlab
