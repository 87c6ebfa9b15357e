#include "methods/ojakv/ojakv.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <numeric>

#include "framework/core/error.h"
#include "framework/core/timer.h"
#include "framework/io/bases_h5.h"

namespace kvlab::methods {
namespace {

// Token states. kPrompt: before end_prefill (compressed prefill), an anchor read from the exact
// prompt copy (row i of pk_/pv_).
constexpr uint8_t kCompressed = 0, kAnchor = 1, kBuffered = 2, kPrompt = 3;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

DType parse_dtype(const std::string& s) {
  if (s == "f32") return DType::kF32;
  if (s == "bf16") return DType::kBF16;
  return DType::kF16;
}


// OpenBLAS's thread count is process-global: pinned to n for a scope (as in
// backend/cpu/linear.cpp).
struct BlasThreads {
  explicit BlasThreads(int n) : prev(openblas_get_num_threads()) { openblas_set_num_threads(n); }
  ~BlasThreads() { openblas_set_num_threads(prev); }
  int prev;
};

// Coefficient rows to f32 (exact): f16 through a 65536-entry table built once with f16_to_f32
// (256 KiB, shared), bf16 by shifting, f32 copied.
void coeff_to_f32(DType t, const uint8_t* src, float* dst, size_t n) {
  if (t == DType::kF16) {
    static const std::vector<float> table = [] {
      std::vector<float> v(65536);
      for (uint32_t h = 0; h < 65536; ++h) v[h] = f16_to_f32(static_cast<uint16_t>(h));
      return v;
    }();
    const auto* s = reinterpret_cast<const uint16_t*>(src);
    for (size_t i = 0; i < n; ++i) dst[i] = table[s[i]];
    return;
  }
  to_f32(t, src, dst, n);
}

// Top `k` indices of score (higher first, ties to the earlier index), returned ascending.
std::vector<int64_t> top_k_ascending(const std::vector<double>& score, int64_t k) {
  std::vector<int64_t> idx(score.size());
  std::iota(idx.begin(), idx.end(), 0);
  k = std::min<int64_t>(k, static_cast<int64_t>(idx.size()));
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int64_t a, int64_t b) {
    const double sa = score[static_cast<size_t>(a)], sb = score[static_cast<size_t>(b)];
    return sa != sb ? sa > sb : a < b;
  });
  idx.resize(static_cast<size_t>(k));
  std::sort(idx.begin(), idx.end());
  return idx;
}

}  // namespace

// ---- parameters (methods.md 1.8) ----

std::vector<ParamDecl> ojakv_params() {
  using T = ParamDecl::Type;
  std::vector<ParamDecl> p;
  p.push_back(
      param_decl("bases", T::kString, std::string(),
           "calibrated bases file from `kvlab calibrate` (per layer and KV head; required)"));
  p.push_back(param_decl("key_basis", T::kChoice, std::string("qk"),
                   "key basis init: qk (SVD of [Q; K], the ACL version) or k (keys only)", {}, {},
                   {"qk", "k"}));
  p.push_back(param_decl("rank_mode", T::kChoice, std::string("ratio"),
                   "how r_k, r_v are chosen: ratio (r = round(ratio*D)), energy (threshold on "
                   "calibration eigenvalues, per head), fixed (rank_k, rank_v)",
                   {}, {}, {"ratio", "energy", "fixed"}));
  auto ratio =
      param_decl("ratio", T::kFloat, 0.6,
           "ratio mode: per-token ratio (r_k + r_v)/(2D); 0.6 and 0.8 in the paper", 0.0, 1.0);
  ratio.check = [](const ParamValue& v) {
    if (std::get<double>(v) <= 0.0) throw Error("ratio must be in (0, 1]");
  };
  p.push_back(ratio);
  p.push_back(param_decl("energy_threshold", T::kFloat, 0.0,
                   "energy mode: smallest r with captured calibration energy >= theta, (0, 1]; "
                   "0 = unset",
                   0.0, 1.0));
  p.push_back(param_decl("rank_k", T::kInt, int64_t{0}, "fixed mode: key rank, 1..D (0 = unset)", 0.0));
  p.push_back(param_decl("rank_v", T::kInt, int64_t{0}, "fixed mode: value rank, 1..D (0 = unset)", 0.0));
  p.push_back(param_decl("anchor_policy", T::kChoice, std::string("positional"),
                   "full-rank tokens: positional (first n_start + sliding last n_recent, v1) or "
                   "residual_topk (top k_full prompt tokens by residual x attention, ACL)",
                   {}, {}, {"positional", "residual_topk"}));
  p.push_back(
      param_decl("n_start", T::kInt, int64_t{32}, "positional: first tokens kept full-rank", 0.0));
  p.push_back(param_decl("n_recent", T::kInt, int64_t{32},
                   "positional: most recent tokens kept full-rank (the window slides; a token "
                   "leaving it is compressed with the basis current then)",
                   0.0));
  p.push_back(param_decl("k_full", T::kInt, int64_t{128},
                   "residual_topk: prompt tokens kept full-rank per KV head [DECIDE 128]", 0.0));
  p.push_back(param_decl("residual_window", T::kInt, int64_t{32},
                   "residual_topk: last prompt queries whose mean attention weights ||k - kUU^T||",
                   1.0));
  p.push_back(param_decl("online_update", T::kBool, true,
                   "Oja updates at prefill and decode; false freezes the calibrated bases "
                   "(StaticPCA / StaticPCA-H)"));
  p.push_back(param_decl("prefill_update", T::kChoice, std::string("salient_pooled"),
                   "prefill batch: none, pooled (all prompt tokens, mean-pooled), salient_pooled "
                   "(top salient_fraction by window attention, then pooled) [DECIDE]",
                   {}, {}, {"none", "pooled", "salient_pooled"}));
  auto frac = param_decl("salient_fraction", T::kFloat, 0.25,
                   "salient_pooled: fraction of prompt tokens in the batch, (0, 1] [DECIDE 0.25]",
                   0.0, 1.0);
  frac.check = [](const ParamValue& v) {
    if (std::get<double>(v) <= 0.0) throw Error("salient_fraction must be in (0, 1]");
  };
  p.push_back(frac);
  p.push_back(param_decl("salient_window", T::kInt, int64_t{32},
                   "salient_pooled: last prompt queries whose summed attention scores tokens",
                   1.0));
  p.push_back(param_decl("pool_width", T::kInt, int64_t{4},
                   "prefill batch: consecutive (selected) tokens averaged per row [DECIDE 4]",
                   1.0));
  p.push_back(param_decl("prefill_steps", T::kInt, int64_t{1}, "Oja steps per prefill mini-batch", 1.0));
  p.push_back(param_decl("prefill_batch", T::kInt, int64_t{0},
                   "pooled rows per prefill mini-batch (0 = all rows in one batch)", 0.0));
  auto eta_pre =
      param_decl("eta_pre", T::kFloat, 0.5, "prefill Oja step size (with cov_norm trace)", 0.0);
  eta_pre.check = [](const ParamValue& v) {
    if (std::get<double>(v) <= 0.0) throw Error("eta_pre must be > 0");
  };
  p.push_back(eta_pre);
  auto eta_dec = param_decl("eta_dec", T::kFloat, 0.05, "decode Oja step size (small)", 0.0);
  eta_dec.check = [](const ParamValue& v) {
    if (std::get<double>(v) <= 0.0) throw Error("eta_dec must be > 0");
  };
  p.push_back(eta_dec);
  p.push_back(param_decl("cov_norm", T::kChoice, std::string("trace"),
                   "scale of C = X^T X/|X|: none, trace (C / tr C), token_l2 (unit rows)", {}, {},
                   {"none", "trace", "token_l2"}));
  p.push_back(param_decl("update_period", T::kInt, int64_t{64},
                   "decode: Oja update every T tokens from the buffer (T in 64/128/256)", 1.0));
  p.push_back(param_decl("rope_frame", T::kChoice, std::string("post"),
                   "frame keys are projected in: post (post-RoPE) or pre (un-rotated before "
                   "projection, re-rotated after reconstruction; needs pre_rope bases)",
                   {}, {}, {"post", "pre"}));
  p.push_back(param_decl("stale_policy", T::kChoice, std::string("keep"),
                   "stored coefficients on a basis update: keep (stale) or rotate "
                   "(c <- c U_old^T U_new, O(N r^2))",
                   {}, {}, {"keep", "rotate"}));
  p.push_back(param_decl("prefill_attention", T::kChoice, std::string("compressed"),
                   "prompt attention on compressed K/V (OjaKV) or exact K/V (OjaKV-PF)", {}, {},
                   {"compressed", "exact"}));
  p.push_back(param_decl("attention_path", T::kChoice, std::string("reconstruct"),
                   "reconstruct (tiles of K/V through the dense kernel) or latent (q U_k against "
                   "coefficients, (P V~) U_v^T; rope_frame post only)",
                   {}, {}, {"reconstruct", "latent"}));
  p.push_back(param_decl("tile_tokens", T::kInt, int64_t{512},
                   "reconstruct path: tokens rebuilt per tile (bounds the workspace)", 1.0));
  p.push_back(param_decl("coeff_dtype", T::kChoice, std::string("f16"),
                   "storage type of the coefficients", {}, {}, {"f16", "bf16", "f32"}));
  // methods.md 1.3 step 5 / 1.8 compose_with: token eviction first, then compression.
  p.push_back(param_decl("compose_with", T::kChoice, std::string("none"),
                   "token eviction before compression (evict first, then compress the "
                   "survivors; savings multiply): none, snapkv (observation-window votes, at end "
                   "of prefill), streaming_llm (evict_sinks first + most recent prompt tokens, "
                   "at end of prefill only; decode tokens are not evicted)",
                   {}, {}, {"none", "snapkv", "streaming_llm"}));
  for (auto d : baselines::eviction_budget_params("evict_")) {
    d.help = "compose_with: " + d.help;
    p.push_back(d);
  }
  p.push_back(param_decl("evict_window", T::kInt, int64_t{32},
                   "compose_with snapkv: observation window (last prompt queries that vote; "
                   "always kept), as snapkv.window",
                   1.0));
  auto kernel =
      param_decl("evict_kernel", T::kInt, int64_t{7},
           "compose_with snapkv: 1-D pooling kernel over votes (odd), as snapkv.kernel", 1.0);
  kernel.check = [](const ParamValue& v) {
    if (std::get<int64_t>(v) % 2 == 0) throw Error("evict_kernel must be odd");
  };
  p.push_back(kernel);
  p.push_back(param_decl("evict_pooling", T::kChoice, std::string("max"),
                   "compose_with snapkv: vote pooling, max or avg, as snapkv.pooling", {}, {},
                   {"max", "avg"}));
  p.push_back(param_decl("evict_sinks", T::kInt, int64_t{4},
                   "compose_with streaming_llm: first prompt tokens always kept (attention "
                   "sinks); the rest of the budget is the most recent prompt tokens",
                   0.0));
  return p;
}

