#include "methods/sentencekv/sentencekv.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>

#include "framework/core/error.h"

namespace kvlab::methods {

std::vector<std::string> official_punctuation() {
  return {".", "!", "?", ". ", "! ", "? ", "...", "\n\n", "\n\n\n", "。", "！", "？", "。。"};
}

std::vector<std::string> parse_punctuation(const std::string& text, const std::string& key) {
  if (text == "official") return official_punctuation();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception&) {
    fail(key, ": expected 'official' or a JSON array of token strings, e.g. [\".\", \"?\"], got '",
         text, "'");
  }
  if (!j.is_array() || j.empty())
    fail(key, ": expected a non-empty JSON array of token strings, got '", text, "'");
  std::vector<std::string> out;
  for (const auto& e : j) {
    if (!e.is_string() || e.get<std::string>().empty())
      fail(key, ": every entry must be a non-empty string, got ", e.dump());
    out.push_back(e.get<std::string>());
  }
  return out;
}

bool BoundarySet::contains(int32_t id) const {
  return std::binary_search(ids.begin(), ids.end(), id);
}

BoundarySet resolve_boundaries(const model::Tokenizer& tok,
                               const std::vector<std::string>& strings) {
  BoundarySet b;
  b.strings = strings;
  for (const auto& s : strings) {
    const auto id = tok.token_to_id(s);
    if (id)
      b.ids.push_back(*id);
    else
      b.dropped.push_back(s);
  }
  std::sort(b.ids.begin(), b.ids.end());
  b.ids.erase(std::unique(b.ids.begin(), b.ids.end()), b.ids.end());
  return b;
}

SentenceKvCache::SentenceKvCache(const kv::LayerInfo& info, SentenceKvOptions opt)
    : info_(info), opt_(std::move(opt)) {
  if (!info_.tokenizer)
    fail(
        "sentencekv: punctuation: the model has no tokenizer.json; sentence boundaries are the "
        "token ids of the punctuation strings in the tokenizer's vocabulary");
  bounds_ = resolve_boundaries(*info_.tokenizer, opt_.punctuation);
  if (bounds_.ids.empty())
    fail("sentencekv: punctuation: none of the ", opt_.punctuation.size(),
         " strings is a single token of this tokenizer, so no sentence boundary can be found");
  last_sel_.resize(static_cast<size_t>(info_.H));
}

void SentenceKvCache::observe_tokens(const int32_t* ids, int64_t T) {
  pending_ids_.assign(ids, ids + T);
}

int64_t SentenceKvCache::max_tokens_per_sentence(int64_t n_sent) const {
  if (opt_.max_tokens_per_sentence > 0) return opt_.max_tokens_per_sentence;
  const double budget = std::floor(opt_.semantic_factor * static_cast<double>(opt_.token_budget));
  return std::max<int64_t>(100,
                           static_cast<int64_t>(2.0 * budget / static_cast<double>(n_sent)) + 50);
}

void SentenceKvCache::append(const float* keys, const float* values, int64_t T,
                             const int32_t* positions) {
  const int64_t G = info_.G, D = info_.D;
  std::vector<int32_t> ids(static_cast<size_t>(T), -1);
  if (static_cast<int64_t>(pending_ids_.size()) == T) ids = pending_ids_;
  pending_ids_.clear();
  if (opt_.recall_every > 0) shadow_k_.insert(shadow_k_.end(), keys, keys + T * G * D);
  if (prefill_done_) {
    // Decode: held until attend() processes the tokens one by one (causal order of steps).
    pk_.insert(pk_.end(), keys, keys + T * G * D);
    pv_.insert(pv_.end(), values, values + T * G * D);
    pids_.insert(pids_.end(), ids.begin(), ids.end());
    seen_ += T;
    return;
  }
  ids_.insert(ids_.end(), ids.begin(), ids.end());
  if (seen_ + T > dcap_) {
    const int64_t cap = std::max<int64_t>({seen_ + T, 2 * dcap_, 256});
    Buffer nk(static_cast<size_t>(G * cap * D)), nv(static_cast<size_t>(G * cap * D));
    for (int64_t g = 0; g < G && seen_ > 0; ++g) {
      std::memcpy(nk.data() + g * cap * D, dk_.data() + g * dcap_ * D, seen_ * D * sizeof(float));
      std::memcpy(nv.data() + g * cap * D, dv_.data() + g * dcap_ * D, seen_ * D * sizeof(float));
    }
    dk_ = std::move(nk);
    dv_ = std::move(nv);
    dpos_.resize(static_cast<size_t>(cap));
    dcap_ = cap;
  }
  for (int64_t t = 0; t < T; ++t) {
    KVLAB_CHECK(seen_ + t == 0 || positions[t] > dpos_[static_cast<size_t>(seen_ + t - 1)])
        << "positions must increase";
    for (int64_t g = 0; g < G; ++g) {
      std::memcpy(dk_.data() + (g * dcap_ + seen_ + t) * D, keys + (t * G + g) * D,
                  D * sizeof(float));
      std::memcpy(dv_.data() + (g * dcap_ + seen_ + t) * D, values + (t * G + g) * D,
                  D * sizeof(float));
    }
    dpos_[static_cast<size_t>(seen_ + t)] = positions[t];
  }
  seen_ += T;
}

void SentenceKvCache::attend(const float* queries, int64_t T, const int32_t* q_positions,
                             float* out) {
  const int64_t H = info_.H, G = info_.G, D = info_.D;
  if (!prefill_done_) {
    // Exact causal attention over the prompt (2.3 prefill step 2).
    cpu::KvView kv{dk_.data(), dv_.data(), seen_, dcap_ * D, D, dpos_.data()};
    cpu::attention(queries, T, q_positions, kv, cpu::AttentionShape{H, G, D, info_.scale}, out,
                   nullptr, *info_.pool);
    qbuf_.insert(qbuf_.end(), queries, queries + T * H * D);
    qpos_.insert(qpos_.end(), q_positions, q_positions + T);
    const int64_t n = static_cast<int64_t>(qpos_.size());
    if (n > opt_.window_size) {
      qbuf_.erase(qbuf_.begin(), qbuf_.begin() + (n - opt_.window_size) * H * D);
      qpos_.erase(qpos_.begin(), qpos_.begin() + (n - opt_.window_size));
    }
    return;
  }
  KVLAB_CHECK(static_cast<int64_t>(pids_.size()) == T)
      << "sentencekv: attend() of " << T << " queries after append() of " << pids_.size();
  for (int64_t t = 0; t < T; ++t) {
    commit_token(pk_.data() + t * G * D, pv_.data() + t * G * D, pids_[static_cast<size_t>(t)]);
    decode_step(queries + t * H * D, out + t * H * D);
  }
  pk_.clear();
  pv_.clear();
  pids_.clear();
}

