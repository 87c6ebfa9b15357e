// Causal GQA attention: tiled online softmax (fast path) and the two-pass f64 reference.
// See kernels.h for the contract.
//
// Work split. Query rows sharing a KV head are processed together: a block is (KV head g,
// tile of TT tokens) -> R = TT * H/G rows, so each K/V tile is read once per block and reused
// from L1/L2 by all R rows. Decode (T <= 4) uses one token tile; prefill uses TT = 32 / (H/G).
// Decode over a token-major cache runs all G heads in one task, key tile by key tile.
// When tasks are too few to occupy the pool (decode), the key range is split into
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
  const int64_t R = TT * grp;  // rows per (token tile, KV head) block; the last tile may have fewer
  // Token-major caches interleave the G heads in each row: decode then walks all heads of a key
  // tile in one task, so every task streams whole contiguous rows (per-head tasks would read
  // 4 D bytes out of every G D * 4-byte row and defeat the hardware prefetcher).
  const bool interleaved = G > 1 && kv.row_stride >= G * D && kv.head_stride < kv.row_stride;
  const int64_t hpt = (T <= kDecodeMaxT && interleaved) ? G : 1;  // KV heads per task
  const int64_t blocks = G * n_tt;
  const int64_t task_blocks = blocks / hpt;
  const int64_t want = 4 * static_cast<int64_t>(pool.threads());
  int64_t n_split = 1;
  if (task_blocks < want)
    n_split = std::max<int64_t>(1, std::min((want + task_blocks - 1) / task_blocks,
                                            (S + kMinSplitKeys - 1) / kMinSplitKeys));
  const int64_t n_tasks = task_blocks * n_split;
  const int64_t part_stride = R * (D + 2);  // per (block, split): acc[R, D], m[R], l[R]
  std::vector<float> parts;
  if (n_split > 1) parts.resize(static_cast<size_t>(blocks * n_split * part_stride));

  pool.parallel_tasks(n_tasks, [&](int64_t task, int) {
    // Largest (latest, most keys under the causal mask) token tiles first.
    const int64_t sp = task % n_split;
    const int64_t tb = task / n_split;
    const int64_t n_gt = G / hpt;
    const int64_t tt = n_tt - 1 - tb / n_gt, g0 = (tb % n_gt) * hpt;
    const int64_t t0 = tt * TT, t1 = std::min(T, t0 + TT);
    const int64_t rows = (t1 - t0) * grp;

    thread_local std::vector<float> ws;
    thread_local std::vector<const float*> qrows;
    thread_local std::vector<int32_t> qp;
    const size_t need =
        static_cast<size_t>(hpt * rows * (D + 2) + rows * (detail::kAttnTile + 16));
    if (ws.size() < need) ws.resize(need);
    qrows.resize(static_cast<size_t>(hpt * rows));
    qp.resize(static_cast<size_t>(rows));
    float* scratch = ws.data() + hpt * rows * (D + 2);
    int32_t max_qp = std::numeric_limits<int32_t>::min();
    for (int64_t t = t0; t < t1; ++t) {
      for (int64_t j = 0; j < grp; ++j) qp[static_cast<size_t>((t - t0) * grp + j)] = q_pos[t];
      max_qp = std::max(max_qp, q_pos[t]);
    }
    // State of KV head g0 + gi: acc[rows, D], m[rows], l[rows].
    auto state = [&](int64_t gi) {
      const int64_t blk = (n_tt - 1 - tt) * G + g0 + gi;
      return n_split > 1 ? parts.data() + (blk * n_split + sp) * part_stride
                         : ws.data() + gi * rows * (D + 2);
    };
    for (int64_t gi = 0; gi < hpt; ++gi) {
      float* acc = state(gi);
      std::fill(acc, acc + rows * D, 0.f);
      std::fill(acc + rows * D, acc + rows * (D + 1), kNegInf);
      std::fill(acc + rows * (D + 1), acc + rows * (D + 2), 0.f);
      for (int64_t t = t0; t < t1; ++t)
        for (int64_t j = 0; j < grp; ++j)
          qrows[static_cast<size_t>(gi * rows + (t - t0) * grp + j)] =
              q + (t * H + (g0 + gi) * grp + j) * D;
    }

    // Keys [0, s_end) can be visible to some row of the block (kv.pos non-decreasing).
    const int64_t s_end = std::upper_bound(kv.pos, kv.pos + S, max_qp) - kv.pos;
    const int64_t s0 = S * sp / n_split, s1 = std::min(s_end, S * (sp + 1) / n_split);
    const int64_t step = hpt > 1 ? detail::kAttnTile : std::max<int64_t>(1, s1 - s0);
    detail::AttnBlockArgs a;
    a.q_pos = qp.data();
    a.R = static_cast<int>(rows);
    a.row_stride = kv.row_stride;
    a.k_pos = kv.pos;
    a.D = D;
    a.scale = sh.scale;
    a.scratch = scratch;
    for (int64_t c0 = s0; c0 < s1; c0 += step)
      for (int64_t gi = 0; gi < hpt; ++gi) {
        float* st = state(gi);
        a.q = qrows.data() + gi * rows;
        a.k = kv.k + (g0 + gi) * kv.head_stride;
        a.v = kv.v + (g0 + gi) * kv.head_stride;
        a.s0 = c0;
        a.s1 = std::min(s1, c0 + step);
        a.acc = st;
        a.m = st + rows * D;
        a.l = st + rows * (D + 1);
        kt.attn_block(a);
      }
    if (n_split == 1)
      for (int64_t gi = 0; gi < hpt; ++gi) {
        const float* st = state(gi);
        for (int64_t t = t0; t < t1; ++t)
          for (int64_t j = 0; j < grp; ++j) {
            const int64_t r = (t - t0) * grp + j, h = (g0 + gi) * grp + j;
            finalize(st + r * D, st[rows * D + r], st[rows * (D + 1) + r], D,
                     out + (t * H + h) * D, lse ? lse + t * H + h : nullptr);
          }
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
