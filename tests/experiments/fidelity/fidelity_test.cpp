// The fidelity experiment and its shadow cache (experiments/fidelity): exact zeros with the full
// cache, and every metric of a planted low-rank cache against a direct f64 computation.
#include "experiments/fidelity/fidelity.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>

#include "framework/core/error.h"
#include "framework/core/rng.h"
#include "framework/io/bases_h5.h"
#include "framework/kv/calibration.h"
#include "tests/experiments/experiment_support.h"
#include "tests/support/temp_dir.h"

namespace kvlab {
namespace {

using experiments::fidelity::FidelityLog;
using experiments::fidelity::Inspector;
using experiments::fidelity::ShadowCache;

// Keeps every series in memory.
class MemorySink : public TraceSink {
 public:
  void append_scalar(std::string_view path, double v, std::string_view) override {
    series[std::string(path)].push_back(v);
  }
  void append_row(std::string_view path, std::span<const float> row, std::string_view) override {
    rows[std::string(path)].push_back(std::vector<float>(row.begin(), row.end()));
  }
  void set_attribute(std::string_view, std::string_view, std::string_view) override {}
  std::map<std::string, std::vector<double>> series;
  std::map<std::string, std::vector<std::vector<float>>> rows;
};

std::string write_text(const testing::TempDir& tmp) {
  const std::string p = tmp.sub("text.txt");
  std::ofstream f(p);
  for (int i = 0; i < 20; ++i)
    f << "In the beginning God created the heaven and the earth. And the earth was without "
         "form, and void; and darkness was upon the face of the deep. ";
  return "file:" + p;
}

nlohmann::json run_fidelity(const std::string& method, const ParamValues& mp,
                            const std::map<std::string, std::string>& task, TraceSink* trace) {
  const auto& e = experiments::ExperimentRegistry::instance().find("fidelity");
  experiments::RunContext ctx;
  ctx.model = testing::tiny_model();
  ctx.method = method;
  ctx.make_cache = kv::make_kv_factory(method, mp);
  ctx.task = ParamValues(e.params);
  for (const auto& [k, v] : task) ctx.task.set_from_string(k, v, "test: task." + k);
  ctx.threads = 1;
  static ThreadPool pool(2);
  ctx.pool = &pool;
  ctx.trace = trace;
  return e.run(ctx);
}

// With the full cache wrapped, the method attends over exactly the rows the shadow keeps, with
// the same kernel: every error is exactly zero, at every probe, layer and head.
TEST(Fidelity, FullCacheErrorsAreExactlyZero) {
  testing::TempDir tmp("kvlab_fid");
  MemorySink sink;
  const nlohmann::json r = run_fidelity("full_cache", ParamValues(std::vector<ParamDecl>{}),
                                        {{"text", write_text(tmp)},
                                         {"prompt_tokens", "300"},
                                         {"decode_tokens", "20"},
                                         {"probe_every", "7"},
                                         {"chunk", "128"}},
                                        &sink);
  // Probes: after prefill, decode steps 1, 8, 15 and the last (20).
  EXPECT_EQ(r["probes"], 5);
  EXPECT_EQ(sink.series["steps/probe_step"], (std::vector<double>{0, 1, 8, 15, 20}));
  EXPECT_EQ(sink.series["steps/nll"].size(), 20u);
  int checked = 0;
  for (const auto& [path, v] : sink.series) {
    const bool err = path.find("_err") != std::string::npos ||
                     path.find("attn_kl") != std::string::npos ||
                     path.find("logit_bound") != std::string::npos;
    if (!err) continue;
    ASSERT_EQ(v.size(), 5u) << path;
    // The prefill probe has no decode query: attention metrics are NaN there, reconstruction is 0.
    const bool attention = path.find("recon") == std::string::npos;
    EXPECT_EQ(std::isnan(v[0]), attention) << path;
    for (size_t i = attention ? 1 : 0; i < v.size(); ++i)
      EXPECT_EQ(v[i], 0.0) << path << " probe " << i;
    ++checked;
  }
  // tiny: 2 layers x 2 KV heads x 9 error series (no basis: no stale/compressed series).
  EXPECT_EQ(checked, 2 * 2 * 9);
  EXPECT_EQ(r["out_rel_err"], 0.0);
  EXPECT_EQ(r["attn_kl"], 0.0);
  EXPECT_EQ(r["logit_err_max"], 0.0);
  EXPECT_EQ(r["achieved_ratio"], 1.0);
  EXPECT_EQ(sink.series["steps/layer_01/full_tokens"].back(), 320.0);
  // No basis: no subspace series.
  EXPECT_EQ(sink.series.count("steps/layer_00/head_0/k_max_angle_deg"), 0u);
}

// An eviction method exposes no materialised keys: the output error is measured (and is > 0 once
// tokens are evicted), logit metrics are NaN, and the bytes show the eviction.
TEST(Fidelity, EvictionMethodGetsOutputErrorAndBytes) {
  testing::TempDir tmp("kvlab_fid");
  MemorySink sink;
  const auto& reg = kv::KvRegistry::instance();
  ParamValues p(reg.find("streaming_llm").params);
  p.set_from_string("window", "32", "test");
  const nlohmann::json r = run_fidelity("streaming_llm", p,
                                        {{"text", write_text(tmp)},
                                         {"prompt_tokens", "200"},
                                         {"decode_tokens", "8"},
                                         {"probe_every", "4"},
                                         {"probe_prefill", "false"}},
                                        &sink);
  EXPECT_GT(r["out_rel_err"].get<double>(), 1e-4);
  EXPECT_TRUE(r["attn_kl"].is_null());
  EXPECT_TRUE(std::isnan(sink.series["steps/layer_00/head_1/logit_err_mean"].back()));
  EXPECT_LT(r["achieved_ratio"].get<double>(), 0.5);
  EXPECT_GT(sink.series["steps/layer_00/evicted_tokens"].back(), 100.0);
}

// ---- a planted low-rank cache with known bases ----

// Holds exact keys/values and a basis U_k, U_v per KV head; attention runs over the projections
// K U_k U_k^T and V U_v U_v^T (rank-r reconstruction with the current basis), which is also what
// materialize() shows. With pre_rope, U_k lives in the pre-RoPE frame: the projection is applied
// to un-rotated keys, then re-rotated.
class PlantedCache : public kv::KvCache, public Inspector {
 public:
  PlantedCache(const kv::LayerInfo& info, std::vector<linalg::Mat> Uk, std::vector<linalg::Mat> Uv,
               bool pre_rope)
      : info_(info), Uk_(std::move(Uk)), Uv_(std::move(Uv)), pre_(pre_rope) {}
  void append(const float* keys, const float* values, int64_t T, const int32_t* p) override {
    const int64_t G = info_.G, D = info_.D;
    std::vector<float> k(keys, keys + T * G * D);
    if (pre_) info_.rope->unapply(k.data(), T, G, p);
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t g = 0; g < G; ++g) {
        project(Uk_[g], k.data() + (t * G + g) * D);
        std::vector<float> v(values + (t * G + g) * D, values + (t * G + g + 1) * D);
        project(Uv_[g], v.data());
        for (int64_t i = 0; i < D; ++i) v_.push_back(v[i]);
      }
      pos_.push_back(p[t]);
    }
    if (pre_) info_.rope->apply(k.data(), T, G, p);
    k_.insert(k_.end(), k.begin(), k.end());
  }
  void attend(const float* q, int64_t T, const int32_t* qp, float* out) override {
    cpu::KvView v{k_.data(), v_.data(),         static_cast<int64_t>(pos_.size()),
                  info_.D,   info_.G * info_.D, pos_.data()};
    cpu::attention_ref(q, T, qp, v, {info_.H, info_.G, info_.D, info_.scale}, out, nullptr);
  }
  MemoryReport memory() const override { return {}; }
  int64_t tokens_seen() const override { return static_cast<int64_t>(pos_.size()); }
  bool materialize(int64_t g, std::vector<float>* K, std::vector<float>* V,
                   std::vector<int32_t>* positions) const override {
    const int64_t G = info_.G, D = info_.D, S = static_cast<int64_t>(pos_.size());
    K->clear();
    V->clear();
    for (int64_t s = 0; s < S; ++s) {
      K->insert(K->end(), k_.begin() + (s * G + g) * D, k_.begin() + (s * G + g + 1) * D);
      V->insert(V->end(), v_.begin() + (s * G + g) * D, v_.begin() + (s * G + g + 1) * D);
    }
    *positions = pos_;
    return true;
  }
  const linalg::Mat* basis(int64_t g, bool key) const override { return key ? &Uk_[g] : &Uv_[g]; }
  // Every token is held as its projection: none full-rank.
  std::optional<std::vector<int32_t>> full_rank_positions(int64_t g) const override {
    return std::vector<int32_t>{};
  }
  bool basis_pre_rope() const override { return pre_; }

