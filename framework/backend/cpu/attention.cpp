// Causal GQA attention: tiled online softmax (fast path) and the two-pass f64 reference.
// See kernels.h for the contract.
//
// Work split. Query rows sharing a KV head are processed together: a block is (KV head g,
// tile of TT tokens) -> R = TT * H/G rows, so each K/V tile is read once per block and reused
// from L1/L2 by all R rows. Decode (T <= 4) uses one token tile; prefill uses TT = 32 / (H/G).
// When blocks are too few to occupy the pool (decode: G blocks), the key range is split into
// n_split parts (flash-decoding); each part leaves a partial state (m, l, acc) and a merge pass
// combines them: M = max m_i, l = sum l_i e^(m_i - M), acc = sum acc_i e^(m_i - M).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "framework/backend/cpu/kernel_table.h"
#include "framework/backend/cpu/kernels.h"
#include "framework/core/error.h"

namespace kvlab::cpu {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr int64_t kDecodeMaxT = 4;
constexpr int64_t kMinSplitKeys = 128;  // no S-split part shorter than this

void check_args(const float* q, int64_t T, const int32_t* q_pos, const KvView& kv,
                const AttentionShape& sh, const float* out) {
  KVLAB_CHECK(sh.H > 0 && sh.G > 0 && sh.D > 0 && sh.H % sh.G == 0)
      << "attention: H=" << sh.H << " G=" << sh.G << " D=" << sh.D << " (need H % G == 0)";
  KVLAB_CHECK(T >= 0 && kv.S >= 0) << "attention: T=" << T << " S=" << kv.S;
  KVLAB_CHECK(T == 0 || (q && q_pos && out)) << "attention: null q/q_pos/out";
  KVLAB_CHECK(kv.S == 0 || (kv.k && kv.v && kv.pos)) << "attention: null k/v/pos with S=" << kv.S;
  KVLAB_CHECK(kv.S <= 1 || (kv.row_stride >= sh.D || kv.row_stride > 0))
      << "attention: row_stride " << kv.row_stride;
}

// Writes out[D] = acc / l and lse = m + log(l); zeros and -inf when no key was visible.
void finalize(const float* acc, float m, float l, int64_t D, float* out, float* lse) {
  if (l > 0.f) {
    const float inv = 1.f / l;
    for (int64_t d = 0; d < D; ++d) out[d] = acc[d] * inv;
    if (lse) *lse = m + std::log(l);
  } else {
    std::fill(out, out + D, 0.f);
    if (lse) *lse = kNegInf;
  }
}

}  // namespace

