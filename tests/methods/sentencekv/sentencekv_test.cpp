// SentenceKV (methods/sentencekv): full-cache equivalence through a real model forward, an f64
// brute-force reference of prefill selection, sentence vectors and decode retrieval, the two
// tiers' bookkeeping, determinism, both modes, parameter errors and the shipped configs.
#include "methods/sentencekv/sentencekv.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <set>

#include "framework/cli/commands.h"
#include "framework/core/error.h"
#include "framework/core/rng.h"
#include "framework/harness/sweep.h"
#include "framework/model/llama.h"
#include "framework/model/model_init.h"
#include "framework/model/tokenizer.h"
#include "tests/support/close.h"
#include "tests/support/temp_dir.h"

namespace kvlab {
namespace {

using methods::SentenceKvCache;
namespace fs = std::filesystem;

using Sets = std::vector<std::pair<std::string, std::string>>;

const model::Tokenizer& byte_tokenizer() {
  static const model::Tokenizer tok =
      model::Tokenizer::from_json(model::byte_level_tokenizer_json(), "init.json");
  return tok;
}
constexpr int32_t kDot = '.', kQuestion = '?';  // byte-level vocabulary: byte b has id b

struct Shape {
  int64_t H = 4, G = 2, D = 16;
};

kv::LayerInfo layer_info(ThreadPool& pool, const Shape& s, bool tokenizer = true) {
  kv::LayerInfo info;
  info.n_layers = 1;
  info.H = s.H;
  info.G = s.G;
  info.D = s.D;
  info.scale = 1.0f / std::sqrt(static_cast<float>(s.D));
  info.pool = &pool;
  info.tokenizer = tokenizer ? &byte_tokenizer() : nullptr;
  return info;
}

ParamValues params(const Sets& set) {
  const auto& m = kv::KvRegistry::instance().find("sentencekv");
  ParamValues p(m.params);
  for (const auto& [k, v] : set) p.set_from_string(k, v, "test");
  return p;
}

std::unique_ptr<SentenceKvCache> make(const kv::LayerInfo& info, const Sets& set) {
  auto c = kv::KvRegistry::instance().find("sentencekv").make(info, params(set));
  return std::unique_ptr<SentenceKvCache>(dynamic_cast<SentenceKvCache*>(c.release()));
}

// Random post-RoPE keys/values/queries and token ids with a boundary every 3..12 tokens.
struct Stream {
  int64_t S;
  std::vector<float> k, v, q;
  std::vector<int32_t> pos, ids;
  Stream(const Shape& s, int64_t S_, uint64_t seed) : S(S_) {
    Rng rng(seed);
    k.resize(S * s.G * s.D);
    v.resize(S * s.G * s.D);
    q.resize(S * s.H * s.D);
    for (auto& x : k) x = static_cast<float>(rng.normal());
    for (auto& x : v) x = static_cast<float>(rng.normal());
    for (auto& x : q) x = static_cast<float>(1.5 * rng.normal());
    pos.resize(S);
    ids.resize(S);
    int64_t next = 3 + static_cast<int64_t>(rng.uniform() * 10);
    for (int64_t i = 0; i < S; ++i) {
      pos[i] = static_cast<int32_t>(i);
      ids[i] = 'a' + static_cast<int32_t>(rng.uniform() * 26);
      if (i == next) {
        ids[i] = rng.uniform() < 0.8 ? kDot : kQuestion;
        next = i + 3 + static_cast<int64_t>(rng.uniform() * 10);
      }
    }
  }
};

// Prefill in two chunks, end_prefill, then one-token decode steps; returns outputs [S, H, D].
std::vector<float> run(kv::KvCache& c, const Shape& s, const Stream& st, int64_t prompt,
                       const std::function<void(int64_t)>& step = {}) {
  std::vector<float> out(st.S * s.H * s.D);
  int64_t done = 0;
  for (int64_t T : {prompt / 3, prompt - prompt / 3}) {
    c.observe_tokens(st.ids.data() + done, T);
    c.append(st.k.data() + done * s.G * s.D, st.v.data() + done * s.G * s.D, T,
             st.pos.data() + done);
    c.attend(st.q.data() + done * s.H * s.D, T, st.pos.data() + done,
             out.data() + done * s.H * s.D);
    done += T;
  }
  c.end_prefill(kv::PrefillContext{prompt});
  if (step) step(-1);
  for (; done < st.S; ++done) {
    c.observe_tokens(st.ids.data() + done, 1);
    c.append(st.k.data() + done * s.G * s.D, st.v.data() + done * s.G * s.D, 1,
             st.pos.data() + done);
    c.attend(st.q.data() + done * s.H * s.D, 1, st.pos.data() + done,
             out.data() + done * s.H * s.D);
    if (step) step(done);
  }
  return out;
}

// ---- f64 brute-force reference of the official code's algorithm (methods.md 2.3) ----
struct Reference {
  const Shape s;
  const Stream& st;
  int64_t prompt, tau, keep_budget, window = 32, kernel = 7, start = 32, recent = 32;
  bool compat = true, boundary_full = true, global = false;
  std::vector<std::vector<int64_t>> kept;                // [H] token indices
  std::vector<std::vector<std::vector<double>>> vec;     // [H][sent][D]
  std::vector<std::vector<std::vector<int64_t>>> slots;  // [H][sent] slot lists
  std::vector<std::vector<int64_t>> slot_tok;            // [H][slot] token
  std::vector<int64_t> cur;                              // current sentence's tokens

