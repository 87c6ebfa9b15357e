// The trainer's periodic evaluation (framework/train/trainer.h Evaluator), kept cheap:
//   heldout_loss   mean CE (nats/token) over `batches` fixed rows of held-out books
//                  (corpus_split("heldout"), never trained on), each seq_len tokens;
//   <task>_acc     exact-match accuracy of greedy decoding on `examples` examples per length of
//                  each task (passkey, needle, ...), made once from held-out books with the
//                  HELD-OUT wording (tasks.h), needle depths spread evenly over [0, 1];
//   <task>_answer_loss  mean CE of the answer tokens under teacher forcing (moves before the
//                  accuracy does).
// Greedy exact match in one forward: greedy decoding reproduces the k answer tokens exactly iff
// at every answer position the teacher-forced argmax (lowest id on ties, as generate.h) is the
// answer token, because each greedy step then conditions on exactly the teacher-forced prefix.
// So one forward_logits over prompt + answer replaces k decoding steps.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "datasets/synthetic/tasks.h"
#include "experiments/train/train_config.h"
#include "framework/train/trainer.h"

namespace kvlab::experiments {

class TrainEvaluator : public train::Evaluator {
 public:
  // heldout: corpus_split("heldout"). The tokenizer must outlive the evaluator.
  TrainEvaluator(const model::Tokenizer& tok, std::vector<datasets::Document> heldout,
                 const TrainEvalConfig& cfg, uint64_t seed);
  std::vector<train::EvalValue> evaluate(model::TrainModel& m) override;

 private:
  struct Probe {
    std::string task;
    std::vector<int32_t> ids;  // BOS + prompt + answer
    int64_t answer_begin = 0;  // index in ids of the first answer token
  };
  std::vector<int32_t> loss_tokens_, loss_targets_;  // [batches, seq_len]
  std::vector<float> loss_weights_;
  int64_t loss_rows_ = 0, loss_T_ = 0;
  std::vector<Probe> probes_;
  std::vector<std::string> tasks_;
};

}  // namespace kvlab::experiments
