#include "experiments/train/train_eval.h"

#include <cmath>
#include <map>

#include "datasets/synthetic/data_stream.h"
#include "framework/core/error.h"
#include "framework/core/rng.h"

namespace kvlab::experiments {

TrainEvaluator::TrainEvaluator(const model::Tokenizer& tok, std::vector<datasets::Document> heldout,
                               const TrainEvalConfig& cfg, uint64_t seed)
    : tasks_(cfg.tasks) {
  if (cfg.batches > 0) {
    datasets::StreamConfig sc;
    sc.batch = 1;
    sc.seq_len = cfg.seq_len;
    sc.mix = {{"corpus", 1.0}};
    sc.min_tokens = cfg.seq_len;  // one long chunk per row
    sc.wording = "heldout";
    sc.seed = seed ^ 0x5EED0E7A1ull;
    datasets::DataStream ds(tok, sc, heldout);
    for (int64_t i = 0; i < cfg.batches; ++i) {
      datasets::Batch b = ds.next();
      loss_tokens_.insert(loss_tokens_.end(), b.tokens.begin(), b.tokens.end());
      loss_targets_.insert(loss_targets_.end(), b.targets.begin(), b.targets.end());
      loss_weights_.insert(loss_weights_.end(), b.weights.begin(), b.weights.end());
    }
    loss_rows_ = cfg.batches;
    loss_T_ = cfg.seq_len;
  }
  if (cfg.examples > 0) {
    const auto bos = tok.token_to_id("<|begin_of_text|>");
    if (!bos) fail("eval: the tokenizer has no <|begin_of_text|>");
    datasets::TaskGenerator gen(tok, std::move(heldout), "heldout");
    for (const auto& task : cfg.tasks) {
      for (int64_t len : cfg.lengths) {
        for (int64_t i = 0; i < cfg.examples; ++i) {
          Rng rng(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(len) * 1000003ull +
                  static_cast<uint64_t>(i) * 7919ull + std::hash<std::string>{}(task));
          // Depths spread evenly (passkey/needle); other tasks choose their own.
          const double depth = (static_cast<double>(i) + 0.5) / static_cast<double>(cfg.examples);
          datasets::Example ex = task == "passkey" ? gen.passkey(rng, len - 1, depth)
                                 : task == "needle" ? gen.needle(rng, len - 1, depth)
                                                    : gen.make(task, rng, len - 1);
          Probe p;
          p.task = task;
          p.ids.push_back(*bos);
          const auto prompt = ex.prompt_ids(), answer = ex.answer_ids();
          if (answer.empty()) continue;
          p.ids.insert(p.ids.end(), prompt.begin(), prompt.end());
          p.answer_begin = static_cast<int64_t>(p.ids.size());
          p.ids.insert(p.ids.end(), answer.begin(), answer.end());
          probes_.push_back(std::move(p));
        }
      }
    }
  }
}

std::vector<train::EvalValue> TrainEvaluator::evaluate(model::TrainModel& m) {
  std::vector<train::EvalValue> out;
  if (loss_rows_ > 0) {
    // One row at a time: the eval batch stays small next to the training activations.
    double sum = 0;
    for (int64_t r = 0; r < loss_rows_; ++r)
      sum += m.forward_loss(loss_tokens_.data() + r * loss_T_, loss_targets_.data() + r * loss_T_,
                            loss_weights_.data() + r * loss_T_, 1, loss_T_);
    out.push_back({"heldout_loss", sum / static_cast<double>(loss_rows_), "nats/token"});
  }
  if (probes_.empty()) return out;
  const int64_t V = m.config().vocab_size;
  std::map<std::string, std::pair<int64_t, int64_t>> acc;  // task -> (correct, total)
  std::map<std::string, std::pair<double, int64_t>> aloss;  // task -> (nll sum, tokens)
  std::vector<float> logits;
  for (const auto& p : probes_) {
    const int64_t n = static_cast<int64_t>(p.ids.size()) - 1;  // predict ids[1..]
    logits.resize(static_cast<size_t>(n * V));
    m.forward_logits(p.ids.data(), 1, n, logits.data());
    bool ok = true;
    for (int64_t t = p.answer_begin; t <= n; ++t) {
      const float* row = logits.data() + (t - 1) * V;  // logits at t-1 predict ids[t]
      int64_t best = 0;
      double mx = row[0];
      for (int64_t v = 1; v < V; ++v)
        if (row[v] > mx) {
          mx = row[v];
          best = v;
        }
      if (best != p.ids[t]) ok = false;
      double se = 0;
      for (int64_t v = 0; v < V; ++v) se += std::exp(static_cast<double>(row[v]) - mx);
      aloss[p.task].first += mx + std::log(se) - row[p.ids[t]];
      aloss[p.task].second += 1;
    }
    acc[p.task].first += ok ? 1 : 0;
    acc[p.task].second += 1;
  }
  for (const auto& t : tasks_) {
    if (!acc.count(t)) continue;
    out.push_back({t + "_acc", static_cast<double>(acc[t].first) / static_cast<double>(acc[t].second), "fraction"});
    out.push_back({t + "_answer_loss", aloss[t].first / static_cast<double>(aloss[t].second), "nats/token"});
  }
  return out;
}

}  // namespace kvlab::experiments