OjaKvParams OjaKvParams::from_values(const ParamValues& v, const std::string& m) {
  OjaKvParams p;
  p.bases = v.get_string("bases");
  p.key_basis = v.get_string("key_basis") == "k" ? kv::BasisKind::k : kv::BasisKind::qk;
  const std::string& rm = v.get_string("rank_mode");
  p.rank_mode = rm == "energy"  ? RankMode::kEnergy
                : rm == "fixed" ? RankMode::kFixed
                                : RankMode::kRatio;
  p.ratio = v.get_float("ratio");
  p.energy_threshold = v.get_float("energy_threshold");
  p.rank_k = v.get_int("rank_k");
  p.rank_v = v.get_int("rank_v");
  p.anchor_policy = v.get_string("anchor_policy") == "residual_topk" ? Anchors::kResidualTopk
                                                                     : Anchors::kPositional;
  p.n_start = v.get_int("n_start");
  p.n_recent = v.get_int("n_recent");
  p.k_full = v.get_int("k_full");
  p.residual_window = v.get_int("residual_window");
  p.online_update = v.get_bool("online_update");
  const std::string& pu = v.get_string("prefill_update");
  p.prefill_update = pu == "none"     ? PrefillUpdate::kNone
                     : pu == "pooled" ? PrefillUpdate::kPooled
                                      : PrefillUpdate::kSalientPooled;
  p.salient_fraction = v.get_float("salient_fraction");
  p.salient_window = v.get_int("salient_window");
  p.pool_width = v.get_int("pool_width");
  p.prefill_steps = v.get_int("prefill_steps");
  p.prefill_batch = v.get_int("prefill_batch");
  p.eta_pre = v.get_float("eta_pre");
  p.eta_dec = v.get_float("eta_dec");
  const std::string& cn = v.get_string("cov_norm");
  p.cov_norm = cn == "none"       ? CovNorm::kNone
               : cn == "token_l2" ? CovNorm::kTokenL2
                                  : CovNorm::kTrace;
  p.update_period = v.get_int("update_period");
  p.rope_pre = v.get_string("rope_frame") == "pre";
  p.stale_rotate = v.get_string("stale_policy") == "rotate";
  p.prefill_exact = v.get_string("prefill_attention") == "exact";
  p.latent = v.get_string("attention_path") == "latent";
  p.tile_tokens = v.get_int("tile_tokens");
  p.coeff_dtype = parse_dtype(v.get_string("coeff_dtype"));
  const std::string& cw = v.get_string("compose_with");
  p.compose = cw == "snapkv"          ? Compose::kSnapKv
              : cw == "streaming_llm" ? Compose::kStreamingLlm
                                      : Compose::kNone;
  if (p.compose == Compose::kNone) {
    if (v.get_int("evict_budget") > 0)
      throw Error(str(m, ".evict_budget: set without compose_with (snapkv or streaming_llm)"));
    if (v.get_float("evict_ratio") > 0.0)
      throw Error(str(m, ".evict_ratio: set without compose_with (snapkv or streaming_llm)"));
  } else {
    p.evict = baselines::EvictionBudget::from_params(v, m, false, "evict_");
  }
  p.evict_window = v.get_int("evict_window");
  p.evict_kernel = v.get_int("evict_kernel");
  p.evict_max_pool = v.get_string("evict_pooling") == "max";
  p.evict_sinks = v.get_int("evict_sinks");
  if (p.compose == Compose::kStreamingLlm && p.evict.tokens > 0 && p.evict_sinks > p.evict.tokens)
    throw Error(str(m, ".evict_sinks: ", p.evict_sinks, " exceeds evict_budget ", p.evict.tokens));
  if (p.rank_mode == RankMode::kEnergy && p.energy_threshold <= 0.0)
    throw Error(str(m, ".energy_threshold: rank_mode energy needs a threshold in (0, 1]"));
  if (p.rank_mode == RankMode::kFixed) {
    if (p.rank_k <= 0) throw Error(str(m, ".rank_k: rank_mode fixed needs rank_k (1..head_dim)"));
    if (p.rank_v <= 0) throw Error(str(m, ".rank_v: rank_mode fixed needs rank_v (1..head_dim)"));
  }
  if (p.latent && p.rope_pre)
    throw Error(str(m,
                    ".attention_path: latent needs rope_frame post (q.(U c) = (q U).c only "
                    "holds with q and k in the same frame)"));
  return p;
}

// ---- per-head state ----

struct OjaKvCache::Head {
  int64_t rk = 0, rv = 0;
  linalg::Mat Uk, Uv;               // [D, r] f64 (the master copies)
  std::vector<float> ukT, uvT;      // [r, D] f32 copies of U^T for reconstruction and latent q U
  std::vector<uint8_t> state;       // [N] kCompressed / kAnchor / kBuffered / kPrompt
  std::vector<int32_t> slot;        // [N] anchor slot, coefficient row or buffer row
  std::vector<float> ak, av;        // anchor rows [slots, D]
  std::vector<int32_t> free_slots;  // anchor slots released by the sliding window
  int64_t n_anchor = 0;
  std::vector<uint8_t> ck, cv;  // coefficient rows [N_c, r] at coeff_dtype
  int64_t n_coeff = 0;
  std::vector<double> rnorm;  // compressed prefill: ||k - k U_k U_k^T|| per prompt token
  std::vector<float> anchor_pos, anchor_score;  // residual_topk: the selection at end_prefill
  int64_t steps = 0;                            // Oja steps applied to U_k (= to U_v)
};

struct OjaKvCache::Update {
  int64_t g = 0;
  bool key = true, prefill = true;
  int64_t token = 0;     // tokens seen when applied
  double trace_c = 0.0;  // tr(X^T X / |X|) before normalisation
  double seconds = 0.0;  // the step (C U, QR) and, under stale_policy rotate, the rotation
  OjaStepStats s;
};

