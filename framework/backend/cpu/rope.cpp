// RoPE: inv_freq exactly as Hugging Face transformers' modeling_rope_utils computes it (all in
// f32, scalars cast to f32; torch's `scalar / tensor` is reciprocal(tensor) * scalar), and the
// rotate_half rotation. See kernels.h.
#include <cmath>
#include <numbers>
#include <vector>

#include "framework/backend/cpu/kernel_table.h"
#include "framework/backend/cpu/kernels.h"
#include "framework/core/error.h"

namespace kvlab::cpu {

namespace {

// torch: `base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim)`, then
// `1.0 / that` (= reciprocal * 1.0). powf on f32 operands, rounded to f32.
std::vector<float> default_inv_freq(int64_t D, double theta) {
  std::vector<float> f(static_cast<size_t>(D / 2));
  const float base = static_cast<float>(theta);
  for (int64_t i = 0; i < D / 2; ++i) {
    const float e = static_cast<float>(2 * i) / static_cast<float>(D);
    const float p = static_cast<float>(std::pow(static_cast<double>(base), static_cast<double>(e)));
    f[static_cast<size_t>(i)] = (1.0f / p) * 1.0f;
  }
  return f;
}

// transformers _compute_llama3_parameters, op by op in f32.
void llama3_scale(std::vector<float>& inv_freq, const RopeConfig& c) {
  const float factor = static_cast<float>(c.factor);
  const float lff = static_cast<float>(c.low_freq_factor);
  const float hff = static_cast<float>(c.high_freq_factor);
  const float old_ctx = static_cast<float>(c.original_max_position);
  // Python-side scalars are f64: old_context_len / low_freq_factor.
  const double low_freq_wavelen = static_cast<double>(c.original_max_position) / c.low_freq_factor;
  const double high_freq_wavelen =
      static_cast<double>(c.original_max_position) / c.high_freq_factor;
  const float two_pi = static_cast<float>(2 * std::numbers::pi);
  for (float& f : inv_freq) {
    const float wavelen = (1.0f / f) * two_pi;
    const float ifl = wavelen > low_freq_wavelen ? f / factor : f;
    const float smooth = ((1.0f / wavelen) * old_ctx - lff) / (hff - lff);
    const float smoothed = (1.0f - smooth) * ifl / factor + smooth * ifl;
    const bool medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
    f = medium ? smoothed : ifl;
  }
}

}  // namespace

Rope::Rope(const RopeConfig& cfg) : cfg_(cfg) {
  KVLAB_CHECK(cfg.head_dim > 0 && cfg.head_dim % 2 == 0)
      << "rope: head_dim " << cfg.head_dim << " must be positive and even";
  KVLAB_CHECK(cfg.theta > 0) << "rope: theta " << cfg.theta << " must be positive";
  inv_freq_ = default_inv_freq(cfg.head_dim, cfg.theta);
  switch (cfg.type) {
    case RopeConfig::Type::kDefault: break;
    case RopeConfig::Type::kLinear: {
      KVLAB_CHECK(cfg.factor > 0) << "rope: linear factor " << cfg.factor << " must be > 0";
      const float factor = static_cast<float>(cfg.factor);
      for (float& f : inv_freq_) f = f / factor;
      break;
    }
    case RopeConfig::Type::kLlama3:
      KVLAB_CHECK(cfg.factor > 0 && cfg.high_freq_factor != cfg.low_freq_factor &&
                  cfg.original_max_position > 0)
          << "rope: llama3 needs factor > 0, high_freq_factor != low_freq_factor, "
             "original_max_position > 0 (got factor="
          << cfg.factor << ", low=" << cfg.low_freq_factor << ", high=" << cfg.high_freq_factor
          << ", original_max_position=" << cfg.original_max_position << ")";
      llama3_scale(inv_freq_, cfg);
      break;
  }
}

namespace {
// cos/sin [half] for one position: angle = float(pos) * inv_freq[i] in f32.
void angles(const std::vector<float>& inv_freq, int32_t pos, float sign, float* c, float* s) {
  const float p = static_cast<float>(pos);
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    const float a = p * inv_freq[i];
    c[i] = std::cos(a);
    s[i] = sign * std::sin(a);
  }
}

void rotate(const std::vector<float>& inv_freq, float* x, int64_t T, int64_t n_heads,
            const int32_t* positions, float sign) {
  const int64_t half = static_cast<int64_t>(inv_freq.size()), D = 2 * half;
  const detail::KernelTable& kt = detail::active_table();
  std::vector<float> cs(static_cast<size_t>(2 * half));
  for (int64_t t = 0; t < T; ++t) {
    angles(inv_freq, positions[t], sign, cs.data(), cs.data() + half);
    for (int64_t h = 0; h < n_heads; ++h)
      kt.rope_head(x + (t * n_heads + h) * D, half, cs.data(), cs.data() + half);
  }
}
}  // namespace

void Rope::apply(float* x, int64_t T, int64_t n_heads, const int32_t* positions) const {
  rotate(inv_freq_, x, T, n_heads, positions, 1.f);
}

void Rope::unapply(float* x, int64_t T, int64_t n_heads, const int32_t* positions) const {
  rotate(inv_freq_, x, T, n_heads, positions, -1.f);
}

// HF apply_rotary_pos_emb: x * cos + rotate_half(x) * sin, rotate_half(x) = [-x2, x1].
void Rope::apply_ref(float* x, int64_t T, int64_t n_heads, const int32_t* positions) const {
  const int64_t half = cfg_.head_dim / 2, D = cfg_.head_dim;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < n_heads; ++h) {
      float* xh = x + (t * n_heads + h) * D;
      for (int64_t i = 0; i < half; ++i) {
        const float a = static_cast<float>(positions[t]) * inv_freq_[static_cast<size_t>(i)];
        const float c = std::cos(a), s = std::sin(a);
        const float x1 = xh[i], x2 = xh[i + half];
        xh[i] = x1 * c + (-x2) * s;
        xh[i + half] = x2 * c + x1 * s;
      }
    }
}

}  // namespace kvlab::cpu