// ---- end of prefill: selection (2.3 prefill steps 3-5) ----

void SentenceKvCache::end_prefill(const kv::PrefillContext& ctx) {
  if (prefill_done_) return;
  prefill_select();
  prefill_done_ = true;
}

void SentenceKvCache::prefill_select() {
  const int64_t H = info_.H, G = info_.G, D = info_.D, group = H / G, n = seen_;
  const int64_t w = static_cast<int64_t>(qpos_.size());
  const int64_t budget = static_cast<int64_t>(
      std::floor(opt_.semantic_factor * static_cast<double>(opt_.token_budget)));
  const int64_t keep = std::min(n, std::max<int64_t>(1, budget));
  // kept[h]: token indices, ascending.
  std::vector<std::vector<int64_t>> kept(static_cast<size_t>(H));
  window_mass_.assign(static_cast<size_t>(H), 1.0);
  std::vector<std::vector<double>> acc;
  if (w > 0 && n > 0) {
    std::vector<float> lse(static_cast<size_t>(w * H)), o(static_cast<size_t>(w * H * D));
    cpu::KvView kv{dk_.data(), dv_.data(), n, dcap_ * D, D, dpos_.data()};
    const cpu::AttentionShape shape{H, G, D, info_.scale};
    cpu::attention(qbuf_.data(), w, qpos_.data(), kv, shape, o.data(), lse.data(), *info_.pool);
    baselines::accumulate_probabilities(qbuf_.data(), w, qpos_.data(), lse.data(), kv, shape, acc,
                                        *info_.pool);
  }
  if (n <= keep) {
    for (auto& k : kept) {
      k.resize(static_cast<size_t>(n));
      std::iota(k.begin(), k.end(), int64_t{0});
    }
  } else if (keep <= w || acc.empty()) {
    for (auto& k : kept)
      for (int64_t i = n - keep; i < n; ++i) k.push_back(i);
  } else {
    // Per head (code) or summed over heads (paper, importance_scope: global): window
    // probabilities summed over the w queries, pooled over the prefix [0, n - w); each head keeps
    // its top (keep - w) prefix tokens (ties: earlier token) plus the window.
    const int64_t pre = n - w;
    std::vector<std::vector<double>> score(static_cast<size_t>(H));
    for (int64_t h = 0; h < H; ++h)
      score[static_cast<size_t>(h)] =
          baselines::pool_scores(acc[static_cast<size_t>(h)], pre, opt_.kernel_size, opt_.pooling);
    if (opt_.global_importance) {
      std::vector<double> sum(static_cast<size_t>(pre), 0.0);
      for (const auto& s : score)
        for (int64_t i = 0; i < pre; ++i) sum[static_cast<size_t>(i)] += s[static_cast<size_t>(i)];
      for (auto& s : score) s = sum;
    }
    for (int64_t h = 0; h < H; ++h) {
      const auto& sc = score[static_cast<size_t>(h)];
      std::vector<int64_t> cand(static_cast<size_t>(pre));
      std::iota(cand.begin(), cand.end(), int64_t{0});
      const int64_t m = keep - w;
      std::partial_sort(cand.begin(), cand.begin() + m, cand.end(), [&](int64_t a, int64_t b) {
        const double sa = sc[static_cast<size_t>(a)], sb = sc[static_cast<size_t>(b)];
        return sa != sb ? sa > sb : a < b;
      });
      auto& k = kept[static_cast<size_t>(h)];
      k.assign(cand.begin(), cand.begin() + m);
      std::sort(k.begin(), k.end());
      for (int64_t i = pre; i < n; ++i) k.push_back(i);
    }
  }
  if (!acc.empty()) {
    for (int64_t h = 0; h < H; ++h) {
      double m = 0.0;
      for (int64_t i : kept[static_cast<size_t>(h)])
        m += acc[static_cast<size_t>(h)][static_cast<size_t>(i)];
      window_mass_[static_cast<size_t>(h)] = m / static_cast<double>(w);
    }
  }
  kept_ = static_cast<int64_t>(kept[0].size());
  S_ = kept_;

  // Sentences over the prompt ids (2.3 prefill step 4): starts = 0, p + 1 per punctuation
  // position p, then n if the last start is < n; sentence j = [starts[j], starts[j + 1]).
  std::vector<int64_t> starts = {0};
  for (int64_t p = 0; p < n; ++p)
    if (bounds_.contains(ids_[static_cast<size_t>(p)]) && p + 1 > starts.back())
      starts.push_back(p + 1);
  if (starts.back() < n) starts.push_back(n);
  n_prompt_sent_ = n_sent_ = std::max<int64_t>(0, static_cast<int64_t>(starts.size()) - 1);
  prompt_sentence_tokens_.clear();
  for (int64_t j = 0; j < n_sent_; ++j)
    prompt_sentence_tokens_.push_back(starts[j + 1] - starts[j]);
  cap_per_sentence_ = n_sent_ > 0 ? max_tokens_per_sentence(n_sent_) : 0;

  // Per head and sentence (step 5): mean kept post-RoPE key, slot list (ascending, truncated to
  // cap_per_sentence_), counts.
  svec_.assign(static_cast<size_t>(H), std::vector<float>(static_cast<size_t>(n_sent_ * D), 0.f));
  soff_.assign(static_cast<size_t>(H), std::vector<int64_t>{0});
  sslots_.assign(static_cast<size_t>(H), {});
  kept_per_sentence_.assign(static_cast<size_t>(H),
                            std::vector<int64_t>(static_cast<size_t>(n_sent_), 0));
  lost_to_cap_.assign(static_cast<size_t>(H), 0);
  for (int64_t h = 0; h < H; ++h) {
    const int64_t g = h / group;
    const auto& k = kept[static_cast<size_t>(h)];
    std::vector<double> sum(static_cast<size_t>(D));
    size_t i = 0;
    for (int64_t j = 0; j < n_sent_; ++j) {
      std::fill(sum.begin(), sum.end(), 0.0);
      int64_t cnt = 0;
      for (; i < k.size() && k[i] < starts[j + 1]; ++i, ++cnt) {
        const float* kr = dk_.data() + (g * dcap_ + k[i]) * D;
        for (int64_t d = 0; d < D; ++d) sum[static_cast<size_t>(d)] += kr[d];
        if (cnt < cap_per_sentence_)
          sslots_[static_cast<size_t>(h)].push_back(static_cast<int64_t>(i));
        else
          ++lost_to_cap_[static_cast<size_t>(h)];
      }
      kept_per_sentence_[static_cast<size_t>(h)][static_cast<size_t>(j)] = cnt;
      if (cnt > 0)
        for (int64_t d = 0; d < D; ++d)
          svec_[static_cast<size_t>(h)][static_cast<size_t>(j * D + d)] =
              static_cast<float>(sum[static_cast<size_t>(d)] / static_cast<double>(cnt));
      soff_[static_cast<size_t>(h)].push_back(
          static_cast<int64_t>(sslots_[static_cast<size_t>(h)].size()));
    }
  }

  // Storage per query head.
  cap_ = std::max<int64_t>(kept_ + 256, 2 * kept_);
  slot_tok_.assign(static_cast<size_t>(H * cap_), -1);
  for (int64_t h = 0; h < H; ++h)
    for (int64_t i = 0; i < kept_; ++i)
      slot_tok_[static_cast<size_t>(h * cap_ + i)] =
          static_cast<int32_t>(kept[static_cast<size_t>(h)][static_cast<size_t>(i)]);
  const auto key_of = [&](int64_t h, int64_t i) {
    return dk_.data() +
           ((h / group) * dcap_ + kept[static_cast<size_t>(h)][static_cast<size_t>(i)]) * D;
  };
  const auto value_of = [&](int64_t h, int64_t i) {
    return dv_.data() +
           ((h / group) * dcap_ + kept[static_cast<size_t>(h)][static_cast<size_t>(i)]) * D;
  };
  if (opt_.mode == SentenceKvOptions::Mode::kOfficialCode) {
    k_.resize(static_cast<size_t>(H * cap_ * D));
    v_.resize(static_cast<size_t>(H * cap_ * D));
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < kept_; ++i) {
        std::memcpy(k_.data() + (h * cap_ + i) * D, key_of(h, i), D * sizeof(float));
        std::memcpy(v_.data() + (h * cap_ + i) * D, value_of(h, i), D * sizeof(float));
      }
  } else {
    // Device: slots [0, start) and the recent ring (slot s at ring index s % recent);
    // host: slots [start, S - recent), row = slot - start. Offload counted as d2h bytes.
    const int64_t st = opt_.start_budget, rc = opt_.recent_budget, L = st + rc;
    k_.resize(static_cast<size_t>(std::max<int64_t>(1, H * L * D)));
    v_.resize(static_cast<size_t>(std::max<int64_t>(1, H * L * D)));
    host_ = HostPool(H, D, opt_.host_dtype);
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < kept_; ++i) {
        float* kd = nullptr;
        float* vd = nullptr;
        if (i < st) {
          kd = k_.data() + (h * L + i) * D;
          vd = v_.data() + (h * L + i) * D;
        } else if (i >= kept_ - rc) {
          kd = k_.data() + (h * L + st + i % rc) * D;
          vd = v_.data() + (h * L + st + i % rc) * D;
        }
        if (kd) {
          std::memcpy(kd, key_of(h, i), D * sizeof(float));
          std::memcpy(vd, value_of(h, i), D * sizeof(float));
        } else {
          host_.push(h, key_of(h, i), value_of(h, i));
        }
      }
    prefill_d2h_ = host_.d2h_bytes();
  }
  cur_q_.assign(static_cast<size_t>(H * D), 0.0);
  cur_k_.assign(static_cast<size_t>(H * D), 0.0);
  cur_n_ = 0;
  cur_slots_.clear();
  dk_ = Buffer();
  dv_ = Buffer();
  dpos_ = {};
  dcap_ = 0;
  qbuf_ = {};
  qpos_ = {};
}

