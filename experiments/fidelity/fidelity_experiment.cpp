// The fidelity experiment (issue 5 item 5; methods.md 1.9): prefill a prompt with the configured
// KV method, then decode (teacher-forced from the text, or greedy), with every layer's cache
// wrapped in a fidelity::ShadowCache. At sampled decode steps every layer and KV head is probed:
// attention-output, attention-logit and KL errors against the exact cache, reconstruction
// error, and for low-rank methods the principal angles of the current basis to the exact PCA
// basis of all keys seen so far, the residual energy ratio and bytes per tier.
// Domain shift: give the method bases calibrated on one corpus (`kvlab calibrate --dataset
// kjv:...`) and `task.text` from another (book:opticks); configs/fidelity_shift.yaml.
//   trace.h5: steps/nll [decode tokens] (nats; teacher: -log p(text token), greedy: -log
//   p(argmax)), steps/probe_step and steps/probe_position [probes], and per probe
//   steps/layer_LL/head_G/<metric>, steps/layer_LL/<metric> (names: results/README.md).
#include <algorithm>
#include <cmath>

#include "datasets/text/text_source.h"
#include "experiments/common/experiment.h"
#include "experiments/fidelity/fidelity.h"
#include "framework/core/error.h"
#include "framework/core/progress.h"
#include "framework/core/timer.h"
#include "framework/model/generate.h"

