// Needle-in-a-haystack over a context-length x depth grid (benchmarks.md section 3), with the
// run's KV-cache method: each sample's prompt (datasets/needle: exactly context_length tokens,
// needle at a sentence boundary at the depth) is prefilled with Sequence::forward, end_prefill
// runs the method's prompt-level decisions, then greedy decoding goes through the same cache.
//
// Scores per sample (both deterministic, in [0, 1]):
//   score         RULER string_match_all: fraction of the answers found, case-insensitively, in
//                 the cleaned generation (one answer: exact match of the needle's value);
//   rouge_recall  KVCache-Factory visualize.py word-set recall of the expected answer text.
// results.json: grid [{context_length, depth, score, rouge_recall, samples, depth_actual,
// kv_device_bytes}], accuracy (mean score), rouge_recall (mean), kv_memory (after decoding the
// last sample at the longest length) and kv_memory_by_context_length.
// trace.h5: samples/{context_length, depth, depth_actual, needle_position, score, rouge_recall,
// generated_tokens, kv_device_bytes} (one row per sample, grid order) and
// samples/NNNN/generated_ids with the answer and generated text as attributes; the method's own
// trace() of every layer cache after the last sample (attribute samples/method_trace_sample).
#include <algorithm>
#include <cstdio>
#include <map>

#include "datasets/needle/needle.h"
#include "experiments/common/experiment.h"
#include "framework/core/error.h"
#include "framework/core/timer.h"
#include "framework/model/generate.h"