// ---- decode (2.3 decode steps 1-9) ----

const float* SentenceKvCache::key_ptr(int64_t h, int64_t slot) const {
  if (opt_.mode == SentenceKvOptions::Mode::kOfficialCode)
    return k_.data() + (h * cap_ + slot) * info_.D;
  const int64_t st = opt_.start_budget, rc = opt_.recent_budget, L = st + rc;
  if (slot < st) return k_.data() + (h * L + slot) * info_.D;
  KVLAB_CHECK(slot >= S_ - rc) << "slot " << slot << " is not device-resident";
  return k_.data() + (h * L + st + slot % rc) * info_.D;
}

const float* SentenceKvCache::value_ptr(int64_t h, int64_t slot) const {
  return v_.data() + (key_ptr(h, slot) - k_.data());
}

void SentenceKvCache::commit_token(const float* k, const float* v, int32_t id) {
  const int64_t H = info_.H, G = info_.G, D = info_.D, group = H / G;
  const int64_t slot = S_;
  if (slot >= cap_) {
    const int64_t cap = 2 * cap_;
    std::vector<int32_t> nt(static_cast<size_t>(H * cap), -1);
    for (int64_t h = 0; h < H; ++h)
      std::copy_n(slot_tok_.data() + h * cap_, S_, nt.data() + h * cap);
    slot_tok_ = std::move(nt);
    if (opt_.mode == SentenceKvOptions::Mode::kOfficialCode) {
      Buffer nk(static_cast<size_t>(H * cap * D)), nv(static_cast<size_t>(H * cap * D));
      for (int64_t h = 0; h < H; ++h) {
        std::memcpy(nk.data() + h * cap * D, k_.data() + h * cap_ * D, S_ * D * sizeof(float));
        std::memcpy(nv.data() + h * cap * D, v_.data() + h * cap_ * D, S_ * D * sizeof(float));
      }
      k_ = std::move(nk);
      v_ = std::move(nv);
    }
    cap_ = cap;
  }
  const int32_t tok = static_cast<int32_t>(ids_.size());
  ids_.push_back(id);
  int64_t d2h = host_.d2h_bytes();
  for (int64_t h = 0; h < H; ++h) {
    const float* kg = k + (h / group) * D;
    const float* vg = v + (h / group) * D;
    slot_tok_[static_cast<size_t>(h * cap_ + slot)] = tok;
    if (opt_.mode == SentenceKvOptions::Mode::kOfficialCode) {
      std::memcpy(k_.data() + (h * cap_ + slot) * D, kg, D * sizeof(float));
      std::memcpy(v_.data() + (h * cap_ + slot) * D, vg, D * sizeof(float));
    } else {
      const int64_t st = opt_.start_budget, rc = opt_.recent_budget, L = st + rc;
      if (slot < st) {
        std::memcpy(k_.data() + (h * L + slot) * D, kg, D * sizeof(float));
        std::memcpy(v_.data() + (h * L + slot) * D, vg, D * sizeof(float));
      } else {
        // The slot leaving the recent window goes to the host tier before its ring entry is
        // reused (rc == 0: the new slot goes straight to the host).
        const int64_t out = slot - rc;
        if (rc == 0) {
          host_.push(h, kg, vg);
        } else {
          float* kr = k_.data() + (h * L + st + slot % rc) * D;
          float* vr = v_.data() + (h * L + st + slot % rc) * D;
          if (out >= st) host_.push(h, kr, vr);
          std::memcpy(kr, kg, D * sizeof(float));
          std::memcpy(vr, vg, D * sizeof(float));
        }
      }
    }
    for (int64_t d = 0; d < D; ++d) cur_k_[static_cast<size_t>(h * D + d)] += kg[d];
  }
  d2h = host_.d2h_bytes() - d2h;
  cur_slots_.push_back(slot);
  ++S_;
  SentenceKvStep st;
  st.token = tok;
  st.d2h_bytes = d2h;
  steps_.push_back(st);
}