 private:
  // x <- x U U^T, in f64.
  static void project(const linalg::Mat& U, float* x) {
    std::vector<double> c(static_cast<size_t>(U.cols), 0.0);
    for (int64_t j = 0; j < U.cols; ++j)
      for (int64_t i = 0; i < U.rows; ++i) c[j] += x[i] * U(i, j);
    for (int64_t i = 0; i < U.rows; ++i) {
      double s = 0;
      for (int64_t j = 0; j < U.cols; ++j) s += c[j] * U(i, j);
      x[i] = static_cast<float>(s);
    }
  }
  kv::LayerInfo info_;
  std::vector<linalg::Mat> Uk_, Uv_;
  bool pre_;
  std::vector<float> k_, v_;  // [S, G, D] projected
  std::vector<int32_t> pos_;
};

double last_value(const FidelityLog& log, int64_t head, const std::string& name) {
  double v = NAN;
  for (const auto& r : log.records())
    if (r.head == head && r.name == name) v = r.value;
  return v;
}

// Keys planted in a 3-dim subspace P (variances 9, 4, 1, plus noise 1e-3); the cache's key basis
// is P with its first direction tilted by theta out of span(P), so the principal angles between
// U and P are (theta, 0, 0). The recorded angle matches theta and a direct computation
// (linalg::pca_uncentred over all keys, principal_cosines); RER, logit errors, bound, KL and the
// output error match direct f64 computations. In the pre-RoPE variant the keys reach the cache
// rotated by position, so the angle is only right if the shadow un-rotates them.
void planted_subspace_check(bool pre_rope) {
  const int64_t H = 4, G = 2, D = 8, r = 3, S = 240;
  const double theta = 0.3;  // radians
  cpu::RopeConfig rc;
  rc.head_dim = D;
  rc.theta = 100.0;
  cpu::Rope rope(rc);
  ThreadPool pool(2);
  kv::LayerInfo info;
  info.layer = 0;
  info.n_layers = 1;
  info.H = H;
  info.G = G;
  info.D = D;
  info.scale = 1.0f / std::sqrt(static_cast<float>(D));
  info.rope = &rope;
  info.pool = &pool;
  Rng rng(17);
  // Orthonormal Q [D, D]: P = first r columns, the tilt direction e = column r.
  linalg::Mat X(D, D);
  for (double& x : X.a) x = rng.normal();
  const linalg::Mat Qm = linalg::qr_q(X);
  std::vector<linalg::Mat> Uk, Uv;
  const linalg::Mat P = linalg::leading_columns(Qm, r);
  for (int64_t g = 0; g < G; ++g) {
    linalg::Mat U = P;
    for (int64_t i = 0; i < D; ++i)
      U(i, 0) = std::cos(theta) * Qm(i, 0) + std::sin(theta) * Qm(i, r);
    Uk.push_back(U);
    Uv.push_back(P);
  }
  auto log = std::make_shared<FidelityLog>(nullptr);
  ShadowCache shadow(info, std::make_unique<PlantedCache>(info, Uk, Uv, pre_rope), log);

  // Pre-RoPE keys and values in span(P) (per-token coefficients, std 3, 2, 1) plus 1e-3 noise;
  // keys then rotated (the cache receives post-RoPE keys).
  std::vector<float> kpre(S * G * D), v(S * G * D), q(H * D);
  for (std::vector<float>* x : {&kpre, &v})
    for (int64_t t = 0; t < S * G; ++t) {
      const double c[3] = {3.0 * rng.normal(), 2.0 * rng.normal(), 1.0 * rng.normal()};
      for (int64_t i = 0; i < D; ++i) {
        double a = 1e-3 * rng.normal();
        for (int64_t j = 0; j < r; ++j) a += c[j] * P(i, j);
        (*x)[t * D + i] = static_cast<float>(a);
      }
    }
  for (float& x : q) x = static_cast<float>(rng.normal());
  std::vector<int32_t> pos(S);
  for (int64_t t = 0; t < S; ++t) pos[t] = static_cast<int32_t>(t);
  std::vector<float> kpost = kpre;
  if (pre_rope) rope.apply(kpost.data(), S, G, pos.data());
  shadow.append(kpost.data(), v.data(), S - 1, pos.data());
  shadow.end_prefill({S - 1});
  shadow.append(kpost.data() + (S - 1) * G * D, v.data() + (S - 1) * G * D, 1, pos.data() + S - 1);
  std::vector<float> out(H * D);
  int32_t qp = S - 1;
  shadow.attend(q.data(), 1, &qp, out.data());
  log->begin_probe();
  shadow.probe(true);

  for (int64_t g = 0; g < G; ++g) {
    // Direct: exact top-r PCA of all keys of head g in the basis' frame (pre-RoPE; without
    // RoPE the two frames coincide).
    linalg::Mat Kg(S, D), Vg(S, D);
    for (int64_t t = 0; t < S; ++t)
      for (int64_t i = 0; i < D; ++i) {
        Kg(t, i) = kpre[(t * G + g) * D + i];
        Vg(t, i) = v[(t * G + g) * D + i];
      }
    const linalg::Pca pk = linalg::pca_uncentred(Kg, r);
    const std::vector<double> cs = linalg::principal_cosines(Uk[g], pk.basis);
    const double direct_deg = std::acos(cs.back()) * 180.0 / M_PI;
    const double rec_deg = last_value(*log, g, "k_max_angle_deg");
    // Pre-RoPE: the shadow's keys went through an f32 rotation round trip (~1e-7 relative).
    const double tol = pre_rope ? 1e-7 : 1e-9;
    EXPECT_NEAR(rec_deg, direct_deg, 1e-6) << "head " << g;
    EXPECT_NEAR(rec_deg, theta * 180.0 / M_PI, 0.05) << "head " << g;
    EXPECT_NEAR(last_value(*log, g, "k_mean_cos2"),
                (cs[0] * cs[0] + cs[1] * cs[1] + cs[2] * cs[2]) / 3, tol);
    EXPECT_NEAR(last_value(*log, g, "k_proj_dist"), linalg::projection_distance(Uk[g], pk.basis),
                tol);
    EXPECT_LT(last_value(*log, g, "v_max_angle_deg"), 0.05);
    // RER = ||K - K U U^T||^2 / ||K||^2 directly (f32 rows, f64 sums).
    double num = 0, den = 0;
    for (int64_t t = 0; t < S; ++t) {
      std::vector<double> c(r, 0.0);
      for (int64_t j = 0; j < r; ++j)
        for (int64_t i = 0; i < D; ++i) c[j] += Kg(t, i) * Uk[g](i, j);
      for (int64_t i = 0; i < D; ++i) {
        double x = 0;
        for (int64_t j = 0; j < r; ++j) x += c[j] * Uk[g](i, j);
        num += (Kg(t, i) - x) * (Kg(t, i) - x);
        den += Kg(t, i) * Kg(t, i);
      }
    }
    EXPECT_NEAR(last_value(*log, g, "k_rer"), num / den, 1e-9 * (1 + num / den));
    // The tilted direction loses ~sin^2(theta) of the first direction's energy (9 of 14).
    EXPECT_NEAR(num / den, std::pow(std::sin(theta), 2) * 9.0 / 14.0, 0.05);
    EXPECT_LT(last_value(*log, g, "k_rer_opt"), 1e-5);
    // Every token is the current projection: what is stored equals the re-projection (stale
    // error ~0, f32 rounding), and its error is the RER.
    EXPECT_LT(last_value(*log, g, "k_stale_err"), 1e-10);
    EXPECT_LT(last_value(*log, g, "v_stale_err"), 1e-10);
    EXPECT_NEAR(last_value(*log, g, "k_compressed_recon_err"), num / den, 1e-5 * num / den);
    EXPECT_EQ(last_value(*log, g, "coeff_tokens"), double(S));
    // The basis never changed: 0 up to acos near 1 (cos = 1 - 1e-16 reads as ~1e-6 degrees).
    EXPECT_LT(last_value(*log, g, "k_angle_to_init_deg"), 1e-5);

    // Attention metrics directly: logits of the exact and the projected keys, f64.
    std::vector<float> Km, Vm;
    std::vector<int32_t> pm;
    ASSERT_TRUE(dynamic_cast<const Inspector&>(shadow.inner()).materialize(g, &Km, &Vm, &pm));
    double emax = 0, esum = 0, bsum = 0, kl_sum = 0;
    const int64_t rep = H / G;
    for (int64_t h = g * rep; h < (g + 1) * rep; ++h) {
      std::vector<double> l(S), lm(S);
      double qn = 0;
      for (int64_t i = 0; i < D; ++i) qn += double(q[h * D + i]) * q[h * D + i];
      for (int64_t s = 0; s < S; ++s) {
        double a = 0, b = 0, r2 = 0;
        for (int64_t i = 0; i < D; ++i) {
          const double k = kpost[(s * G + g) * D + i];
          a += q[h * D + i] * k;
          b += q[h * D + i] * double(Km[s * D + i]);
          r2 += (k - Km[s * D + i]) * (k - Km[s * D + i]);
        }
        l[s] = a / std::sqrt(double(D));
        lm[s] = b / std::sqrt(double(D));
        const double e = std::fabs(l[s] - lm[s]), bound = std::sqrt(qn * r2) / std::sqrt(double(D));
        EXPECT_LE(e, bound * (1 + 1e-9) + 1e-12);
        emax = std::max(emax, e);
        esum += e;
        bsum += bound;
      }
      double z = 0, zm = 0;
      for (int64_t s = 0; s < S; ++s) {
        z += std::exp(l[s]);
        zm += std::exp(lm[s]);
      }
      for (int64_t s = 0; s < S; ++s)
        kl_sum += std::exp(l[s]) / z * ((l[s] - std::log(z)) - (lm[s] - std::log(zm)));
    }
    // The shadow scales by LayerInfo.scale, the f32 rounding of 1/sqrt(D): f32 relative
    // precision.
    EXPECT_NEAR(last_value(*log, g, "logit_err_max"), emax, 1e-6 * emax);
    EXPECT_NEAR(last_value(*log, g, "logit_err_mean"), esum / (S * rep), 1e-6 * esum / (S * rep));
    EXPECT_NEAR(last_value(*log, g, "logit_bound_mean"), bsum / (S * rep), 1e-6 * bsum / (S * rep));
    EXPECT_NEAR(last_value(*log, g, "attn_kl"), kl_sum / rep, 1e-5 * kl_sum / rep + 1e-12);
    EXPECT_GT(emax, 1e-3);  // the tilt is visible in the logits
    // Output error: exact attention (f64 reference) vs what the cache returned.
    cpu::KvView ex{kpost.data(), v.data(), S, D, G * D, pos.data()};
    std::vector<float> o(H * D);
    cpu::attention_ref(q.data(), 1, &qp, ex, {H, G, D, info.scale}, o.data(), nullptr);
    double rel_sum = 0;
    for (int64_t h = g * rep; h < (g + 1) * rep; ++h) {
      double d2 = 0, n2 = 0;
      for (int64_t i = 0; i < D; ++i) {
        d2 += std::pow(double(o[h * D + i]) - out[h * D + i], 2);
        n2 += std::pow(double(o[h * D + i]), 2);
      }
      rel_sum += std::sqrt(d2 / n2);
    }
    // The shadow's exact output is the f32 kernel's (~1e-6 from the f64 reference).
    EXPECT_NEAR(last_value(*log, g, "out_rel_err"), rel_sum / rep, 1e-4 * rel_sum / rep + 1e-5);
  }
}

