// Perplexity experiment: teacher-forced next-token NLL over a long text with the configured
// KV-cache method (the cache is what a method changes; the full cache is the reference).
// Records perplexity, the NLL curve summary by position bucket, time, and the cache's bytes by tier.
#include <cmath>

#include "datasets/text/text_source.h"
#include "experiments/common/experiment.h"
#include "framework/core/error.h"
#include "framework/core/timer.h"
#include "framework/model/generate.h"

namespace kvlab::experiments {

namespace {

nlohmann::json run_ppl(const RunContext& ctx) {
  const model::Model& m = *ctx.model;
  if (!m.tokenizer()) fail(m.dir(), ": the ppl experiment needs a tokenizer.json");
  const std::string text = datasets::load_text(ctx.task.get_string("text"));
  std::vector<int32_t> ids;
  if (ctx.task.get_bool("bos") && !m.config().bos_token_ids.empty())
    ids.push_back(static_cast<int32_t>(m.config().bos_token_ids[0]));
  const auto t = m.tokenizer()->encode(text);
  ids.insert(ids.end(), t.begin(), t.end());
  const int64_t max_tokens = ctx.task.get_int("max_tokens");
  if (static_cast<int64_t>(ids.size()) > max_tokens) ids.resize(max_tokens);
  if (ids.size() < 2) fail("task.text: fewer than 2 tokens to score");

  model::SequenceOptions so;
  so.prefill_chunk = ctx.task.get_int("chunk");
  so.max_context = static_cast<int64_t>(ids.size());
  model::Sequence seq(ctx.model, ctx.make_cache, *ctx.pool, so);
  Timer timer;
  const auto r = model::score_tokens(seq, ids);
  const double secs = timer.seconds();

  // Mean NLL per position bucket of 256 tokens (the curve against position).
  nlohmann::json curve = nlohmann::json::array();
  const int64_t bucket = 256;
  for (int64_t b = 0; b < r.count(); b += bucket) {
    double s = 0;
    const int64_t e = std::min(r.count(), b + bucket);
    for (int64_t i = b; i < e; ++i) s += r.nll[i];
    curve.push_back({{"start", b + 1}, {"end", e}, {"nll_mean", s / (e - b)}});
  }
  const MemoryReport mem = seq.memory();
  if (ctx.trace) {
    TraceSink& tr = *ctx.trace;
    for (float x : r.nll) tr.append_scalar("samples/0/nll", x, "nats");
    tr.set_attribute("samples/0/nll", "description",
                     "-log p(token[i+1] | tokens[..i]) for i = 0..n-2, teacher forced");
    for (int64_t l = 0; l < m.config().num_hidden_layers; ++l) {
      const MemoryReport ml = seq.cache(l).memory();
      const std::string p = str("final/layer_", l < 10 ? "0" : "", l, "/");
      tr.append_scalar(p + "kv_device_bytes", static_cast<double>(ml.device_bytes), "bytes");
      tr.append_scalar(p + "kv_host_bytes", static_cast<double>(ml.host_bytes), "bytes");
      tr.append_scalar(p + "full_tokens", static_cast<double>(ml.full_tokens), "tokens");
      seq.cache(l).trace(tr);
    }
  }
  return {{"perplexity", r.perplexity()},
          {"nll_mean", r.nll_sum / r.count()},
          {"tokens_scored", r.count()},
          {"seconds", secs},
          {"tokens_per_second", r.count() / std::max(secs, 1e-9)},
          {"nll_by_position", curve},
          {"kv_memory",
           {{"device_bytes", mem.device_bytes},
            {"host_bytes", mem.host_bytes},
            {"workspace_bytes", mem.workspace_bytes},
            {"full_tokens", mem.full_tokens},
            {"compressed_tokens", mem.compressed_tokens},
            {"evicted_tokens", mem.evicted_tokens}}}};
}

}  // namespace

KVLAB_REGISTER_EXPERIMENT(
    ppl, (Experiment{"ppl",
                     "Perplexity of a long text under the model with the configured KV-cache "
                     "method (teacher forcing, chunked prefill).",
                     {{"text", ParamDecl::Type::kString, std::string("kjv:Gen1:1-Gen3:24"),
                       std::nullopt, std::nullopt, {},
                       "text source: kjv:RANGE (Debian bible-kjv), file:PATH or a path"},
                      {"max_tokens", ParamDecl::Type::kInt, int64_t{2048}, 2.0, std::nullopt, {},
                       "score at most this many tokens"},
                      {"bos", ParamDecl::Type::kBool, true, std::nullopt, std::nullopt, {},
                       "prepend the model's BOS token"},
                      {"chunk", ParamDecl::Type::kInt, int64_t{512}, 1.0, std::nullopt, {},
                       "prefill chunk in tokens (bounds activation memory)"}},
                     run_ppl}));

}  // namespace kvlab::experiments
