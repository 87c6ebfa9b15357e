// The trainer's BatchSource (framework/train/trainer.h) over datasets' DataStream, with a
// curriculum: stage i covers steps [start_i, start_i + steps_i) and has its own StreamConfig
// (T, B, mix, piece lengths). Stage i's stream is seeded with a function of (seed, i), so stages
// never replay each other's rows.
//
// State: {"stage": i, "stream": <stage i's DataStream::state()>}; restore() rebuilds stage i's
// stream and restores it, so a resumed run sees exactly the batches of an uninterrupted one.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "datasets/synthetic/data_stream.h"
#include "experiments/train/train_config.h"
#include "framework/train/trainer.h"

namespace kvlab::experiments {

class CurriculumSource : public train::BatchSource {
 public:
  // The tokenizer must outlive the source; docs are the training split.
  CurriculumSource(const model::Tokenizer& tok, std::vector<datasets::Document> docs,
                   std::vector<TrainStage> stages, uint64_t seed);

  train::TrainBatch next(int64_t step) override;
  std::string state() const override;
  void restore(const std::string& state) override;
  std::string label(int64_t step) const override;

  int64_t stage_at(int64_t step) const;
  const std::vector<TrainStage>& stages() const { return stages_; }

 private:
  void open(int64_t stage);

  const model::Tokenizer& tok_;
  std::vector<datasets::Document> docs_;
  std::vector<TrainStage> stages_;
  std::vector<int64_t> start_;  // first step of each stage
  uint64_t seed_;
  int64_t cur_ = -1;
  std::unique_ptr<datasets::DataStream> stream_;
};

}  // namespace kvlab::experiments