  double dot_qk(int64_t t, int64_t h, int64_t j) const {
    const int64_t g = h / (s.H / s.G);
    double d = 0;
    for (int64_t x = 0; x < s.D; ++x)
      d += static_cast<double>(st.q[(t * s.H + h) * s.D + x]) * st.k[(j * s.G + g) * s.D + x];
    return d;
  }

  void prefill() {
    const int64_t n = prompt, w = std::min(window, n), H = s.H;
    const double scale = 1.0 / std::sqrt(static_cast<double>(s.D));
    const int64_t keep = std::min(n, keep_budget);
    kept.assign(H, {});
    std::vector<std::vector<double>> pooled(H);
    for (int64_t h = 0; h < H && n > keep; ++h) {
      std::vector<double> a(n, 0.0);
      for (int64_t t = n - w; t < n; ++t) {
        std::vector<double> l(t + 1);
        double mx = -1e300, z = 0;
        for (int64_t j = 0; j <= t; ++j) mx = std::max(mx, l[j] = scale * dot_qk(t, h, j));
        for (int64_t j = 0; j <= t; ++j) z += std::exp(l[j] - mx);
        for (int64_t j = 0; j <= t; ++j) a[j] += std::exp(l[j] - mx) / z;
      }
      const int64_t pre = n - w;
      pooled[h].resize(pre);
      for (int64_t i = 0; i < pre; ++i) {
        double m = -1;
        for (int64_t j = std::max<int64_t>(0, i - kernel / 2);
             j <= std::min(pre - 1, i + kernel / 2); ++j)
          m = std::max(m, a[j]);
        pooled[h][i] = m;
      }
    }
    if (global && n > keep) {
      std::vector<double> sum(n - w, 0.0);
      for (const auto& p : pooled)
        for (int64_t i = 0; i < n - w; ++i) sum[i] += p[i];
      for (auto& p : pooled) p = sum;
    }
    for (int64_t h = 0; h < H; ++h) {
      if (n <= keep) {
        for (int64_t i = 0; i < n; ++i) kept[h].push_back(i);
        continue;
      }
      const int64_t pre = n - w;
      std::vector<int64_t> idx(pre);
      std::iota(idx.begin(), idx.end(), 0);
      std::stable_sort(idx.begin(), idx.end(),
                       [&](int64_t x, int64_t y) { return pooled[h][x] > pooled[h][y]; });
      kept[h].assign(idx.begin(), idx.begin() + (keep - w));
      std::sort(kept[h].begin(), kept[h].end());
      for (int64_t i = pre; i < n; ++i) kept[h].push_back(i);
    }
    // Sentences: a boundary token closes its sentence.
    std::vector<int64_t> sent_of(n);
    int64_t sid = 0;
    for (int64_t i = 0; i < n; ++i) {
      sent_of[i] = sid;
      if (st.ids[i] == kDot || st.ids[i] == kQuestion) ++sid;
    }
    const int64_t n_sent =
        (n > 0 && (st.ids[n - 1] == kDot || st.ids[n - 1] == kQuestion)) ? sid : sid + 1;
    vec.assign(H, std::vector<std::vector<double>>(n_sent, std::vector<double>(s.D, 0.0)));
    slots.assign(H, std::vector<std::vector<int64_t>>(n_sent));
    slot_tok.assign(H, {});
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / (s.H / s.G);
      std::vector<int64_t> cnt(n_sent, 0);
      for (size_t i = 0; i < kept[h].size(); ++i) {
        const int64_t j = kept[h][i], sj = sent_of[j];
        slots[h][sj].push_back(static_cast<int64_t>(i));
        for (int64_t x = 0; x < s.D; ++x) vec[h][sj][x] += st.k[(j * s.G + g) * s.D + x];
        ++cnt[sj];
        slot_tok[h].push_back(j);
      }
      for (int64_t sj = 0; sj < n_sent; ++sj)
        if (cnt[sj] > 0)
          for (auto& x : vec[h][sj]) x /= static_cast<double>(cnt[sj]);
    }
  }

