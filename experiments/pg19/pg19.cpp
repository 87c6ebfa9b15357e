// PG-19 streaming perplexity (benchmarks.md section 2.2, StreamingLLM's eval_long_ppl.py): each
// book is tokenized with BOS and fed ONE token at a time through the configured KV-cache method
// (Sequence::forward of a single token: the method appends, attends and may evict/compress after
// every step, as in decoding); the NLL of ids[i+1] comes from step i's logits. Scoring stops once
// max_tokens predictions are made across books. end_prefill is called once after the first token
// of a sequence (the "prompt" is BOS alone), so methods run in their decode regime throughout.
//
// Recorded (section 2.3):
//   results.json: perplexity = exp(mean NLL), word_perplexity = exp(sum NLL / words) with the
//     whitespace word count of the scored text (the predicted tokens decoded), NLL by position
//     bucket, per-book numbers, final kv_memory, the cache size sampled over steps, whether the
//     cache was reset between books, which RoPE positions were used;
//   trace.h5: steps/nll (per scored token), steps/book, and every trace_every steps
//     steps/step, steps/layer_LL/{kv_device_bytes, kv_host_bytes, full_tokens, compressed_tokens,
//     evicted_tokens} (eviction/compression shows as those token counts changing), and the
//     method's own trace() at the end.
// RoPE positions: kvlab keeps original token positions (keys rotated at their absolute position);
// a method that re-rotates keys to in-cache positions says so in its own traces.
#include <cmath>
#include <cstdio>
#include <optional>

#include "datasets/pg19/pg19.h"
#include "datasets/text/unigram.h"
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

int64_t count_words(const std::string& s) {
  int64_t n = 0;
  bool in = false;
  for (unsigned char c : s) {
    const bool sp = c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f);
    if (!sp && !in) ++n;
    in = !sp;
  }
  return n;
}

std::string layer_name(int64_t l) {
  char b[32];
  std::snprintf(b, sizeof b, "layer_%02lld", static_cast<long long>(l));
  return b;
}