TEST(Fidelity, PlantedSubspaceAnglesMatchDirectComputation) { planted_subspace_check(false); }
TEST(Fidelity, PlantedSubspaceAnglesPreRopeFrame) { planted_subspace_check(true); }

// ---- OjaKV / StaticPCA (methods/ojakv) ----

// Bases of the test model calibrated (kv::CalibrationStats) on a text the evaluation does not
// see (byte tokens of a different passage), written to `path`.
void calibrate_tiny(const std::string& path, const std::string& frame) {
  auto m = testing::tiny_model();
  const auto& c = m->config();
  auto stats = std::make_shared<kv::CalibrationStats>(c.num_hidden_layers, c.num_attention_heads,
                                                      c.num_key_value_heads, c.head_dim,
                                                      kv::parse_calibration_frame(frame, "test"));
  ThreadPool pool(2);
  model::Sequence seq(
      m,
      kv::make_calibration_factory(
          kv::make_kv_factory("full_cache", ParamValues(std::vector<ParamDecl>{})), stats),
      pool);
  const std::string text =
      "Now the serpent was more subtil than any beast of the field which the LORD God had made. "
      "And he said unto the woman, Yea, hath God said, Ye shall not eat of every tree of the "
      "garden? And the woman said unto the serpent, We may eat of the fruit of the trees.";
  seq.forward(m->tokenizer()->encode(text), nullptr, false);
  io::save_bases_h5(path, stats->bases("test", seq.length()));
}