  // Decode step of token t: returns, per head, the attended slots (ascending).
  std::vector<std::vector<int64_t>> step(int64_t t) {
    const int64_t H = s.H;
    for (int64_t h = 0; h < H; ++h) slot_tok[h].push_back(t);
    const int64_t S = static_cast<int64_t>(slot_tok[0].size());
    cur.push_back(t);
    std::vector<std::vector<double>> qbar(H, std::vector<double>(s.D, 0.0));
    for (int64_t h = 0; h < H; ++h)
      for (int64_t u : cur)
        for (int64_t x = 0; x < s.D; ++x)
          qbar[h][x] += st.q[(u * s.H + h) * s.D + x] / static_cast<double>(cur.size());
    if (st.ids[t] == kDot || st.ids[t] == kQuestion) {
      for (int64_t h = 0; h < H; ++h) {
        const int64_t g = h / (s.H / s.G);
        std::vector<double> m(s.D, 0.0);
        std::vector<int64_t> sl;
        for (int64_t u : cur) {
          sl.push_back(std::find(slot_tok[h].begin(), slot_tok[h].end(), u) - slot_tok[h].begin());
          for (int64_t x = 0; x < s.D; ++x)
            m[x] += st.k[(u * s.G + g) * s.D + x] / static_cast<double>(cur.size());
        }
        vec[h].push_back(m);
        slots[h].push_back(sl);
      }
      cur.clear();
    }
    std::vector<std::vector<int64_t>> sel(H);
    for (int64_t h = 0; h < H; ++h) {
      if (boundary_full && cur.size() <= 1) {
        for (int64_t i = 0; i < S; ++i) sel[h].push_back(i);
        continue;
      }
      std::set<int64_t> chosen;
      for (int64_t i = 0; i < std::min(start, S); ++i) chosen.insert(i);
      for (int64_t i = std::max<int64_t>(0, S - recent); i < S; ++i) chosen.insert(i);
      const int64_t n_sent = static_cast<int64_t>(vec[h].size());
      std::vector<std::pair<double, int64_t>> sc;
      for (int64_t j = 0; j < n_sent; ++j) {
        double d = 0;
        for (int64_t x = 0; x < s.D; ++x) d += qbar[h][x] * vec[h][j][x];
        sc.push_back({d, j});
      }
      std::stable_sort(sc.begin(), sc.end(),
                       [](const auto& a, const auto& b) { return a.first > b.first; });
      int64_t taken = 0;
      for (const auto& [d, j] : sc)
        for (int64_t slot : slots[h][j]) {
          if (taken >= tau - start - recent) break;
          if ((compat ? slot > start : slot >= start) && slot < S - recent) {
            chosen.insert(slot);
            ++taken;
          }
        }
      sel[h].assign(chosen.begin(), chosen.end());
    }
    return sel;
  }