void SentenceKvCache::select_head(int64_t h, const float* qbar, bool full,
                                  std::vector<int64_t>& sel, double& n_sent_taken,
                                  double& cut) const {
  const int64_t D = info_.D, S = S_;
  const int64_t st = std::min(opt_.start_budget, S), rc = opt_.recent_budget;
  sel.clear();
  if (full) {
    sel.resize(static_cast<size_t>(S));
    std::iota(sel.begin(), sel.end(), int64_t{0});
    return;
  }
  // Local: slots [0, start) and the last `recent` slots up to and including the current one.
  for (int64_t s = 0; s < st; ++s) sel.push_back(s);
  for (int64_t s = std::max(st, S - rc); s < S; ++s) sel.push_back(s);
  // Buckets: sentences by descending q_bar . k_bar (raw dot product; ties: earlier sentence),
  // their slots concatenated, filtered to lo <= slot < S - recent, truncated to tau - start -
  // recent (the last sentence may be cut).
  const auto& vec = svec_[static_cast<size_t>(h)];
  // Scores [n_sent] = k_bar [n_sent, D] . q_bar: the framework's GEMV (cpu::linear, T = 1; run
  // inline inside the per-head task). Cost n_sent * D multiply-adds, reads n_sent * D * 4 bytes.
  std::vector<float> score(static_cast<size_t>(n_sent_));
  if (n_sent_ > 0)
    cpu::linear(qbar, 1, MatRef{vec.data(), DType::kF32, n_sent_, D, D}, nullptr, score.data(),
                *info_.pool);
  std::vector<std::pair<float, int64_t>> order(static_cast<size_t>(n_sent_));
  for (int64_t j = 0; j < n_sent_; ++j)
    order[static_cast<size_t>(j)] = {score[static_cast<size_t>(j)], j};
  // Ranking as a heap popped until the budget is filled: O(n_sent + k log n_sent) for the k
  // sentences taken, the same order as a stable descending sort (ties: earlier sentence).
  const auto worse = [](const std::pair<float, int64_t>& a, const std::pair<float, int64_t>& b) {
    return a.first != b.first ? a.first < b.first : a.second > b.second;
  };
  std::make_heap(order.begin(), order.end(), worse);
  const int64_t lo = opt_.compat_slot32 ? opt_.start_budget + 1 : opt_.start_budget;
  const int64_t hi = S - rc;
  const int64_t room =
      std::max<int64_t>(0, opt_.token_budget - opt_.start_budget - opt_.recent_budget);
  const auto& off = soff_[static_cast<size_t>(h)];
  const auto& sl = sslots_[static_cast<size_t>(h)];
  int64_t taken = 0;
  for (auto end = order.end(); end != order.begin() && taken < room; --end) {
    std::pop_heap(order.begin(), end, worse);
    const int64_t j = (end - 1)->second;
    int64_t from_j = 0;
    bool truncated = false;
    for (int64_t i = off[static_cast<size_t>(j)]; i < off[static_cast<size_t>(j + 1)]; ++i) {
      const int64_t s = sl[static_cast<size_t>(i)];
      if (s < lo || s >= hi) continue;
      if (taken >= room) {
        truncated = true;
        break;
      }
      sel.push_back(s);
      ++taken;
      ++from_j;
    }
    if (from_j > 0) n_sent_taken += 1;
    if (truncated) cut += 1;
  }
  std::sort(sel.begin(), sel.end());
}