void attention(const float* q, int64_t T, const int32_t* q_pos, const KvView& kv,
               const AttentionShape& sh, float* out, float* lse, ThreadPool& pool) {
  check_args(q, T, q_pos, kv, sh, out);
  if (T == 0) return;
  const int64_t H = sh.H, G = sh.G, D = sh.D, S = kv.S, grp = H / G;
  if (S == 0) {
    std::fill(out, out + T * H * D, 0.f);
    if (lse) std::fill(lse, lse + T * H, kNegInf);
    return;
  }
  const detail::KernelTable& kt = detail::active_table();

  const int64_t TT = T <= kDecodeMaxT ? T : std::min<int64_t>(T, std::max<int64_t>(1, 32 / grp));
  const int64_t n_tt = (T + TT - 1) / TT;
  const int64_t R = TT * grp;  // rows per block (the last token tile may have fewer)
  const int64_t blocks = G * n_tt;
  const int64_t want = 4 * static_cast<int64_t>(pool.threads());
  int64_t n_split = 1;
  if (blocks < want)
    n_split = std::max<int64_t>(
        1, std::min((want + blocks - 1) / blocks, (S + kMinSplitKeys - 1) / kMinSplitKeys));
  const int64_t n_tasks = blocks * n_split;
  const int64_t part_stride = R * (D + 2);  // per task: acc[R, D], m[R], l[R]
  std::vector<float> parts;
  if (n_split > 1) parts.resize(static_cast<size_t>(n_tasks * part_stride));

  pool.parallel_tasks(n_tasks, [&](int64_t task, int) {
    // Largest (latest, most keys under the causal mask) token tiles first.
    const int64_t sp = task % n_split;
    const int64_t blk = task / n_split;
    const int64_t tt = n_tt - 1 - blk / G, g = blk % G;
    const int64_t t0 = tt * TT, t1 = std::min(T, t0 + TT);
    const int64_t rows = (t1 - t0) * grp;

    thread_local std::vector<float> ws;
    thread_local std::vector<const float*> qrows;
    thread_local std::vector<int32_t> qp;
    const size_t need = static_cast<size_t>(rows * (D + 2) + rows * (detail::kAttnTile + 16));
    if (ws.size() < need) ws.resize(need);
    qrows.resize(static_cast<size_t>(rows));
    qp.resize(static_cast<size_t>(rows));
    float* acc = (n_split > 1) ? parts.data() + task * part_stride : ws.data();
    float* m = acc + rows * D;
    float* l = m + rows;
    float* scratch = ws.data() + rows * (D + 2);
    int32_t max_qp = std::numeric_limits<int32_t>::min();
    for (int64_t t = t0; t < t1; ++t)
      for (int64_t j = 0; j < grp; ++j) {
        const int64_t r = (t - t0) * grp + j;
        qrows[static_cast<size_t>(r)] = q + (t * H + g * grp + j) * D;
        qp[static_cast<size_t>(r)] = q_pos[t];
        max_qp = std::max(max_qp, q_pos[t]);
      }
    std::fill(acc, acc + rows * D, 0.f);
    std::fill(m, m + rows, kNegInf);
    std::fill(l, l + rows, 0.f);

    // Keys [0, s_end) can be visible to some row of the block (kv.pos non-decreasing).
    const int64_t s_end = std::upper_bound(kv.pos, kv.pos + S, max_qp) - kv.pos;
    const int64_t s0 = S * sp / n_split, s1 = std::min(s_end, S * (sp + 1) / n_split);
    if (s0 < s1) {
      detail::AttnBlockArgs a;
      a.q = qrows.data();
      a.q_pos = qp.data();
      a.R = static_cast<int>(rows);
      a.k = kv.k + g * kv.head_stride;
      a.v = kv.v + g * kv.head_stride;
      a.row_stride = kv.row_stride;
      a.k_pos = kv.pos;
      a.s0 = s0;
      a.s1 = s1;
      a.D = D;
      a.scale = sh.scale;
      a.m = m;
      a.l = l;
      a.acc = acc;
      a.scratch = scratch;
      kt.attn_block(a);
    }
    if (n_split == 1)
      for (int64_t t = t0; t < t1; ++t)
        for (int64_t j = 0; j < grp; ++j) {
          const int64_t r = (t - t0) * grp + j, h = g * grp + j;
          finalize(acc + r * D, m[r], l[r], D, out + (t * H + h) * D,
                   lse ? lse + t * H + h : nullptr);
        }
  });

  if (n_split == 1) return;
  // Merge the n_split partial states of every (t, h) row.
  pool.parallel_for(T * H, [&](int64_t i0, int64_t i1, int) {
    std::vector<float> acc(static_cast<size_t>(D));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t t = i / H, h = i % H, g = h / grp, j = h % grp;
      const int64_t tt = t / TT, r = (t - tt * TT) * grp + j;
      const int64_t blk = (n_tt - 1 - tt) * G + g;
      const int64_t rows = (std::min(T, tt * TT + TT) - tt * TT) * grp;
      auto part = [&](int64_t sp) { return parts.data() + (blk * n_split + sp) * part_stride; };
      float M = kNegInf;
      for (int64_t sp = 0; sp < n_split; ++sp) M = std::max(M, part(sp)[rows * D + r]);
      std::fill(acc.begin(), acc.end(), 0.f);
      float L = 0.f;
      if (M != kNegInf)
        for (int64_t sp = 0; sp < n_split; ++sp) {
          const float* p = part(sp);
          const float li = p[rows * D + rows + r];
          if (li == 0.f) continue;
          const float c = std::exp(p[rows * D + r] - M);
          L += li * c;
          for (int64_t d = 0; d < D; ++d) acc[static_cast<size_t>(d)] += c * p[r * D + d];
        }
      finalize(acc.data(), M, L, D, out + i * D, lse ? lse + i : nullptr);
    }
  });
}

void attention_ref(const float* q, int64_t T, const int32_t* q_pos, const KvView& kv,
                   const AttentionShape& sh, float* out, float* lse) {
  check_args(q, T, q_pos, kv, sh, out);
  const int64_t H = sh.H, D = sh.D, S = kv.S, grp = sh.H / sh.G;
  std::vector<double> logit(static_cast<size_t>(S)), acc(static_cast<size_t>(D));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h) {
      const float* qr = q + (t * H + h) * D;
      const float* kb = kv.k + (h / grp) * kv.head_stride;
      const float* vb = kv.v + (h / grp) * kv.head_stride;
      double mx = -INFINITY;
      for (int64_t s = 0; s < S; ++s) {
        if (kv.pos[s] > q_pos[t]) continue;
        double d = 0;
        for (int64_t i = 0; i < D; ++i) d += static_cast<double>(qr[i]) * kb[s * kv.row_stride + i];
        logit[static_cast<size_t>(s)] = d * sh.scale;
        mx = std::max(mx, logit[static_cast<size_t>(s)]);
      }
      float* o = out + (t * H + h) * D;
      if (mx == -INFINITY) {
        std::fill(o, o + D, 0.f);
        if (lse) lse[t * H + h] = kNegInf;
        continue;
      }
      double sum = 0;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t s = 0; s < S; ++s) {
        if (kv.pos[s] > q_pos[t]) continue;
        const double p = std::exp(logit[static_cast<size_t>(s)] - mx);
        sum += p;
        for (int64_t i = 0; i < D; ++i) acc[static_cast<size_t>(i)] += p * vb[s * kv.row_stride + i];
      }
      for (int64_t i = 0; i < D; ++i) o[i] = static_cast<float>(acc[static_cast<size_t>(i)] / sum);
      if (lse) lse[t * H + h] = static_cast<float>(mx + std::log(sum));
    }
}

}  // namespace kvlab::cpu
