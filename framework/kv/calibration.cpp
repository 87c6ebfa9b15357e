#include "framework/kv/calibration.h"

#include <vector>

#include "framework/core/error.h"

namespace kvlab::kv {

CalibrationFrame parse_calibration_frame(const std::string& s, const std::string& key) {
  if (s == "post_rope") return CalibrationFrame::post_rope;
  if (s == "pre_rope") return CalibrationFrame::pre_rope;
  fail(key, ": frame must be post_rope or pre_rope, got '", s, "'");
}

const char* calibration_frame_name(CalibrationFrame f) {
  return f == CalibrationFrame::pre_rope ? "pre_rope" : "post_rope";
}

CalibrationStats::CalibrationStats(int64_t n_layers, int64_t H, int64_t G, int64_t D,
                                   CalibrationFrame frame)
    : L_(n_layers), H_(H), G_(G), D_(D), frame_(frame) {
  KVLAB_CHECK(L_ > 0 && G_ > 0 && D_ > 0 && H_ % G_ == 0)
      << "L=" << L_ << " H=" << H_ << " G=" << G_ << " D=" << D_;
  for (auto* v : {&sq_, &sk_, &sv_}) v->assign(static_cast<size_t>(L_ * G_), linalg::Mat(D_, D_));
  nq_.assign(static_cast<size_t>(L_), 0);
  nk_.assign(static_cast<size_t>(L_), 0);
}

namespace {
// x [T, n_heads, D] in the requested frame: the input itself (post-RoPE) or an un-rotated copy.
const float* in_frame(CalibrationFrame frame, const float* x, int64_t T, int64_t n_heads, int64_t D,
                      const int32_t* positions, const cpu::Rope* rope, std::vector<float>& copy) {
  if (frame == CalibrationFrame::post_rope) return x;
  KVLAB_CHECK(rope != nullptr) << "pre_rope calibration needs LayerInfo.rope";
  copy.assign(x, x + T * n_heads * D);
  rope->unapply(copy.data(), T, n_heads, positions);
  return copy.data();
}

void run_tasks(ThreadPool* pool, int64_t n, const std::function<void(int64_t, int)>& fn) {
  if (pool) {
    pool->parallel_tasks(n, fn);
  } else {
    for (int64_t i = 0; i < n; ++i) fn(i, 0);
  }
}
}  // namespace

void CalibrationStats::add_keys_values(int64_t layer, const float* keys, const float* values,
                                       int64_t T, const int32_t* positions, const cpu::Rope* rope,
                                       ThreadPool* pool) {
  KVLAB_CHECK(layer >= 0 && layer < L_) << "layer " << layer;
  std::vector<float> copy;
  const float* k = in_frame(frame_, keys, T, G_, D_, positions, rope, copy);
  // Task 2g: keys of head g, task 2g+1: its values; rows strided by G*D in [T, G, D].
  run_tasks(pool, 2 * G_, [&](int64_t task, int) {
    const int64_t g = task / 2;
    if (task % 2 == 0)
      linalg::add_gram(slot(sk_, layer, g), k + g * D_, T, D_, G_ * D_);
    else
      linalg::add_gram(slot(sv_, layer, g), values + g * D_, T, D_, G_ * D_);
  });
  nk_[static_cast<size_t>(layer)] += T;
}

void CalibrationStats::add_queries(int64_t layer, const float* queries, int64_t T,
                                   const int32_t* positions, const cpu::Rope* rope,
                                   ThreadPool* pool) {
  KVLAB_CHECK(layer >= 0 && layer < L_) << "layer " << layer;
  std::vector<float> copy;
  const float* q = in_frame(frame_, queries, T, H_, D_, positions, rope, copy);
  const int64_t rep = H_ / G_;
  // One task per KV head g: the query heads g*rep .. g*rep+rep-1 of [T, H, D], rows strided H*D.
  run_tasks(pool, G_, [&](int64_t g, int) {
    for (int64_t h = g * rep; h < (g + 1) * rep; ++h)
      linalg::add_gram(slot(sq_, layer, g), q + h * D_, T, D_, H_ * D_);
  });
  nq_[static_cast<size_t>(layer)] += T * rep;
}

linalg::Mat CalibrationStats::moment(BasisKind kind, int64_t layer, int64_t g) const {
  KVLAB_CHECK(layer >= 0 && layer < L_ && g >= 0 && g < G_) << "layer " << layer << " g " << g;
  const size_t i = static_cast<size_t>(layer * G_ + g);
  const int64_t nk = nk_[static_cast<size_t>(layer)], nq = nq_[static_cast<size_t>(layer)];
  if (nk == 0) fail("calibration: layer ", layer, " saw no keys");
  linalg::Mat m(D_, D_);
  if (kind == BasisKind::v) {
    for (size_t j = 0; j < m.a.size(); ++j) m.a[j] = sv_[i].a[j] / static_cast<double>(nk);
    return m;
  }
  for (size_t j = 0; j < m.a.size(); ++j) m.a[j] = sk_[i].a[j] / static_cast<double>(nk);
  if (kind == BasisKind::qk) {
    if (nq == 0) fail("calibration: layer ", layer, " saw no queries (attend() never called)");
    for (size_t j = 0; j < m.a.size(); ++j) m.a[j] += sq_[i].a[j] / static_cast<double>(nq);
  }
  return m;
}

Bases CalibrationStats::bases(const std::string& source, int64_t tokens) const {
  Bases b;
  b.n_layers = L_;
  b.G = G_;
  b.D = D_;
  b.frame = calibration_frame_name(frame_);
  b.source = source;
  b.tokens = tokens;
  for (auto* v : {&b.qk, &b.k, &b.v}) v->resize(static_cast<size_t>(L_ * G_));
  for (int64_t l = 0; l < L_; ++l)
    for (int64_t g = 0; g < G_; ++g) {
      const size_t i = static_cast<size_t>(l * G_ + g);
      for (BasisKind kind : {BasisKind::qk, BasisKind::k, BasisKind::v}) {
        linalg::SymEig e = linalg::sym_eig(moment(kind, l, g));
        // Round-off can leave tiny negative eigenvalues of a PSD moment; the file stores >= 0.
        for (double& x : e.values) x = x < 0 ? 0 : x;
        Eigenbasis& out = kind == BasisKind::qk ? b.qk[i] : kind == BasisKind::k ? b.k[i] : b.v[i];
        out.vectors = std::move(e.vectors);
        out.values = std::move(e.values);
      }
    }
  return b;
}

CalibrationRecorder::CalibrationRecorder(const LayerInfo& info, std::unique_ptr<KvCache> inner,
                                         std::shared_ptr<CalibrationStats> stats)
    : info_(info), inner_(std::move(inner)), stats_(std::move(stats)) {
  KVLAB_CHECK(inner_ && stats_) << "recorder needs an inner cache and stats";
  KVLAB_CHECK(info_.layer >= 0 && info_.layer < stats_->n_layers())
      << "layer " << info_.layer << " of " << stats_->n_layers();
  KVLAB_CHECK(info_.H == stats_->query_heads() && info_.G == stats_->kv_heads() &&
              info_.D == stats_->head_dim())
      << "layer shape H=" << info_.H << " G=" << info_.G << " D=" << info_.D
      << " differs from the calibration stats'";
}

void CalibrationRecorder::append(const float* keys, const float* values, int64_t T,
                                 const int32_t* positions) {
  stats_->add_keys_values(info_.layer, keys, values, T, positions, info_.rope, info_.pool);
  inner_->append(keys, values, T, positions);
}

void CalibrationRecorder::attend(const float* queries, int64_t T, const int32_t* q_positions,
                                 float* out) {
  stats_->add_queries(info_.layer, queries, T, q_positions, info_.rope, info_.pool);
  inner_->attend(queries, T, q_positions, out);
}

KvFactory make_calibration_factory(KvFactory inner, std::shared_ptr<CalibrationStats> stats) {
  return [inner = std::move(inner), stats = std::move(stats)](const LayerInfo& info) {
    return std::unique_ptr<KvCache>(new CalibrationRecorder(info, inner(info), stats));
  };
}

}  // namespace kvlab::kv