nlohmann::json run_pg19(const RunContext& ctx) {
  const model::Model& m = *ctx.model;
  if (!m.tokenizer()) fail(m.dir(), ": the pg19 experiment needs a tokenizer.json");
  const model::Tokenizer& tok = *m.tokenizer();
  const std::string data_dir = ctx.task.get_string("data_dir");
  const std::string split = ctx.task.get_string("split");
  const std::string only = ctx.task.get_string("book");
  const int64_t max_books = ctx.task.get_int("books");
  const int64_t max_tokens = ctx.task.get_int("max_tokens");
  const int64_t book_tokens = ctx.task.get_int("book_tokens");
  const int64_t bucket = ctx.task.get_int("bucket");
  const int64_t every = ctx.task.get_int("trace_every");
  const bool reset = ctx.task.get_bool("reset_between_books");
  const bool bos = ctx.task.get_bool("bos") && !m.config().bos_token_ids.empty();
  const int64_t L = m.config().num_hidden_layers, V = m.config().vocab_size;
  const std::string unigram_split = ctx.task.get_string("unigram");

  std::vector<std::string> ids = datasets::pg19_book_ids(data_dir, split);
  if (!only.empty()) {
    if (std::find(ids.begin(), ids.end(), only) == ids.end())
      fail("task.book: no book '", only, "' in ", data_dir, "/", split);
    ids = {only};
  }
  if (static_cast<int64_t>(ids.size()) > max_books) ids.resize(static_cast<size_t>(max_books));

  // Tokenize the books (stopping once max_tokens predictions are covered).
  struct BookIds {
    datasets::Pg19Book book;
    std::vector<int32_t> ids;
  };
  std::vector<BookIds> books;
  int64_t planned = 0, fed_total = 0;
  for (const auto& id : ids) {
    if (planned >= max_tokens) break;
    BookIds b{datasets::load_pg19_book(data_dir, split, id), {}};
    if (bos) b.ids.push_back(static_cast<int32_t>(m.config().bos_token_ids[0]));
    const auto t = tok.encode(b.book.text);
    b.ids.insert(b.ids.end(), t.begin(), t.end());
    const int64_t scorable = static_cast<int64_t>(b.ids.size()) - 1;
    if (scorable < 1) continue;
    int64_t take = std::min(scorable, max_tokens - planned);
    if (book_tokens > 0) take = std::min(take, book_tokens);
    b.ids.resize(static_cast<size_t>(take + 1));  // feed ids[0..take-1], predict ids[1..take]
    planned += take;
    fed_total += take;
    b.book.text.clear();
    books.push_back(std::move(b));
  }
  if (books.empty()) fail("pg19: no book in ", data_dir, "/", split, " has 2 or more tokens");
  std::optional<datasets::Unigram> unigram;
  if (unigram_split != "none") unigram = datasets::unigram_from_split(tok, V, unigram_split);

  TraceSink* tr = ctx.trace;
  if (tr) {
    tr->set_attribute("steps", "description",
                      "streaming perplexity: one token fed per step; nll[i] = -log p(next token)");
    tr->set_attribute("steps", "rope_positions", "original");
    tr->set_attribute("steps", "reset_between_books", reset ? "true" : "false");
  }
  model::SequenceOptions so;
  so.prefill_chunk = 1;
  std::unique_ptr<model::Sequence> seq;
  std::vector<float> logits(V), nll;
  nll.reserve(static_cast<size_t>(planned));
  nlohmann::json per_book = nlohmann::json::array(), sampled = nlohmann::json::array();
  double nll_sum = 0;
  int64_t words = 0, step = 0;
  Timer timer;
  for (size_t bi = 0; bi < books.size(); ++bi) {
    const auto& b = books[bi];
    if (!seq || reset) {
      so.max_context = reset ? static_cast<int64_t>(b.ids.size()) : fed_total;
      seq = std::make_unique<model::Sequence>(ctx.model, ctx.make_cache, *ctx.pool, so);
    }
    const bool fresh = seq->length() == 0;
    const int64_t n = static_cast<int64_t>(b.ids.size()) - 1;
    double book_sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      seq->forward(std::span<const int32_t>(&b.ids[i], 1), logits.data(), false);
      if (fresh && i == 0) seq->end_prefill();
      const double x = model::log_sum_exp(logits) - logits[b.ids[i + 1]];
      nll.push_back(static_cast<float>(x));
      book_sum += x;
      if (tr) {
        tr->append_scalar("steps/nll", x, "nats");
        tr->append_scalar("steps/book", static_cast<double>(bi), "index");
      }
      if (step % every == 0 || (bi + 1 == books.size() && i + 1 == n)) {
        MemoryReport tot;
        for (int64_t l = 0; l < L; ++l) {
          const MemoryReport ml = seq->cache(l).memory();
          tot += ml;
          if (tr) {
            const std::string p = "steps/" + layer_name(l) + "/";
            tr->append_scalar(p + "kv_device_bytes", static_cast<double>(ml.device_bytes), "bytes");
            tr->append_scalar(p + "kv_host_bytes", static_cast<double>(ml.host_bytes), "bytes");
            tr->append_scalar(p + "full_tokens", static_cast<double>(ml.full_tokens), "tokens");
            tr->append_scalar(p + "compressed_tokens", static_cast<double>(ml.compressed_tokens), "tokens");
            tr->append_scalar(p + "evicted_tokens", static_cast<double>(ml.evicted_tokens), "tokens");
          }
        }
        if (tr) tr->append_scalar("steps/step", static_cast<double>(step), "step");
        sampled.push_back({{"step", step},
                           {"cache_tokens", seq->length()},
                           {"device_bytes", tot.device_bytes},
                           {"host_bytes", tot.host_bytes},
                           {"full_tokens", tot.full_tokens},
                           {"compressed_tokens", tot.compressed_tokens},
                           {"evicted_tokens", tot.evicted_tokens}});
      }
      ++step;
    }
    nll_sum += book_sum;
    const std::vector<int32_t> scored(b.ids.begin() + 1, b.ids.end());
    const int64_t w = count_words(tok.decode(scored, /*skip_special=*/true));
    words += w;
    per_book.push_back({{"id", b.book.id},
                        {"title", b.book.title},
                        {"tokens_scored", n},
                        {"words", w},
                        {"perplexity", std::exp(book_sum / static_cast<double>(n))}});
    std::fprintf(stderr, "pg19: book %s: %lld tokens, perplexity %.4f (%.1f s)\n", b.book.id.c_str(),
                 static_cast<long long>(n), std::exp(book_sum / static_cast<double>(n)), timer.seconds());
  }
  const double secs = timer.seconds();
  const int64_t count = static_cast<int64_t>(nll.size());

  // NLL against position (position = index of the predicted token within its book, from 1).
  nlohmann::json curve = nlohmann::json::array();
  double unigram_sum = 0;  // unigram NLL of the same scored tokens
  {
    std::vector<double> sum, cnt, usum;
    size_t k = 0;
    for (const auto& b : books) {
      const int64_t n = static_cast<int64_t>(b.ids.size()) - 1;
      for (int64_t i = 0; i < n; ++i, ++k) {
        const size_t j = static_cast<size_t>(i / bucket);
        if (sum.size() <= j) sum.resize(j + 1, 0), cnt.resize(j + 1, 0), usum.resize(j + 1, 0);
        sum[j] += nll[k];
        cnt[j] += 1;
        if (unigram) {
          const double u = unigram->nll[static_cast<size_t>(b.ids[i + 1])];
          usum[j] += u;
          unigram_sum += u;
        }
      }
    }
    for (size_t j = 0; j < sum.size(); ++j) {
      curve.push_back({{"start", static_cast<int64_t>(j) * bucket + 1},
                       {"end", static_cast<int64_t>(j) * bucket + static_cast<int64_t>(cnt[j] > 0 ? bucket : 0)},
                       {"count", cnt[j]},
                       {"nll_mean", sum[j] / cnt[j]}});
      if (unigram) curve.back()["unigram_nll_mean"] = usum[j] / cnt[j];
    }
    // The last bucket's end is its real extent.
    if (!curve.empty()) {
      int64_t longest = 0;
      for (const auto& b : books) longest = std::max<int64_t>(longest, static_cast<int64_t>(b.ids.size()) - 1);
      curve.back()["end"] = longest;
    }
  }
  if (tr) {
    tr->set_attribute("steps/nll", "description", "-log p(ids[i+1] | cache after feeding ids[..i])");
    for (int64_t l = 0; l < L; ++l) seq->cache(l).trace(*tr);
  }
  nlohmann::json out = {{"perplexity", std::exp(nll_sum / static_cast<double>(count))},
          {"word_perplexity", words > 0 ? std::exp(nll_sum / static_cast<double>(words)) : NAN},
          {"nll_mean", nll_sum / static_cast<double>(count)},
          {"tokens_scored", count},
          {"words", words},
          {"books", per_book},
          {"data_dir", data_dir},
          {"split", split},
          {"reset_between_books", reset},
          {"rope_positions", "original"},
          {"protocol", "streaming: one token per forward through the KV method (StreamingLLM eval_long_ppl.py)"},
          {"seconds", secs},
          {"tokens_per_second", static_cast<double>(count) / std::max(secs, 1e-9)},
          {"nll_by_position", curve},
          {"kv_memory", memory_json(seq->memory())},
          {"kv_over_steps", sampled}};
  if (unigram)
    out["unigram"] = {{"source", unigram->source},
                      {"tokens_counted", unigram->tokens},
                      {"smoothing", "add-one over the model vocabulary"},
                      {"perplexity", std::exp(unigram_sum / static_cast<double>(count))},
                      {"nll_mean", unigram_sum / static_cast<double>(count)}};
  return out;
}

}  // namespace

