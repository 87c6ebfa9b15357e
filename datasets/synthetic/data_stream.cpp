#include "datasets/synthetic/data_stream.h"

#include <algorithm>
#include <sstream>

#include <nlohmann/json.hpp>

#include "framework/core/error.h"

namespace kvlab::datasets {

namespace {

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

}  // namespace

DataStream::DataStream(const model::Tokenizer& tok, StreamConfig cfg, std::vector<Document> docs)
    : cfg_(std::move(cfg)), gen_(tok, std::move(docs), cfg_.wording) {
  if (cfg_.batch < 1 || cfg_.seq_len < 2) fail("data stream: batch must be >= 1 and seq_len >= 2");
  if (cfg_.max_tokens == 0) cfg_.max_tokens = cfg_.seq_len;
  if (cfg_.min_tokens < 1 || cfg_.max_tokens < cfg_.min_tokens)
    fail("data stream: need 1 <= min_tokens (", cfg_.min_tokens, ") <= max_tokens (", cfg_.max_tokens, ")");
  double total = 0;
  const auto names = task_names();
  for (const auto& [name, p] : cfg_.mix) {
    if (name != "corpus" && std::find(names.begin(), names.end(), name) == names.end())
      fail("data stream: unknown source '", name, "' in mix (corpus, passkey, needle, multikey, kv, copy, recall)");
    if (!(p >= 0)) fail("data stream: mix weight of '", name, "' must be >= 0");
    total += p;
    tokens_[name] = 0;
  }
  if (!(total > 0)) fail("data stream: the mix weights sum to 0");
  const auto b = tok.token_to_id("<|begin_of_text|>"), e = tok.token_to_id("<|end_of_text|>");
  if (!b || !e) fail("data stream: the tokenizer has no <|begin_of_text|> / <|end_of_text|>");
  bos_ = *b;
  eos_ = *e;
}

uint64_t DataStream::fingerprint() const {
  std::ostringstream os;
  os << cfg_.batch << ' ' << cfg_.seq_len << ' ' << cfg_.min_tokens << ' ' << cfg_.max_tokens << ' '
     << cfg_.answer_weight << ' ' << cfg_.text_weight << ' ' << cfg_.wording << ' ' << cfg_.seed;
  for (const auto& [n, p] : cfg_.mix) os << ' ' << n << '=' << p;
  os << ' ' << gen_.tokenizer().vocab_size();
  return fnv1a(os.str());
}

void DataStream::fill_row(int64_t batch, int64_t row, int32_t* tokens, int32_t* targets,
                          float* weights) {
  // Rng of this row: a function of (seed, batch, row) only.
  Rng rng(cfg_.seed * 0x9E3779B97F4A7C15ull ^
          (static_cast<uint64_t>(batch) * 0xD1B54A32D192ED03ull + static_cast<uint64_t>(row) + 1));
  const int64_t n = cfg_.seq_len + 1;
  std::vector<int32_t> ids;
  std::vector<uint8_t> answer, no_loss;
  ids.reserve(n);
  double total = 0;
  for (const auto& m : cfg_.mix) total += m.second;
  while (static_cast<int64_t>(ids.size()) < n) {
    const int64_t rem = n - static_cast<int64_t>(ids.size());
    double u = rng.uniform() * total;
    std::string source = cfg_.mix.back().first;
    for (const auto& [name, p] : cfg_.mix) {
      if (u < p) {
        source = name;
        break;
      }
      u -= p;
    }
    const int64_t len = cfg_.min_tokens +
                        static_cast<int64_t>(rng.below(static_cast<uint64_t>(cfg_.max_tokens - cfg_.min_tokens + 1)));
    ids.push_back(bos_);
    answer.push_back(0);
    no_loss.push_back(1);
    if (rem == 1) break;
    bool placed = false;
    if (source != "corpus" && rem - 2 >= cfg_.min_tokens) {
      const Example ex = gen_.make(source, rng, std::min(len, rem - 2));
      const auto e_ids = ex.ids();
      if (static_cast<int64_t>(e_ids.size()) <= rem - 2) {
        const auto mask = ex.answer_mask();
        ids.insert(ids.end(), e_ids.begin(), e_ids.end());
        answer.insert(answer.end(), mask.begin(), mask.end());
        no_loss.insert(no_loss.end(), e_ids.size(), 0);
        ids.push_back(eos_);
        answer.push_back(0);
        no_loss.push_back(0);
        tokens_[source] += static_cast<int64_t>(e_ids.size()) + 2;
        for (uint8_t a : mask) answer_tokens_ += a;
        placed = true;
      }
    }
    if (!placed) {  // corpus chunk; the one that reaches the row's end fills it exactly
      const int64_t want = (source == "corpus" && len < rem - 1) ? len : rem - 1;
      const auto c = gen_.corpus_tokens(rng, want);
      ids.insert(ids.end(), c.begin(), c.end());
      answer.insert(answer.end(), c.size(), 0);
      no_loss.insert(no_loss.end(), c.size(), 0);
      tokens_["corpus"] += static_cast<int64_t>(c.size()) + 1;
    }
  }
  ids.resize(n);
  for (int64_t t = 0; t < cfg_.seq_len; ++t) {
    tokens[t] = ids[t];
    targets[t] = ids[t + 1];
    weights[t] = no_loss[t + 1] ? 0.0f : answer[t + 1] ? cfg_.answer_weight : cfg_.text_weight;
  }
}

Batch DataStream::next() {
  Batch b;
  b.B = cfg_.batch;
  b.T = cfg_.seq_len;
  b.tokens.resize(b.B * b.T);
  b.targets.resize(b.B * b.T);
  b.weights.resize(b.B * b.T);
  for (int64_t r = 0; r < b.B; ++r)
    fill_row(batch_, r, b.tokens.data() + r * b.T, b.targets.data() + r * b.T,
             b.weights.data() + r * b.T);
  ++batch_;
  return b;
}

std::string DataStream::state() const {
  nlohmann::ordered_json j;
  j["seed"] = cfg_.seed;
  j["batch"] = batch_;
  j["fingerprint"] = fingerprint();
  j["tokens"] = tokens_;
  j["answer_tokens"] = answer_tokens_;
  return j.dump();
}

void DataStream::restore(const std::string& state) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(state);
  } catch (const std::exception& e) {
    fail("data stream state: not JSON: ", e.what());
  }
  try {
    if (j.at("seed").get<uint64_t>() != cfg_.seed || j.at("fingerprint").get<uint64_t>() != fingerprint())
      fail("data stream state: it was saved with another stream configuration (seed, lengths, mix "
           "or tokenizer differ)");
    batch_ = j.at("batch").get<int64_t>();
    tokens_ = j.at("tokens").get<std::map<std::string, int64_t>>();
    answer_tokens_ = j.at("answer_tokens").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    fail("data stream state: ", e.what());
  }
}

}  // namespace kvlab::datasets
