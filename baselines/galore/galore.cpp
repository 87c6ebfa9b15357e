#include "baselines/galore/galore.h"

#include <cblas.h>

#include <cmath>
#include <memory>

#include "framework/core/error.h"
#include "framework/linalg/linalg.h"
#include "framework/optim/target_modules.h"

namespace kvlab::baselines {

const std::vector<ParamDecl>& galore_param_decls() {
  using T = ParamDecl::Type;
  static const std::vector<ParamDecl> decls = [] {
    std::vector<ParamDecl> d = {
        {"rank",
         T::kInt,
         int64_t{128},
         1.0,
         {},
         {},
         "projection rank r (clamped to min(m, n), as torch's slicing does)"},
        {"update_proj_gap",
         T::kInt,
         int64_t{200},
         1.0,
         {},
         {},
         "recompute the projector by SVD of the gradient every this many steps"},
        {"scale", T::kFloat, 1.0, 0.0, {}, {}, "GaLore scale alpha on the projected-back update"},
        {"beta1", T::kFloat, 0.9, 0.0, 1.0, {}, "first-moment decay, in [0, 1)"},
        {"beta2", T::kFloat, 0.999, 0.0, 1.0, {}, "second-moment decay, in [0, 1)"},
        {"eps",
         T::kFloat,
         1e-6,
         0.0,
         {},
         {},
         "added to sqrt(v) (not bias-corrected; galore_torch AdamW default 1e-6)"},
        {"weight_decay",
         T::kFloat,
         0.0,
         0.0,
         {},
         {},
         "decoupled decay W -= lr*weight_decay*W after the update (norms and biases excluded)"},
        {"target_modules",
         T::kString,
         std::string("q,k,v,o,up,down,gate"),
         {},
         {},
         {},
         "2-D blocks projected, by Hugging Face module name; other blocks get the same AdamW "
         "without projection"},
    };
    d.back().check = [](const ParamValue& v) {
      optim::parse_target_modules(std::get<std::string>(v), "target_modules");
    };
    return d;
  }();
  return decls;
}

GaLoreParams galore_params_from(const ParamValues& v) {
  GaLoreParams p;
  p.rank = v.get_int("rank");
  p.update_proj_gap = v.get_int("update_proj_gap");
  p.scale = v.get_float("scale");
  p.beta1 = v.get_float("beta1");
  p.beta2 = v.get_float("beta2");
  p.eps = v.get_float("eps");
  p.weight_decay = v.get_float("weight_decay");
  p.target_modules = optim::parse_target_modules(v.get_string("target_modules"), "target_modules");
  return p;
}

GaLore::GaLore(const GaLoreParams& p) : p_(p) {
  if (p.rank < 1) fail("galore: rank = ", p.rank, " must be >= 1");
  if (p.update_proj_gap < 1) fail("galore: update_proj_gap = ", p.update_proj_gap, " must be >= 1");
  if (!(p.scale >= 0)) fail("galore: scale = ", p.scale, " must be >= 0");
  if (!(p.beta1 >= 0 && p.beta1 < 1)) fail("galore: beta1 = ", p.beta1, " must be in [0, 1)");
  if (!(p.beta2 >= 0 && p.beta2 < 1)) fail("galore: beta2 = ", p.beta2, " must be in [0, 1)");
  if (!(p.eps >= 0)) fail("galore: eps = ", p.eps, " must be >= 0");
  if (!(p.weight_decay >= 0)) fail("galore: weight_decay = ", p.weight_decay, " must be >= 0");
}

void GaLore::prepare(std::span<const optim::ParamBlock> params) {
  if (!blocks_.empty()) {
    if (blocks_.size() != params.size())
      fail("galore: step got ", params.size(), " parameter blocks, the optimizer holds state for ",
           blocks_.size());
    for (size_t i = 0; i < params.size(); ++i) {
      const auto& b = blocks_[i];
      const int64_t numel = b.target ? b.m * b.n : static_cast<int64_t>(b.exp_avg.size());
      if (params[i].name != b.name || params[i].numel() != numel)
        fail("galore: parameter block ", i, " is '", params[i].name, "' with ", params[i].numel(),
             " elements, the optimizer's state is for '", b.name, "' with ", numel);
    }
    return;
  }
  for (const auto& pb : params) {
    Block b;
    b.name = pb.name;
    b.target = optim::is_target_matrix(pb, p_.target_modules);
    int64_t moments = pb.numel();
    if (b.target) {
      b.m = pb.shape[0];
      b.n = pb.shape[1];
      b.r = std::min(p_.rank, std::min(b.m, b.n));
      b.right = b.m >= b.n;
      moments = b.right ? b.m * b.r : b.r * b.n;
      b.ortho.assign(static_cast<size_t>(b.right ? b.r * b.n : b.m * b.r), 0.0f);
    }
    b.exp_avg.assign(static_cast<size_t>(moments), 0.0f);
    b.exp_avg_sq.assign(static_cast<size_t>(moments), 0.0f);
    blocks_.push_back(std::move(b));
  }
}

void GaLore::step(std::span<optim::ParamBlock> params, double lr) {
  if (!(lr >= 0)) fail("galore: learning rate ", lr, " must be >= 0");
  prepare(params);
  const int64_t it = step_, t = step_ + 1;
  const double bc1 = 1.0 - std::pow(p_.beta1, static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(p_.beta2, static_cast<double>(t));
  const float neg_step = static_cast<float>(-(lr * std::sqrt(bc2) / bc1));
  const float b1 = static_cast<float>(p_.beta1), omb1 = static_cast<float>(1.0 - p_.beta1);
  const float b2 = static_cast<float>(p_.beta2), omb2 = static_cast<float>(1.0 - p_.beta2);
  const float eps = static_cast<float>(p_.eps), scale = static_cast<float>(p_.scale);
  const float neg_wd = static_cast<float>(-lr * p_.weight_decay);
  for (size_t bi = 0; bi < params.size(); ++bi) {
    auto& pb = params[bi];
    Block& b = blocks_[bi];
    KVLAB_CHECK(pb.data != nullptr && pb.grad != nullptr)
        << "block '" << pb.name << "' has no data or gradient";
    const float* g = pb.grad;
    float* w = pb.data;
    const int64_t m = b.m, n = b.n, r = b.r;
    std::vector<float> R;  // projected gradient, the shape of the moments
    if (b.target) {
      if (it % p_.update_proj_gap == 0) {
        linalg::Mat G(m, n);
        for (int64_t i = 0; i < m * n; ++i) G.a[static_cast<size_t>(i)] = g[i];
        const linalg::Svd sv = linalg::svd_thin(G);
        if (b.right)
          for (int64_t a = 0; a < r; ++a)
            for (int64_t j = 0; j < n; ++j)
              b.ortho[static_cast<size_t>(a * n + j)] = static_cast<float>(sv.Vt(a, j));
        else
          for (int64_t i = 0; i < m; ++i)
            for (int64_t a = 0; a < r; ++a)
              b.ortho[static_cast<size_t>(i * r + a)] = static_cast<float>(sv.U(i, a));
      }
      // f32 GEMMs (OpenBLAS), as torch.matmul in galore_torch.
      R.assign(b.exp_avg.size(), 0.0f);
      if (b.right)  // R [m, r] = G [m, n] O^T, O [r, n]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, r, n, 1.0f, g, n, b.ortho.data(), n,
                    0.0f, R.data(), r);
      else  // R [r, n] = O^T G, O [m, r]
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, n, m, 1.0f, b.ortho.data(), r, g, n,
                    0.0f, R.data(), n);
      g = R.data();
    }
    const size_t nm = b.exp_avg.size();
    std::vector<float> N(nm);
    for (size_t j = 0; j < nm; ++j) {
      float& mj = b.exp_avg[j];
      float& vj = b.exp_avg_sq[j];
      mj = std::fma(omb1, g[j], mj * b1);
      vj = std::fma(omb2 * g[j], g[j], vj * b2);
      N[j] = mj / (std::sqrt(vj) + eps);
    }
    const int64_t numel = pb.numel();
    if (b.target) {  // back(N) * scale, then W += neg_step * that
      std::vector<float> back(static_cast<size_t>(numel));
      if (b.right)  // N [m, r] O [r, n]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, r, 1.0f, N.data(), r,
                    b.ortho.data(), n, 0.0f, back.data(), n);
      else  // O [m, r] N [r, n]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, r, 1.0f, b.ortho.data(), r,
                    N.data(), n, 0.0f, back.data(), n);
      for (auto& x : back) x *= scale;
      for (int64_t j = 0; j < numel; ++j)
        w[j] = std::fma(neg_step, back[static_cast<size_t>(j)], w[j]);
    } else {
      for (int64_t j = 0; j < numel; ++j)
        w[j] = std::fma(neg_step, N[static_cast<size_t>(j)], w[j]);
    }
    if (pb.weight_decay && p_.weight_decay > 0)
      for (int64_t j = 0; j < numel; ++j) w[j] = std::fma(neg_wd, w[j], w[j]);
  }
  step_ = t;
}