namespace kvlab::experiments {

namespace {

nlohmann::json run_fidelity(const RunContext& ctx) {
  const model::Model& m = *ctx.model;
  if (!m.tokenizer()) fail(m.dir(), ": the fidelity experiment needs a tokenizer.json");
  const int64_t P = ctx.task.get_int("prompt_tokens"), N = ctx.task.get_int("decode_tokens");
  const bool teacher = ctx.task.get_string("decode") == "teacher";
  const int64_t every = ctx.task.get_int("probe_every");
  const bool probe_prefill = ctx.task.get_bool("probe_prefill");
  const bool probe_on_update = ctx.task.get_bool("probe_on_update");

  const std::string spec = ctx.task.get_string("text");
  std::vector<int32_t> ids;
  if (ctx.task.get_bool("bos") && !m.config().bos_token_ids.empty())
    ids.push_back(static_cast<int32_t>(m.config().bos_token_ids[0]));
  {
    const auto t = m.tokenizer()->encode(datasets::load_text(spec));
    ids.insert(ids.end(), t.begin(), t.end());
  }
  const int64_t need = teacher ? P + N : P;
  if (static_cast<int64_t>(ids.size()) < need)
    fail("task.text: ", spec, " has ", ids.size(), " tokens; prompt_tokens + ",
         teacher ? "decode_tokens" : "0", " = ", need, " needed");

  auto log = std::make_shared<fidelity::FidelityLog>(ctx.trace);
  model::SequenceOptions so;
  so.prefill_chunk = ctx.task.get_int("chunk");
  so.max_context = P + N;
  model::Sequence seq(ctx.model, fidelity::make_shadow_factory(ctx.make_cache, log), *ctx.pool, so);
  const int64_t L = m.config().num_hidden_layers, V = m.config().vocab_size;
  std::vector<fidelity::ShadowCache*> shadows;
  for (int64_t l = 0; l < L; ++l)
    shadows.push_back(&dynamic_cast<fidelity::ShadowCache&>(seq.cache(l)));
  auto updates = [&] {
    int64_t u = 0;
    for (auto* s : shadows) u += std::max<int64_t>(0, s->inspector().basis_updates());
    return u;
  };
  auto probe = [&](int64_t step, bool with_attention) {
    log->begin_probe();
    if (ctx.trace) {
      ctx.trace->append_scalar("steps/probe_step", static_cast<double>(step), "tokens");
      ctx.trace->append_scalar("steps/probe_position", static_cast<double>(seq.length()), "tokens");
    }
    for (auto* s : shadows) s->probe(with_attention);
  };

  Timer timer;
  std::vector<float> logits(static_cast<size_t>(V));
  seq.forward(std::span<const int32_t>(ids.data(), static_cast<size_t>(P)), logits.data(), false);
  seq.end_prefill();
  const double prefill_s = timer.seconds();
  // Probe after the prefill update (no decode query yet: attention metrics NaN).
  if (probe_prefill) probe(0, false);
  int64_t last_updates = updates();
  double nll_sum = 0;
  {
    Progress progress("fidelity decode", N, "tok");
    for (int64_t i = 0; i < N; ++i) {
      int32_t next;
      if (teacher) {
        next = ids[static_cast<size_t>(P + i)];
      } else {
        next =
            static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      }
      const double nll = model::log_sum_exp(logits) - logits[static_cast<size_t>(next)];
      nll_sum += nll;
      if (ctx.trace) ctx.trace->append_scalar("steps/nll", nll, "nats");
      seq.forward(std::span<const int32_t>(&next, 1), logits.data(), false);
      const int64_t u = updates();
      if (i % every == 0 || i == N - 1 || (probe_on_update && u != last_updates))
        probe(i + 1, true);
      last_updates = u;
      progress.advance();
    }
  }
  const double secs = timer.seconds();
  if (ctx.trace) {
    ctx.trace->set_attribute("steps/nll", "description",
                             teacher ? "-log p(text token) at each decode step, teacher forced"
                                     : "-log p(greedy token) at each decode step");
    ctx.trace->set_attribute("steps/probe_step", "description",
                             "decode tokens fed when the probe ran (0: after prefill)");
    for (int64_t l = 0; l < L; ++l) seq.cache(l).trace(*ctx.trace);
  }

  nlohmann::json s = log->summary(L);
  const auto& mt = s["metrics"];
  auto pick = [&](const char* name, const char* stat) -> nlohmann::json {
    return mt.contains(name) ? mt[name][stat] : nlohmann::json(nullptr);
  };
  const MemoryReport mem = seq.memory();
  nlohmann::json r = {{"headline", "out_rel_err"},
                      {"out_rel_err", pick("out_rel_err", "mean")},
                      {"attn_kl", pick("attn_kl", "mean")},
                      {"logit_err_max", pick("logit_err_max", "max")},
                      {"k_max_angle_deg", pick("k_max_angle_deg", "final_mean")},
                      {"k_mean_cos2", pick("k_mean_cos2", "final_mean")},
                      {"v_max_angle_deg", pick("v_max_angle_deg", "final_mean")},
                      {"k_rer", pick("k_rer", "final_mean")},
                      {"v_rer", pick("v_rer", "final_mean")},
                      {"achieved_ratio", pick("achieved_ratio", "final_mean")},
                      {"nll_mean", N > 0 ? nlohmann::json(nll_sum / N) : nlohmann::json(nullptr)},
                      {"prompt_tokens", P},
                      {"decode_tokens", N},
                      {"decode", teacher ? "teacher" : "greedy"},
                      {"probes", log->probes()},
                      {"prefill_seconds", prefill_s},
                      {"seconds", secs},
                      {"metrics", mt},
                      {"by_layer", s["by_layer"]},
                      {"kv_memory",
                       {{"device_bytes", mem.device_bytes},
                        {"host_bytes", mem.host_bytes},
                        {"workspace_bytes", mem.workspace_bytes},
                        {"full_tokens", mem.full_tokens},
                        {"compressed_tokens", mem.compressed_tokens},
                        {"evicted_tokens", mem.evicted_tokens}}}};
  return r;
}

}  // namespace

KVLAB_REGISTER_EXPERIMENT(
    fidelity,
    (Experiment{
        "fidelity",
        "Per layer and KV head, as decoding runs: attention-output / logit / KL error against the "
        "exact cache, reconstruction error, and for low-rank methods (OjaKV, StaticPCA) the "
        "principal angles to the exact top-r PCA basis of all keys seen so far, the residual "
        "energy ratio and bytes per tier (methods.md 1.9). Traces per probe in trace.h5.",
        {{"text",
          ParamDecl::Type::kString,
          std::string("kjv:Ruth1:1-Ruth4:22"),
          std::nullopt,
          std::nullopt,
          {},
          "text source: kjv:RANGE, book:NAME, corpus:SPLIT, file:PATH"},
         {"prompt_tokens",
          ParamDecl::Type::kInt,
          int64_t{1024},
          1.0,
          std::nullopt,
          {},
          "prompt tokens prefilled (BOS included) before decoding"},
         {"decode_tokens",
          ParamDecl::Type::kInt,
          int64_t{256},
          1.0,
          std::nullopt,
          {},
          "decode steps after the prompt"},
         {"decode",
          ParamDecl::Type::kChoice,
          std::string("teacher"),
          std::nullopt,
          std::nullopt,
          {"teacher", "greedy"},
          "teacher: feed the text's next token; greedy: feed the model's argmax"},
         {"probe_every",
          ParamDecl::Type::kInt,
          int64_t{16},
          1.0,
          std::nullopt,
          {},
          "probe at decode steps 1, 1 + k, 1 + 2k, ... and the last"},
         {"probe_prefill",
          ParamDecl::Type::kBool,
          true,
          std::nullopt,
          std::nullopt,
          {},
          "also probe right after end_prefill (subspace and bytes; no attention metrics)"},
         {"probe_on_update",
          ParamDecl::Type::kBool,
          false,
          std::nullopt,
          std::nullopt,
          {},
          "also probe at every decode step where a layer's basis was updated"},
         {"bos",
          ParamDecl::Type::kBool,
          true,
          std::nullopt,
          std::nullopt,
          {},
          "prepend the model's BOS token"},
         {"chunk",
          ParamDecl::Type::kInt,
          int64_t{512},
          1.0,
          std::nullopt,
          {},
          "prefill chunk in tokens (bounds activation memory)"}},
        run_fidelity}));

}  // namespace kvlab::experiments