void SentenceKvCache::decode_step(const float* q, float* out) {
  const int64_t H = info_.H, D = info_.D;
  SentenceKvStep& st = steps_.back();
  for (int64_t i = 0; i < H * D; ++i) cur_q_[static_cast<size_t>(i)] += q[i];
  ++cur_n_;
  // q_bar over the current (partial) sentence, current token included (Eq. 2).
  std::vector<float> qbar(static_cast<size_t>(H * D));
  for (int64_t i = 0; i < H * D; ++i)
    qbar[static_cast<size_t>(i)] =
        static_cast<float>(cur_q_[static_cast<size_t>(i)] / static_cast<double>(cur_n_));
  // A punctuation token closes its sentence: a new bucket with the mean key of its slots.
  if (bounds_.contains(ids_.back())) {
    for (int64_t h = 0; h < H; ++h) {
      auto& vec = svec_[static_cast<size_t>(h)];
      for (int64_t d = 0; d < D; ++d)
        vec.push_back(static_cast<float>(cur_k_[static_cast<size_t>(h * D + d)] /
                                         static_cast<double>(cur_n_)));
      auto& sl = sslots_[static_cast<size_t>(h)];
      sl.insert(sl.end(), cur_slots_.begin(), cur_slots_.end());
      soff_[static_cast<size_t>(h)].push_back(static_cast<int64_t>(sl.size()));
    }
    ++n_sent_;
    ++generated_sentences_;
    std::fill(cur_q_.begin(), cur_q_.end(), 0.0);
    std::fill(cur_k_.begin(), cur_k_.end(), 0.0);
    cur_n_ = 0;
    cur_slots_.clear();
    st.closed_sentence = true;
  }
  const bool full = opt_.boundary_full_attention && cur_n_ <= opt_.length_threshold;
  st.full_attention = full;
  const bool paper = opt_.mode == SentenceKvOptions::Mode::kPaper;
  std::vector<double> n_taken(static_cast<size_t>(H), 0.0), cut(static_cast<size_t>(H), 0.0);
  const int64_t h2d0 = host_.h2d_bytes();
  gk_.resize(static_cast<size_t>(H));
  gv_.resize(static_cast<size_t>(H));
  if (static_cast<int64_t>(zero_pos_.size()) < S_) zero_pos_.assign(static_cast<size_t>(2 * S_), 0);
  using Clock = std::chrono::steady_clock;
  const auto ms = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  };
  std::vector<double> t_sel(static_cast<size_t>(H), 0.0), t_gather(static_cast<size_t>(H), 0.0),
      t_attn(static_cast<size_t>(H), 0.0);
  info_.pool->parallel_tasks(H, [&](int64_t h, int) {
    const auto t0 = Clock::now();
    auto& sel = last_sel_[static_cast<size_t>(h)];
    select_head(h, qbar.data() + h * D, full, sel, n_taken[static_cast<size_t>(h)],
                cut[static_cast<size_t>(h)]);
    const auto t1 = Clock::now();
    t_sel[static_cast<size_t>(h)] = ms(t0, t1);
    const int64_t n = static_cast<int64_t>(sel.size());
    const int32_t qp = 0;
    const cpu::AttentionShape one{1, 1, D, info_.scale};
    if (!paper && full) {
      // official_code full-attention step: every resident slot of head h, read in place.
      const cpu::KvView kv{k_.data() + h * cap_ * D, v_.data() + h * cap_ * D, S_, cap_ * D, D,
                           zero_pos_.data()};
      cpu::attention(q + h * D, 1, &qp, kv, one, out + h * D, nullptr, *info_.pool);
      t_attn[static_cast<size_t>(h)] = ms(t1, Clock::now());
      return;
    }
    // Gather the attended rows into this head's workspace [n, D] (Eq. 3 over K_tau, V_tau). sel
    // is ascending, so host-tier slots (paper mode: [start, S - recent)) form one contiguous run,
    // filled by the host -> device transfer step; device rows are copied.
    auto& wk = gk_[static_cast<size_t>(h)];
    auto& wv = gv_[static_cast<size_t>(h)];
    if (wk.size() < static_cast<size_t>(n * D)) {
      wk.resize(static_cast<size_t>(n * D));
      wv.resize(static_cast<size_t>(n * D));
    }
    std::vector<int64_t> rows;
    int64_t first_host = -1;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t s = sel[static_cast<size_t>(i)];
      if (paper && place(h, s) == Place::kHost) {
        if (first_host < 0) first_host = i;
        rows.push_back(s - opt_.start_budget);
        continue;
      }
      std::memcpy(wk.data() + i * D, key_ptr(h, s), D * sizeof(float));
      std::memcpy(wv.data() + i * D, value_ptr(h, s), D * sizeof(float));
    }
    if (!rows.empty())
      host_.fetch(h, rows.data(), static_cast<int64_t>(rows.size()), wk.data() + first_host * D,
                  wv.data() + first_host * D);
    // Decode attention over the gathered rows: cpu::attention with one head (runs inline inside
    // this task); every gathered row precedes the query (positions 0).
    const auto t2 = Clock::now();
    t_gather[static_cast<size_t>(h)] = ms(t1, t2);
    const cpu::KvView kv{wk.data(), wv.data(), n, n * D, D, zero_pos_.data()};
    cpu::attention(q + h * D, 1, &qp, kv, one, out + h * D, nullptr, *info_.pool);
    t_attn[static_cast<size_t>(h)] = ms(t2, Clock::now());
  });
  for (int64_t h = 0; h < H; ++h) {
    st.select_ms += t_sel[static_cast<size_t>(h)];
    st.gather_ms += t_gather[static_cast<size_t>(h)];
    st.attention_ms += t_attn[static_cast<size_t>(h)];
  }
  st.h2d_bytes = host_.h2d_bytes() - h2d0;
  const int64_t local =
      std::min(opt_.start_budget, S_) +
      std::max<int64_t>(0, S_ - std::max(std::min(opt_.start_budget, S_), S_ - opt_.recent_budget));
  double att = 0;
  for (int64_t h = 0; h < H; ++h) {
    st.sentences += n_taken[static_cast<size_t>(h)] / static_cast<double>(H);
    st.sentences_cut += cut[static_cast<size_t>(h)] / static_cast<double>(H);
    att += static_cast<double>(last_sel_[static_cast<size_t>(h)].size()) / static_cast<double>(H);
  }
  st.attended = att;
  st.local_tokens = full ? 0.0 : static_cast<double>(local);
  st.bucket_tokens = full ? 0.0 : att - static_cast<double>(local);
  if (opt_.recall_every > 0 && (static_cast<int64_t>(steps_.size()) - 1) % opt_.recall_every == 0)
    recall_step(q, st);
}