  // f64 attention of query t, head h over the given slots.
  std::vector<double> attend(int64_t t, int64_t h, const std::vector<int64_t>& sel) const {
    const int64_t g = h / (s.H / s.G);
    const double scale = 1.0 / std::sqrt(static_cast<double>(s.D));
    std::vector<double> l;
    double mx = -1e300, z = 0;
    for (int64_t slot : sel) {
      l.push_back(scale * dot_qk(t, h, slot_tok[h][slot]));
      mx = std::max(mx, l.back());
    }
    for (double& x : l) z += (x = std::exp(x - mx));
    std::vector<double> o(s.D, 0.0);
    for (size_t i = 0; i < sel.size(); ++i)
      for (int64_t x = 0; x < s.D; ++x)
        o[x] += l[i] / z * st.v[(slot_tok[h][sel[i]] * s.G + g) * s.D + x];
    return o;
  }
};

// Prefill selection, sentence vectors and every decode step's retrieved set equal the f64
// brute-force reference; outputs equal f64 attention over that set. Both modes, with and without
// the boundary full-attention steps and the slot-32 compatibility filter.
TEST(SentenceKv, RetrievalMatchesF64BruteForce) {
  ThreadPool pool(2);
  const Shape s{8, 2, 16};
  const int64_t S = 400, prompt = 330;
  const Stream st(s, S, 21);
  for (const std::string mode : {"official_code", "paper"})
    for (const std::string flags : {"on", "off"}) {
      SCOPED_TRACE(mode + " boundary/compat " + flags);
      Reference ref{s, st, prompt, 128, 192};
      ref.compat = ref.boundary_full = flags == "on";
      ref.prefill();
      auto c = make(layer_info(pool, s), {{"mode", mode},
                                          {"token_budget", "128"},
                                          {"semantic_factor", "1.5"},
                                          {"host_pool_dtype", "f32"},
                                          {"boundary_full_attention", flags},
                                          {"compat_slot32", flags}});
      int64_t bucket_steps = 0;
      const auto got = run(*c, s, st, prompt, [&](int64_t t) {
        if (t < 0) {
          ASSERT_EQ(c->slots(), 192);
          ASSERT_EQ(c->sentences(), static_cast<int64_t>(ref.vec[0].size()));
          for (int64_t h = 0; h < s.H; ++h) {
            for (int64_t i = 0; i < c->slots(); ++i)
              ASSERT_EQ(c->slot_token(h, i), ref.kept[h][i]) << h;
            for (int64_t j = 0; j < c->sentences(); ++j) {
              ASSERT_EQ(c->sentence_slots(h, j), ref.slots[h][j]);
              for (int64_t x = 0; x < s.D; ++x)
                ASSERT_NEAR(c->sentence_vector(h, j)[x], ref.vec[h][j][x], 1e-5);
            }
          }
          return;
        }
        const auto want = ref.step(t);
        bool full = true;
        for (int64_t h = 0; h < s.H; ++h) {
          ASSERT_EQ(c->last_attended(h), want[h]) << "step " << t << " head " << h;
          full = full && static_cast<int64_t>(want[h].size()) == c->slots();
        }
        if (!full) ++bucket_steps;
      });
      ASSERT_GT(bucket_steps, 30);
      // Outputs against f64 attention over the reference set.
      Reference again{s, st, prompt, 128, 192};
      again.compat = again.boundary_full = flags == "on";
      again.prefill();
      for (int64_t t = prompt; t < S; ++t) {
        const auto sel = again.step(t);
        std::vector<float> want(s.H * s.D);
        for (int64_t h = 0; h < s.H; ++h) {
          const auto o = again.attend(t, h, sel[h]);
          for (int64_t x = 0; x < s.D; ++x) want[h * s.D + x] = static_cast<float>(o[x]);
        }
        ASSERT_TRUE(
            testing::all_close(got.data() + t * s.H * s.D, want.data(), s.H * s.D, 2e-5, 2e-5))
            << "step " << t;
      }
    }
}

// official_code defaults: full attention exactly on the first decoded token, on each
// sentence-closing token and on the token after it (the <= 1-query steps of methods.md 2.3 step 6).
TEST(SentenceKv, OfficialCodeFullAttentionAroundBoundaries) {
  ThreadPool pool(2);
  const Shape s;
  const Stream st(s, 320, 12);
  auto c = make(layer_info(pool, s), {{"token_budget", "96"}, {"semantic_factor", "2"}});
  run(*c, s, st, 200);
  const auto& steps = c->steps();
  ASSERT_EQ(steps.size(), 120u);
  int64_t closes = 0;
  for (size_t i = 0; i < steps.size(); ++i) {
    const bool want = i == 0 || steps[i].closed_sentence || steps[i - 1].closed_sentence;
    EXPECT_EQ(steps[i].full_attention, want) << i;
    EXPECT_EQ(steps[i].closed_sentence, st.ids[200 + i] == kDot || st.ids[200 + i] == kQuestion);
    if (steps[i].full_attention) {
      EXPECT_EQ(steps[i].attended, static_cast<double>(192 + i + 1))
          << i;  // every slot: kept + generated
    }
    closes += steps[i].closed_sentence;
  }
  EXPECT_GT(closes, 5);
  EXPECT_EQ(c->sentences(), c->prompt_sentences() + closes);
}

// max_tokens_per_sentence caps every prompt sentence's slot list (the first slots are kept).
TEST(SentenceKv, MaxTokensPerSentenceCapsSlotLists) {
  ThreadPool pool(1);
  const Shape s;
  const Stream st(s, 160, 14);
  auto full = make(layer_info(pool, s), {{"token_budget", "96"}, {"semantic_factor", "2"}});
  auto cap =
      make(layer_info(pool, s),
           {{"token_budget", "96"}, {"semantic_factor", "2"}, {"max_tokens_per_sentence", "2"}});
  run(*full, s, st, 160);
  run(*cap, s, st, 160);
  int64_t capped = 0;
  for (int64_t h = 0; h < s.H; ++h)
    for (int64_t j = 0; j < full->prompt_sentences(); ++j) {
      const auto a = full->sentence_slots(h, j), b = cap->sentence_slots(h, j);
      ASSERT_EQ(b.size(), std::min<size_t>(a.size(), 2));
      ASSERT_TRUE(std::equal(b.begin(), b.end(), a.begin()));
      capped += a.size() > 2;
      for (int64_t x = 0; x < s.D; ++x)  // the vector still averages every kept token
        ASSERT_EQ(full->sentence_vector(h, j)[x], cap->sentence_vector(h, j)[x]);
    }
  EXPECT_GT(capped, 0);
}

// importance_scope: global (the paper's text): scores summed over heads, one kept set shared by
// every head, equal to the f64 reference.
TEST(SentenceKv, GlobalImportanceKeepsOneSetForAllHeads) {
  ThreadPool pool(2);
  const Shape s{8, 2, 16};
  const Stream st(s, 260, 23);
  Reference ref{s, st, 250, 64, 96};
  ref.global = true;
  ref.prefill();
  auto c =
      make(layer_info(pool, s),
           {{"token_budget", "64"}, {"semantic_factor", "1.5"}, {"importance_scope", "global"}});
  run(*c, s, st, 250, [&](int64_t t) {
    if (t >= 0) return;
    for (int64_t h = 0; h < s.H; ++h)
      for (int64_t i = 0; i < c->slots(); ++i) {
        ASSERT_EQ(c->slot_token(h, i), ref.kept[h][i]) << h;
        ASSERT_EQ(c->slot_token(h, i), c->slot_token(0, i));
      }
  });
}

// Paper mode and official_code mode with the same selection settings attend the same slots and
// give bit-identical outputs (host tier at f32); official_code moves no bytes.
TEST(SentenceKv, ModesAgreeWithSameSettings) {
  ThreadPool pool(2);
  const Shape s;
  const Stream st(s, 300, 5);
  const Sets common = {{"token_budget", "96"},
                       {"semantic_factor", "2"},
                       {"host_pool_dtype", "f32"},
                       {"boundary_full_attention", "on"},
                       {"compat_slot32", "on"}};
  Sets a = common, b = common;
  a.push_back({"mode", "official_code"});
  b.push_back({"mode", "paper"});
  auto ca = make(layer_info(pool, s), a);
  auto cb = make(layer_info(pool, s), b);
  const auto oa = run(*ca, s, st, 220);
  const auto ob = run(*cb, s, st, 220);
  EXPECT_EQ(0, std::memcmp(oa.data(), ob.data(), oa.size() * sizeof(float)));
  int64_t moved = 0;
  for (size_t i = 0; i < ca->steps().size(); ++i) {
    EXPECT_EQ(ca->steps()[i].h2d_bytes, 0);
    EXPECT_EQ(ca->steps()[i].d2h_bytes, 0);
    EXPECT_EQ(ca->steps()[i].attended, cb->steps()[i].attended);
    moved += cb->steps()[i].h2d_bytes;
  }
  EXPECT_GT(moved, 0);
  EXPECT_EQ(ca->memory().host_bytes, 0);
  EXPECT_GT(cb->memory().host_bytes, 0);
  EXPECT_LT(cb->memory().device_bytes, ca->memory().device_bytes);
}

// Paper mode: every kept token of every head is in exactly one tier; the stored rows are the
// appended ones; host bytes, per-step transfers and token counts add up.
TEST(SentenceKv, EveryTokenInExactlyOneTier) {
  ThreadPool pool(2);
  const Shape s;
  const int64_t S = 260, prompt = 180;
  const Stream st(s, S, 9);
  for (const std::string dtype : {"f32", "f16"}) {
    SCOPED_TRACE(dtype);
    auto c = make(layer_info(pool, s), {{"mode", "paper"},
                                        {"token_budget", "80"},
                                        {"semantic_factor", "1.25"},
                                        {"host_pool_dtype", dtype}});
    const int64_t es = dtype == "f32" ? 4 : 2;
    const int64_t row_bytes = 2 * s.D * es;
    std::vector<std::set<int64_t>> expect_tokens(s.H);
    int64_t d2h_total = 0;
    run(*c, s, st, prompt, [&](int64_t t) {
      if (t < 0) {
        for (int64_t h = 0; h < s.H; ++h)
          for (int64_t i = 0; i < c->slots(); ++i) expect_tokens[h].insert(c->slot_token(h, i));
        ASSERT_EQ(static_cast<int64_t>(expect_tokens[0].size()), 100);
        d2h_total = c->prefill_d2h_bytes();
        EXPECT_EQ(d2h_total, c->host_rows() * s.H * row_bytes);
      } else {
        for (auto& e : expect_tokens) e.insert(t);
        const auto& stp = c->steps().back();
        d2h_total += stp.d2h_bytes;
        // h2d this step = selected host slots x row bytes, summed over heads.
        int64_t want_h2d = 0;
        for (int64_t h = 0; h < s.H; ++h)
          for (int64_t slot : c->last_attended(h))
            if (c->place(h, slot) == SentenceKvCache::Place::kHost) want_h2d += row_bytes;
        EXPECT_EQ(stp.h2d_bytes, want_h2d);
      }
      const int64_t seen = t < 0 ? prompt : t + 1;
      for (int64_t h = 0; h < s.H; ++h) {
        std::set<int64_t> toks;
        int64_t dev = 0, host = 0;
        std::vector<float> k(s.D), v(s.D);
        for (int64_t i = 0; i < c->slots(); ++i) {
          const int64_t tok = c->slot_token(h, i);
          ASSERT_TRUE(toks.insert(tok).second) << "token " << tok << " twice in head " << h;
          (c->place(h, i) == SentenceKvCache::Place::kHost ? host : dev) += 1;
          c->read_slot(h, i, k.data(), v.data());
          const int64_t g = h / (s.H / s.G);
          for (int64_t x = 0; x < s.D; ++x) {
            const float wk = st.k[(tok * s.G + g) * s.D + x], wv = st.v[(tok * s.G + g) * s.D + x];
            const float tol = es == 4 ? 0.f : 2e-3f * std::max(1.f, std::abs(wk));
            ASSERT_NEAR(k[x], wk, tol);
            ASSERT_NEAR(v[x], wv, es == 4 ? 0.f : 2e-3f * std::max(1.f, std::abs(wv)));
          }
        }
        ASSERT_EQ(toks, expect_tokens[h]);
        ASSERT_EQ(host, c->host_rows());
        ASSERT_EQ(dev, c->resident_rows());
        ASSERT_EQ(dev, std::min<int64_t>(c->slots(), 64));
      }
      const MemoryReport m = c->memory();
      EXPECT_EQ(m.host_bytes, c->host_rows() * s.H * row_bytes);
      EXPECT_EQ(m.full_tokens + m.evicted_tokens, seen);
      EXPECT_EQ(m.full_tokens, c->slots());
    });
    EXPECT_EQ(d2h_total, c->host_rows() * s.H * row_bytes);  // every host row crossed once
  }
}

// The host pool's transfer (F16C where available) equals its scalar read, for every dtype, and
// counts bytes.
TEST(SentenceKv, HostPoolFetchEqualsRead) {
  for (DType t : {DType::kF16, DType::kBF16, DType::kF32}) {
    methods::HostPool p(2, 20, t);
    Rng rng(4);
    std::vector<float> k(20), v(20);
    for (int i = 0; i < 7; ++i) {
      for (auto& x : k) x = static_cast<float>(rng.normal());
      for (auto& x : v) x = static_cast<float>(rng.normal());
      p.push(0, k.data(), v.data());
      p.push(1, v.data(), k.data());
    }
    EXPECT_EQ(p.bytes(), 14 * 2 * 20 * static_cast<int64_t>(dtype_size(t)));
    EXPECT_EQ(p.d2h_bytes(), p.bytes());
    const std::vector<int64_t> rows = {6, 0, 3};
    std::vector<float> fk(60), fv(60), rk(20), rv(20);
    p.fetch(1, rows.data(), 3, fk.data(), fv.data());
    for (int i = 0; i < 3; ++i) {
      p.read(1, rows[i], rk.data(), rv.data());
      EXPECT_EQ(0, std::memcmp(fk.data() + i * 20, rk.data(), 80));
      EXPECT_EQ(0, std::memcmp(fv.data() + i * 20, rv.data(), 80));
    }
    EXPECT_EQ(p.h2d_bytes(), 3 * 2 * 20 * static_cast<int64_t>(dtype_size(t)));
  }
}

// Same input, same retrieved sets and outputs, independent of the thread count.
TEST(SentenceKv, RetrievedSetIsDeterministic) {
  const Shape s{8, 4, 16};
  const Stream st(s, 240, 17);
  std::vector<std::vector<std::vector<int64_t>>> first;
  std::vector<float> first_out;
  for (int threads : {1, 2, 2}) {
    ThreadPool pool(threads);
    auto c = make(
        layer_info(pool, s),
        {{"mode", "paper"}, {"token_budget", "64"}, {"start_budget", "8"}, {"recent_budget", "8"}});
    std::vector<std::vector<std::vector<int64_t>>> sets;
    const auto out = run(*c, s, st, 170, [&](int64_t t) {
      if (t < 0) return;
      std::vector<std::vector<int64_t>> per_head;
      for (int64_t h = 0; h < s.H; ++h) per_head.push_back(c->last_attended(h));
      sets.push_back(per_head);
    });
    if (first.empty()) {
      first = sets;
      first_out = out;
    } else {
      EXPECT_EQ(sets, first) << threads;
      EXPECT_EQ(0, std::memcmp(out.data(), first_out.data(), out.size() * sizeof(float)));
    }
  }
}

// Full-cache logits through a real model forward: with a budget covering the whole context and no
// slot-32 filter, SentenceKV (both modes) attends every token and reproduces the full cache,
// prefill and teacher-forced decode across sentence boundaries.
TEST(SentenceKv, BudgetCoveringContextReproducesFullCacheLogits) {
  testing::TempDir tmp;
  model::InitOptions o{model::preset_config("tiny"), DType::kF32, 3, 0.05};
  write_random_model(o, tmp.sub("m"));
  const auto m = model::Model::load(tmp.sub("m"));
  ASSERT_NE(m->tokenizer(), nullptr);
  const std::string prompt_text =
      "It was late. The lamps were lit along the quay! Who had sent the letter? Nobody knew. "
      "She read it twice and put it away. The tide turned at nine";
  const std::string cont = ". He left. Rain fell! Why now? It stopped.";
  std::vector<int32_t> prompt = {256};
  for (int32_t id : m->tokenizer()->encode(prompt_text)) prompt.push_back(id);
  const std::vector<int32_t> next = m->tokenizer()->encode(cont);
  const int64_t V = m->config().vocab_size;
  ThreadPool pool(2);
  const auto logits_of = [&](const kv::KvFactory& f, std::vector<bool>* full_steps) {
    model::Sequence seq(m, f, pool);
    std::vector<float> all(static_cast<size_t>((prompt.size() + next.size()) * V));
    seq.forward(prompt, all.data(), true);
    seq.end_prefill();
    for (size_t i = 0; i < next.size(); ++i)
      seq.forward(std::span<const int32_t>(&next[i], 1), all.data() + (prompt.size() + i) * V,
                  false);
    if (full_steps) {
      auto* c = dynamic_cast<SentenceKvCache*>(&seq.cache(1));
      for (const auto& st : c->steps()) full_steps->push_back(st.full_attention);
      EXPECT_EQ(c->prompt_sentences(), 6);  // 5 closed + the trailing partial one
      EXPECT_EQ(c->sentences(), 6 + 5);
    }
    return all;
  };
  const auto want =
      logits_of(kv::make_kv_factory("full_cache", ParamValues(std::vector<ParamDecl>{})), nullptr);
  for (const std::string mode : {"official_code", "paper"}) {
    SCOPED_TRACE(mode);
    std::vector<bool> full_steps;
    const auto got = logits_of(kv::make_kv_factory("sentencekv", params({{"mode", mode},
                                                                         {"token_budget", "4096"},
                                                                         {"semantic_factor", "1"},
                                                                         {"compat_slot32", "off"},
                                                                         {"host_pool_dtype", "f32"},
                                                                         {"start_budget", "4"},
                                                                         {"recent_budget", "16"}})),
                               &full_steps);
    // Prefill: the same kernel over the same bytes.
    EXPECT_EQ(0, std::memcmp(got.data(), want.data(), prompt.size() * V * sizeof(float)));
    // Decode: a different summation order (gathered rows); f32 rounding only.
    EXPECT_TRUE(testing::all_close(got.data() + prompt.size() * V, want.data() + prompt.size() * V,
                                   static_cast<int64_t>(next.size()) * V, 1e-4, 1e-4));
    EXPECT_GT(std::count(full_steps.begin(), full_steps.end(), false), 10);  // buckets were used
  }
}

// The engine (model::Sequence) hands every layer's cache the token ids of each append() just
// before it, prefill chunks and decode steps alike, and passes the model's tokenizer in LayerInfo.
TEST(SentenceKv, EngineObservesTokensBeforeEveryAppend) {
  struct Spy : kv::KvCache {
    std::unique_ptr<kv::KvCache> inner;
    std::vector<int32_t> pending, seen;
    int64_t bad = 0;
    const model::Tokenizer* tok = nullptr;
    void observe_tokens(const int32_t* ids, int64_t T) override { pending.assign(ids, ids + T); }
    void append(const float* k, const float* v, int64_t T, const int32_t* p) override {
      bad += static_cast<int64_t>(pending.size()) != T;
      seen.insert(seen.end(), pending.begin(), pending.end());
      pending.clear();
      inner->append(k, v, T, p);
    }
    void attend(const float* q, int64_t T, const int32_t* p, float* o) override {
      inner->attend(q, T, p, o);
    }
    MemoryReport memory() const override { return inner->memory(); }
    int64_t tokens_seen() const override { return inner->tokens_seen(); }
  };
  testing::TempDir tmp;
  write_random_model(model::InitOptions{model::preset_config("tiny"), DType::kF32, 1, 0.05},
                     tmp.sub("m"));
  const auto m = model::Model::load(tmp.sub("m"));
  ThreadPool pool(1);
  std::vector<Spy*> spies;
  const kv::KvFactory full =
      kv::make_kv_factory("full_cache", ParamValues(std::vector<ParamDecl>{}));
  model::SequenceOptions so;
  so.prefill_chunk = 7;
  model::Sequence seq(
      m,
      [&](const kv::LayerInfo& info) {
        auto s = std::make_unique<Spy>();
        s->inner = full(info);
        s->tok = info.tokenizer;
        spies.push_back(s.get());
        return std::unique_ptr<kv::KvCache>(std::move(s));
      },
      pool, so);
  const std::vector<int32_t> prompt = {256, 72, 105, 46, 32, 87, 104, 111, 63,
                                       10,  65, 66,  67, 46, 33, 34,  35};
  seq.forward(prompt, nullptr, false);
  seq.end_prefill();
  const std::vector<int32_t> next = {46, 70, 71};
  for (int32_t t : next) seq.forward(std::span<const int32_t>(&t, 1), nullptr, false);
  std::vector<int32_t> want = prompt;
  want.insert(want.end(), next.begin(), next.end());
  ASSERT_EQ(spies.size(), 2u);
  for (const Spy* s : spies) {
    EXPECT_EQ(s->seen, want);
    EXPECT_EQ(s->bad, 0);
    EXPECT_EQ(s->tok, m->tokenizer());
  }
}

// With a budget below the context the outputs differ from the full cache (the test above can fail).
TEST(SentenceKv, SmallBudgetDiffersFromFullCache) {
  ThreadPool pool(2);
  const Shape s;
  const Stream st(s, 200, 3);
  auto full =
      kv::make_kv_factory("full_cache", ParamValues(std::vector<ParamDecl>{}))(layer_info(pool, s));
  auto c = make(layer_info(pool, s), {{"token_budget", "64"}, {"semantic_factor", "1"}});
  const auto a = run(*full, s, st, 150);
  const auto b = run(*c, s, st, 150);
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), 150 * s.H * s.D * sizeof(float)));
  EXPECT_FALSE(testing::all_close(a.data() + 150 * s.H * s.D, b.data() + 150 * s.H * s.D,
                                  50 * s.H * s.D, 1e-3, 1e-3));
}