OjaKvCache::OjaKvCache(const kv::LayerInfo& info, const OjaKvParams& params,
                       std::shared_ptr<const kv::Bases> bases, const std::string& method)
    : info_(info),
      p_(params),
      method_(method),
      bases_(std::move(bases)),
      obs_(std::max({params.salient_window, params.residual_window,
                     params.compose == OjaKvParams::Compose::kSnapKv ? params.evict_window : 0}),
           info.H, info.D) {
  const std::string& m = method_;
  const int64_t D = info_.D, G = info_.G;
  if (!bases_) throw Error(str(m, ".bases: no bases given"));
  if (bases_->D != D || bases_->G != G || bases_->n_layers <= info_.layer)
    throw Error(str(m, ".bases: file has ", bases_->n_layers, " layers x ", bases_->G,
                    " KV heads x head_dim ", bases_->D, "; the model needs layer ", info_.layer,
                    " with ", G, " KV heads x head_dim ", D));
  const std::string want = p_.rope_pre ? "pre_rope" : "post_rope";
  if (bases_->frame != want)
    throw Error(str(m, ".rope_frame: ", p_.rope_pre ? "pre" : "post", " needs ", want,
                    " bases but the bases file is ", bases_->frame));
  if (p_.rope_pre && !info_.rope)
    throw Error(str(m, ".rope_frame: pre needs the model's RoPE (LayerInfo.rope is null)"));
  if (p_.rank_mode == OjaKvParams::RankMode::kFixed) {
    if (p_.rank_k > D) throw Error(str(m, ".rank_k: ", p_.rank_k, " exceeds head_dim ", D));
    if (p_.rank_v > D) throw Error(str(m, ".rank_v: ", p_.rank_v, " exceeds head_dim ", D));
  }
  if (p_.anchor_policy == OjaKvParams::Anchors::kPositional && info_.max_context > 0 &&
      p_.n_start + p_.n_recent > info_.max_context)
    throw Error(str(m, ".n_start + ", m, ".n_recent: ", p_.n_start, " + ", p_.n_recent,
                    " exceeds the context (", info_.max_context, " tokens)"));
  if (p_.anchor_policy == OjaKvParams::Anchors::kResidualTopk && info_.max_context > 0 &&
      p_.k_full > info_.max_context)
    throw Error(
        str(m, ".k_full: ", p_.k_full, " exceeds the context (", info_.max_context, " tokens)"));
  for (int64_t g = 0; g < G; ++g) {
    auto h = std::make_unique<Head>();
    const kv::Eigenbasis& ek = bases_->get(p_.key_basis, info_.layer, g);
    const kv::Eigenbasis& ev = bases_->get(kv::BasisKind::v, info_.layer, g);
    switch (p_.rank_mode) {
      case OjaKvParams::RankMode::kRatio:
        h->rk = h->rv = std::clamp<int64_t>(std::llround(p_.ratio * static_cast<double>(D)), 1, D);
        break;
      case OjaKvParams::RankMode::kEnergy:
        h->rk = linalg::rank_for_energy(ek.values, p_.energy_threshold);
        h->rv = linalg::rank_for_energy(ev.values, p_.energy_threshold);
        break;
      case OjaKvParams::RankMode::kFixed:
        h->rk = p_.rank_k;
        h->rv = p_.rank_v;
        break;
    }
    h->Uk = ek.top(h->rk);
    h->Uv = ev.top(h->rv);
    heads_.push_back(std::move(h));
    refresh_f32(g);
  }
}

OjaKvCache::~OjaKvCache() = default;

void OjaKvCache::refresh_f32(int64_t g) {
  Head& h = *heads_[static_cast<size_t>(g)];
  const int64_t D = info_.D;
  auto fill = [D](const linalg::Mat& U, std::vector<float>& t) {
    t.resize(static_cast<size_t>(U.cols * D));
    for (int64_t d = 0; d < D; ++d)
      for (int64_t j = 0; j < U.cols; ++j) t[static_cast<size_t>(j * D + d)] = float(U(d, j));
  };
  fill(h.Uk, h.ukT);
  fill(h.Uv, h.uvT);
}

const linalg::Mat& OjaKvCache::basis_k(int64_t g) const { return heads_.at(g)->Uk; }
const linalg::Mat& OjaKvCache::basis_v(int64_t g) const { return heads_.at(g)->Uv; }
int64_t OjaKvCache::basis_updates() const { return heads_.empty() ? 0 : heads_[0]->steps; }

// ---- storage primitives ----

void OjaKvCache::key_to_frame(const float* k, int32_t pos, float* out) const {
  std::memcpy(out, k, static_cast<size_t>(info_.D) * sizeof(float));
  if (p_.rope_pre) info_.rope->unapply(out, 1, 1, &pos);  // methods.md 1.2 RoPE frame
}

void OjaKvCache::add_anchor(int64_t g, int64_t i, const float* k, const float* v) {
  Head& h = *heads_[static_cast<size_t>(g)];
  const int64_t D = info_.D;
  int32_t s;
  if (!h.free_slots.empty()) {
    s = h.free_slots.back();
    h.free_slots.pop_back();
  } else {
    s = static_cast<int32_t>(h.ak.size() / static_cast<size_t>(D));
    h.ak.resize(h.ak.size() + static_cast<size_t>(D));
    h.av.resize(h.av.size() + static_cast<size_t>(D));
  }
  std::memcpy(h.ak.data() + s * D, k, static_cast<size_t>(D) * sizeof(float));
  std::memcpy(h.av.data() + s * D, v, static_cast<size_t>(D) * sizeof(float));
  h.state[static_cast<size_t>(i)] = kAnchor;
  h.slot[static_cast<size_t>(i)] = s;
  ++h.n_anchor;
}

void OjaKvCache::release_anchor(int64_t g, int64_t i) {
  Head& h = *heads_[static_cast<size_t>(g)];
  h.free_slots.push_back(h.slot[static_cast<size_t>(i)]);
  --h.n_anchor;
}

// K~ = k U_k [r_k], V~ = v U_v [r_v] (methods.md 1.2), rounded to coeff_dtype. Returns the key's
// residual norm ||k - k U_k U_k^T|| = sqrt(||k||^2 - ||k U_k||^2) (f64). Cost D (r_k + r_v).
double OjaKvCache::compress_token(int64_t g, int64_t i, const float* k, const float* v) {
  Head& h = *heads_[static_cast<size_t>(g)];
  const int64_t D = info_.D;
  std::vector<float> kf(static_cast<size_t>(D)), c(static_cast<size_t>(std::max(h.rk, h.rv)));
  key_to_frame(k, tok_pos(g, i), kf.data());
  const size_t es = dtype_size(p_.coeff_dtype);
  auto project = [&](const float* x, const linalg::Mat& U, std::vector<uint8_t>& store) {
    double p2 = 0.0;
    for (int64_t j = 0; j < U.cols; ++j) {
      double a = 0.0;
      for (int64_t d = 0; d < D; ++d) a += static_cast<double>(x[d]) * U(d, j);
      c[static_cast<size_t>(j)] = static_cast<float>(a);
      p2 += a * a;
    }
    const size_t off = store.size();
    store.resize(off + static_cast<size_t>(U.cols) * es);
    from_f32(p_.coeff_dtype, c.data(), store.data() + off, static_cast<size_t>(U.cols));
    return p2;
  };
  const double p2 = project(kf.data(), h.Uk, h.ck);
  project(v, h.Uv, h.cv);
  h.state[static_cast<size_t>(i)] = kCompressed;
  h.slot[static_cast<size_t>(i)] = static_cast<int32_t>(h.n_coeff++);
  double n2 = 0.0;
  for (int64_t d = 0; d < D; ++d) n2 += static_cast<double>(kf[d]) * kf[d];
  return std::sqrt(std::max(0.0, n2 - p2));
}

// Post-RoPE key and value rows of token i as attention sees them: exact for anchors and buffered
// tokens, c U^T (re-rotated when rope_frame pre) for compressed ones. Cost D (r_k + r_v).
void OjaKvCache::row_of(int64_t g, int64_t i, float* k, float* v) const {
  const Head& h = *heads_[static_cast<size_t>(g)];
  const int64_t D = info_.D, G = info_.G;
  const int32_t s = h.slot[static_cast<size_t>(i)];
  switch (h.state[static_cast<size_t>(i)]) {
    case kAnchor:
      std::memcpy(k, h.ak.data() + s * D, static_cast<size_t>(D) * sizeof(float));
      std::memcpy(v, h.av.data() + s * D, static_cast<size_t>(D) * sizeof(float));
      return;
    case kBuffered:
      std::memcpy(k, bk_.data() + (s * G + g) * D, static_cast<size_t>(D) * sizeof(float));
      std::memcpy(v, bv_.data() + (s * G + g) * D, static_cast<size_t>(D) * sizeof(float));
      return;
    case kPrompt:
      std::memcpy(k, pk_.data() + (s * G + g) * D, static_cast<size_t>(D) * sizeof(float));
      std::memcpy(v, pv_.data() + (s * G + g) * D, static_cast<size_t>(D) * sizeof(float));
      return;
    default: break;
  }
  const size_t es = dtype_size(p_.coeff_dtype);
  thread_local std::vector<float> cbuf;
  cbuf.resize(static_cast<size_t>(std::max(h.rk, h.rv)));
  float* c = cbuf.data();
  auto rebuild = [&](const std::vector<uint8_t>& store, int64_t r, const std::vector<float>& UT,
                     float* x) {
    coeff_to_f32(p_.coeff_dtype,
                 store.data() + static_cast<size_t>(s) * static_cast<size_t>(r) * es, c,
                 static_cast<size_t>(r));
    std::fill(x, x + D, 0.f);
    for (int64_t j = 0; j < r; ++j) {
      const float cj = c[j];
      const float* u = UT.data() + j * D;
      for (int64_t d = 0; d < D; ++d) x[d] += cj * u[d];
    }
  };
  rebuild(h.ck, h.rk, h.ukT, k);
  rebuild(h.cv, h.rv, h.uvT, v);
  if (p_.rope_pre) {
    const int32_t pos = tok_pos(g, i);
    info_.rope->apply(k, 1, 1, &pos);
  }
}