KVLAB_REGISTER_EXPERIMENT(
    pg19,
    (Experiment{
        "pg19",
        "PG-19 streaming perplexity: books fed one token at a time through the configured "
        "KV-cache method (StreamingLLM protocol); NLL per position, perplexity over the first "
        "max_tokens predictions, cache size over steps.",
        {{"data_dir", ParamDecl::Type::kString, std::string("debian"), std::nullopt, std::nullopt, {},
          "a PG-19 folder (<dir>/{train,validation,test}/<id>.txt) or debian (PG-19-style Debian-packaged public-domain books)"},
         {"split", ParamDecl::Type::kChoice, std::string("test"), std::nullopt, std::nullopt,
          {"train", "validation", "test"}, "which split"},
         {"books", ParamDecl::Type::kInt, int64_t{1}, 1.0, std::nullopt, {},
          "use the first N books of the split, in id order (StreamingLLM num_samples)"},
         {"book", ParamDecl::Type::kString, std::string(""), std::nullopt, std::nullopt, {},
          "only this book id (empty: the first `books`)"},
         {"max_tokens", ParamDecl::Type::kInt, int64_t{2048}, 1.0, std::nullopt, {},
          "stop after this many scored tokens across books (StreamingLLM num_eval_tokens)"},
         {"book_tokens", ParamDecl::Type::kInt, int64_t{0}, 0.0, std::nullopt, {},
          "score at most this many tokens of each book (its first ones); 0 = no per-book cap"},
         {"reset_between_books", ParamDecl::Type::kBool, true, std::nullopt, std::nullopt, {},
          "fresh cache per book; false reproduces StreamingLLM's carry-over"},
         {"bos", ParamDecl::Type::kBool, true, std::nullopt, std::nullopt, {},
          "prepend the model's BOS token to each book"},
         {"bucket", ParamDecl::Type::kInt, int64_t{256}, 1.0, std::nullopt, {},
          "positions per bucket of the NLL-vs-position curve"},
         {"trace_every", ParamDecl::Type::kInt, int64_t{64}, 1.0, std::nullopt, {},
          "sample per-layer cache bytes and token counts every k steps"},
         {"unigram", ParamDecl::Type::kChoice, std::string("none"), std::nullopt, std::nullopt,
          {"none", "train", "heldout"},
          "also score the same tokens with an add-one unigram model counted on this corpus split "
          "(datasets/text/corpus.h), in results.json `unigram` and per position bucket"}},
        run_pg19}));

}  // namespace kvlab::experiments