TEST(SentenceKv, RecallTraceCountsTopTokens) {
  ThreadPool pool(2);
  const Shape s;
  const Stream st(s, 220, 31);
  auto c = make(layer_info(pool, s), {{"token_budget", "64"},
                                      {"semantic_factor", "1"},
                                      {"recall_every", "5"},
                                      {"boundary_full_attention", "off"}});
  run(*c, s, st, 160);
  int64_t sampled = 0;
  for (size_t i = 0; i < c->steps().size(); ++i) {
    const auto& x = c->steps()[i];
    if (i % 5 != 0) {
      EXPECT_LT(x.recall_64, 0);
      continue;
    }
    ++sampled;
    EXPECT_GE(x.recall_64, 0.0);
    EXPECT_LE(x.recall_64, 1.0);
    EXPECT_NEAR(x.recall_64 + x.lost_prefill_64 + x.lost_decode_64, 1.0, 1e-12);
    EXPECT_GT(x.mass, 0.0);
    EXPECT_LT(x.mass, 1.0 + 1e-9);
  }
  EXPECT_EQ(sampled, 12);
  // Everything kept and attended: recall 1, mass 1.
  auto all = make(layer_info(pool, s), {{"token_budget", "4096"},
                                        {"semantic_factor", "1"},
                                        {"recall_every", "1"},
                                        {"compat_slot32", "off"}});
  run(*all, s, st, 160);
  for (const auto& x : all->steps()) {
    EXPECT_DOUBLE_EQ(x.recall_64, 1.0);
    EXPECT_NEAR(x.mass, 1.0, 1e-9);
  }
}

