#include "methods/sgc/sgc.h"

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <queue>

#include "framework/core/error.h"
#include "framework/linalg/linalg.h"
#include "framework/optim/target_modules.h"

namespace kvlab::sgc {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// "auto" (or `word`) -> 0, else an integer >= 1; errors name `key`.
int64_t parse_count(const std::string& key, const std::string& text, const std::string& word) {
  if (text == word) return 0;
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty())
    fail(key, ": expected an integer >= 1 or '", word, "', got '", text, "'");
  if (v < 1) fail(key, " = ", v, " must be >= 1 (or '", word, "')");
  return v;
}

ParamDecl decl(std::string name, ParamDecl::Type t, ParamValue def, std::optional<double> lo,
               std::optional<double> hi, std::vector<std::string> choices, std::string help) {
  ParamDecl d;
  d.name = std::move(name);
  d.type = t;
  d.default_value = std::move(def);
  d.min = lo;
  d.max = hi;
  d.choices = std::move(choices);
  d.help = std::move(help);
  return d;
}

const char* variant_name(Variant v) {
  return v == Variant::kSgc ? "sgc" : v == Variant::kMesgc ? "mesgc" : "cesgc";
}

// Largest s in [1, d/e] with 4 s ln(d/s) <= k (methods.md 3.5); d when k >= d (no compression
// needed). 4 s ln(d/s) increases on [1, d/e], so the scan stops at the first failure.
int64_t auto_sparsity(int64_t k, int64_t d) {
  if (k >= d) return d;
  int64_t best = 1;
  const auto hi = static_cast<int64_t>(static_cast<double>(d) / std::exp(1.0));
  for (int64_t s = 1; s <= hi; ++s) {
    if (4.0 * static_cast<double>(s) * std::log(static_cast<double>(d) / static_cast<double>(s)) >
        static_cast<double>(k))
      break;
    best = s;
  }
  return best;
}