namespace kvlab::experiments {

namespace {

nlohmann::json memory_json(const MemoryReport& m) {
  return {{"device_bytes", m.device_bytes},         {"host_bytes", m.host_bytes},
          {"workspace_bytes", m.workspace_bytes},   {"full_tokens", m.full_tokens},
          {"compressed_tokens", m.compressed_tokens}, {"evicted_tokens", m.evicted_tokens}};
}

// A sample's seed from the run seed and its cell and index (independent of grid order).
// Joins with `sep` (appends only: GCC 12 warns -Wrestrict on `"" + std::string` patterns).
template <class T, class F>
std::string join(const std::vector<T>& xs, const char* sep, F fmt) {
  std::string out;
  for (size_t i = 0; i < xs.size(); ++i) {
    if (i) out += sep;
    out += fmt(xs[i]);
  }
  return out;
}

uint64_t sample_seed(uint64_t seed, int64_t length, double depth, int64_t s) {
  uint64_t h = seed ^ 0x6e69616800000000ull;
  for (uint64_t x : {static_cast<uint64_t>(length), static_cast<uint64_t>(depth * 1000 + 0.5),
                     static_cast<uint64_t>(s)}) {
    h ^= x + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  }
  return h;
}

nlohmann::json run_niah(const RunContext& ctx) {
  namespace nd = datasets::needle;
  const model::Model& m = *ctx.model;
  if (!m.tokenizer()) fail(m.dir(), ": the niah experiment needs a tokenizer.json");
  const model::Tokenizer& tok = *m.tokenizer();
  const auto lengths = nd::parse_lengths(ctx.task.get_string("context_lengths"), "task.context_lengths");
  const auto depths = nd::parse_depths(ctx.task.get_string("depths"), "task.depths");
  const int64_t samples = ctx.task.get_int("samples");
  const int64_t max_new = ctx.task.get_int("max_new_tokens");
  const bool stop_nl = ctx.task.get_bool("stop_at_newline");
  nd::PromptOptions po;
  po.variant = nd::parse_variant(ctx.task.get_string("variant"));
  po.wording = ctx.task.get_string("wording");
  po.num_needles = static_cast<int>(ctx.task.get_int("num_needles"));
  if (ctx.task.get_bool("bos") && !m.config().bos_token_ids.empty())
    po.bos_id = static_cast<int32_t>(m.config().bos_token_ids[0]);
  const int64_t max_pos = m.config().max_position_embeddings;
  for (int64_t L : lengths)
    if (max_pos > 0 && L + max_new > max_pos)
      fail("task.context_lengths: ", L, " + max_new_tokens ", max_new,
           " exceeds the model's max_position_embeddings ", max_pos);
  const nd::Haystack hay(tok, ctx.task.get_string("haystack"));
  const std::vector<int64_t> eos(m.config().eos_token_ids.begin(), m.config().eos_token_ids.end());
  const int64_t V = m.config().vocab_size;
  const int64_t max_len = *std::max_element(lengths.begin(), lengths.end());

  TraceSink* tr = ctx.trace;
  if (tr) {
    tr->set_attribute("samples", "description",
                      "one row per sample in grid order (length-major, then depth, then sample)");
    tr->set_attribute("samples", "score_flavour",
                      "string_match_all (RULER): fraction of answers found in the cleaned generation");
    tr->set_attribute("samples", "rouge_flavour", "word-set recall (KVCache-Factory visualize.py)");
  }
  nlohmann::json grid = nlohmann::json::array();
  nlohmann::json mem_by_len = nlohmann::json::array();
  MemoryReport last_mem;
  double score_sum = 0, recall_sum = 0;
  int64_t n_total = 0, sample_index = 0;
  std::vector<float> logits(V);
  model::SamplingOptions greedy;
  Timer timer;
  for (int64_t L : lengths) {
    MemoryReport len_mem;
    int64_t len_n = 0;
    for (double d : depths) {
      double c_score = 0, c_recall = 0, c_depth = 0, c_bytes = 0;
      for (int64_t s = 0; s < samples; ++s) {
        Rng rng(sample_seed(ctx.seed, L, d, s));
        const nd::Prompt p = nd::build_prompt(tok, hay, po, L, d, rng);
        model::SequenceOptions so;
        so.prefill_chunk = ctx.task.get_int("chunk");
        so.max_context = L + max_new;
        model::Sequence seq(ctx.model, ctx.make_cache, *ctx.pool, so);
        seq.forward(p.ids, logits.data(), false);
        seq.end_prefill();
        std::vector<int32_t> gen;
        Rng unused(0);
        for (int64_t t = 0; t < max_new; ++t) {
          const int32_t next = model::sample_token(logits, greedy, unused);
          gen.push_back(next);
          if (std::find(eos.begin(), eos.end(), next) != eos.end()) break;
          if (stop_nl && tok.decode({next}).find('\n') != std::string::npos) break;
          if (t + 1 < max_new) seq.forward(std::span<const int32_t>(&gen.back(), 1), logits.data(), false);
        }
        const std::string text = tok.decode(gen, /*skip_special=*/true);
        const double sc = nd::string_match_all(text, p.answers);
        const double rc = nd::word_recall(text, p.expected);
        const MemoryReport mem = seq.memory();
        c_score += sc;
        c_recall += rc;
        c_depth += p.depth_actual;
        c_bytes += static_cast<double>(mem.device_bytes);
        len_mem += mem;
        ++len_n;
        if (L == max_len) last_mem = mem;
        if (tr) {
          tr->append_scalar("samples/context_length", static_cast<double>(L), "tokens");
          tr->append_scalar("samples/depth", d, "percent");
          tr->append_scalar("samples/depth_actual", p.depth_actual, "percent");
          tr->append_scalar("samples/needle_position", static_cast<double>(p.needle_pos[0]), "tokens");
          tr->append_scalar("samples/score", sc, "fraction");
          tr->append_scalar("samples/rouge_recall", rc, "fraction");
          tr->append_scalar("samples/generated_tokens", static_cast<double>(gen.size()), "tokens");
          tr->append_scalar("samples/kv_device_bytes", static_cast<double>(mem.device_bytes), "bytes");
          char name[32];
          std::snprintf(name, sizeof name, "samples/%04lld", static_cast<long long>(sample_index));
          const std::string g = name;
          for (int32_t id : gen) tr->append_scalar(g + "/generated_ids", id, "token id");
          if (gen.empty()) tr->set_attribute(g, "generated_ids", "none");
          tr->set_attribute(g, "answers", join(p.answers, "|", [](const std::string& a) { return a; }));
          tr->set_attribute(g, "generated_text", text);
          tr->set_attribute(g, "needle", p.needles[0]);
          tr->set_attribute(g, "score", nlohmann::json(sc).dump());
          // The method's own traces (e.g. OjaKV basis health, SentenceKV retrieval), for the
          // last sample of the grid only (series append, so one sample keeps them readable).
          if (L == lengths.back() && d == depths.back() && s + 1 == samples) {
            tr->set_attribute("samples", "method_trace_sample", std::to_string(sample_index));
            for (int64_t l = 0; l < m.config().num_hidden_layers; ++l) seq.cache(l).trace(*tr);
          }
        }
        ++sample_index;
      }
      const double n = static_cast<double>(samples);
      grid.push_back({{"context_length", L},
                      {"depth", d},
                      {"score", c_score / n},
                      {"rouge_recall", c_recall / n},
                      {"samples", samples},
                      {"depth_actual", c_depth / n},
                      {"kv_device_bytes", c_bytes / n}});
      score_sum += c_score;
      recall_sum += c_recall;
      n_total += samples;
      std::fprintf(stderr, "niah: length %lld depth %g: score %.3f (%lld samples, %.1f s)\n",
                   static_cast<long long>(L), d, c_score / n, static_cast<long long>(samples),
                   timer.seconds());
    }
    nlohmann::json mj = memory_json(len_mem);
    for (auto& [k, v] : mj.items()) v = v.get<double>() / static_cast<double>(std::max<int64_t>(len_n, 1));
    mj["context_length"] = L;
    mem_by_len.push_back(mj);
  }
  const double secs = timer.seconds();
  const std::string lens = join(lengths, ",", [](int64_t L) { return std::to_string(L); });
  const std::string deps = join(depths, ",", [](double d) { return nlohmann::json(d).dump(); });
  return {{"accuracy", score_sum / static_cast<double>(n_total)},
          {"rouge_recall", recall_sum / static_cast<double>(n_total)},
          {"samples_total", n_total},
          {"variant", nd::variant_name(po.variant)},
          {"wording", po.wording},
          {"haystack", hay.spec()},
          {"context_lengths", lens},
          {"depths", deps},
          {"score_flavour", "string_match_all (RULER): fraction of the needle answers found, "
                            "case-insensitively, in the cleaned generation"},
          {"rouge_flavour", "word-set recall of the expected answer (KVCache-Factory visualize.py)"},
          {"seconds", secs},
          {"grid", grid},
          {"kv_memory", memory_json(last_mem)},
          {"kv_memory_by_context_length", mem_by_len}};
}

}  // namespace

KVLAB_REGISTER_EXPERIMENT(
    niah,
    (Experiment{
        "niah",
        "Needle in a haystack over a context-length x depth grid (RULER / LongLoRA / gkamradt "
        "wordings, public-domain haystack), greedy decoding through the configured KV-cache "
        "method; scores: RULER string_match_all and word-set recall.",
        {{"context_lengths", ParamDecl::Type::kString, std::string("512,1024,2048"), std::nullopt,
          std::nullopt, {}, "prompt lengths in tokens (BOS, instruction and question included), e.g. 1024,2048,4096",
          [](const ParamValue& v) { datasets::needle::parse_lengths(std::get<std::string>(v), "context_lengths"); }},
         {"depths", ParamDecl::Type::kString, std::string("linear:5"), std::nullopt, std::nullopt, {},
          "needle depths: linear:K (round(linspace(0,100,K))), sigmoid:K (gkamradt) or percentages 0,50,100",
          [](const ParamValue& v) { datasets::needle::parse_depths(std::get<std::string>(v), "depths"); }},
         {"samples", ParamDecl::Type::kInt, int64_t{1}, 1.0, std::nullopt, {},
          "samples per cell (each its own key, value and haystack start)"},
         {"variant", ParamDecl::Type::kChoice, std::string("single"), std::nullopt, std::nullopt,
          {"single", "multikey", "multivalue", "passkey", "sandwich"},
          "single/multikey/multivalue: RULER niah; passkey: LongLoRA; sandwich: gkamradt needle"},
         {"num_needles", ParamDecl::Type::kInt, int64_t{4}, 2.0, 16.0, {},
          "needles for multikey (1 asked + distractors) and values for multivalue (RULER: 4)"},
         {"haystack", ParamDecl::Type::kString, std::string("book:opticks"), std::nullopt, std::nullopt, {},
          "noise (RULER sentences) or a text source: book:NAME, corpus:heldout, kjv:RANGE, file:PATH"},
         {"wording", ParamDecl::Type::kChoice, std::string("heldout"), std::nullopt, std::nullopt,
          {"heldout", "train"},
          "template set: heldout = the benchmark wording (never trained on); train only to measure template overfitting"},
         {"max_new_tokens", ParamDecl::Type::kInt, int64_t{32}, 1.0, std::nullopt, {},
          "greedy tokens to generate (RULER: 128; KVCache-Factory: 30)"},
         {"stop_at_newline", ParamDecl::Type::kBool, false, std::nullopt, std::nullopt, {},
          "stop generating at a token containing a newline (KVCache-Factory)"},
         {"bos", ParamDecl::Type::kBool, true, std::nullopt, std::nullopt, {},
          "prepend the model's BOS token (counted in the context length)"},
         {"chunk", ParamDecl::Type::kInt, int64_t{512}, 1.0, std::nullopt, {},
          "prefill chunk in tokens (bounds activation memory)"}},
        run_niah}));

}  // namespace kvlab::experiments