ParamValues method_params(const std::string& method, const std::map<std::string, std::string>& kv) {
  ParamValues p(kv::KvRegistry::instance().find(method).params);
  for (const auto& [k, v] : kv) p.set_from_string(k, v, "test: method." + k);
  return p;
}

// OjaKV at rank = head_dim: the basis spans everything, so every principal angle to the exact
// PCA basis is ~0 and the residual energy is 0 whatever the Oja updates do; with f32
// coefficients the cache reproduces the exact attention up to f32 rounding.
TEST(Fidelity, OjaKvFullRankAnglesAreZero) {
  testing::TempDir tmp("kvlab_fid");
  const std::string bases = tmp.sub("bases.h5");
  calibrate_tiny(bases, "post_rope");
  MemorySink sink;
  const nlohmann::json r = run_fidelity("ojakv",
                                        method_params("ojakv", {{"bases", bases},
                                                                {"rank_mode", "fixed"},
                                                                {"rank_k", "16"},
                                                                {"rank_v", "16"},
                                                                {"coeff_dtype", "f32"},
                                                                {"update_period", "4"},
                                                                {"n_start", "4"},
                                                                {"n_recent", "4"}}),
                                        {{"text", write_text(tmp)},
                                         {"prompt_tokens", "200"},
                                         {"decode_tokens", "12"},
                                         {"probe_every", "5"}},
                                        &sink);
  EXPECT_LT(r["metrics"]["k_max_angle_deg"]["max"].get<double>(), 1e-4);
  EXPECT_LT(r["metrics"]["v_max_angle_deg"]["max"].get<double>(), 1e-4);
  EXPECT_NEAR(r["metrics"]["k_mean_cos2"]["min"].get<double>(), 1.0, 1e-12);
  EXPECT_LT(r["metrics"]["k_rer"]["max"].get<double>(), 1e-12);
  EXPECT_LT(r["metrics"]["k_proj_dist"]["max"].get<double>(), 1e-6);
  // f32 coefficients, orthonormal U [D, D]: k^ = (k U) U^T = k up to f32 rounding.
  EXPECT_LT(r["out_rel_err"].get<double>(), 1e-5);
  EXPECT_LT(r["metrics"]["k_recon_err"]["max"].get<double>(), 1e-10);
  EXPECT_GT(sink.series["steps/layer_00/basis_updates"].back(), 0.0);  // Oja did run
  EXPECT_EQ(r["metrics"]["k_rank"]["max"], 16.0);
  EXPECT_GT(sink.series["steps/layer_01/tier_coefficients_bytes"].back(), 0.0);
}

