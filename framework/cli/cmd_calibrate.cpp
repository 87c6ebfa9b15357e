// kvlab calibrate: per-layer, per-KV-head Q/K/V second moments over a calibration text, and their
// eigenbases (methods.md 1.3 step 0; the StaticPCA / OjaKV initial bases), written to an HDF5
// bases file (framework/io/bases_h5.h; schema in results/README.md). The model runs with the
// full cache wrapped in kv::CalibrationRecorder, so it computes exactly what it computes without
// calibration. The text's first --tokens tokens are cut into sequences of --seq-len tokens (the
// last one may be shorter), each run from position 0 with the model's BOS first (unless --no-bos).
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "datasets/text/text_source.h"
#include "framework/cli/args.h"
#include "framework/cli/commands.h"
#include "framework/core/error.h"
#include "framework/core/progress.h"
#include "framework/core/timer.h"
#include "framework/io/bases_h5.h"
#include "framework/kv/calibration.h"
#include "framework/model/llama.h"

namespace kvlab::cli {

namespace {

// The first `n` tokens of `text` (or all of it when shorter) without tokenizing the whole text:
// encodes a growing prefix, cut at a UTF-8 character boundary, until it yields more than n
// tokens (the extra token absorbs a word cut at the prefix end).
std::vector<int32_t> first_tokens(const model::Tokenizer& tok, const std::string& text, int64_t n) {
  size_t len = std::min(text.size(), static_cast<size_t>(8 * n + 4096));
  for (;;) {
    while (len < text.size() && (static_cast<unsigned char>(text[len]) & 0xC0) == 0x80) ++len;
    std::vector<int32_t> ids = tok.encode(std::string_view(text).substr(0, len));
    if (len >= text.size() || static_cast<int64_t>(ids.size()) > n) {
      if (static_cast<int64_t>(ids.size()) > n) ids.resize(static_cast<size_t>(n));
      return ids;
    }
    len = std::min(text.size(), 2 * len);
  }
}

}  // namespace

int cmd_calibrate(int argc, char** argv, int first) {
  Args a(
      "calibrate",
      "Runs the model over a calibration text with the full cache, accumulates per (layer, KV "
      "head) f64 second moments of the group's queries, the keys and the values, and writes "
      "their eigenbases (qk = eig(QtQ/|Q| + KtK/|K|), k = eig(KtK/|K|), v = eig(VtV/|V|)) to "
      "an HDF5 bases file for StaticPCA / OjaKV (methods.md 1.3 step 0).",
      {{"model", "DIR", "model folder (config.json, model.safetensors, tokenizer.json)", "", true},
       {"dataset", "SPEC", "calibration text: kjv:RANGE, book:NAME, corpus:SPLIT, file:PATH", "",
        true},
       {"tokens", "N", "calibration text tokens to run (BOS tokens not counted)", "", true},
       {"seq-len", "L", "text tokens per sequence; each starts at position 0", "512"},
       {"frame", "F", "post_rope (what caches store) or pre_rope (keys/queries un-rotated)",
        "post_rope"},
       {"no-bos", "", "do not start each sequence with the model's BOS token"},
       {"threads", "N", "worker threads (0: all hardware threads)", "0"},
       {"out", "FILE.h5", "bases file to write (atomically: FILE.h5.tmp, then renamed)", "",
        true}});
  if (!a.parse(argc, argv, first)) return 0;
  const int64_t n_tokens = a.get_int("tokens"), seq_len = a.get_int("seq-len");
  if (n_tokens < 1) fail("--tokens must be >= 1, got ", n_tokens);
  if (seq_len < 1) fail("--seq-len must be >= 1, got ", seq_len);
  const kv::CalibrationFrame frame = kv::parse_calibration_frame(a.get("frame"), "--frame");
  const std::string out = a.get("out");
  {
    const auto parent = std::filesystem::absolute(out).parent_path();
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (!std::filesystem::is_directory(parent))
      fail("--out ", out, ": cannot create folder ", parent.string(),
           ec ? ": " + ec.message() : std::string());
  }
  const int threads = set_threads(static_cast<int>(a.get_int("threads")));
  std::shared_ptr<const model::Model> m;
  try {
    m = model::Model::load(a.get("model"));
  } catch (const Error& e) {
    fail("--model: ", e.what());
  }
  if (!m->tokenizer()) fail("--model ", m->dir(), ": no tokenizer.json in the model folder");
  const std::string spec = a.get("dataset");
  std::string text;
  try {
    text = datasets::load_text(spec);
  } catch (const Error& e) {
    fail("--dataset ", spec, ": ", e.what());
  }
  const std::vector<int32_t> ids = first_tokens(*m->tokenizer(), text, n_tokens);
  if (static_cast<int64_t>(ids.size()) < n_tokens)
    fail("--tokens ", n_tokens, ": --dataset ", spec, " has only ", ids.size(), " tokens");
  const bool bos = !a.flag("no-bos") && !m->config().bos_token_ids.empty();
  const int32_t bos_id = bos ? static_cast<int32_t>(m->config().bos_token_ids[0]) : 0;

  const model::ModelConfig& c = m->config();
  auto stats = std::make_shared<kv::CalibrationStats>(c.num_hidden_layers, c.num_attention_heads,
                                                      c.num_key_value_heads, c.head_dim, frame);
  const auto& reg = kv::KvRegistry::instance();
  const kv::KvFactory make = kv::make_calibration_factory(
      kv::make_kv_factory("full_cache", ParamValues(reg.find("full_cache").params)), stats);

  Timer timer;
  int64_t fed = 0;  // tokens run through the model, BOS included
  {
    Progress progress("calibrate", n_tokens, "tok");
    for (int64_t s = 0; s < n_tokens; s += seq_len) {
      std::vector<int32_t> seq_ids;
      if (bos) seq_ids.push_back(bos_id);
      seq_ids.insert(seq_ids.end(), ids.begin() + s, ids.begin() + std::min(n_tokens, s + seq_len));
      model::SequenceOptions so;
      so.max_context = static_cast<int64_t>(seq_ids.size());
      model::Sequence seq(m, make, ThreadPool::global(), so);
      seq.forward(seq_ids, nullptr, false);
      fed += static_cast<int64_t>(seq_ids.size());
      progress.advance(static_cast<int64_t>(seq_ids.size()) - (bos ? 1 : 0));
    }
  }
  const std::string source =
      str("model=", m->dir(), " dataset=", spec, " text_tokens=", n_tokens, " seq_len=", seq_len,
          " bos=", bos ? 1 : 0, " frame=", kv::calibration_frame_name(frame));
  const kv::Bases b = stats->bases(source, fed);
  io::save_bases_h5(out, b);

  // Summary: per layer, the mean over KV heads of the rank holding 90% of the energy.
  std::fprintf(stderr, "calibrated %lld tokens (%lld text + BOS) in %.1fs, %d threads, frame %s\n",
               static_cast<long long>(fed), static_cast<long long>(n_tokens), timer.seconds(),
               threads, kv::calibration_frame_name(frame));
  for (int64_t l = 0; l < b.n_layers; ++l) {
    double rk = 0, rv = 0, rqk = 0;
    for (int64_t g = 0; g < b.G; ++g) {
      rqk += linalg::rank_for_energy(b.get(kv::BasisKind::qk, l, g).values, 0.9);
      rk += linalg::rank_for_energy(b.get(kv::BasisKind::k, l, g).values, 0.9);
      rv += linalg::rank_for_energy(b.get(kv::BasisKind::v, l, g).values, 0.9);
    }
    std::fprintf(stderr,
                 "  layer %02lld: rank for 90%% energy (mean over %lld KV heads, of %lld): "
                 "qk %.1f, k %.1f, v %.1f\n",
                 static_cast<long long>(l), static_cast<long long>(b.G),
                 static_cast<long long>(b.D), rqk / b.G, rk / b.G, rv / b.G);
  }
  std::fprintf(stderr, "wrote %s\n", out.c_str());
  return 0;
}

}  // namespace kvlab::cli
