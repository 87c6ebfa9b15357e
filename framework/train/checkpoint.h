// Training checkpoints (DESIGN.md section 3, "resume"): one safetensors file holding
//   "param/<block name>"   f32, the block's shape      master weights
//   "optim/<state name>"   f32, [numel]                every Optimizer::state() tensor
// and in __metadata__
//   "kvlab.format"          "kvlab-checkpoint-1"
//   "kvlab.optimizer_step"  Optimizer::step_count() as decimal text
//   "kvlab.loop_state"      the caller's JSON (step, data position, RNG state as integers, ...)
// Bytes are written as-is, so a load restores every value bit for bit. The file is written to
// PATH.tmp, fsynced and renamed over PATH (model::write_safetensors), so a crash leaves either
// the previous file or the complete new one under PATH, never a partial one.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "framework/core/params.h"
#include "framework/optim/optimizer.h"

namespace kvlab::train {

// Writes one checkpoint file at `path`.
void save_checkpoint(const std::string& path, std::span<const optim::ParamBlock> params,
                     optim::Optimizer& opt, const nlohmann::json& loop_state);

// Restores params' data, the optimizer's state tensors and step count from `path` and returns
// the loop state. The optimizer must already hold its state tensors (Optimizer::prepare, or one
// step). Every name and shape is checked before anything is written: a missing, extra or
// mis-shaped tensor throws kvlab::Error naming the file and the tensor, and leaves params and
// optimizer untouched.
nlohmann::json load_checkpoint(const std::string& path, std::span<optim::ParamBlock> params,
                               optim::Optimizer& opt);

// A folder of checkpoints <dir>/step-<step, 9 digits>.safetensors keeping the newest keep_last.
class CheckpointDir {
 public:
  CheckpointDir(std::string dir, int64_t keep_last);
  // Saves the checkpoint for `step` (creating dir), then deletes all but the newest keep_last
  // checkpoints. Returns the path written.
  std::string save(int64_t step, std::span<const optim::ParamBlock> params, optim::Optimizer& opt,
                   const nlohmann::json& loop_state);
  // Checkpoint paths in the folder, oldest first (by step; .tmp files are ignored).
  std::vector<std::string> list() const;
  std::optional<std::string> latest() const;
  std::string path_for(int64_t step) const;

 private:
  std::string dir_;
  int64_t keep_last_;
};

// Declarations: checkpoint_every (steps, 0 = off), keep_last.
const std::vector<ParamDecl>& checkpoint_param_decls();

}  // namespace kvlab::train