// StaticPCA keeps its calibrated basis (angle to init 0, stale error only the f16 rounding of the
// coefficients), OjaKV moves its basis and old coefficients go stale; for both, every recorded
// logit error is within its bound and no rank-r basis beats the exact PCA's residual energy.
TEST(Fidelity, StaticPcaFrozenOjaKvMoves) {
  testing::TempDir tmp("kvlab_fid");
  const std::string bases = tmp.sub("bases.h5");
  calibrate_tiny(bases, "post_rope");
  const std::map<std::string, std::string> task = {{"text", write_text(tmp)},
                                                   {"prompt_tokens", "300"},
                                                   {"decode_tokens", "24"},
                                                   {"probe_every", "100"},
                                                   {"probe_on_update", "true"}};
  MemorySink ss, so;
  const nlohmann::json rs = run_fidelity(
      "static_pca", method_params("static_pca", {{"bases", bases}, {"ratio", "0.5"}}), task, &ss);
  const nlohmann::json ro = run_fidelity("ojakv",
                                         method_params("ojakv", {{"bases", bases},
                                                                 {"ratio", "0.5"},
                                                                 {"update_period", "8"},
                                                                 {"n_start", "4"},
                                                                 {"n_recent", "4"}}),
                                         task, &so);
  EXPECT_LT(rs["metrics"]["k_angle_to_init_deg"]["max"].get<double>(), 1e-4);
  EXPECT_GT(ro["metrics"]["k_angle_to_init_deg"]["final_mean"].get<double>(), 0.1);
  EXPECT_LT(rs["metrics"]["k_stale_err"]["max"].get<double>(), 1e-5);
  EXPECT_GT(ro["metrics"]["k_stale_err"]["max"].get<double>(),
            10 * rs["metrics"]["k_stale_err"]["max"].get<double>());
  // Probes: prefill, step 1, the three decode updates (steps 8, 16, 24; the last is also the
  // final step) for OjaKV; prefill, step 1 and the last for StaticPCA.
  EXPECT_EQ(rs["probes"], 3);
  EXPECT_EQ(ro["probes"], 5);
  for (MemorySink* s : {&ss, &so})
    for (const auto& [path, v] : s->series) {
      if (path.size() > 14 && path.substr(path.size() - 14) == "/logit_err_max") {
        const auto& b = s->series.at(path.substr(0, path.size() - 14) + "/logit_bound_max");
        for (size_t i = 0; i < v.size(); ++i) {
          if (!std::isnan(v[i])) {
            EXPECT_LE(v[i], b.at(i) * (1 + 1e-9) + 1e-12) << path;
          }
        }
      }
      if (path.size() > 6 && path.substr(path.size() - 6) == "/k_rer") {
        const auto& o = s->series.at(path + "_opt");
        for (size_t i = 0; i < v.size(); ++i) EXPECT_GE(v[i], o.at(i) - 1e-12) << path;
      }
    }
  // Half rank on a random model loses attention fidelity; the bytes show the compression.
  EXPECT_GT(rs["out_rel_err"].get<double>(), 1e-3);
  EXPECT_LT(rs["achieved_ratio"].get<double>(), 0.9);
}