// Recall of the true top-attention tokens (2.10): exact f64 attention of the current query over
// every token seen (shadow keys), top-k (k = tau, 64) vs the attended and the kept sets.
void SentenceKvCache::recall_step(const float* q, SentenceKvStep& st) const {
  const int64_t H = info_.H, G = info_.G, D = info_.D, group = H / G;
  const int64_t n = static_cast<int64_t>(shadow_k_.size()) / (G * D);
  double r_tau = 0, r_64 = 0, mass = 0, lp = 0, ld = 0;
  for (int64_t h = 0; h < H; ++h) {
    const int64_t g = h / group;
    std::vector<double> p(static_cast<size_t>(n));
    double mx = -1e300, z = 0;
    for (int64_t j = 0; j < n; ++j) {
      double dot = 0;
      for (int64_t d = 0; d < D; ++d)
        dot +=
            static_cast<double>(q[h * D + d]) * shadow_k_[static_cast<size_t>((j * G + g) * D + d)];
      p[static_cast<size_t>(j)] = dot * info_.scale;
      mx = std::max(mx, p[static_cast<size_t>(j)]);
    }
    for (auto& x : p) z += (x = std::exp(x - mx));
    for (auto& x : p) x /= z;
    std::vector<char> attended(static_cast<size_t>(n), 0), kept(static_cast<size_t>(n), 0);
    for (int64_t s : last_sel_[static_cast<size_t>(h)])
      attended[static_cast<size_t>(slot_token(h, s))] = 1;
    for (int64_t s = 0; s < S_; ++s) kept[static_cast<size_t>(slot_token(h, s))] = 1;
    std::vector<int64_t> idx(static_cast<size_t>(n));
    std::iota(idx.begin(), idx.end(), int64_t{0});
    std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) {
      return p[static_cast<size_t>(a)] > p[static_cast<size_t>(b)];
    });
    const auto recall = [&](int64_t k, double* lost_p, double* lost_d) {
      k = std::min(k, n);
      int64_t hit = 0, lpk = 0, ldk = 0;
      for (int64_t i = 0; i < k; ++i) {
        const size_t j = static_cast<size_t>(idx[static_cast<size_t>(i)]);
        if (attended[j])
          ++hit;
        else if (kept[j])
          ++ldk;
        else
          ++lpk;
      }
      if (lost_p)
        *lost_p += static_cast<double>(lpk) / static_cast<double>(k) / static_cast<double>(H);
      if (lost_d)
        *lost_d += static_cast<double>(ldk) / static_cast<double>(k) / static_cast<double>(H);
      return static_cast<double>(hit) / static_cast<double>(k) / static_cast<double>(H);
    };
    r_tau += recall(opt_.token_budget, nullptr, nullptr);
    r_64 += recall(64, &lp, &ld);
    for (int64_t j = 0; j < n; ++j)
      if (attended[static_cast<size_t>(j)])
        mass += p[static_cast<size_t>(j)] / static_cast<double>(H);
  }
  st.recall_tau = r_tau;
  st.recall_64 = r_64;
  st.mass = mass;
  st.lost_prefill_64 = lp;
  st.lost_decode_64 = ld;
}

// ---- inspection, memory, traces ----

int32_t SentenceKvCache::slot_token(int64_t h, int64_t slot) const {
  KVLAB_CHECK(prefill_done_ && slot >= 0 && slot < S_);
  return slot_tok_[static_cast<size_t>(h * cap_ + slot)];
}

SentenceKvCache::Place SentenceKvCache::place(int64_t h, int64_t slot) const {
  if (opt_.mode == SentenceKvOptions::Mode::kOfficialCode) return Place::kDevice;
  if (slot < opt_.start_budget || slot >= S_ - opt_.recent_budget) return Place::kDevice;
  return Place::kHost;
}

void SentenceKvCache::read_slot(int64_t h, int64_t slot, float* k, float* v) const {
  KVLAB_CHECK(prefill_done_ && slot >= 0 && slot < S_);
  if (place(h, slot) == Place::kHost) {
    host_.read(h, slot - opt_.start_budget, k, v);
    return;
  }
  std::memcpy(k, key_ptr(h, slot), info_.D * sizeof(float));
  std::memcpy(v, value_ptr(h, slot), info_.D * sizeof(float));
}

const float* SentenceKvCache::sentence_vector(int64_t h, int64_t s) const {
  return svec_[static_cast<size_t>(h)].data() + s * info_.D;
}

std::vector<int64_t> SentenceKvCache::sentence_slots(int64_t h, int64_t s) const {
  const auto& off = soff_[static_cast<size_t>(h)];
  const auto& sl = sslots_[static_cast<size_t>(h)];
  return std::vector<int64_t>(sl.begin() + off[static_cast<size_t>(s)],
                              sl.begin() + off[static_cast<size_t>(s + 1)]);
}

int64_t SentenceKvCache::resident_rows() const {
  if (!prefill_done_) return seen_;
  if (opt_.mode == SentenceKvOptions::Mode::kOfficialCode) return S_;
  return S_ - host_.rows();
}

MemoryReport SentenceKvCache::memory() const {
  MemoryReport r;
  const int64_t H = info_.H, G = info_.G, D = info_.D, f = static_cast<int64_t>(sizeof(float));
  if (!prefill_done_) {
    r.device_bytes = seen_ * (2 * G * D * f + static_cast<int64_t>(sizeof(int32_t)));
    r.workspace_bytes =
        (dcap_ - seen_) * (2 * G * D * f + 4) +
        static_cast<int64_t>(qbuf_.capacity() * sizeof(float) + qpos_.capacity() * 4);
    r.full_tokens = seen_;
    return r;
  }
  // Device: resident K/V rows (per query head), the semantic vectors, the CSR slot lists and the
  // slot -> token table; host: the host pool.
  int64_t meta = 0;
  for (int64_t h = 0; h < H; ++h)
    meta += static_cast<int64_t>(svec_[static_cast<size_t>(h)].size()) * f +
            static_cast<int64_t>(
                (soff_[static_cast<size_t>(h)].size() + sslots_[static_cast<size_t>(h)].size()) *
                sizeof(int64_t));
  const int64_t resident = opt_.mode == SentenceKvOptions::Mode::kOfficialCode
                               ? S_
                               : std::min(S_, opt_.start_budget + opt_.recent_budget);
  r.device_bytes = resident * H * 2 * D * f + meta + S_ * H * 4;
  r.host_bytes = host_.bytes();
  int64_t gather = 0;
  for (size_t h = 0; h < gk_.size(); ++h)
    gather += static_cast<int64_t>((gk_[h].capacity() + gv_[h].capacity()) * sizeof(float));
  const int64_t spare =
      opt_.mode == SentenceKvOptions::Mode::kOfficialCode ? (cap_ - S_) * H * 2 * D * f : 0;
  r.workspace_bytes = gather + spare + (cap_ - S_) * H * 4 +
                      static_cast<int64_t>((cur_q_.size() + cur_k_.size()) * sizeof(double)) +
                      static_cast<int64_t>(shadow_k_.capacity() * sizeof(float));
  r.full_tokens = S_;
  r.evicted_tokens = seen_ - S_ - static_cast<int64_t>(pids_.size());
  return r;
}