// Rebuilds tokens [s0, s0 + n) of every KV head into kt, vt [G, n, D]: the compressed rows as one
// GEMM per head and side, [n, r] coefficients (f32, zero rows for full-rank tokens) x U^T [r, D]
// (re-rotated when rope_frame pre), then the full-rank rows copied over. Cost 2 n D (r_k + r_v)
// per head; scratch n * max(r_k, r_v) floats per worker.
void OjaKvCache::fill_tile(int64_t s0, int64_t n, float* kt, float* vt) const {
  const int64_t D = info_.D;
  const size_t es = dtype_size(p_.coeff_dtype);
  info_.pool->parallel_tasks(info_.G, [&](int64_t g, int) {
    const Head& h = *heads_[static_cast<size_t>(g)];
    float* K = kt + g * n * D;
    float* V = vt + g * n * D;
    thread_local std::vector<float> cb;
    auto side = [&](const std::vector<uint8_t>& store, int64_t r, const std::vector<float>& UT,
                    float* X) {
      cb.assign(static_cast<size_t>(n * r), 0.f);
      for (int64_t j = 0; j < n; ++j) {
        const size_t i = static_cast<size_t>(s0 + j);
        if (h.state[i] != kCompressed) continue;
        coeff_to_f32(p_.coeff_dtype, store.data() + static_cast<size_t>(h.slot[i]) * r * es,
                     cb.data() + j * r, static_cast<size_t>(r));
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(n),
                  static_cast<int>(D), static_cast<int>(r), 1.f, cb.data(), static_cast<int>(r),
                  UT.data(), static_cast<int>(D), 0.f, X, static_cast<int>(D));
    };
    side(h.ck, h.rk, h.ukT, K);
    side(h.cv, h.rv, h.uvT, V);
    for (int64_t j = 0; j < n; ++j) {
      const size_t i = static_cast<size_t>(s0 + j);
      if (h.state[i] != kCompressed) {
        row_of(g, s0 + j, K + j * D, V + j * D);
      } else if (p_.rope_pre) {
        const int32_t pos = tok_pos(g, s0 + j);
        info_.rope->apply(K + j * D, 1, 1, &pos);
      }
    }
  });
}

void OjaKvCache::materialize(int64_t g, std::vector<float>* K, std::vector<float>* V,
                             std::vector<int32_t>* positions) const {
  const int64_t N = static_cast<int64_t>(pos_.size()), D = info_.D;
  K->assign(static_cast<size_t>(N * D), 0.f);
  V->assign(static_cast<size_t>(N * D), 0.f);
  positions->resize(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) (*positions)[static_cast<size_t>(i)] = tok_pos(g, i);
  if (!prefill_done_ && p_.prefill_exact) {
    // OjaKV-PF before end_prefill: attention reads the exact prompt.
    const int64_t G = info_.G;
    for (int64_t i = 0; i < N; ++i) {
      std::memcpy(K->data() + i * D, pk_.data() + (i * G + g) * D, D * sizeof(float));
      std::memcpy(V->data() + i * D, pv_.data() + (i * G + g) * D, D * sizeof(float));
    }
    return;
  }
  for (int64_t i = 0; i < N; ++i) row_of(g, i, K->data() + i * D, V->data() + i * D);
}

std::vector<int32_t> OjaKvCache::full_rank_positions(int64_t g) const {
  const Head& h = *heads_.at(g);
  std::vector<int32_t> r;
  for (size_t i = 0; i < pos_.size(); ++i)
    if (h.state[i] != kCompressed) r.push_back(tok_pos(g, static_cast<int64_t>(i)));
  return r;
}

// ---- prefill ----

void OjaKvCache::append(const float* keys, const float* values, int64_t T,
                        const int32_t* positions) {
  const int64_t G = info_.G, D = info_.D;
  for (int64_t t = 0; t < T; ++t) {
    KVLAB_CHECK(pos_.empty() || positions[t] > pos_.back())
        << "positions must increase: " << positions[t] << " after " << pos_.back();
    pos_.push_back(positions[t]);
    for (auto& h : heads_) {
      h->state.push_back(kBuffered);
      h->slot.push_back(-1);
    }
    ++seen_;
    if (!prefill_done_) {
      pk_.insert(pk_.end(), keys + t * G * D, keys + (t + 1) * G * D);
      pv_.insert(pv_.end(), values + t * G * D, values + (t + 1) * G * D);
      if (!p_.prefill_exact) {
        // Compressed prefill: project once with the initial basis (row i of the coefficients).
        const int64_t i = static_cast<int64_t>(pos_.size()) - 1;
        for (int64_t g = 0; g < G; ++g) {
          const double rn = compress_token(g, i, keys + (t * G + g) * D, values + (t * G + g) * D);
          heads_[static_cast<size_t>(g)]->rnorm.push_back(rn);
        }
      }
    } else {
      const int64_t i = static_cast<int64_t>(pos_.size()) - 1;
      if (p_.online_update || p_.anchor_policy == OjaKvParams::Anchors::kResidualTopk) {
        buf_tok_.push_back(i);
        bk_.insert(bk_.end(), keys + t * G * D, keys + (t + 1) * G * D);
        bv_.insert(bv_.end(), values + t * G * D, values + (t + 1) * G * D);
      }
      admit_decode_token(i, keys + t * G * D, values + t * G * D);
      if (static_cast<int64_t>(buf_tok_.size()) >= p_.update_period) periodic_update();
    }
  }
  if (!prefill_done_ && !p_.prefill_exact) refresh_prefill_anchors();
}

// Softmax attention of the last w window queries over the exact prompt, per KV head: sum over the
// window of the mean over the head's query heads, [G][N] (SnapKV-style scoring, methods.md 1.3).
std::vector<std::vector<double>> OjaKvCache::window_scores(int64_t w) const {
  return baselines::group_mean(window_probabilities(w), info_.G);
}

// Per query head, the window-summed exact probabilities of the last w prompt queries over the
// exact prompt, [H][N] (zeros when no query was seen). Cost O(w H N D).
std::vector<std::vector<double>> OjaKvCache::window_probabilities(int64_t w) const {
  const int64_t H = info_.H, G = info_.G, D = info_.D;
  const int64_t N = static_cast<int64_t>(pos_.size());
  w = std::min(w, obs_.size());
  if (w == 0) return std::vector<std::vector<double>>(H, std::vector<double>(N, 0.0));
  const float* q = obs_.queries() + (obs_.size() - w) * H * D;
  const int32_t* qp = obs_.positions() + (obs_.size() - w);
  cpu::KvView kv{pk_.data(), pv_.data(), N, D, G * D, pos_.data()};
  const cpu::AttentionShape shape{H, G, D, info_.scale};
  std::vector<float> out(static_cast<size_t>(w * H * D)), lse(static_cast<size_t>(w * H));
  cpu::attention(q, w, qp, kv, shape, out.data(), lse.data(), *info_.pool);
  std::vector<std::vector<double>> acc;
  baselines::accumulate_probabilities(q, w, qp, lse.data(), kv, shape, acc, *info_.pool);
  return acc;
}

int32_t OjaKvCache::tok_pos(int64_t g, int64_t i) const {
  if (!surv_pos_.empty()) {
    const auto& sp = surv_pos_[static_cast<size_t>(g)];
    if (i < static_cast<int64_t>(sp.size())) return sp[static_cast<size_t>(i)];
  }
  return pos_[static_cast<size_t>(i)];
}

