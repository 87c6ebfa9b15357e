// kvlab tokenizer train: byte-level BPE from text specs (framework/model/tokenizer_train.h).
#include <cstdio>
#include <sstream>

#include "datasets/text/text_source.h"
#include "framework/cli/args.h"
#include "framework/cli/commands.h"
#include "framework/core/error.h"
#include "framework/core/file_io.h"
#include "framework/core/timer.h"
#include "framework/model/safetensors.h"
#include "framework/model/tokenizer.h"
#include "framework/model/tokenizer_train.h"

namespace kvlab::cli {

int cmd_tokenizer_train(int argc, char** argv, int first) {
  Args a("tokenizer train",
         "Trains a byte-level BPE tokenizer (digits split singly) and writes a Hugging Face "
         "tokenizer.json. Ids: 0-255 bytes, 256.. special tokens (<|begin_of_text|> = 256, "
         "<|end_of_text|> = 257, <|pad|>, <|sep|>, <|reserved_0..3|>), then merges.",
         {{"text", "SPEC[,SPEC...]",
           "training text: corpus:train, book:NAME, kjv:RANGE, file:PATH or PATH (repeatable)", "",
           true, true},
          {"vocab-size", "N", "total vocabulary: 256 bytes + special tokens + merges", "4096"},
          {"min-frequency", "N", "stop when the most frequent pair occurs fewer times", "2"},
          {"out", "FILE", "output tokenizer.json", "", true}});
  if (!a.parse(argc, argv, first)) return 0;
  model::BpeTrainOptions opts;
  opts.vocab_size = a.get_int("vocab-size");
  opts.min_frequency = a.get_int("min-frequency");

  Timer timer;
  model::PreTokenCounter counter(opts.pattern);
  for (const auto& arg : a.get_all("text")) {
    std::stringstream ss(arg);
    std::string spec;
    while (std::getline(ss, spec, ',')) {
      if (spec.empty()) continue;
      counter.add(datasets::load_text(spec), spec);
    }
  }
  if (counter.bytes() == 0) fail("kvlab tokenizer train: --text gave no text");
  const double t_count = timer.seconds();
  const model::BpeModel m = model::train_bpe(counter, opts);
  const double t_train = timer.seconds() - t_count;
  const std::string json = model::bpe_tokenizer_json(m);
  // Round-trip check: the file must load with kvlab's own tokenizer.
  (void)model::Tokenizer::from_json(json, a.get("out"));
  write_file_atomic(a.get("out"), json);
  std::fprintf(stderr,
               "tokenizer train: %lld bytes, %lld pre-tokens (%zu distinct) in %.1f s; %zu merges, "
               "vocabulary %zu (last merge count %lld) in %.1f s; wrote %s\n",
               static_cast<long long>(counter.bytes()), static_cast<long long>(counter.pre_tokens()),
               counter.counts().size(), t_count, m.merges.size(), m.tokens.size(),
               static_cast<long long>(m.merges.empty() ? 0 : m.merges.back().count), t_train,
               a.get("out").c_str());
  if (static_cast<int64_t>(m.tokens.size()) < opts.vocab_size)
    std::fprintf(stderr, "tokenizer train: stopped early (no pair occurs %lld times)\n",
                 static_cast<long long>(opts.min_frequency));
  return 0;
}

}  // namespace kvlab::cli
