// A progress bar with rate and ETA for long work (prefill, sweeps, training):
//   Progress p("prefill", total, "tok");
//   for (...) p.advance(n);
//   p.finish();  // or let the destructor do it
// On a terminal (stderr is a tty) it redraws one line with carriage returns, at most ~10 times a
// second:  "prefill [########------------]  31%  1280/4096 tok  2.31k tok/s  ETA 0:01".
// Otherwise (CI logs, files) it prints a plain line every `log_every_s` seconds and one at the
// end:  "prefill: 1280/4096 tok (31%), 2.31k tok/s, ETA 1s"  /  "prefill: done, 4096 tok in 1.8s
// (2.28k tok/s)". total <= 0: unknown total (count and rate only). advance() is thread-safe; cost:
// one clock read and a mutex per call, so call it per chunk, not per element, in hot loops.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

namespace kvlab {

struct ProgressOptions {
  int terminal = -1;            // -1: detect (isatty(stderr)); 0: log lines; 1: redrawn bar
  double log_every_s = 10;      // log mode: seconds between lines
  double redraw_every_s = 0.1;  // terminal mode: at most ~10 Hz
  int bar_width = 28;
  // Where text goes (default: stderr) and the clock in seconds (default: steady_clock); tests
  // inject both.
  std::function<void(const std::string&)> write;
  std::function<double()> clock;
};

class Progress {
 public:
  using Options = ProgressOptions;
  Progress(std::string label, int64_t total, std::string unit = "", Options opt = Options());
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void advance(int64_t n = 1);
  void set(int64_t done);  // absolute position
  void finish();           // final line; idempotent
  int64_t done() const;

  // "1.23k", "45.6", "2.50M": a count or rate with 3 significant digits.
  static std::string human(double v);
  // "0:07", "1:02:03" (terminal) or "7s", "1h02m" (log).
  static std::string duration(double seconds, bool compact);

 private:
  void maybe_draw(double now);
  std::string status_line(double now, bool final) const;

  std::string label_, unit_;
  int64_t total_, done_ = 0;
  Options opt_;
  bool tty_, finished_ = false;
  double start_, last_draw_;
  mutable std::mutex mu_;
};

}  // namespace kvlab