// compose_with (methods.md 1.3 step 5), before the prefill update: per KV head, the prompt
// survivors of SnapKV (baselines::snapkv_select over the last evict_window queries' votes on the
// exact prompt) or StreamingLLM (first evict_sinks + most recent), `keep` = evict_budget or
// evict_ratio of the prompt each. The exact prompt is compacted to [K, G, D] (head g's row j =
// its j-th survivor); the others are dropped for good. pos_ becomes the per-slot maximum over
// heads (the causal mask, exact for the window and every later query, as in
// baselines::EvictionCache); surv_pos_ keeps each head's original positions (RoPE frame, traces).
// Cost O(w H N D) for the votes, O(N G D) for the copy.
void OjaKvCache::evict_prompt() {
  const int64_t G = info_.G, D = info_.D, N = static_cast<int64_t>(pos_.size());
  const int64_t keep = p_.evict.resolve(N);
  if (N <= keep) return;
  std::vector<std::vector<int64_t>> sel;
  if (p_.compose == OjaKvParams::Compose::kSnapKv) {
    const int64_t w = std::min(p_.evict_window, obs_.size());
    std::vector<std::vector<double>> acc;  // [H][N]
    if (keep > w) acc = window_probabilities(w);
    sel = baselines::snapkv_select(
        acc, N, w, keep, p_.evict_kernel,
        p_.evict_max_pool ? baselines::Pooling::kMax : baselines::Pooling::kAvg, G);
  } else {
    const int64_t sinks = std::min(p_.evict_sinks, keep);
    std::vector<int64_t> kept;
    for (int64_t i = 0; i < sinks; ++i) kept.push_back(i);
    for (int64_t i = N - (keep - sinks); i < N; ++i) kept.push_back(i);
    sel.assign(static_cast<size_t>(G), kept);
  }
  std::vector<float> nk(static_cast<size_t>(keep * G * D)), nv(nk.size());
  std::vector<int32_t> np(static_cast<size_t>(keep), 0);
  surv_pos_.assign(static_cast<size_t>(G), std::vector<int32_t>(static_cast<size_t>(keep)));
  for (int64_t g = 0; g < G; ++g)
    for (int64_t j = 0; j < keep; ++j) {
      const int64_t i = sel[static_cast<size_t>(g)][static_cast<size_t>(j)];
      std::memcpy(nk.data() + (j * G + g) * D, pk_.data() + (i * G + g) * D, D * sizeof(float));
      std::memcpy(nv.data() + (j * G + g) * D, pv_.data() + (i * G + g) * D, D * sizeof(float));
      const int32_t p = pos_[static_cast<size_t>(i)];
      surv_pos_[static_cast<size_t>(g)][static_cast<size_t>(j)] = p;
      np[static_cast<size_t>(j)] = std::max(np[static_cast<size_t>(j)], p);
    }
  pk_ = std::move(nk);
  pv_ = std::move(nv);
  pos_ = std::move(np);
  for (auto& h : heads_) {
    h->state.resize(static_cast<size_t>(keep));
    h->slot.resize(static_cast<size_t>(keep));
  }
  evicted_ = N - keep;
}

// Which prompt tokens are anchors, per KV head. Positional: first n_start and last n_recent.
// Residual (methods.md 1.3 step 2): score_t = ||k_t - k_t U_k U_k^T|| x mean attention from the
// last residual_window queries (final selection; during a compressed prefill the queries of the
// end of the prompt do not exist yet, so the residual norm alone ranks [DECIDE]); top k_full.
std::vector<std::vector<char>> OjaKvCache::prefill_anchor_sets(bool final_selection) {
  const int64_t G = info_.G, D = info_.D, N = static_cast<int64_t>(pos_.size());
  std::vector<std::vector<char>> a(static_cast<size_t>(G), std::vector<char>(N, 0));
  if (p_.anchor_policy == OjaKvParams::Anchors::kPositional) {
    for (int64_t i = 0; i < N; ++i) {
      const char f = i < p_.n_start || i >= N - p_.n_recent;
      for (auto& ag : a) ag[static_cast<size_t>(i)] = f;
    }
    return a;
  }
  std::vector<std::vector<double>> att;
  if (final_selection) {
    // No prompt query seen (attend was never called): the residual norm alone ranks.
    att = obs_.size() > 0 ? window_scores(p_.residual_window)
                          : std::vector<std::vector<double>>(G, std::vector<double>(N, 1.0));
    const double w =
        static_cast<double>(std::max<int64_t>(1, std::min(p_.residual_window, obs_.size())));
    for (auto& r : att)
      for (auto& x : r) x /= w;
  }
  std::vector<float> kf(static_cast<size_t>(D));
  for (int64_t g = 0; g < G; ++g) {
    Head& h = *heads_[static_cast<size_t>(g)];
    if (!final_selection) {  // residual norms under the initial basis, computed at append
      for (int64_t i : top_k_ascending(h.rnorm, p_.k_full)) a[g][static_cast<size_t>(i)] = 1;
      continue;
    }
    std::vector<double> score(static_cast<size_t>(N));
    for (int64_t i = 0; i < N; ++i) {
      key_to_frame(pk_.data() + (i * G + g) * D, tok_pos(g, i), kf.data());
      // ||r||^2 = ||k||^2 - ||k U||^2 (U orthonormal), in f64.
      double n2 = 0.0, p2 = 0.0;
      for (int64_t d = 0; d < D; ++d) n2 += static_cast<double>(kf[d]) * kf[d];
      for (int64_t j = 0; j < h.rk; ++j) {
        double c = 0.0;
        for (int64_t d = 0; d < D; ++d) c += static_cast<double>(kf[d]) * h.Uk(d, j);
        p2 += c * c;
      }
      double s = std::sqrt(std::max(0.0, n2 - p2));
      s *= att[static_cast<size_t>(g)][static_cast<size_t>(i)];
      score[static_cast<size_t>(i)] = s;
    }
    h.anchor_pos.clear();
    h.anchor_score.clear();
    for (int64_t i : top_k_ascending(score, p_.k_full)) {
      a[g][static_cast<size_t>(i)] = 1;
      h.anchor_pos.push_back(static_cast<float>(tok_pos(g, i)));
      h.anchor_score.push_back(static_cast<float>(score[static_cast<size_t>(i)]));
    }
  }
  return a;
}

// Rebuilds every head's store from the exact prompt with the current bases: anchors full-rank,
// the rest as coefficients (methods.md 1.3 step 1.4). Cost O(N G D (r_k + r_v)).
void OjaKvCache::prefill_rebuild(const std::vector<std::vector<char>>& anchor) {
  const int64_t G = info_.G, D = info_.D, N = static_cast<int64_t>(pos_.size());
  info_.pool->parallel_tasks(G, [&](int64_t g, int) {
    Head& h = *heads_[static_cast<size_t>(g)];
    h.ak.clear();
    h.av.clear();
    h.free_slots.clear();
    h.n_anchor = 0;
    h.ck.clear();
    h.cv.clear();
    h.n_coeff = 0;
    h.rnorm.clear();
    h.rnorm.shrink_to_fit();
    for (int64_t i = 0; i < N; ++i) {
      const float* k = pk_.data() + (i * G + g) * D;
      const float* v = pv_.data() + (i * G + g) * D;
      if (anchor[static_cast<size_t>(g)][static_cast<size_t>(i)])
        add_anchor(g, i, k, v);
      else
        compress_token(g, i, k, v);
    }
  });
}

// Compressed prefill: the current anchors read their exact prompt rows, every other prompt token
// its coefficients (row i, projected at append). Cost O(N) (positional), O(N log k) (residual).
void OjaKvCache::refresh_prefill_anchors() {
  const auto a = prefill_anchor_sets(false);
  for (int64_t g = 0; g < info_.G; ++g) {
    Head& h = *heads_[static_cast<size_t>(g)];
    for (size_t i = 0; i < pos_.size(); ++i) {
      h.state[i] = a[static_cast<size_t>(g)][i] ? kPrompt : kCompressed;
      h.slot[i] = static_cast<int32_t>(i);
    }
  }
}