TEST(SentenceKv, ParameterErrorsNameTheKey) {
  ThreadPool pool(1);
  const Shape s;
  const auto msg = [&](const Sets& set, bool tok = true) -> std::string {
    try {
      make(layer_info(pool, s, tok), set);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_NE(msg({{"token_budget", "40"}}).find("token_budget"), std::string::npos);
  EXPECT_NE(msg({}, false).find("punctuation"), std::string::npos);
  EXPECT_NE(msg({{"punctuation", "[\"\\u00e9t\\u00e9\"]"}}).find("punctuation"), std::string::npos);
  EXPECT_NE(msg({{"semantic_factor", "0"}}).find("semantic_factor"), std::string::npos);
  EXPECT_THROW(params({{"punctuation", "[1, 2]"}}), Error);
  EXPECT_THROW(params({{"punctuation", "dots"}}), Error);
  EXPECT_THROW(params({{"kernel_size", "6"}}), Error);
  EXPECT_THROW(params({{"mode", "offload"}}), Error);
  EXPECT_EQ(msg({{"punctuation", "[\".\", \"!!\"]"}}), "no error");
}

// Shipped configs parse and validate against the registered method and experiments.
TEST(SentenceKv, ShippedConfigsValidate) {
  int64_t n = 0;
  for (const auto& dir : {std::string(KVLAB_SOURCE_DIR) + "/configs",
                          std::string(KVLAB_SOURCE_DIR) + "/configs/paper"})
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string name = e.path().filename().string();
      if (name.rfind("sentencekv_", 0) != 0) continue;
      SCOPED_TRACE(e.path().string());
      const std::vector<std::string> sets = dir.ends_with("paper")
                                                ? std::vector<std::string>{"model=/path/to/model"}
                                                : std::vector<std::string>{};
      const auto sw = cli::load_cli_sweep(e.path().string(), sets);
      int64_t skv = 0;
      for (const auto& p : sw.points) {
        if (p.config.method != "sentencekv") continue;
        ++skv;
        // The method builds with these parameters (its cross-parameter checks run).
        ThreadPool pool(1);
        EXPECT_NO_THROW(kv::KvRegistry::instance()
                            .find("sentencekv")
                            .make(layer_info(pool, Shape{}), p.config.method_params));
      }
      EXPECT_GT(skv, 0);
      ++n;
    }
  EXPECT_GE(n, 7);
}

}  // namespace
}  // namespace kvlab
