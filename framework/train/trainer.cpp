#include "framework/train/trainer.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "framework/core/error.h"
#include "framework/core/file_io.h"
#include "framework/train/checkpoint.h"
#include "framework/train/clip.h"

namespace kvlab::train {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string duration_str(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(t / 3600),
                  static_cast<long long>(t / 60 % 60));
  else
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(t / 60),
                  static_cast<long long>(t % 60));
  return buf;
}

}  // namespace

int64_t process_peak_rss_bytes() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  long long kb = -1;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "VmHWM: %lld kB", &kb) == 1) break;
  std::fclose(f);
  return kb < 0 ? 0 : static_cast<int64_t>(kb) * 1024;
}

std::string fingerprint_of(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

Trainer::Trainer(model::TrainModel& model, optim::Optimizer& opt, BatchSource& data,
                 TrainerOptions opts)
    : model_(model), opt_(opt), data_(data), o_(std::move(opts)) {
  if (o_.steps < 1) fail("trainer: steps must be >= 1, got ", o_.steps);
  if (o_.grad_accum < 1) fail("trainer: grad_accum must be >= 1, got ", o_.grad_accum);
  if (!(o_.clip_norm >= 0)) fail("trainer: clip_norm must be >= 0, got ", o_.clip_norm);
  for (int64_t v : {o_.eval_every, o_.ckpt_every, o_.export_every, o_.stop_after})
    if (v < 0) fail("trainer: eval_every, ckpt_every, export_every and stop_after must be >= 0");
  if (o_.keep_checkpoints < 1) fail("trainer: keep_checkpoints must be >= 1");
  if (o_.log_every < 1) fail("trainer: log_every must be >= 1");
  if (o_.out_dir.empty()) fail("trainer: out_dir is empty");
  if (o_.progress != "auto" && o_.progress != "bar" && o_.progress != "plain" && o_.progress != "off")
    fail("trainer: progress must be auto, bar, plain or off, got '", o_.progress, "'");
  validate(o_.schedule);
  for (auto& p : model_.params())
    blocks_.push_back({p.name, p.data, p.grad, p.shape, /*weight_decay=*/p.is_matrix});
  log_ = [](const std::string& s) { std::fprintf(stderr, "%s\n", s.c_str()); };
}

void Trainer::set_trace(TraceSink* sink, std::function<void()> flush) {
  trace_ = sink;
  flush_ = std::move(flush);
}

void Trainer::say(const std::string& line) {
  if (log_) log_(line);
}

Json Trainer::loop_state() const {
  return {{"format", "kvlab-train-loop-1"},
          {"step", step_},
          {"tokens_seen", tokens_seen_},
          {"elapsed_s", elapsed_s_},
          {"data", Json::parse(data_.state())},
          {"seed", o_.seed},
          {"threads", o_.threads},
          {"grad_accum", o_.grad_accum},
          {"fingerprint", o_.fingerprint}};
}

int64_t Trainer::resume() {
  CheckpointDir dir((fs::path(o_.out_dir) / "checkpoints").string(), o_.keep_checkpoints);
  const auto latest = dir.latest();
  if (!latest) return 0;
  opt_.prepare(blocks_);
  const Json st = load_checkpoint(*latest, blocks_, opt_);
  if (st.value("format", "") != "kvlab-train-loop-1")
    fail(*latest, ": not a kvlab train checkpoint (loop state format '", st.value("format", ""), "')");
  if (st.at("seed").get<uint64_t>() != o_.seed)
    fail(*latest, ": checkpoint was written with seed ", st.at("seed").get<uint64_t>(),
         ", this run has seed ", o_.seed, " (use another output folder to start afresh)");
  if (st.at("grad_accum").get<int64_t>() != o_.grad_accum)
    fail(*latest, ": checkpoint was written with grad_accum ", st.at("grad_accum").get<int64_t>(),
         ", this run has ", o_.grad_accum);
  const int64_t step = st.at("step").get<int64_t>();
  if (step > o_.steps) fail(*latest, ": checkpoint is at step ", step, ", past steps = ", o_.steps);
  data_.restore(st.at("data").dump());
  step_ = step;
  tokens_seen_ = st.at("tokens_seen").get<int64_t>();
  elapsed_s_ = st.value("elapsed_s", 0.0);
  say(str("resumed from ", *latest, " (step ", step_, ", ", tokens_seen_, " tokens seen)"));
  if (st.at("threads").get<int>() != o_.threads)
    say(str("warning: checkpoint written with ", st.at("threads").get<int>(), " threads, resuming with ",
            o_.threads, ": losses will not match an uninterrupted run bit for bit"));
  if (st.value("fingerprint", "") != o_.fingerprint)
    say("warning: the config differs from the one the checkpoint was written with");
  return step_;
}

std::string Trainer::checkpoint() {
  CheckpointDir dir((fs::path(o_.out_dir) / "checkpoints").string(), o_.keep_checkpoints);
  const std::string path = dir.save(step_, blocks_, opt_, loop_state());
  if (flush_) flush_();
  return path;
}

void Trainer::export_now() {
  const fs::path dir = fs::path(o_.out_dir) / "export";
  model_.export_hf(dir.string(), DType::kBF16);
  for (const auto& f : o_.export_files)
    write_file_atomic((dir / fs::path(f).filename()).string(), read_file(f));
  write_file_atomic((dir / "kvlab_export.json").string(),
                    Json{{"step", step_}, {"tokens_seen", tokens_seen_}}.dump(2) + "\n");
}

TrainResult Trainer::run(const std::atomic<bool>* stop) {
  TrainResult r;
  r.start_step = step_;
  const bool bar = o_.progress == "bar" || (o_.progress == "auto" && isatty(STDERR_FILENO));
  const bool plain = o_.progress == "plain" || (o_.progress == "auto" && !bar);
  const auto t_run = Clock::now();
  auto t_flush = Clock::now();
  int64_t run_tokens = 0;
  double run_train_s = 0;  // seconds inside steps (no eval/checkpoint), for tok/s and ETA
  bool bar_open = false;
  int64_t win_T = -1, win_tokens = 0;  // throughput window: steps at the current T
  double win_s = 0;
  auto event = [&](const std::string& line) {
    if (bar_open) std::fputc('\n', stderr);
    bar_open = false;
    say(line);
  };
  if (step_ >= o_.steps) {
    r.end_step = r.start_step;
    r.finished = true;
    return r;
  }
  say(str("training steps ", step_ + 1, "..", o_.steps, ", ", model_.num_params(), " parameters, ",
          "grad_accum ", o_.grad_accum, ", threads ", o_.threads));

  while (step_ < o_.steps) {
    const auto t0 = Clock::now();
    const int64_t s = step_;
    model_.zero_grad();
    double loss_sum = 0;
    int64_t tokens = 0, seq_len = 0;
    for (int64_t a = 0; a < o_.grad_accum; ++a) {
      TrainBatch b = data_.next(s);
      KVLAB_CHECK(b.B > 0 && b.T > 0 && static_cast<int64_t>(b.tokens.size()) == b.B * b.T &&
                  b.targets.size() == b.tokens.size() &&
                  (b.weights.empty() || b.weights.size() == b.tokens.size()))
          << "batch source returned a malformed batch at step " << s;
      loss_sum += model_.forward_backward(b.tokens.data(), b.targets.data(),
                                          b.weights.empty() ? nullptr : b.weights.data(), b.B, b.T);
      tokens += b.B * b.T;
      seq_len = b.T;
    }
    const double loss = loss_sum / static_cast<double>(o_.grad_accum);
    std::vector<std::span<float>> grads;
    grads.reserve(model_.params().size());
    for (auto& p : model_.params()) grads.emplace_back(p.grad, static_cast<size_t>(p.numel()));
    if (o_.grad_accum > 1) {
      // Mean over micro-batches: exact when grad_accum is a power of two.
      const float inv = static_cast<float>(1.0 / static_cast<double>(o_.grad_accum));
      for (auto& g : grads)
        for (float& x : g) x *= inv;
    }
    double norm = 0;
    bool finite = true;
    if (o_.clip_norm > 0) {
      const ClipResult c = clip_grad_norm(grads, o_.clip_norm);
      norm = c.total_norm;
      finite = c.finite;
    } else {
      norm = global_grad_norm(grads);
      finite = std::isfinite(norm);
    }
    if (!std::isfinite(loss) || !finite)
      fail("training diverged at step ", s + 1, ": loss ", loss, ", gradient norm ", norm,
           " (nothing was updated; the last checkpoint is in ", o_.out_dir, "/checkpoints)");
    const double lr = lr_at(o_.schedule, s);
    opt_.step(blocks_, lr);
    const double dt = seconds_since(t0);
    step_ = s + 1;
    tokens_seen_ += tokens;
    elapsed_s_ += dt;
    run_tokens += tokens;
    run_train_s += dt;

    StepRecord rec{step_, loss, lr, norm, static_cast<double>(tokens) / dt, dt, tokens, seq_len};
    rec.optimizer_state_bytes = opt_.state_bytes();
    for (const auto& b : blocks_) rec.trainable_params += b.numel();
    rec.peak_rss_bytes = process_peak_rss_bytes();
    r.records.push_back(rec);
    if (trace_) {
      trace_->append_scalar("train/step", static_cast<double>(step_), "steps");
      trace_->append_scalar("train/loss", loss, "nats/token");
      trace_->append_scalar("train/lr", lr, "1");
      trace_->append_scalar("train/grad_norm", norm, "1");
      trace_->append_scalar("train/tokens_per_s", rec.tokens_per_s, "tokens/s");
      trace_->append_scalar("train/tokens_seen", static_cast<double>(tokens_seen_), "tokens");
      trace_->append_scalar("train/step_seconds", dt, "s");
      trace_->append_scalar("train/seq_len", static_cast<double>(seq_len), "tokens");
      trace_->append_scalar("optim/state_bytes", static_cast<double>(rec.optimizer_state_bytes),
                            "bytes");
      trace_->append_scalar("optim/trainable_params", static_cast<double>(rec.trainable_params),
                            "params");
      trace_->append_scalar("mem/peak_rss_bytes", static_cast<double>(rec.peak_rss_bytes), "bytes");
      opt_.trace(*trace_);
    }
    // Progress: throughput over the steps since T last changed (a curriculum stage); ETA from the
    // mean step time of the segment (a curriculum's later, longer stages make it optimistic).
    if (seq_len != win_T) {
      win_T = seq_len;
      win_tokens = 0;
      win_s = 0;
    }
    win_tokens += tokens;
    win_s += dt;
    const double mean_step = run_train_s / static_cast<double>(step_ - r.start_step);
    const double eta = mean_step * static_cast<double>(o_.steps - step_);
    const std::string label = data_.label(s);
    char line[256];
    std::snprintf(line, sizeof line,
                  "step %lld/%lld%s%s loss %.4f lr %.3g gnorm %.3g %.0f tok/s (T %lld) ETA %s",
                  static_cast<long long>(step_), static_cast<long long>(o_.steps),
                  label.empty() ? "" : " ", label.c_str(), loss, lr, norm,
                  static_cast<double>(win_tokens) / win_s, static_cast<long long>(seq_len),
                  duration_str(eta).c_str());
    if (bar) {
      const int width = 24;
      const int fill = static_cast<int>(width * step_ / o_.steps);
      std::fprintf(stderr, "\r[%s%s] %s\x1b[K", std::string(fill, '#').c_str(),
                   std::string(width - fill, '.').c_str(), line);
      std::fflush(stderr);
      bar_open = true;
    } else if (plain && (step_ % o_.log_every == 0 || step_ == o_.steps || step_ == r.start_step + 1)) {
      say(line);
    }

    if (o_.eval_every > 0 && eval_ && step_ % o_.eval_every == 0) {
      const auto te = Clock::now();
      const auto res = eval_->evaluate(model_);
      std::string msg = str("eval at step ", step_, ":");
      if (trace_) trace_->append_scalar("eval/step", static_cast<double>(step_), "steps");
      for (const auto& [k, v, unit] : res) {
        if (trace_) trace_->append_scalar("eval/" + k, v, unit);
        char buf[96];
        std::snprintf(buf, sizeof buf, " %s %.4g", k.c_str(), v);
        msg += buf;
      }
      event(str(msg, " (", duration_str(seconds_since(te)), ")"));
      if (flush_) flush_();
    }
    if (o_.export_every > 0 && step_ % o_.export_every == 0) {
      export_now();
      event(str("exported step ", step_, " to ", (fs::path(o_.out_dir) / "export").string()));
    }
    const bool stop_now = (stop && stop->load()) ||
                          (o_.stop_after > 0 && step_ - r.start_step >= o_.stop_after);
    if ((o_.ckpt_every > 0 && step_ % o_.ckpt_every == 0) || step_ == o_.steps || stop_now) {
      r.last_checkpoint = checkpoint();
      if (!bar) event(str("checkpoint ", r.last_checkpoint));
      t_flush = Clock::now();
    } else if (flush_ && seconds_since(t_flush) > 10.0) {
      flush_();
      t_flush = Clock::now();
    }
    if (stop_now && step_ < o_.steps) {
      r.interrupted = true;
      event(str("stopped after step ", step_, " (checkpoint ", r.last_checkpoint, ")"));
      break;
    }
  }
  if (bar_open) std::fputc('\n', stderr);
  r.end_step = step_;
  r.finished = step_ >= o_.steps;
  r.tokens_per_s = run_train_s > 0 ? static_cast<double>(run_tokens) / run_train_s : 0;
  if (flush_) flush_();
  say(str(r.finished ? "finished" : "paused", " at step ", step_, ": ", run_tokens, " tokens in ",
          duration_str(seconds_since(t_run)), ", ", static_cast<int64_t>(r.tokens_per_s),
          " tok/s in steps"));
  return r;
}

}  // namespace kvlab::train