void OjaKvCache::basis_update(int64_t g, bool key, const linalg::Mat& C, double eta, bool prefill) {
  Head& h = *heads_[static_cast<size_t>(g)];
  linalg::Mat& U = key ? h.Uk : h.Uv;
  const linalg::Mat U_old = U;
  Update u;
  u.g = g;
  u.key = key;
  u.prefill = prefill;
  u.token = seen_;
  const Timer timer;
  u.s = oja_step(U, C, eta);
  if (p_.stale_rotate && !prefill && h.n_coeff > 0) {  // the prompt is re-projected anyway
    // Stale policy rotate (methods.md 1.3 (b)): c <- c (U_old^T U_new), [r, r]; O(N_c r^2).
    const linalg::Mat M = linalg::matmul_tn(U_old, U);
    const int64_t r = U.cols;
    std::vector<uint8_t>& store = key ? h.ck : h.cv;
    const size_t es = dtype_size(p_.coeff_dtype);
    std::vector<float> c(static_cast<size_t>(r)), o(static_cast<size_t>(r));
    for (int64_t n = 0; n < h.n_coeff; ++n) {
      uint8_t* row = store.data() + static_cast<size_t>(n * r) * es;
      coeff_to_f32(p_.coeff_dtype, row, c.data(), static_cast<size_t>(r));
      for (int64_t j = 0; j < r; ++j) {
        double a = 0.0;
        for (int64_t i = 0; i < r; ++i) a += static_cast<double>(c[i]) * M(i, j);
        o[static_cast<size_t>(j)] = static_cast<float>(a);
      }
      from_f32(p_.coeff_dtype, o.data(), row, static_cast<size_t>(r));
    }
  }
  u.seconds = timer.seconds();
  log_.push_back(u);
}

// Prefill comprehensive update (methods.md 1.3 step 1): per KV head, the batch X is the prompt
// (pooled) or its top salient_fraction by window attention (salient_pooled), mean-pooled in groups
// of pool_width consecutive selected tokens; per mini-batch of prefill_batch rows, prefill_steps
// Oja steps with eta_pre, separately for K (in rope_frame) and V.
void OjaKvCache::run_prefill_update() {
  const int64_t G = info_.G, D = info_.D, N = static_cast<int64_t>(pos_.size());
  if (N == 0) return;
  std::vector<std::vector<double>> sal;
  // salient_pooled without any prompt query seen (attend never called) pools every token.
  if (p_.prefill_update == OjaKvParams::PrefillUpdate::kSalientPooled && obs_.size() > 0)
    sal = window_scores(p_.salient_window);
  const int64_t pw = p_.pool_width;
  for (int64_t g = 0; g < G; ++g) {
    std::vector<int64_t> sel;
    if (sal.empty()) {
      sel.resize(static_cast<size_t>(N));
      std::iota(sel.begin(), sel.end(), 0);
    } else {
      const int64_t k =
          std::max<int64_t>(1, std::llround(p_.salient_fraction * static_cast<double>(N)));
      sel = top_k_ascending(sal[static_cast<size_t>(g)], k);
    }
    const int64_t n_rows = (static_cast<int64_t>(sel.size()) + pw - 1) / pw;
    std::vector<float> xk(static_cast<size_t>(n_rows * D), 0.f), xv(xk.size(), 0.f);
    std::vector<float> kf(static_cast<size_t>(D));
    for (int64_t r = 0; r < n_rows; ++r) {
      const int64_t b = r * pw, e = std::min<int64_t>(b + pw, static_cast<int64_t>(sel.size()));
      const float inv = 1.f / static_cast<float>(e - b);
      for (int64_t j = b; j < e; ++j) {
        const int64_t i = sel[static_cast<size_t>(j)];
        key_to_frame(pk_.data() + (i * G + g) * D, tok_pos(g, i), kf.data());
        const float* v = pv_.data() + (i * G + g) * D;
        for (int64_t d = 0; d < D; ++d) {
          xk[static_cast<size_t>(r * D + d)] += inv * kf[d];
          xv[static_cast<size_t>(r * D + d)] += inv * v[d];
        }
      }
    }
    const int64_t mb = p_.prefill_batch > 0 ? p_.prefill_batch : n_rows;
    for (int64_t b = 0; b < n_rows; b += mb) {
      const int64_t m = std::min(mb, n_rows - b);
      for (int key = 1; key >= 0; --key) {
        double tr = 0.0;
        const linalg::Mat C =
            batch_second_moment((key ? xk : xv).data() + b * D, m, D, D, p_.cov_norm, &tr);
        for (int64_t s = 0; s < p_.prefill_steps; ++s) {
          basis_update(g, key != 0, C, p_.eta_pre, true);
          log_.back().trace_c = tr;
        }
      }
      heads_[static_cast<size_t>(g)]->steps += p_.prefill_steps;
    }
    refresh_f32(g);
  }
}

void OjaKvCache::end_prefill(const kv::PrefillContext&) {
  if (prefill_done_) return;
  if (p_.compose != OjaKvParams::Compose::kNone) evict_prompt();
  if (p_.online_update && p_.prefill_update != OjaKvParams::PrefillUpdate::kNone)
    run_prefill_update();
  prefill_done_ = true;
  prefill_rebuild(prefill_anchor_sets(true));
  pk_.clear();
  pk_.shrink_to_fit();
  pv_.clear();
  pv_.shrink_to_fit();
  obs_.clear();
}

// ---- decode ----

// Token i after the prompt (methods.md 1.3 steps 2-3). Positional: a full-rank recent anchor; the
// token leaving the n_recent window (if past the first n_start) is compressed with the current
// basis. Residual: held in the buffer until the next periodic update compresses it.
void OjaKvCache::admit_decode_token(int64_t i, const float* k, const float* v) {
  const int64_t G = info_.G, D = info_.D;
  if (p_.anchor_policy == OjaKvParams::Anchors::kResidualTopk) {
    const int32_t row = static_cast<int32_t>(buf_tok_.size()) - 1;
    for (auto& h : heads_) {
      h->state[static_cast<size_t>(i)] = kBuffered;
      h->slot[static_cast<size_t>(i)] = row;
    }
    return;
  }
  const int64_t j = i - p_.n_recent;  // leaves the window now
  std::vector<float> kr(static_cast<size_t>(D)), vr(static_cast<size_t>(D));
  for (int64_t g = 0; g < G; ++g) {
    Head& h = *heads_[static_cast<size_t>(g)];
    add_anchor(g, i, k + g * D, v + g * D);
    if (j >= p_.n_start && j >= 0 && h.state[static_cast<size_t>(j)] == kAnchor) {
      const int32_t s = h.slot[static_cast<size_t>(j)];
      std::memcpy(kr.data(), h.ak.data() + s * D, static_cast<size_t>(D) * sizeof(float));
      std::memcpy(vr.data(), h.av.data() + s * D, static_cast<size_t>(D) * sizeof(float));
      release_anchor(g, j);
      compress_token(g, j, kr.data(), vr.data());
    }
  }
}

// Decode update (methods.md 1.3 step 3): C = B^T B / |B| (cov_norm), one Oja step with eta_dec per
// basis, then the buffer is cleared (residual policy: its tokens are compressed with the new
// basis).
void OjaKvCache::periodic_update() {
  const int64_t G = info_.G, D = info_.D, n = static_cast<int64_t>(buf_tok_.size());
  if (p_.online_update && n > 0) {
    for (int64_t g = 0; g < G; ++g) {
      std::vector<float> xk(static_cast<size_t>(n * D)), xv(xk.size());
      for (int64_t t = 0; t < n; ++t) {
        key_to_frame(bk_.data() + (t * G + g) * D,
                     pos_[static_cast<size_t>(buf_tok_[static_cast<size_t>(t)])],
                     xk.data() + t * D);
        std::memcpy(xv.data() + t * D, bv_.data() + (t * G + g) * D, D * sizeof(float));
      }
      for (int key = 1; key >= 0; --key) {
        double tr = 0.0;
        const linalg::Mat C =
            batch_second_moment((key ? xk : xv).data(), n, D, D, p_.cov_norm, &tr);
        basis_update(g, key != 0, C, p_.eta_dec, false);
        log_.back().trace_c = tr;
      }
      ++heads_[static_cast<size_t>(g)]->steps;
      refresh_f32(g);
    }
  }
  if (p_.anchor_policy == OjaKvParams::Anchors::kResidualTopk) {
    for (int64_t t = 0; t < n; ++t)
      for (int64_t g = 0; g < G; ++g)
        compress_token(g, buf_tok_[static_cast<size_t>(t)], bk_.data() + (t * G + g) * D,
                       bv_.data() + (t * G + g) * D);
  }
  buf_tok_.clear();
  bk_.clear();
  bv_.clear();
}

// ---- attention (methods.md 1.3 step 4) ----

void OjaKvCache::attend(const float* queries, int64_t T, const int32_t* q_positions, float* out) {
  const int64_t H = info_.H, G = info_.G, D = info_.D;
  if (!prefill_done_) {
    obs_.push(queries, T, q_positions);
    if (p_.prefill_exact) {
      // OjaKV-PF: prompt attention on the exact K/V, token-major [N, G, D].
      const cpu::KvView kv{pk_.data(), pv_.data(), static_cast<int64_t>(pos_.size()),
                           D,          G * D,      pos_.data()};
      cpu::attention(queries, T, q_positions, kv, cpu::AttentionShape{H, G, D, info_.scale}, out,
                     nullptr, *info_.pool);
      return;
    }
  }
  if (p_.latent)
    attend_latent(queries, T, q_positions, out);
  else
    attend_reconstruct(queries, T, q_positions, out);
}