// Indices of the s entries of largest |x[0..d)|, ties to the lower index, ascending. O(d log s).
std::vector<int64_t> top_s(const float* x, int64_t d, int64_t s) {
  std::vector<int64_t> out;
  if (s >= d) {
    out.resize(static_cast<size_t>(d));
    for (int64_t i = 0; i < d; ++i) out[static_cast<size_t>(i)] = i;
    return out;
  }
  using E = std::pair<float, int64_t>;  // (|x|, index)
  auto better = [](const E& a, const E& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  std::priority_queue<E, std::vector<E>, decltype(better)> heap(better);  // top = worst kept
  for (int64_t i = 0; i < d; ++i) {
    const E e{std::fabs(x[i]), i};
    if (static_cast<int64_t>(heap.size()) < s) {
      heap.push(e);
    } else if (better(e, heap.top())) {
      heap.pop();
      heap.push(e);
    }
  }
  out.reserve(static_cast<size_t>(s));
  while (!heap.empty()) out.push_back(heap.top().second), heap.pop();
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::vector<ParamDecl> sgc_param_decls(Variant v) {
  using T = ParamDecl::Type;
  std::vector<ParamDecl> d = {
      decl("variant", T::kChoice, std::string(variant_name(v)), {}, {}, {"sgc", "mesgc", "cesgc"},
           "sgc: one projector per block; mesgc: c chunks sharing one (k/c) x (d/c) projector; "
           "cesgc: SGC on P^T G with P the top-svd_rank left singular vectors (methods.md 3.3)"),
      decl("k", T::kString, std::string("auto"), {}, {}, {},
           "compressed dimension per block (states p, q in R^k), an integer >= 1, or 'auto': "
           "ceil(state_fraction * m * n / 2) rounded up to a multiple of chunks"),
      decl("state_fraction", T::kFloat, 0.0008, 1e-12, 1.0, {},
           "with k = auto: optimizer-state floats 2k per block as a fraction of its m*n "
           "parameters (0.08 %, the reviewers' figure, methods.md 3.5)"),
      decl("s", T::kString, std::string("auto"), {}, {}, {},
           "gradient non-zeros kept per block (top-|g|, ties by lower flat index), an integer in "
           "[1, d] divisible by chunks, or 'auto': per chunk the largest s with "
           "4 s ln(d/s) <= k (3.5)"),
      decl("projection", T::kChoice, std::string("gaussian"), {}, {},
           {"gaussian", "rademacher", "identity"},
           "distribution of A: N(0, 1/k), +-1/sqrt(k); identity is a test hook (needs k = d; with "
           "s = d SGC equals AdamW exactly)"),
      decl("projection_storage", T::kChoice, std::string("regenerate"), {}, {},
           {"stored", "regenerate", "shared_per_shape"},
           "stored: 4*k*d bytes per block; regenerate: columns recomputed from (seed, block, "
           "column) on every use, 0 bytes; shared_per_shape: one stored A per (k/c, d/c)"),
      decl("seed", T::kInt, int64_t{0}, 0.0, {}, {}, "seeds A (recorded with the run)"),
      decl("recovery", T::kChoice, std::string("update"), {}, {}, {"update", "moments"},
           "update: one OMP on the Adam ratio u (Variant A, 3.2); moments: OMP of p and of an EMA "
           "of A(g_s*g_s), ratio in R^d on the recovered support (Variant B)"),
      decl("omp_sparsity", T::kString, std::string("s"), {}, {}, {},
           "OMP atoms s' per block, an integer >= 1 divisible by chunks, or 's' (= s)"),
      decl("omp_tol", T::kFloat, 0.0, 0.0, {}, {},
           "stop OMP early when ||y - A x|| / ||y|| <= omp_tol (0: run all s' atoms)"),
      decl("omp_solver", T::kChoice, std::string("cholesky"), {}, {}, {"cholesky", "qr"},
           "least squares inside OMP: incremental Cholesky of A_L^T A_L, or incremental "
           "Gram-Schmidt QR of A_L"),
      decl("beta1", T::kFloat, 0.9, 0.0, 1.0, {}, "first-moment decay, in [0, 1)"),
      decl("beta2", T::kFloat, 0.999, 0.0, 1.0, {}, "second-moment decay, in [0, 1)"),
      decl("eps", T::kFloat, 1e-8, 0.0, {}, {}, "added to sqrt(q_hat) in the denominator"),
      decl("weight_decay", T::kFloat, 0.0, 0.0, {}, {},
           "decoupled decay: W -= lr*weight_decay*W (blocks with weight decay only; norms and "
           "biases excluded, as in AdamW)"),
      decl("alpha", T::kFloat, 1.0, 0.0, {}, {}, "update scale (GaLore-like): W -= lr*alpha*Delta"),
      decl("chunks", T::kInt, int64_t{v == Variant::kMesgc ? 4 : 1}, 1.0, {}, {},
           "MESGC chunks c: must divide d, k, s and omp_sparsity of every target block; > 1 only "
           "with variant mesgc (default 4 there: the middle of the {1, 4, 16} sweep, 3.5)"),
      decl("svd_rank", T::kInt, int64_t{128}, 1.0, {}, {},
           "CESGC rank r of P (clamped to min(m, n)); GaLore's default rank"),
      decl("svd_refresh", T::kInt, int64_t{200}, 1.0, {}, {},
           "CESGC: recompute P by SVD of the gradient every svd_refresh steps (GaLore default)"),
      decl("diagnostics", T::kBool, false, {}, {}, {},
           "methods.md 3.8 diagnostics for small models: shadow sparse Adam and AdamW per target "
           "block (4 f32 per element of x, in the state) to trace the OMP recovery error, "
           "support recall and the cosine to the AdamW update"),
      decl("target_modules", T::kString, std::string("q,k,v,o,up,down,gate"), {}, {}, {},
           "2-D blocks compressed, by Hugging Face module name (q = q_proj ...); every other "
           "block (norms, embeddings, head) is updated by plain AdamW with the same betas, eps "
           "and weight_decay"),
  };
  for (auto& x : d) {
    if (x.name == "k")
      x.check = [](const ParamValue& v) { parse_count("k", std::get<std::string>(v), "auto"); };
    if (x.name == "s")
      x.check = [](const ParamValue& v) { parse_count("s", std::get<std::string>(v), "auto"); };
    if (x.name == "omp_sparsity")
      x.check = [](const ParamValue& v) {
        parse_count("omp_sparsity", std::get<std::string>(v), "s");
      };
    if (x.name == "target_modules")
      x.check = [](const ParamValue& v) {
        optim::parse_target_modules(std::get<std::string>(v), "target_modules");
      };
  }
  return d;
}

SgcParams sgc_params_from(const ParamValues& v) {
  SgcParams p;
  const std::string& var = v.get_string("variant");
  p.variant = var == "mesgc" ? Variant::kMesgc : var == "cesgc" ? Variant::kCesgc : Variant::kSgc;
  p.k = parse_count("k", v.get_string("k"), "auto");
  p.state_fraction = v.get_float("state_fraction");
  p.s = parse_count("s", v.get_string("s"), "auto");
  p.projection = projection_kind_from(v.get_string("projection"));
  const std::string& st = v.get_string("projection_storage");
  p.storage = st == "stored"             ? Storage::kStored
              : st == "shared_per_shape" ? Storage::kSharedPerShape
                                         : Storage::kRegenerate;
  p.seed = static_cast<uint64_t>(v.get_int("seed"));
  p.recover_moments = v.get_string("recovery") == "moments";
  p.omp_sparsity = parse_count("omp_sparsity", v.get_string("omp_sparsity"), "s");
  p.omp_tol = v.get_float("omp_tol");
  p.omp_solver = v.get_string("omp_solver") == "qr" ? OmpSolver::kQr : OmpSolver::kCholesky;
  p.beta1 = v.get_float("beta1");
  p.beta2 = v.get_float("beta2");
  p.eps = v.get_float("eps");
  p.weight_decay = v.get_float("weight_decay");
  p.alpha = v.get_float("alpha");
  p.chunks = v.get_int("chunks");
  p.svd_rank = v.get_int("svd_rank");
  p.svd_refresh = v.get_int("svd_refresh");
  p.target_modules = optim::parse_target_modules(v.get_string("target_modules"), "target_modules");
  p.diagnostics = v.get_bool("diagnostics");
  return p;
}

namespace {
baselines::AdamWParams inner_adamw(const SgcParams& p) {
  baselines::AdamWParams a;
  a.beta1 = p.beta1;
  a.beta2 = p.beta2;
  a.eps = p.eps;
  a.weight_decay = p.weight_decay;
  return a;
}
}  // namespace

Sgc::Sgc(const SgcParams& p) : p_(p), adamw_(inner_adamw(p)) {
  const char* v = variant_name(p.variant);
  if (p.k < 0) fail(v, ": k = ", p.k, " must be >= 1 (0 = auto)");
  if (!(p.state_fraction > 0 && p.state_fraction <= 1))
    fail(v, ": state_fraction = ", p.state_fraction, " must be in (0, 1]");
  if (p.s < 0) fail(v, ": s = ", p.s, " must be >= 1 (0 = auto)");
  if (p.omp_sparsity < 0) fail(v, ": omp_sparsity = ", p.omp_sparsity, " must be >= 1 (0 = s)");
  if (!(p.omp_tol >= 0)) fail(v, ": omp_tol = ", p.omp_tol, " must be >= 0");
  if (!(p.alpha >= 0)) fail(v, ": alpha = ", p.alpha, " must be >= 0");
  if (p.chunks < 1) fail(v, ": chunks = ", p.chunks, " must be >= 1");
  if (p.chunks > 1 && p.variant != Variant::kMesgc)
    fail(v, ": chunks = ", p.chunks, " applies to variant mesgc only");
  if (p.svd_rank < 1) fail(v, ": svd_rank = ", p.svd_rank, " must be >= 1");
  if (p.svd_refresh < 1) fail(v, ": svd_refresh = ", p.svd_refresh, " must be >= 1");
  if (p.target_modules.empty()) fail(v, ": target_modules is empty");
}

void Sgc::prepare(std::span<const optim::ParamBlock> params) {
  const char* v = variant_name(p_.variant);
  if (prepared_) {
    if (params.size() != names_.size())
      fail(v, ": step got ", params.size(), " parameter blocks, the optimizer holds state for ",
           names_.size());
    for (size_t i = 0; i < params.size(); ++i)
      if (params[i].name != names_[i])
        fail(v, ": parameter block ", i, " is '", params[i].name,
             "', the optimizer's state is for '", names_[i], "'");
    for (const auto& b : blocks_)
      if (params[b.index].shape != std::vector<int64_t>{b.info.m, b.info.n})
        fail(v, ": block '", b.info.name, "' changed shape since the state was made");
    return;
  }
  std::vector<optim::ParamBlock> others;
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& pb = params[i];
    names_.push_back(pb.name);
    if (!optim::is_target_matrix(pb, p_.target_modules)) {
      other_.push_back(i);
      others.push_back(pb);
      continue;
    }
    Block b;
    b.index = i;
    BlockInfo& in = b.info;
    in.name = pb.name;
    in.m = pb.shape[0];
    in.n = pb.shape[1];
    const int64_t c = p_.chunks;
    in.chunks = c;
    in.rank = p_.variant == Variant::kCesgc ? std::min(p_.svd_rank, std::min(in.m, in.n)) : 0;
    in.d = p_.variant == Variant::kCesgc ? in.rank * in.n : in.m * in.n;
    if (in.d < 1) fail(v, ": block '", pb.name, "' is empty");
    if (in.d % c != 0)
      fail(v, ": chunks = ", c, " does not divide d = ", in.d, " of block '", pb.name, "'");
    if (p_.k > 0) {
      in.k = p_.k;
    } else {
      const auto kk = static_cast<int64_t>(
          std::ceil(p_.state_fraction * static_cast<double>(in.m * in.n) / 2.0));
      in.k = std::max<int64_t>(c, (kk + c - 1) / c * c);
    }
    if (in.k % c != 0)
      fail(v, ": chunks = ", c, " does not divide k = ", in.k, " (block '", pb.name, "')");
    b.kc = in.k / c;
    b.dc = in.d / c;
    if (p_.s > 0) {
      if (p_.s > in.d)
        fail(v, ": s = ", p_.s, " exceeds d = ", in.d, " of block '", pb.name, "' (s <= d)");
      if (p_.s % c != 0)
        fail(v, ": chunks = ", c, " does not divide s = ", p_.s, " (block '", pb.name, "')");
      b.sc = p_.s / c;
    } else {
      b.sc = auto_sparsity(b.kc, b.dc);
    }
    in.s = b.sc * c;
    if (p_.omp_sparsity > 0) {
      if (p_.omp_sparsity > in.d)
        fail(v, ": omp_sparsity = ", p_.omp_sparsity, " exceeds d = ", in.d, " of block '", pb.name,
             "'");
      if (p_.omp_sparsity % c != 0)
        fail(v, ": chunks = ", c, " does not divide omp_sparsity = ", p_.omp_sparsity);
      b.spc = p_.omp_sparsity / c;
    } else {
      b.spc = b.sc;
    }
    in.omp_sparsity = b.spc * c;
    if (p_.projection == ProjectionKind::kIdentity && b.kc != b.dc)
      fail(v, ": projection = identity needs k = d, block '", pb.name, "' has k = ", in.k,
           ", d = ", in.d);
    if (p_.storage == Storage::kSharedPerShape) {
      auto& sp = shared_[{b.kc, b.dc}];
      if (!sp)
        sp = std::make_unique<Projector>(
            p_.projection, b.kc, b.dc, p_.seed,
            (1ull << 63) ^
                mix64(static_cast<uint64_t>(b.kc) * 0x100000001b3ull ^ static_cast<uint64_t>(b.dc)),
            /*stored=*/true);
      b.proj = sp.get();
    } else {
      b.own = std::make_unique<Projector>(p_.projection, b.kc, b.dc, p_.seed, i,
                                          p_.storage == Storage::kStored);
      b.proj = b.own.get();
    }
    b.p.assign(static_cast<size_t>(in.k), 0.0f);
    b.q.assign(static_cast<size_t>(in.k), 0.0f);
    if (p_.variant == Variant::kCesgc) b.P.assign(static_cast<size_t>(in.m * in.rank), 0.0f);
    if (p_.diagnostics)
      for (auto* v : {&b.ms, &b.vs, &b.mf, &b.vf}) v->assign(static_cast<size_t>(in.d), 0.0f);
    in.state_bytes = static_cast<int64_t>((b.p.size() + b.q.size() + b.P.size() + b.ms.size() +
                                           b.vs.size() + b.mf.size() + b.vf.size()) *
                                          sizeof(float)) +
                     (b.own ? b.own->bytes() : 0);
    blocks_.push_back(std::move(b));
  }
  adamw_.prepare(others);
  prepared_ = true;
}

void Sgc::step(std::span<optim::ParamBlock> params, double lr) {
  if (!(lr >= 0)) fail(variant_name(p_.variant), ": learning rate ", lr, " must be >= 0");
  prepare(params);
  const int64_t t = step_ + 1;
  std::vector<optim::ParamBlock> others;
  others.reserve(other_.size());
  for (size_t i : other_) others.push_back(params[i]);
  adamw_.step(others, lr);  // its own counter moves in step with step_
  t_sparsify_ = t_project_ = t_omp_ = t_apply_ = 0;
  workspace_bytes_ = 0;
  for (auto& b : blocks_) step_block(b, params[b.index], lr, t);
  step_ = t;
}

void Sgc::step_block(Block& b, optim::ParamBlock& pb, double lr, int64_t t) {
  KVLAB_CHECK(pb.data != nullptr && pb.grad != nullptr)
      << "block '" << pb.name << "' has no data or gradient";
  BlockInfo& in = b.info;
  const int64_t m = in.m, n = in.n, r = in.rank;
  const float* x = pb.grad;  // the vector SGC compresses, [d]
  std::vector<float> xbuf;
  int64_t ws = 0;
  if (p_.variant == Variant::kCesgc) {
    // 3.3 step 1: P = top-r left singular vectors of G (refreshed), R = P^T G [r, n].
    if ((t - 1) % p_.svd_refresh == 0) {
      linalg::Mat G(m, n);
      for (int64_t i = 0; i < m * n; ++i) G.a[static_cast<size_t>(i)] = pb.grad[i];
      const linalg::Svd sv = linalg::svd_thin(G);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t a = 0; a < r; ++a)
          b.P[static_cast<size_t>(i * r + a)] = static_cast<float>(sv.U(i, a));
      ws = std::max<int64_t>(ws, 8 * (m * n + m * std::min(m, n) + std::min(m, n) * n));
    }
    xbuf.assign(static_cast<size_t>(r * n), 0.0f);  // R [r, n] = P^T G, f32 GEMM
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, n, m, 1.0f, b.P.data(), r, pb.grad, n,
                0.0f, xbuf.data(), n);
    x = xbuf.data();
    ws += 4 * r * n;
  }

  const double bc1 = 1.0 - std::pow(p_.beta1, static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(p_.beta2, static_cast<double>(t));
  const float b1 = static_cast<float>(p_.beta1), omb1 = static_cast<float>(1.0 - p_.beta1);
  const float b2 = static_cast<float>(p_.beta2), omb2 = static_cast<float>(1.0 - p_.beta2);
  const float bc2s = static_cast<float>(std::sqrt(bc2));
  const float eps = static_cast<float>(p_.eps);
  const float neg_step = static_cast<float>(-lr * p_.alpha / bc1);
  const OmpOptions oo{b.spc, p_.omp_tol, p_.omp_solver};

  // Decoupled decay first (step 8; the order of baselines/adamw).
  float* w = pb.data;
  if (pb.weight_decay && p_.weight_decay != 0) {
    const float decay = static_cast<float>(1.0 - lr * p_.weight_decay);
    for (int64_t j = 0; j < m * n; ++j) w[j] = w[j] * decay;
  }

  double total = 0, kept = 0, res2 = 0, y2 = 0;
  int64_t iters = 0;
  std::vector<std::pair<int64_t, float>> delta;  // (flat index in x, Delta) over all chunks
  std::vector<int64_t> kept_idx;                 // diagnostics: supp(x_s), flat in x
  const auto kc = static_cast<size_t>(b.kc);
  std::vector<double> cd(kc), y(kc);
  for (int64_t ch = 0; ch < in.chunks; ++ch) {
    const float* xc = x + ch * b.dc;
    auto t0 = Clock::now();
    const std::vector<int64_t> idx = top_s(xc, b.dc, b.sc);  // step 2
    std::vector<double> vals(idx.size());
    for (int64_t j = 0; j < b.dc; ++j) total += static_cast<double>(xc[j]) * xc[j];
    for (size_t e = 0; e < idx.size(); ++e) {
      vals[e] = xc[idx[e]];
      kept += vals[e] * vals[e];
      if (p_.diagnostics) kept_idx.push_back(ch * b.dc + idx[e]);
    }
    t_sparsify_ += since(t0);
    t0 = Clock::now();
    std::fill(cd.begin(), cd.end(), 0.0);
    b.proj->apply_sparse(idx, vals, cd.data());  // step 3: c = A x_s, s/c columns
    float* pc = b.p.data() + ch * b.kc;
    float* qc = b.q.data() + ch * b.kc;
    if (!p_.recover_moments) {
      for (size_t i = 0; i < kc; ++i) {
        const float c = static_cast<float>(cd[i]);
        pc[i] = std::fma(omb1, c, pc[i] * b1);                                             // step 4
        qc[i] = std::fma(omb2 * c, c, qc[i] * b2);                                         // step 5
        y[i] = static_cast<double>((neg_step * pc[i]) / (std::sqrt(qc[i]) / bc2s + eps));  // 6
      }
      t_project_ += since(t0);
      t0 = Clock::now();
      const OmpResult res = omp(*b.proj, y, oo);  // step 7
      t_omp_ += since(t0);
      double yy = 0;
      for (double e : y) yy += e * e;
      y2 += yy;
      res2 += res.residual * res.residual * yy;
      iters += res.iterations;
      ws = std::max(ws, res.workspace_bytes);
      for (size_t e = 0; e < res.support.size(); ++e)
        delta.emplace_back(ch * b.dc + res.support[e], static_cast<float>(res.x[e]));
    } else {
      // Variant B: p = EMA(A x_s), q = EMA(A (x_s * x_s)); recover both, ratio in R^d.
      std::vector<double> sq(vals.size()), cd2(kc, 0.0);
      for (size_t e = 0; e < vals.size(); ++e) sq[e] = vals[e] * vals[e];
      b.proj->apply_sparse(idx, sq, cd2.data());
      std::vector<double> yp(kc), yq(kc);
      for (size_t i = 0; i < kc; ++i) {
        pc[i] = std::fma(omb1, static_cast<float>(cd[i]), pc[i] * b1);
        qc[i] = std::fma(omb2, static_cast<float>(cd2[i]), qc[i] * b2);
        yp[i] = pc[i];
        yq[i] = qc[i];
      }
      t_project_ += since(t0);
      t0 = Clock::now();
      const OmpResult rm = omp(*b.proj, yp, oo);
      const OmpResult rv = omp(*b.proj, yq, oo);
      t_omp_ += since(t0);
      double yy = 0;
      for (double e : yp) yy += e * e;
      y2 += yy;
      res2 += rm.residual * rm.residual * yy;
      iters += rm.iterations + rv.iterations;
      ws = std::max(ws, rm.workspace_bytes + rv.workspace_bytes);
      std::vector<std::pair<int64_t, double>> vh;
      for (size_t e = 0; e < rv.support.size(); ++e) vh.emplace_back(rv.support[e], rv.x[e]);
      std::sort(vh.begin(), vh.end());
      for (size_t e = 0; e < rm.support.size(); ++e) {
        const auto it = std::lower_bound(vh.begin(), vh.end(),
                                         std::pair<int64_t, double>{rm.support[e], -1e300});
        if (it == vh.end() || it->first != rm.support[e] || !(it->second > 0)) continue;
        const float mh = static_cast<float>(rm.x[e]), vv = static_cast<float>(it->second);
        if (!(vv > 0)) continue;
        delta.emplace_back(ch * b.dc + rm.support[e],
                           (neg_step * mh) / (std::sqrt(vv) / bc2s + eps));
      }
    }
  }
  std::sort(delta.begin(), delta.end());
  if (p_.diagnostics) diagnose(b, x, kept_idx, delta, t, lr);
  // Step 8: W += -lr alpha Delta (CESGC: mapped back through P).
  auto t0 = Clock::now();
  if (p_.variant != Variant::kCesgc) {
    for (const auto& [j, dv] : delta) w[j] = w[j] + dv;
  } else {
    std::vector<double> dW(static_cast<size_t>(m * n), 0.0);
    for (const auto& [j, dv] : delta) {
      const int64_t a = j / n, col = j % n;
      for (int64_t i = 0; i < m; ++i)
        dW[static_cast<size_t>(i * n + col)] +=
            static_cast<double>(b.P[static_cast<size_t>(i * r + a)]) * dv;
    }
    for (int64_t j = 0; j < m * n; ++j)
      w[j] = w[j] + static_cast<float>(dW[static_cast<size_t>(j)]);
    ws += 8 * m * n;
  }
  t_apply_ += since(t0);
  in.energy_kept = total > 0 ? kept / total : 1.0;
  in.omp_residual = y2 > 0 ? std::sqrt(res2 / y2) : 0.0;
  in.omp_iterations = iters;
  workspace_bytes_ = std::max(workspace_bytes_, ws);
}