void SentenceKvCache::trace(TraceSink& sink) const {
  char base[64];
  std::snprintf(base, sizeof(base), "sentencekv/layer_%02lld", static_cast<long long>(info_.layer));
  const std::string b(base);
  std::string ids;
  for (int32_t id : bounds_.ids) {
    if (!ids.empty()) ids.push_back(',');
    ids.append(std::to_string(id));
  }
  std::string dropped = nlohmann::json(bounds_.dropped).dump();
  sink.set_attribute("sentencekv", "boundary_ids", ids);
  sink.set_attribute("sentencekv", "dropped_punctuation", dropped);
  sink.set_attribute("sentencekv", "mode",
                     opt_.mode == SentenceKvOptions::Mode::kPaper ? "paper" : "official_code");
  sink.append_scalar(b + "/prompt_sentences", static_cast<double>(n_prompt_sent_), "sentences");
  sink.append_scalar(b + "/generated_sentences", static_cast<double>(generated_sentences_),
                     "sentences");
  sink.append_scalar(b + "/kept_prompt_tokens", static_cast<double>(kept_), "tokens");
  sink.append_scalar(b + "/max_tokens_per_sentence", static_cast<double>(cap_per_sentence_),
                     "tokens");
  const MemoryReport m = memory();
  sink.append_scalar(b + "/device_bytes", static_cast<double>(m.device_bytes), "bytes");
  sink.append_scalar(b + "/host_bytes", static_cast<double>(m.host_bytes), "bytes");
  sink.append_scalar(b + "/workspace_bytes", static_cast<double>(m.workspace_bytes), "bytes");
  sink.append_scalar(b + "/prefill_d2h_bytes", static_cast<double>(prefill_d2h_), "bytes");
  if (prefill_done_ && n_prompt_sent_ > 0) {
    std::vector<float> row(prompt_sentence_tokens_.begin(), prompt_sentence_tokens_.end());
    sink.append_row(b + "/prompt_sentence_tokens", row, "tokens");
    std::vector<float> empty, lost, mass;
    for (int64_t h = 0; h < info_.H; ++h) {
      const auto& k = kept_per_sentence_[static_cast<size_t>(h)];
      sink.append_row(b + "/kept_per_sentence", std::vector<float>(k.begin(), k.end()), "tokens");
      empty.push_back(static_cast<float>(std::count(k.begin(), k.end(), 0)));
      lost.push_back(static_cast<float>(lost_to_cap_[static_cast<size_t>(h)]));
      mass.push_back(static_cast<float>(window_mass_[static_cast<size_t>(h)]));
    }
    sink.append_row(b + "/empty_sentences_per_head", empty, "sentences");
    sink.append_row(b + "/lost_to_max_tokens_per_head", lost, "tokens");
    sink.append_row(b + "/window_mass_kept_per_head", mass, "fraction");
  }
  for (const auto& s : steps_) {
    const std::string p = b + "/steps/";
    sink.append_scalar(p + "token", static_cast<double>(s.token), "index");
    sink.append_scalar(p + "full_attention", s.full_attention ? 1.0 : 0.0, "bool");
    sink.append_scalar(p + "closed_sentence", s.closed_sentence ? 1.0 : 0.0, "bool");
    sink.append_scalar(p + "sentences_retrieved", s.sentences, "sentences (mean over heads)");
    sink.append_scalar(p + "sentences_cut", s.sentences_cut, "fraction of heads");
    sink.append_scalar(p + "bucket_tokens", s.bucket_tokens, "tokens (mean over heads)");
    sink.append_scalar(p + "local_tokens", s.local_tokens, "tokens");
    sink.append_scalar(p + "attended_tokens", s.attended, "tokens (mean over heads)");
    sink.append_scalar(p + "h2d_bytes", static_cast<double>(s.h2d_bytes), "bytes");
    sink.append_scalar(p + "d2h_bytes", static_cast<double>(s.d2h_bytes), "bytes");
    sink.append_scalar(p + "select_ms", s.select_ms, "ms (thread time, summed over heads)");
    sink.append_scalar(p + "gather_ms", s.gather_ms, "ms (thread time, summed over heads)");
    sink.append_scalar(p + "attention_ms", s.attention_ms, "ms (thread time, summed over heads)");
    if (opt_.recall_every > 0) {
      const double nan = std::numeric_limits<double>::quiet_NaN();
      const bool has = s.recall_64 >= 0;
      sink.append_scalar(p + "recall_tau", has ? s.recall_tau : nan, "fraction (mean over heads)");
      sink.append_scalar(p + "recall_64", has ? s.recall_64 : nan, "fraction (mean over heads)");
      sink.append_scalar(p + "attention_mass", has ? s.mass : nan, "fraction (mean over heads)");
      sink.append_scalar(p + "lost_prefill_64", has ? s.lost_prefill_64 : nan, "fraction");
      sink.append_scalar(p + "lost_decode_64", has ? s.lost_decode_64 : nan, "fraction");
    }
  }
}

// ---- registration ----