// Tiles of tile_tokens tokens rebuilt to head-major [G, n, D] and run through cpu::attention with
// lse; tiles merge exactly: o = sum_i exp(lse_i - lse) o_i, lse = log sum_i exp(lse_i).
void OjaKvCache::attend_reconstruct(const float* q, int64_t T, const int32_t* q_pos, float* out) {
  const BlasThreads one(1);  // the per-head GEMMs run inside pool tasks
  const int64_t H = info_.H, G = info_.G, D = info_.D, N = static_cast<int64_t>(pos_.size());
  const int64_t tile = p_.tile_tokens;
  const cpu::AttentionShape shape{H, G, D, info_.scale};
  int32_t q_max = std::numeric_limits<int32_t>::min();
  for (int64_t t = 0; t < T; ++t) q_max = std::max(q_max, q_pos[t]);
  std::vector<float> lse(static_cast<size_t>(T * H), kNegInf), o, l;
  std::fill(out, out + T * H * D, 0.f);
  bool first = true;
  for (int64_t s0 = 0; s0 < N; s0 += tile) {
    if (pos_[static_cast<size_t>(s0)] > q_max) break;  // causal: nothing later is visible
    const int64_t n = std::min(tile, N - s0);
    tile_k_.resize(static_cast<size_t>(G * n * D));
    tile_v_.resize(tile_k_.size());
    fill_tile(s0, n, tile_k_.data(), tile_v_.data());
    const cpu::KvView kv{tile_k_.data(), tile_v_.data(), n, n * D, D, pos_.data() + s0};
    if (first) {
      cpu::attention(q, T, q_pos, kv, shape, out, lse.data(), *info_.pool);
      first = false;
      continue;
    }
    o.resize(static_cast<size_t>(T * H * D));
    l.resize(static_cast<size_t>(T * H));
    cpu::attention(q, T, q_pos, kv, shape, o.data(), l.data(), *info_.pool);
    for (int64_t x = 0; x < T * H; ++x) {
      const double la = lse[static_cast<size_t>(x)], lb = l[static_cast<size_t>(x)];
      if (lb == -INFINITY) continue;
      float* oa = out + x * D;
      const float* ob = o.data() + x * D;
      if (la == -INFINITY) {
        std::memcpy(oa, ob, static_cast<size_t>(D) * sizeof(float));
        lse[static_cast<size_t>(x)] = static_cast<float>(lb);
        continue;
      }
      const double m = std::max(la, lb), wa = std::exp(la - m), wb = std::exp(lb - m);
      const double z = wa + wb;
      const float fa = static_cast<float>(wa / z), fb = static_cast<float>(wb / z);
      for (int64_t d = 0; d < D; ++d) oa[d] = fa * oa[d] + fb * ob[d];
      lse[static_cast<size_t>(x)] = static_cast<float>(m + std::log(z));
    }
  }
}

// Latent path (methods.md 1.3 step 4 equivalence): per query row (t, h), KV head g = h / (H/G):
// logits scale * q.k for full-rank tokens and scale * (q U_k).K~ for compressed ones; output
// (sum_full p v + (sum_comp p V~) U_v^T) / sum p. Streams tiles of tile_tokens tokens with an
// online softmax; a tile's coefficients are converted to f32 once and shared by the group's query
// heads and all T queries. Cost per query row: N_full D + N_c (r_k + r_v) + D (r_k + r_v).
void OjaKvCache::attend_latent(const float* q, int64_t T, const int32_t* q_pos, float* out) {
  const int64_t H = info_.H, G = info_.G, D = info_.D, N = static_cast<int64_t>(pos_.size());
  const int64_t group = H / G, tile = p_.tile_tokens, R = T * group;
  const size_t es = dtype_size(p_.coeff_dtype);
  info_.pool->parallel_tasks(G, [&](int64_t g, int) {
    const Head& hd = *heads_[static_cast<size_t>(g)];
    const int64_t rk = hd.rk, rv = hd.rv;
    // Query rows x = t * group + (h - g * group): q U_k [R, r_k], running max, sum, accumulators.
    std::vector<float> ql(static_cast<size_t>(R * rk));
    std::vector<double> m(static_cast<size_t>(R), -INFINITY), z(static_cast<size_t>(R), 0.0);
    std::vector<double> af(static_cast<size_t>(R * D), 0.0), al(static_cast<size_t>(R * rv), 0.0);
    for (int64_t x = 0; x < R; ++x) {
      const float* qh = q + ((x / group) * H + g * group + x % group) * D;
      for (int64_t j = 0; j < rk; ++j) {
        float a = 0.f;
        const float* u = hd.ukT.data() + j * D;
        for (int64_t d = 0; d < D; ++d) a += qh[d] * u[d];
        ql[static_cast<size_t>(x * rk + j)] = a;
      }
    }
    std::vector<float> ckt, cvt, logit;
    for (int64_t s0 = 0; s0 < N; s0 += tile) {
      const int64_t n = std::min(tile, N - s0);
      ckt.assign(static_cast<size_t>(n * rk), 0.f);
      cvt.assign(static_cast<size_t>(n * rv), 0.f);
      for (int64_t j = 0; j < n; ++j) {
        const size_t i = static_cast<size_t>(s0 + j);
        if (hd.state[i] != kCompressed) continue;
        const size_t sl = static_cast<size_t>(hd.slot[i]);
        coeff_to_f32(p_.coeff_dtype, hd.ck.data() + sl * rk * es, ckt.data() + j * rk,
                     static_cast<size_t>(rk));
        coeff_to_f32(p_.coeff_dtype, hd.cv.data() + sl * rv * es, cvt.data() + j * rv,
                     static_cast<size_t>(rv));
      }
      logit.resize(static_cast<size_t>(n));
      for (int64_t x = 0; x < R; ++x) {
        const int64_t t = x / group;
        const float* qh = q + (t * H + g * group + x % group) * D;
        const float* qx = ql.data() + x * rk;
        float mx = -INFINITY;
        for (int64_t j = 0; j < n; ++j) {
          const size_t i = static_cast<size_t>(s0 + j);
          if (pos_[i] > q_pos[t]) {
            logit[static_cast<size_t>(j)] = -INFINITY;
            continue;
          }
          float a = 0.f;
          const uint8_t st = hd.state[i];
          if (st == kCompressed) {
            const float* c = ckt.data() + j * rk;
            for (int64_t r = 0; r < rk; ++r) a += qx[r] * c[r];
          } else {
            const int32_t sl = hd.slot[i];
            const float* k = st == kAnchor   ? hd.ak.data() + sl * D
                             : st == kPrompt ? pk_.data() + (sl * G + g) * D
                                             : bk_.data() + (sl * G + g) * D;
            for (int64_t d = 0; d < D; ++d) a += qh[d] * k[d];
          }
          a *= info_.scale;
          logit[static_cast<size_t>(j)] = a;
          mx = std::max(mx, a);
        }
        if (mx == -INFINITY) continue;
        double& mr = m[static_cast<size_t>(x)];
        if (mx > mr) {  // rescale what was accumulated under the old maximum
          const double f = mr == -INFINITY ? 0.0 : std::exp(mr - mx);
          z[static_cast<size_t>(x)] *= f;
          for (int64_t d = 0; d < D; ++d) af[static_cast<size_t>(x * D + d)] *= f;
          for (int64_t r = 0; r < rv; ++r) al[static_cast<size_t>(x * rv + r)] *= f;
          mr = mx;
        }
        double* fx = af.data() + x * D;
        double* lx = al.data() + x * rv;
        for (int64_t j = 0; j < n; ++j) {
          const float lj = logit[static_cast<size_t>(j)];
          if (lj == -INFINITY) continue;
          const double p = std::exp(static_cast<double>(lj) - mr);
          z[static_cast<size_t>(x)] += p;
          const size_t i = static_cast<size_t>(s0 + j);
          const uint8_t st = hd.state[i];
          if (st == kCompressed) {
            const float* c = cvt.data() + j * rv;
            for (int64_t r = 0; r < rv; ++r) lx[r] += p * c[r];
          } else {
            const int32_t sl = hd.slot[i];
            const float* v = st == kAnchor   ? hd.av.data() + sl * D
                             : st == kPrompt ? pv_.data() + (sl * G + g) * D
                                             : bv_.data() + (sl * G + g) * D;
            for (int64_t d = 0; d < D; ++d) fx[d] += p * v[d];
          }
        }
      }
    }
    for (int64_t x = 0; x < R; ++x) {
      float* oh = out + ((x / group) * H + g * group + x % group) * D;
      const double zx = z[static_cast<size_t>(x)];
      if (zx == 0.0) {
        std::fill(oh, oh + D, 0.f);
        continue;
      }
      double* fx = af.data() + x * D;
      for (int64_t r = 0; r < rv; ++r) {
        const double lr = al[static_cast<size_t>(x * rv + r)];
        const float* u = hd.uvT.data() + r * D;
        for (int64_t d = 0; d < D; ++d) fx[d] += lr * u[d];
      }
      for (int64_t d = 0; d < D; ++d) oh[d] = static_cast<float>(fx[d] / zx);
    }
  });
}