// StaticPCA stores every token as coefficients of one fixed basis, so the residual energy ratio
// computed from the shadow's second moments (1 - tr(U^T C U) / tr C) and the reconstruction
// error computed row by row from what the cache materialises must agree (up to the f16 rounding
// of the coefficients), in the post-RoPE frame and in the pre-RoPE frame (keys un-rotated before
// projection, re-rotated after reconstruction).
TEST(Fidelity, StaticPcaRerEqualsReconstructionInBothFrames) {
  testing::TempDir tmp("kvlab_fid");
  for (const std::string frame : {"post", "pre"}) {
    const std::string bases = tmp.sub("bases_" + frame + ".h5");
    calibrate_tiny(bases, frame + "_rope");
    const nlohmann::json r = run_fidelity(
        "static_pca",
        method_params("static_pca", {{"bases", bases}, {"ratio", "0.5"}, {"rope_frame", frame}}),
        {{"text", write_text(tmp)}, {"prompt_tokens", "200"}, {"decode_tokens", "4"}}, nullptr);
    const auto& m = r["metrics"];
    for (const char* side : {"k", "v"}) {
      const double rer = m[std::string(side) + "_rer"]["final_mean"].get<double>();
      const double rec = m[std::string(side) + "_compressed_recon_err"]["final_mean"].get<double>();
      EXPECT_GT(rer, 1e-3) << frame << " " << side;
      EXPECT_NEAR(rec, rer, 1e-3 * rer) << frame << " " << side;
    }
    EXPECT_EQ(m["coeff_tokens"]["final_mean"].get<double>(), 204.0);
  }
}

