#include "experiments/train/curriculum_source.h"

#include <nlohmann/json.hpp>

#include "framework/core/error.h"

namespace kvlab::experiments {

CurriculumSource::CurriculumSource(const model::Tokenizer& tok, std::vector<datasets::Document> docs,
                                   std::vector<TrainStage> stages, uint64_t seed)
    : tok_(tok), docs_(std::move(docs)), stages_(std::move(stages)), seed_(seed) {
  if (stages_.empty()) fail("curriculum: no stages");
  int64_t s = 0;
  for (size_t i = 0; i < stages_.size(); ++i) {
    start_.push_back(s);
    s += stages_[i].steps;
    // Stage seeds: splitmix-style mix of (seed, stage), never equal across stages.
    uint64_t z = seed_ + 0x9E3779B97F4A7C15ull * (i + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    stages_[i].stream.seed = z ^ (z >> 31);
  }
}

int64_t CurriculumSource::stage_at(int64_t step) const {
  int64_t i = 0;
  while (i + 1 < static_cast<int64_t>(stages_.size()) && step >= start_[i + 1]) ++i;
  return i;
}

void CurriculumSource::open(int64_t stage) {
  stream_ = std::make_unique<datasets::DataStream>(tok_, stages_[stage].stream, docs_);
  cur_ = stage;
}

train::TrainBatch CurriculumSource::next(int64_t step) {
  const int64_t s = stage_at(step);
  if (s != cur_) open(s);
  datasets::Batch b = stream_->next();
  train::TrainBatch t;
  t.B = b.B;
  t.T = b.T;
  t.tokens = std::move(b.tokens);
  t.targets = std::move(b.targets);
  t.weights = std::move(b.weights);
  return t;
}

std::string CurriculumSource::state() const {
  nlohmann::json j;
  j["stage"] = cur_;
  j["stream"] = stream_ ? nlohmann::json::parse(stream_->state()) : nlohmann::json();
  return j.dump();
}

void CurriculumSource::restore(const std::string& state) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(state);
  } catch (const std::exception& e) {
    fail("curriculum state: not JSON: ", e.what());
  }
  const int64_t s = j.value("stage", int64_t{-1});
  if (s < 0) {  // saved before any batch
    stream_.reset();
    cur_ = -1;
    return;
  }
  if (s >= static_cast<int64_t>(stages_.size()))
    fail("curriculum state: stage ", s, " but the config has ", stages_.size(), " stages");
  open(s);
  stream_->restore(j.at("stream").dump());
}

std::string CurriculumSource::label(int64_t step) const {
  const int64_t s = stage_at(step);
  return str("[", stages_[s].name, " ", s + 1, "/", stages_.size(), "]");
}

}  // namespace kvlab::experiments