// ---- accounting and traces ----

OjaKvCache::Tiers OjaKvCache::tiers() const {
  Tiers r;
  const int64_t G = info_.G, D = info_.D, N = static_cast<int64_t>(pos_.size());
  const int64_t es = static_cast<int64_t>(dtype_size(p_.coeff_dtype));
  for (const auto& h : heads_) {
    r.anchors += h->n_anchor * 2 * D * 4;
    r.coefficients += h->n_coeff * (h->rk + h->rv) * es;
    r.bases += D * (h->rk + h->rv) * 8;
    r.workspace += D * (h->rk + h->rv) * 4 + static_cast<int64_t>(h->free_slots.size()) * 2 * D * 4;
  }
  r.buffer = static_cast<int64_t>(buf_tok_.size()) * G * 2 * D * 4 +
             static_cast<int64_t>(pk_.size() + pv_.size()) * 4;
  r.index = N * 4 + N * G * 5;
  for (const auto& sp : surv_pos_) r.index += static_cast<int64_t>(sp.size()) * 4;
  r.workspace += static_cast<int64_t>(tile_k_.capacity() + tile_v_.capacity()) * 4 + obs_.bytes();
  return r;
}

OjaKvCache::Tokens OjaKvCache::tokens() const {
  Tokens r;
  for (const auto& h : heads_)
    for (uint8_t s : h->state) {
      if (s == kAnchor || s == kPrompt)
        ++r.anchor;
      else if (s == kCompressed)
        ++r.compressed;
      else
        ++r.buffered;
    }
  return r;
}

// device: anchors + coefficients + bases + buffer + index; tokens per layer (every KV head holds
// the same counts: positional sets are shared, residual sets have k_full each).
MemoryReport OjaKvCache::memory() const {
  const Tiers t = tiers();
  const Tokens n = tokens();
  MemoryReport r;
  r.device_bytes = t.anchors + t.coefficients + t.bases + t.buffer + t.index;
  r.workspace_bytes = t.workspace;
  const int64_t G = info_.G;
  r.full_tokens = (n.anchor + n.buffered) / G;
  r.compressed_tokens = n.compressed / G;
  r.evicted_tokens = evicted_;
  return r;
}

// methods.md 1.9: per KV head and basis, one row per Oja step (orthonormality error, ||dU||_F,
// tr C, effective step, tokens seen, prefill flag), written once; bytes per tier and tokens per
// state appended as a snapshot on every call.
void OjaKvCache::trace(TraceSink& sink) const {
  const std::string L = str(method_, "/layer_", info_.layer < 10 ? "0" : "", info_.layer);
  for (; traced_ < log_.size(); ++traced_) {
    const Update& u = log_[traced_];
    const std::string b = str(L, "/head_", u.g < 10 ? "0" : "", u.g, u.key ? "/k/" : "/v/");
    sink.append_scalar(b + "orthonormality_error", u.s.orth_error, "1");
    sink.append_scalar(b + "basis_delta", u.s.delta, "1");
    sink.append_scalar(b + "trace_c", u.trace_c, "activation^2");
    sink.append_scalar(b + "effective_step", u.s.step, "1");
    sink.append_scalar(b + "tokens_seen", static_cast<double>(u.token), "tokens");
    sink.append_scalar(b + "prefill", u.prefill ? 1.0 : 0.0, "bool");
    sink.append_scalar(b + "update_seconds", u.seconds, "s");
  }
  if (!anchors_traced_ && prefill_done_) {  // residual_topk selection, once (methods.md 1.9)
    anchors_traced_ = true;
    for (int64_t g = 0; g < info_.G; ++g) {
      const Head& h = *heads_[static_cast<size_t>(g)];
      if (h.anchor_pos.empty()) continue;
      const std::string b = str(L, "/head_", g < 10 ? "0" : "", g);
      sink.append_row(b + "/anchor_positions", h.anchor_pos, "position");
      sink.append_row(b + "/anchor_scores", h.anchor_score, "||r|| x attention");
    }
  }
  const Tiers t = tiers();
  sink.append_scalar(L + "/bytes/anchors", static_cast<double>(t.anchors), "bytes");
  sink.append_scalar(L + "/bytes/coefficients", static_cast<double>(t.coefficients), "bytes");
  sink.append_scalar(L + "/bytes/bases", static_cast<double>(t.bases), "bytes");
  sink.append_scalar(L + "/bytes/buffer", static_cast<double>(t.buffer), "bytes");
  sink.append_scalar(L + "/bytes/index", static_cast<double>(t.index), "bytes");
  sink.append_scalar(L + "/bytes/workspace", static_cast<double>(t.workspace), "bytes");
  // Achieved ratio: device bytes against a full f32 cache of every token seen, evicted ones
  // included (FullCache's layout).
  const double full =
      static_cast<double>(seen_) * static_cast<double>(2 * info_.G * info_.D * 4 + 4);
  sink.append_scalar(L + "/bytes/ratio_to_full",
                     full > 0 ? static_cast<double>(memory().device_bytes) / full : 0.0, "1");
  const Tokens n = tokens();
  sink.append_scalar(L + "/tokens/anchor", static_cast<double>(n.anchor), "token-heads");
  sink.append_scalar(L + "/tokens/compressed", static_cast<double>(n.compressed), "token-heads");
  sink.append_scalar(L + "/tokens/buffered", static_cast<double>(n.buffered), "token-heads");
  if (p_.compose != OjaKvParams::Compose::kNone)
    sink.append_scalar(L + "/tokens/evicted", static_cast<double>(evicted_), "tokens per KV head");
  for (int64_t g = 0; g < info_.G; ++g) {
    const Head& h = *heads_[static_cast<size_t>(g)];
    const std::string b = str(L, "/head_", g < 10 ? "0" : "", g);
    sink.append_scalar(b + "/rank_k", static_cast<double>(h.rk), "1");
    sink.append_scalar(b + "/rank_v", static_cast<double>(h.rv), "1");
  }
}

// ---- construction from declared parameters and registration ----

OjaKvParams check_ojakv_params(const ParamValues& v, const std::string& method) {
  const OjaKvParams p = OjaKvParams::from_values(v, method);
  if (p.bases.empty())
    throw Error(str(method,
                    ".bases: a calibrated bases file is required (kvlab calibrate "
                    "--out PATH, then bases: PATH)"));
  if (!std::filesystem::is_regular_file(p.bases))
    throw Error(str(method, ".bases: no such file '", p.bases,
                    "' (make it with kvlab calibrate --model DIR --dataset SPEC --out ", p.bases,
                    ")"));
  return p;
}

std::unique_ptr<kv::KvCache> make_ojakv_cache(const kv::LayerInfo& info, const ParamValues& v,
                                              const std::string& method) {
  const OjaKvParams p = check_ojakv_params(v, method);
  return std::make_unique<OjaKvCache>(info, p, io::load_bases_h5_cached(p.bases), method);
}

namespace {
kv::KvMethod make_method() {
  return kv::KvMethod{
      "ojakv",
      "OjaKV (arXiv 2509.21623; Findings of ACL 2026): per layer and KV head, key and value bases "
      "initialised from calibrated eigenbases (bases, rank_mode) and adapted with Oja's rule "
      "U <- qr(U + eta (C U - U U^T C U)) at end of prefill (salient, mean-pooled prompt tokens) "
      "and every update_period decode tokens; anchors (positional first/recent, or top-k by "
      "attention-weighted residual) stay full-rank, the rest as coefficients k U_k, v U_v. "
      "Attention reconstructs tiles or runs in latent space. prefill_attention exact = OjaKV-PF; "
      "online_update false = StaticPCA(-H).",
      ojakv_params(),
      [](const kv::LayerInfo& info, const ParamValues& p) { return make_ojakv_cache(info, p); },
      [](const ParamValues& p) { check_ojakv_params(p, "ojakv"); }};
}
}  // namespace

KVLAB_REGISTER_KV_METHOD(ojakv, make_method());

}  // namespace kvlab::methods
