#include "framework/model/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "framework/core/error.h"
#include "framework/core/timer.h"

namespace kvlab::model {

double log_sum_exp(std::span<const float> row) {
  double mx = -INFINITY;
  for (float v : row) mx = std::max(mx, static_cast<double>(v));
  if (!std::isfinite(mx)) return mx;
  double s = 0;
  for (float v : row) s += std::exp(static_cast<double>(v) - mx);
  return mx + std::log(s);
}

int32_t sample_token(std::span<const float> logits, const SamplingOptions& opt, Rng& rng) {
  const int64_t V = static_cast<int64_t>(logits.size());
  KVLAB_CHECK(V > 0);
  if (opt.temperature <= 0) {
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  if (!(opt.top_p > 0 && opt.top_p <= 1)) fail("top_p must be in (0, 1], got ", opt.top_p);
  std::vector<int32_t> idx(V);
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  const double mx = logits[idx[0]];
  std::vector<double> p(V);
  double z = 0;
  for (int64_t i = 0; i < V; ++i) z += (p[i] = std::exp((logits[idx[i]] - mx) / opt.temperature));
  int64_t keep = V;
  double cum = 0;
  for (int64_t i = 0; i < V; ++i) {
    cum += p[i] / z;
    if (cum >= opt.top_p) {
      keep = i + 1;
      break;
    }
  }
  double mass = 0;
  for (int64_t i = 0; i < keep; ++i) mass += p[i];
  double u = rng.uniform() * mass;
  for (int64_t i = 0; i < keep; ++i) {
    u -= p[i];
    if (u < 0) return idx[i];
  }
  return idx[keep - 1];
}

GenerationResult generate(Sequence& seq, std::span<const int32_t> prompt,
                          const SamplingOptions& opt,
                          const std::function<void(int32_t)>& on_token) {
  if (prompt.empty()) fail("generate: the prompt is empty (add a BOS token or some text)");
  const ModelConfig& c = seq.model().config();
  const int64_t V = c.vocab_size;
  std::vector<float> logits(V);
  Rng rng(opt.seed);
  GenerationResult r;
  Timer timer;
  seq.forward(prompt, logits.data(), /*all_logits=*/false);
  seq.end_prefill();
  r.prefill_seconds = timer.seconds();
  timer.reset();
  for (int64_t i = 0; i < opt.max_new_tokens; ++i) {
    const int32_t tok = sample_token(logits, opt, rng);
    r.tokens.push_back(tok);
    if (on_token) on_token(tok);
    if (opt.stop_on_eos &&
        std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), tok) != c.eos_token_ids.end()) {
      r.stopped_on_eos = true;
      break;
    }
    if (i + 1 == opt.max_new_tokens) break;
    seq.forward(std::span<const int32_t>(&tok, 1), logits.data(), false);
  }
  r.decode_seconds = timer.seconds();
  return r;
}

double ScoreResult::perplexity() const {
  return nll.empty() ? NAN : std::exp(nll_sum / static_cast<double>(nll.size()));
}

ScoreResult score_tokens(Sequence& seq, std::span<const int32_t> tokens) {
  KVLAB_CHECK(seq.length() == 0) << "score_tokens needs an empty sequence";
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n < 2) fail("scoring needs at least 2 tokens, got ", n);
  const int64_t V = seq.model().config().vocab_size;
  const int64_t chunk = 256;
  std::vector<float> logits(chunk * V);
  for (int32_t t : tokens)
    if (t < 0 || t >= V) fail("token id ", t, " is outside the vocabulary [0, ", V, ")");
  ScoreResult r;
  r.nll.reserve(n - 1);
  // Feed tokens[0..n-2]; row t predicts tokens[t+1].
  for (int64_t b = 0; b < n - 1; b += chunk) {
    const int64_t T = std::min(chunk, n - 1 - b);
    seq.forward(tokens.subspan(b, T), logits.data(), true);
    for (int64_t t = 0; t < T; ++t) {
      std::span<const float> row(logits.data() + t * V, V);
      const double nll = log_sum_exp(row) - row[tokens[b + t + 1]];
      r.nll.push_back(static_cast<float>(nll));
      r.nll_sum += nll;
    }
  }
  return r;
}

}  // namespace kvlab::model