namespace {


bool tri(const std::string& v, bool auto_value) { return v == "auto" ? auto_value : v == "on"; }

// The declared parameters as options, with the model-free checks (the registry's `check`).
SentenceKvOptions options_from(const ParamValues& v) {
  SentenceKvOptions o;
  o.mode = v.get_string("mode") == "paper" ? SentenceKvOptions::Mode::kPaper
                                           : SentenceKvOptions::Mode::kOfficialCode;
  const bool code = o.mode == SentenceKvOptions::Mode::kOfficialCode;
  o.token_budget = v.get_int("token_budget");
  o.semantic_factor = v.get_float("semantic_factor");
  o.window_size = v.get_int("window_size");
  o.kernel_size = v.get_int("kernel_size");
  o.pooling = baselines::parse_pooling(v.get_string("pooling"), "pooling");
  o.global_importance = v.get_string("importance_scope") == "global";
  o.start_budget = v.get_int("start_budget");
  o.recent_budget = v.get_int("recent_budget");
  o.length_threshold = v.get_int("length_threshold");
  o.punctuation = parse_punctuation(v.get_string("punctuation"), "punctuation");
  o.max_tokens_per_sentence = v.get_int("max_tokens_per_sentence");
  o.boundary_full_attention = tri(v.get_string("boundary_full_attention"), code);
  o.compat_slot32 = tri(v.get_string("compat_slot32"), code);
  const std::string hd = v.get_string("host_pool_dtype");
  o.host_dtype = hd == "f32" ? DType::kF32 : hd == "bf16" ? DType::kBF16 : DType::kF16;
  o.recall_every = v.get_int("recall_every");
  if (o.token_budget < o.start_budget + o.recent_budget)
    fail("sentencekv: token_budget = ", o.token_budget,
         " must be >= start_budget + "
         "recent_budget = ",
         o.start_budget + o.recent_budget, " (the budget includes the local window)");
  if (!(o.semantic_factor > 0.0) ||
      std::floor(o.semantic_factor * static_cast<double>(o.token_budget)) < 1.0)
    fail("sentencekv: semantic_factor = ", o.semantic_factor,
         " must be > 0 with floor(semantic_factor * token_budget) >= 1");
  return o;
}

kv::KvMethod make_method() {
  using T = ParamDecl::Type;
  std::vector<ParamDecl> p;
  p.push_back(param_decl("mode", T::kChoice, std::string("official_code"),
                   "official_code: everything resident, retrieval selects resident slots, full "
                   "attention around boundaries (methods.md 2.3, 'mask'); paper: host tier for "
                   "sentence tokens, per-step host->device transfer (2.2, 'offload')",
                   std::nullopt, std::nullopt, {"official_code", "paper"}));
  p.push_back(param_decl("token_budget", T::kInt, int64_t{1024},
                   "tau: decode budget per head, local window included", 1.0));
  p.push_back(param_decl("semantic_factor", T::kFloat, 3.0,
                   "r: prefill keeps floor(r * tau) tokens per head (LongBench 3, RULER 2)", 0.0));
  p.push_back(param_decl("window_size", T::kInt, int64_t{32},
                   "observation window: last prompt queries that score the prompt", 1.0));
  ParamDecl kernel = param_decl("kernel_size", T::kInt, int64_t{7},
                          "1-D pooling kernel over token scores (odd; stride 1, padding k/2)", 1.0);
  kernel.check = [](const ParamValue& v) {
    if (std::get<int64_t>(v) % 2 == 0) throw Error("kernel_size must be odd");
  };
  p.push_back(kernel);
  p.push_back(param_decl("pooling", T::kChoice, std::string("max"), "score smoothing (code: max)",
                   std::nullopt, std::nullopt, {"max", "avg", "none"}));
  p.push_back(param_decl("importance_scope", T::kChoice, std::string("per_head"),
                   "per_head: each head keeps its own top tokens (code); global: scores summed "
                   "over heads, one kept set (paper text)",
                   std::nullopt, std::nullopt, {"per_head", "global"}));
  p.push_back(param_decl("start_budget", T::kInt, int64_t{32}, "local window: first cache slots", 0.0));
  p.push_back(param_decl("recent_budget", T::kInt, int64_t{32},
                   "local window: last cache slots (current token included)", 0.0));
  p.push_back(param_decl("length_threshold", T::kInt, int64_t{1},
                   "full-attention step when the current sentence holds <= this many queries "
                   "(with boundary_full_attention) [INFERRED from the code]",
                   0.0));
  ParamDecl punct = param_decl("punctuation", T::kString, std::string("official"),
                         "boundary token strings, resolved by exact vocabulary lookup (misses "
                         "dropped): 'official' (the 13 strings of the run scripts) or a JSON "
                         "array, e.g. [\".\", \"?\"]");
  punct.check = [](const ParamValue& v) {
    parse_punctuation(std::get<std::string>(v), "punctuation");
  };
  p.push_back(punct);
  p.push_back(param_decl("max_tokens_per_sentence", T::kInt, int64_t{0},
                   "slot-list cap per prompt sentence; 0 = auto: max(100, 2*r*tau/n_sent + 50)",
                   0.0));
  p.push_back(param_decl("boundary_full_attention", T::kChoice, std::string("auto"),
                   "full attention on <= length_threshold steps; auto: on for official_code, off "
                   "for paper",
                   std::nullopt, std::nullopt, {"auto", "on", "off"}));
  p.push_back(param_decl("compat_slot32", T::kChoice, std::string("auto"),
                   "reproduce the code's strict 'start_budget < slot' bucket filter; auto: on for "
                   "official_code, off for paper",
                   std::nullopt, std::nullopt, {"auto", "on", "off"}));
  p.push_back(param_decl("host_pool_dtype", T::kChoice, std::string("f16"),
                   "paper mode: storage of the host tier (the code's fp16)", std::nullopt,
                   std::nullopt, {"f16", "bf16", "f32"}));
  p.push_back(param_decl("recall_every", T::kInt, int64_t{0},
                   "diagnostic: every N decode steps, recall of the true top-attention tokens "
                   "(keeps a shadow copy of every key); 0 = off",
                   0.0));
  return kv::KvMethod{
      "sentencekv",
      "SentenceKV (Zhu et al., COLM 2025): exact prefill; the last window_size prompt queries "
      "keep floor(r*tau) tokens per head (SnapKV scores, pooled); the prompt is cut at the "
      "tokenizer's punctuation tokens and each sentence gets a per-head semantic vector (mean "
      "kept post-RoPE key). Each decode step ranks sentences by q_bar . k_bar (q_bar: mean query "
      "of the sentence being generated) and attends to the best sentences' slots (<= tau - "
      "start - recent) plus the first start_budget and last recent_budget slots; finished "
      "generated sentences become buckets. mode official_code keeps everything resident (the "
      "released code); mode paper keeps sentence tokens in a host tier and copies the chosen "
      "ones each step.",
      p,
      [](const kv::LayerInfo& info, const ParamValues& v) {
        SentenceKvOptions o = options_from(v);
        if (info.H % info.G != 0)
          fail("sentencekv: H = ", info.H, " is not a multiple of G = ", info.G);
        return std::unique_ptr<kv::KvCache>(new SentenceKvCache(info, std::move(o)));
      },
      [](const ParamValues& v) { options_from(v); }};
}

}  // namespace

KVLAB_REGISTER_KV_METHOD(sentencekv, make_method());

}  // namespace kvlab::methods