// methods.md 3.8 diagnostics, all in the space of x [d], with the step's f32 expressions:
//   sparse Adam on x_s: ms = b1 ms + (1-b1) x_s, vs = b2 vs + (1-b2) x_s^2 (every entry decays),
//     Delta_ref = (f32(-lr alpha/bc1) ms) / (sqrt(vs)/f32(sqrt(bc2)) + eps);
//   AdamW on x (mf, vf likewise), Delta_full; then the three BlockInfo figures. Cost O(d).
void Sgc::diagnose(Block& b, const float* x, const std::vector<int64_t>& kept_idx,
                   const std::vector<std::pair<int64_t, float>>& delta, int64_t t, double lr) {
  const int64_t d = b.info.d;
  const double bc1 = 1.0 - std::pow(p_.beta1, static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(p_.beta2, static_cast<double>(t));
  const float b1 = static_cast<float>(p_.beta1), omb1 = static_cast<float>(1.0 - p_.beta1);
  const float b2 = static_cast<float>(p_.beta2), omb2 = static_cast<float>(1.0 - p_.beta2);
  const float bc2s = static_cast<float>(std::sqrt(bc2)), eps = static_cast<float>(p_.eps);
  const float neg_step = static_cast<float>(-lr * p_.alpha / bc1);
  std::vector<float> xs(static_cast<size_t>(d), 0.0f), ref(static_cast<size_t>(d)),
      dense(static_cast<size_t>(d), 0.0f);
  for (int64_t j : kept_idx) xs[static_cast<size_t>(j)] = x[j];
  for (const auto& [j, v] : delta) dense[static_cast<size_t>(j)] = v;
  double err = 0, nref = 0, dot = 0, na = 0, nf = 0;
  int64_t nnz = 0;
  for (int64_t j = 0; j < d; ++j) {
    const auto u = static_cast<size_t>(j);
    b.ms[u] = std::fma(omb1, xs[u], b.ms[u] * b1);
    b.vs[u] = std::fma(omb2 * xs[u], xs[u], b.vs[u] * b2);
    ref[u] = (neg_step * b.ms[u]) / (std::sqrt(b.vs[u]) / bc2s + eps);
    b.mf[u] = std::fma(omb1, x[j], b.mf[u] * b1);
    b.vf[u] = std::fma(omb2 * x[j], x[j], b.vf[u] * b2);
    const double full = (neg_step * b.mf[u]) / (std::sqrt(b.vf[u]) / bc2s + eps);
    const double a = dense[u], r = ref[u];
    err += (a - r) * (a - r);
    nref += r * r;
    dot += a * full;
    na += a * a;
    nf += full * full;
    nnz += r != 0;
  }
  BlockInfo& in = b.info;
  in.recovery_error = nref > 0 ? std::sqrt(err / nref) : 0.0;
  in.update_cosine = na > 0 && nf > 0 ? dot / std::sqrt(na * nf) : 0.0;
  const int64_t want = std::min(in.omp_sparsity, nnz);
  if (want == 0) {
    in.support_recall = 1.0;
    return;
  }
  const std::vector<int64_t> top = top_s(ref.data(), d, want);  // ascending
  int64_t hit = 0;
  for (const auto& [j, v] : delta) hit += std::binary_search(top.begin(), top.end(), j) ? 1 : 0;
  in.support_recall = static_cast<double>(hit) / static_cast<double>(want);
}

int64_t Sgc::state_bytes() const {
  int64_t bytes = adamw_.state_bytes();
  for (const auto& b : blocks_) bytes += b.info.state_bytes;
  for (const auto& [shape, pr] : shared_) bytes += pr->bytes();
  return bytes;
}

std::vector<optim::StateTensor> Sgc::state() {
  std::vector<optim::StateTensor> out;
  for (auto& b : blocks_) {
    out.push_back({"sgc/p/" + b.info.name, b.p.data(), static_cast<int64_t>(b.p.size())});
    out.push_back({"sgc/q/" + b.info.name, b.q.data(), static_cast<int64_t>(b.q.size())});
    if (b.own && b.own->stored())
      out.push_back({"sgc/A/" + b.info.name, b.own->storage().data(),
                     static_cast<int64_t>(b.own->storage().size())});
    if (!b.P.empty())
      out.push_back({"sgc/P/" + b.info.name, b.P.data(), static_cast<int64_t>(b.P.size())});
    const std::pair<const char*, std::vector<float>*> diag[] = {
        {"ms", &b.ms}, {"vs", &b.vs}, {"mf", &b.mf}, {"vf", &b.vf}};
    for (const auto& [tag, v] : diag)
      if (!v->empty())
        out.push_back(
            {str("sgc/diag_", tag, "/", b.info.name), v->data(), static_cast<int64_t>(v->size())});
  }
  for (auto& [shape, pr] : shared_)
    out.push_back({str("sgc/A_shared/", shape.first, "x", shape.second), pr->storage().data(),
                   static_cast<int64_t>(pr->storage().size())});
  for (const auto& s : adamw_.state()) out.push_back(s);
  return out;
}

void Sgc::set_step_count(int64_t n) {
  if (n < 0) fail(variant_name(p_.variant), ": step count ", n, " must be >= 0");
  step_ = n;
  adamw_.set_step_count(n);
}

std::vector<Sgc::BlockInfo> Sgc::block_info() const {
  std::vector<BlockInfo> out;
  for (const auto& b : blocks_) out.push_back(b.info);
  return out;
}

void Sgc::trace(TraceSink& sink) const {
  if (blocks_.empty()) return;
  std::vector<float> energy, resid, iters, bytes;
  std::string names;
  for (const auto& b : blocks_) {
    energy.push_back(static_cast<float>(b.info.energy_kept));
    resid.push_back(static_cast<float>(b.info.omp_residual));
    iters.push_back(static_cast<float>(b.info.omp_iterations));
    bytes.push_back(static_cast<float>(b.info.state_bytes));
    names += (names.empty() ? "" : ",") + b.info.name;
  }
  sink.append_row("optim/sgc/energy_kept", energy, "fraction");
  sink.append_row("optim/sgc/omp_residual", resid, "fraction");
  sink.append_row("optim/sgc/omp_iterations", iters, "atoms");
  sink.append_row("optim/sgc/state_bytes", bytes, "bytes");
  if (p_.diagnostics) {
    std::vector<float> rerr, recall, cosine;
    for (const auto& b : blocks_) {
      rerr.push_back(static_cast<float>(b.info.recovery_error));
      recall.push_back(static_cast<float>(b.info.support_recall));
      cosine.push_back(static_cast<float>(b.info.update_cosine));
    }
    sink.append_row("optim/sgc/recovery_error", rerr, "fraction");
    sink.append_row("optim/sgc/support_recall", recall, "fraction");
    sink.append_row("optim/sgc/update_cosine", cosine, "1");
  }
  sink.append_scalar("optim/sgc/workspace_bytes", static_cast<double>(workspace_bytes_), "bytes");
  sink.append_scalar("optim/sgc/sparsify_s", t_sparsify_, "s");
  sink.append_scalar("optim/sgc/project_s", t_project_, "s");
  sink.append_scalar("optim/sgc/omp_s", t_omp_, "s");
  sink.append_scalar("optim/sgc/apply_s", t_apply_, "s");
  if (!attrs_written_) {
    for (const char* p : {"optim/sgc/energy_kept", "optim/sgc/omp_residual",
                          "optim/sgc/omp_iterations", "optim/sgc/state_bytes"})
      sink.set_attribute(p, "blocks", names);
    attrs_written_ = true;
  }
}

namespace {

optim::OptimizerMethod make_entry(Variant v) {
  const std::string name = variant_name(v);
  std::string help =
      "SGC (Yang et al. 2025, methods.md 3.2, reconstruction [INFERRED]): per target matrix the "
      "gradient is sparsified to its top-s entries, projected by a fixed random A [k, d] into "
      "R^k where the Adam moments p, q live (2k floats), and the update is recovered by OMP; "
      "non-target blocks (norms, embeddings, head) get plain AdamW.";
  if (v == Variant::kMesgc)
    help += " This entry: MESGC (3.3), c chunks sharing one (k/c) x (d/c) projector.";
  if (v == Variant::kCesgc)
    help +=
        " This entry: CESGC (3.3), SGC on P^T G with P the top-svd_rank left singular "
        "vectors of G, refreshed every svd_refresh steps.";
  return {name, help, sgc_param_decls(v),
          [v, name](const ParamValues& pv) -> std::unique_ptr<optim::Optimizer> {
            SgcParams p = sgc_params_from(pv);
            if (v != Variant::kSgc && p.variant != v)
              fail(name, ": variant = ", variant_name(p.variant),
                   " contradicts the optimizer name '", name, "' (use optimizer sgc with variant ",
                   variant_name(p.variant), ")");
            return std::make_unique<Sgc>(p);
          }};
}

}  // namespace

KVLAB_REGISTER_OPTIMIZER(sgc, make_entry(Variant::kSgc));
KVLAB_REGISTER_OPTIMIZER(mesgc, make_entry(Variant::kMesgc));
KVLAB_REGISTER_OPTIMIZER(cesgc, make_entry(Variant::kCesgc));

}  // namespace kvlab::sgc
