#include "experiments/fidelity/fidelity.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "framework/core/error.h"

namespace kvlab::experiments::fidelity {

namespace {

std::string two_digits(const char* prefix, int64_t i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s%02lld", prefix, static_cast<long long>(i));
  return buf;
}

constexpr double kRadToDeg = 180.0 / M_PI;

// tr(U^T C U) for C [D, D], U [D, r]: the energy of C captured by span(U). Cost O(D^2 r).
double captured(const linalg::Mat& C, const linalg::Mat& U) {
  const linalg::Mat CU = linalg::matmul(C, U);
  double s = 0;
  for (int64_t i = 0; i < U.rows; ++i)
    for (int64_t j = 0; j < U.cols; ++j) s += U(i, j) * CU(i, j);
  return s;
}

double trace_of(const linalg::Mat& C) {
  double s = 0;
  for (int64_t i = 0; i < C.rows; ++i) s += C(i, i);
  return s;
}

}  // namespace

void FidelityLog::add(int64_t layer, int64_t head, const std::string& name, double value,
                      const std::string& unit) {
  KVLAB_CHECK(probe_ >= 0) << "FidelityLog::add before begin_probe";
  recs_.push_back({name, layer, head, probe_, value});
  if (!trace_) return;
  std::string path = "steps/" + two_digits("layer_", layer) + "/";
  if (head >= 0) path += "head_" + std::to_string(head) + "/";
  trace_->append_scalar(path + name, value, unit);
}

nlohmann::json FidelityLog::summary(int64_t n_layers) const {
  struct Acc {
    double sum = 0, max = -INFINITY, min = INFINITY, last_sum = 0;
    int64_t n = 0, last_n = 0;
    std::vector<double> layer_sum;
    std::vector<int64_t> layer_n;
  };
  std::map<std::string, Acc> acc;
  for (const Rec& r : recs_) {
    if (std::isnan(r.value)) continue;
    Acc& a = acc[r.name];
    if (a.layer_sum.empty()) {
      a.layer_sum.assign(static_cast<size_t>(n_layers), 0.0);
      a.layer_n.assign(static_cast<size_t>(n_layers), 0);
    }
    a.sum += r.value;
    a.max = std::max(a.max, r.value);
    a.min = std::min(a.min, r.value);
    ++a.n;
    if (r.probe == probe_) {
      a.last_sum += r.value;
      ++a.last_n;
    }
    a.layer_sum[static_cast<size_t>(r.layer)] += r.value;
    ++a.layer_n[static_cast<size_t>(r.layer)];
  }
  nlohmann::json metrics = nlohmann::json::object(), by_layer = nlohmann::json::object();
  for (const auto& [name, a] : acc) {
    metrics[name] = {{"mean", a.sum / a.n},
                     {"max", a.max},
                     {"min", a.min},
                     {"count", a.n},
                     {"final_mean", a.last_n ? nlohmann::json(a.last_sum / a.last_n) : nullptr}};
    nlohmann::json per = nlohmann::json::array();
    for (int64_t l = 0; l < n_layers; ++l)
      per.push_back(a.layer_n[l] ? nlohmann::json(a.layer_sum[l] / a.layer_n[l]) : nullptr);
    by_layer[name] = per;
  }
  return {{"metrics", metrics}, {"by_layer", by_layer}};
}

ShadowCache::ShadowCache(const kv::LayerInfo& info, std::unique_ptr<kv::KvCache> inner,
                         std::shared_ptr<FidelityLog> log)
    : info_(info), inner_(std::move(inner)), log_(std::move(log)), exact_(info) {
  KVLAB_CHECK(inner_ && log_) << "shadow needs an inner cache and a log";
  insp_ = inspect(*inner_);
  gram_k_.assign(static_cast<size_t>(info_.G), linalg::Mat(info_.D, info_.D));
  gram_v_.assign(static_cast<size_t>(info_.G), linalg::Mat(info_.D, info_.D));
}

void ShadowCache::append(const float* keys, const float* values, int64_t T,
                         const int32_t* positions) {
  const int64_t G = info_.G, D = info_.D;
  if (!has_init_) {
    // The bases the cache starts from (calibration), before it sees any token.
    has_init_ = true;
    has_basis_ = insp_->basis(0, true) != nullptr;
    for (int64_t g = 0; has_basis_ && g < G; ++g) {
      init_k_.push_back(*insp_->basis(g, true));
      init_v_.push_back(*insp_->basis(g, false));
    }
  }
  exact_.append(keys, values, T, positions);
  // Key moments in the basis' frame: un-rotated copies when the method keeps pre-RoPE bases.
  std::vector<float> pre;
  const float* k = keys;
  if (insp_->basis_pre_rope()) {
    KVLAB_CHECK(info_.rope) << "pre-RoPE basis needs LayerInfo.rope";
    pre.assign(keys, keys + T * G * D);
    info_.rope->unapply(pre.data(), T, G, positions);
    k = pre.data();
  }
  for (int64_t g = 0; g < G; ++g) {
    linalg::add_gram(gram_k_[g], k + g * D, T, D, G * D);
    linalg::add_gram(gram_v_[g], values + g * D, T, D, G * D);
  }
  n_ += T;
  inner_->append(keys, values, T, positions);
}

void ShadowCache::attend(const float* queries, int64_t T, const int32_t* q_positions, float* out) {
  inner_->attend(queries, T, q_positions, out);
  if (T < 1) return;
  const int64_t HD = info_.H * info_.D;
  last_q_.assign(queries + (T - 1) * HD, queries + T * HD);
  last_out_.assign(out + (T - 1) * HD, out + T * HD);
  last_qpos_ = q_positions[T - 1];
  has_query_ = true;
}

void ShadowCache::probe(bool with_attention) {
  with_attention = with_attention && has_query_;
  for (int64_t g = 0; g < info_.G; ++g) {
    probe_attention(g, with_attention);
    if (has_basis_) probe_basis(g);
  }
  probe_bytes();
}

// methods.md 1.9 "attention-logit error": for the last query row q (query heads of group g) over
// every token visible at its position. Logits in f64 from the f32 rows, so identical rows give
// identical logits and exactly zero errors.
void ShadowCache::probe_attention(int64_t g, bool with_attention) {
  const int64_t D = info_.D, H = info_.H, rep = H / info_.G, L = info_.layer;
  const double scale = info_.scale;  // 1/sqrt(D)
  std::vector<float> Km, Vm;
  std::vector<int32_t> pm;
  const bool mat = insp_->materialize(g, &Km, &Vm, &pm);
  const cpu::KvView ex = exact_.view();
  const float* Kx = ex.k + g * ex.head_stride;  // rows s * ex.row_stride
  const float* Vx = ex.v + g * ex.head_stride;
  const int64_t N = ex.S;
  const bool same_tokens =
      mat && static_cast<int64_t>(pm.size()) == N && std::equal(pm.begin(), pm.end(), ex.pos);

  // Reconstruction error over every token held (materialised methods).
  double rk = kNaN, rv = kNaN;
  if (same_tokens) {
    double ek = 0, nk = 0, ev = 0, nv = 0;
    for (int64_t s = 0; s < N; ++s)
      for (int64_t i = 0; i < D; ++i) {
        const double k = Kx[s * ex.row_stride + i], v = Vx[s * ex.row_stride + i];
        ek += (k - Km[s * D + i]) * (k - Km[s * D + i]);
        ev += (v - Vm[s * D + i]) * (v - Vm[s * D + i]);
        nk += k * k;
        nv += v * v;
      }
    rk = nk > 0 ? ek / nk : 0;
    rv = nv > 0 ? ev / nv : 0;
  }
  log_->add(L, g, "k_recon_err", rk, "ratio");
  log_->add(L, g, "v_recon_err", rv, "ratio");
  if (has_basis_ && mat) {
    if (same_tokens) {
      probe_staleness(g, Km, Vm);
    } else {
      for (const char* n : {"k_compressed_recon_err", "k_stale_err", "v_compressed_recon_err",
                            "v_stale_err"})
        log_->add(L, g, n, kNaN, "ratio");
      log_->add(L, g, "coeff_tokens", kNaN, "tokens");
    }
  }

  double err_sum = 0, err_max = 0, bnd_sum = 0, bnd_max = 0, kl_sum = 0, out_sum = 0, out_max = 0;
  int64_t n_logits = 0;
  bool have_logits = false;
  if (with_attention) {
    // Exact output: the full cache's attention on the same query (same kernel, same data as a
    // full_cache method would run, so a full_cache method's output matches bit for bit).
    std::vector<float> o(static_cast<size_t>(H * D));
    exact_.attend(last_q_.data(), 1, &last_qpos_, o.data());
    std::vector<double> l(static_cast<size_t>(N)), lm(static_cast<size_t>(N));
    for (int64_t h = g * rep; h < (g + 1) * rep; ++h) {
      const float* q = last_q_.data() + h * D;
      double on = 0, od = 0;
      for (int64_t i = 0; i < D; ++i) {
        const double d = static_cast<double>(o[h * D + i]) - last_out_[h * D + i];
        od += d * d;
        on += static_cast<double>(o[h * D + i]) * o[h * D + i];
      }
      const double rel = on > 0 ? std::sqrt(od / on) : std::sqrt(od);
      out_sum += rel;
      out_max = std::max(out_max, rel);
      if (!same_tokens) continue;
      have_logits = true;
      double qn = 0;
      for (int64_t i = 0; i < D; ++i) qn += static_cast<double>(q[i]) * q[i];
      qn = std::sqrt(qn);
      int64_t n = 0;  // visible tokens: positions <= the query's
      double mx = -INFINITY, mxm = -INFINITY;
      for (int64_t s = 0; s < N && ex.pos[s] <= last_qpos_; ++s, ++n) {
        double a = 0, b = 0, r2 = 0;
        for (int64_t i = 0; i < D; ++i) {
          const double k = Kx[s * ex.row_stride + i], km = Km[s * D + i];
          a += q[i] * k;
          b += q[i] * km;
          r2 += (k - km) * (k - km);
        }
        l[s] = a * scale;
        lm[s] = b * scale;
        const double err = std::fabs(l[s] - lm[s]);       // |q.k - q.k^| / sqrt(D)
        const double bound = qn * std::sqrt(r2) * scale;  // ||q|| ||k - k^|| / sqrt(D)
        err_sum += err;
        err_max = std::max(err_max, err);
        bnd_sum += bound;
        bnd_max = std::max(bnd_max, bound);
        mx = std::max(mx, l[s]);
        mxm = std::max(mxm, lm[s]);
      }
      n_logits += n;
      // KL(p || p^) = sum_s p_s (log p_s - log p^_s), log-softmax in f64.
      double z = 0, zm = 0;
      for (int64_t s = 0; s < n; ++s) {
        z += std::exp(l[s] - mx);
        zm += std::exp(lm[s] - mxm);
      }
      const double lse = mx + std::log(z), lsem = mxm + std::log(zm);
      double kl = 0;
      for (int64_t s = 0; s < n; ++s) {
        const double lp = l[s] - lse, lpm = lm[s] - lsem;
        kl += std::exp(lp) * (lp - lpm);
      }
      kl_sum += std::max(0.0, kl);  // >= 0 in exact arithmetic; clamps round-off
    }
  }
  log_->add(L, g, "out_rel_err", with_attention ? out_sum / rep : kNaN, "ratio");
  log_->add(L, g, "out_rel_err_max", with_attention ? out_max : kNaN, "ratio");
  const bool lg = have_logits && n_logits > 0;
  log_->add(L, g, "logit_err_mean", lg ? err_sum / n_logits : kNaN, "logit");
  log_->add(L, g, "logit_err_max", lg ? err_max : kNaN, "logit");
  log_->add(L, g, "logit_bound_mean", lg ? bnd_sum / n_logits : kNaN, "logit");
  log_->add(L, g, "logit_bound_max", lg ? bnd_max : kNaN, "logit");
  log_->add(L, g, "attn_kl", lg ? kl_sum / rep : kNaN, "nats");
}

// methods.md 1.9 "reconstruction error ... on all compressed tokens" and "staleness error": over
// the tokens of head g not held full-rank, ||X - X^||^2 / ||X||^2 and ||X^ - X U U^T||^2 / ||X||^2
// (X^ what attention sees, X U U^T the re-projection with the current basis), keys in the basis'
// frame (X^ un-rotated too when the basis is pre-RoPE). Cost O(N D r).
void ShadowCache::probe_staleness(int64_t g, const std::vector<float>& Km,
                                  const std::vector<float>& Vm) {
  const int64_t D = info_.D, L = info_.layer;
  const cpu::KvView ex = exact_.view();
  const int64_t N = ex.S;
  const auto full = insp_->full_rank_positions(g);
  std::vector<char> compressed(static_cast<size_t>(N), 1);
  if (full) {
    // Both lists ascending.
    size_t j = 0;
    for (int64_t s = 0; s < N; ++s) {
      while (j < full->size() && (*full)[j] < ex.pos[s]) ++j;
      if (j < full->size() && (*full)[j] == ex.pos[s]) compressed[s] = 0;
    }
  }
  int64_t nc = 0;
  for (char c : compressed) nc += c;
  for (bool key : {true, false}) {
    const linalg::Mat& U = *insp_->basis(g, key);
    const int64_t r = U.cols;
    const float* X = (key ? ex.k : ex.v) + g * ex.head_stride;
    const std::vector<float>& Xm = key ? Km : Vm;
    std::vector<float> x(static_cast<size_t>(D)), xm(static_cast<size_t>(D));
    std::vector<double> c(static_cast<size_t>(r));
    double e_rec = 0, e_stale = 0, norm = 0;
    for (int64_t s = 0; s < N; ++s) {
      if (!compressed[s]) continue;
      std::copy(X + s * ex.row_stride, X + s * ex.row_stride + D, x.begin());
      std::copy(Xm.begin() + s * D, Xm.begin() + (s + 1) * D, xm.begin());
      if (key && insp_->basis_pre_rope()) {
        info_.rope->unapply(x.data(), 1, 1, ex.pos + s);
        info_.rope->unapply(xm.data(), 1, 1, ex.pos + s);
      }
      std::fill(c.begin(), c.end(), 0.0);
      for (int64_t i = 0; i < D; ++i)
        for (int64_t j = 0; j < r; ++j) c[j] += x[i] * U(i, j);
      for (int64_t i = 0; i < D; ++i) {
        double proj = 0;
        for (int64_t j = 0; j < r; ++j) proj += c[j] * U(i, j);
        e_rec += (static_cast<double>(x[i]) - xm[i]) * (static_cast<double>(x[i]) - xm[i]);
        e_stale += (xm[i] - proj) * (xm[i] - proj);
        norm += static_cast<double>(x[i]) * x[i];
      }
    }
    const std::string p = key ? "k_" : "v_";
    log_->add(L, g, p + "compressed_recon_err", nc && norm > 0 ? e_rec / norm : kNaN, "ratio");
    log_->add(L, g, p + "stale_err", nc && norm > 0 ? e_stale / norm : kNaN, "ratio");
  }
  log_->add(L, g, "coeff_tokens", full ? static_cast<double>(nc) : kNaN, "tokens");
}

// methods.md 1.9 "subspace angle to the exact PCA basis over time" and the residual energy ratio.
void ShadowCache::probe_basis(int64_t g) {
  const int64_t L = info_.layer;
  for (bool key : {true, false}) {
    const linalg::Mat* U = insp_->basis(g, key);
    const char* p = key ? "k_" : "v_";
    KVLAB_CHECK(U && U->rows == info_.D && U->cols >= 1) << "basis of head " << g;
    const int64_t r = U->cols;
    linalg::Mat C = key ? gram_k_[g] : gram_v_[g];
    for (double& x : C.a) x /= static_cast<double>(std::max<int64_t>(n_, 1));
    // Exact top-r PCA basis of everything seen so far (uncentred, C = X^T X / n).
    const linalg::Mat P = linalg::sym_eig(C).vectors;
    const linalg::Mat Pr = linalg::leading_columns(P, r);
    const std::vector<double> cs = linalg::principal_cosines(*U, Pr);
    double c2 = 0;
    for (double c : cs) c2 += c * c;
    const double min_cos = cs.empty() ? 1.0 : cs.back();
    log_->add(L, g, std::string(p) + "max_angle_deg", std::acos(min_cos) * kRadToDeg, "degrees");
    log_->add(L, g, std::string(p) + "mean_cos2", c2 / static_cast<double>(cs.size()), "ratio");
    log_->add(L, g, std::string(p) + "proj_dist", linalg::projection_distance(*U, Pr), "frobenius");
    const double tr = trace_of(C);
    log_->add(L, g, std::string(p) + "rer",
              tr > 0 ? std::max(0.0, 1.0 - captured(C, *U) / tr) : 0.0, "ratio");
    // The same ratio for the best rank-r subspace (the floor any rank-r basis can reach).
    log_->add(L, g, std::string(p) + "rer_opt",
              tr > 0 ? std::max(0.0, 1.0 - captured(C, Pr) / tr) : 0.0, "ratio");
    const linalg::Mat& U0 = key ? init_k_[g] : init_v_[g];
    const std::vector<double> c0 = linalg::principal_cosines(*U, U0);
    log_->add(L, g, std::string(p) + "angle_to_init_deg",
              c0.empty() ? 0.0 : std::acos(c0.back()) * kRadToDeg, "degrees");
    log_->add(L, g, std::string(p) + "rank", static_cast<double>(r), "dims");
  }
  if (insp_->basis_updates() >= 0 && g == 0)
    log_->add(L, -1, "basis_updates", static_cast<double>(insp_->basis_updates()), "updates");
}

// methods.md 1.9 "memory bytes per tier": the method's accounting against the full cache's for
// the same tokens (S * (2 G D * 4 + 4) bytes: K and V at f32 and an int32 position).
void ShadowCache::probe_bytes() {
  const int64_t L = info_.layer;
  const MemoryReport m = inner_->memory();
  const MemoryReport full = exact_.memory();
  log_->add(L, -1, "kv_device_bytes", static_cast<double>(m.device_bytes), "bytes");
  log_->add(L, -1, "kv_host_bytes", static_cast<double>(m.host_bytes), "bytes");
  log_->add(L, -1, "kv_workspace_bytes", static_cast<double>(m.workspace_bytes), "bytes");
  log_->add(L, -1, "full_kv_bytes", static_cast<double>(full.device_bytes), "bytes");
  log_->add(L, -1, "achieved_ratio",
            full.device_bytes > 0
                ? static_cast<double>(m.device_bytes + m.host_bytes) / full.device_bytes
                : kNaN,
            "ratio");
  log_->add(L, -1, "full_tokens", static_cast<double>(m.full_tokens), "tokens");
  log_->add(L, -1, "compressed_tokens", static_cast<double>(m.compressed_tokens), "tokens");
  log_->add(L, -1, "evicted_tokens", static_cast<double>(m.evicted_tokens), "tokens");
  for (const auto& [name, bytes] : insp_->tier_bytes())
    log_->add(L, -1, "tier_" + name + "_bytes", static_cast<double>(bytes), "bytes");
  for (const auto& [name, n] : insp_->token_states())
    log_->add(L, -1, "state_" + name + "_tokens", static_cast<double>(n), "tokens");
}

kv::KvFactory make_shadow_factory(kv::KvFactory inner, std::shared_ptr<FidelityLog> log) {
  return [inner = std::move(inner), log = std::move(log)](const kv::LayerInfo& info) {
    return std::unique_ptr<kv::KvCache>(new ShadowCache(info, inner(info), log));
  };
}

}  // namespace kvlab::experiments::fidelity