int64_t GaLore::state_bytes() const {
  int64_t f = 0;
  for (const auto& b : blocks_)
    f += static_cast<int64_t>(b.exp_avg.size() + b.exp_avg_sq.size() + b.ortho.size());
  return f * static_cast<int64_t>(sizeof(float));
}

std::vector<optim::StateTensor> GaLore::state() {
  std::vector<optim::StateTensor> out;
  for (auto& b : blocks_) {
    out.push_back(
        {"galore/exp_avg/" + b.name, b.exp_avg.data(), static_cast<int64_t>(b.exp_avg.size())});
    out.push_back({"galore/exp_avg_sq/" + b.name, b.exp_avg_sq.data(),
                   static_cast<int64_t>(b.exp_avg_sq.size())});
  }
  for (auto& b : blocks_)
    if (b.target)
      out.push_back(
          {"galore/ortho/" + b.name, b.ortho.data(), static_cast<int64_t>(b.ortho.size())});
  return out;
}

void GaLore::set_step_count(int64_t n) {
  if (n < 0) fail("galore: step count ", n, " must be >= 0");
  step_ = n;
}

namespace {
optim::OptimizerMethod galore_method() {
  return {"galore",
          "GaLore (Zhao et al. 2024), galore_torch GaLoreAdamW with proj_type std: Adam moments "
          "of the gradient projected on its top-rank singular vectors (smaller side; SVD every "
          "update_proj_gap steps), update = scale * projected back; state 2*r*max(m,n) + "
          "r*min(m,n) floats per target matrix (methods.md 3.4); other blocks plain AdamW.",
          galore_param_decls(), [](const ParamValues& v) -> std::unique_ptr<optim::Optimizer> {
            return std::make_unique<GaLore>(galore_params_from(v));
          }};
}
}  // namespace

KVLAB_REGISTER_OPTIMIZER(galore, galore_method());

}  // namespace kvlab::baselines