// Greedy decoding feeds the model's own argmax, so it needs only the prompt from the text; the
// recorded NLL is that of the chosen (most likely) token, never above log V.
TEST(Fidelity, GreedyDecodeNeedsOnlyThePrompt) {
  testing::TempDir tmp("kvlab_fid");
  const std::string p = tmp.sub("short.txt");
  std::ofstream(p) << std::string(60, 'a');
  MemorySink sink;
  const nlohmann::json r = run_fidelity(
      "full_cache", ParamValues(std::vector<ParamDecl>{}),
      {{"text", "file:" + p}, {"prompt_tokens", "40"}, {"decode_tokens", "30"},
       {"decode", "greedy"}},
      &sink);
  EXPECT_EQ(r["decode"], "greedy");
  EXPECT_EQ(r["out_rel_err"], 0.0);
  ASSERT_EQ(sink.series["steps/nll"].size(), 30u);
  for (double x : sink.series["steps/nll"]) EXPECT_LE(x, std::log(258.0));
  EXPECT_EQ(sink.series["steps/layer_00/full_tokens"].back(), 70.0);
}

TEST(Fidelity, TextTooShortNamesTheKey) {
  testing::TempDir tmp("kvlab_fid");
  try {
    run_fidelity("full_cache", ParamValues(std::vector<ParamDecl>{}),
                 {{"text", write_text(tmp)}, {"prompt_tokens", "5000"}}, nullptr);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("task.text"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kvlab
