#include "framework/core/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace kvlab {

Progress::Progress(std::string label, int64_t total, std::string unit, Options opt)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), opt_(std::move(opt)) {
  tty_ = opt_.terminal < 0 ? ::isatty(STDERR_FILENO) == 1 : opt_.terminal == 1;
  if (!opt_.write)
    opt_.write = [](const std::string& s) {
      std::fputs(s.c_str(), stderr);
      std::fflush(stderr);
    };
  if (!opt_.clock) {
    const auto t0 = std::chrono::steady_clock::now();
    opt_.clock = [t0] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
  }
  start_ = opt_.clock();
  last_draw_ = start_;
  if (tty_) opt_.write(std::string("\r").append(status_line(start_, false)));
}

Progress::~Progress() {
  try {
    finish();
  } catch (...) {
  }
}

void Progress::advance(int64_t n) {
  std::lock_guard<std::mutex> l(mu_);
  if (finished_) return;
  done_ += n;
  maybe_draw(opt_.clock());
}

void Progress::set(int64_t done) {
  std::lock_guard<std::mutex> l(mu_);
  if (finished_) return;
  done_ = done;
  maybe_draw(opt_.clock());
}

int64_t Progress::done() const {
  std::lock_guard<std::mutex> l(mu_);
  return done_;
}

void Progress::finish() {
  std::lock_guard<std::mutex> l(mu_);
  if (finished_) return;
  finished_ = true;
  const double now = opt_.clock();
  std::string line = tty_ ? std::string("\r") : std::string();
  line += status_line(now, true);
  line += tty_ ? "\x1b[K\n" : "\n";
  opt_.write(line);
}

void Progress::maybe_draw(double now) {
  const double every = tty_ ? opt_.redraw_every_s : opt_.log_every_s;
  if (now - last_draw_ < every) return;
  last_draw_ = now;
  std::string line = tty_ ? std::string("\r") : std::string();
  line += status_line(now, false);
  line += tty_ ? "\x1b[K" : "\n";
  opt_.write(line);
}

std::string Progress::human(double v) {
  char b[32];
  const char* suffix = "";
  double a = std::abs(v);
  if (a >= 1e9)
    v /= 1e9, suffix = "G";
  else if (a >= 1e6)
    v /= 1e6, suffix = "M";
  else if (a >= 1e3)
    v /= 1e3, suffix = "k";
  a = std::abs(v);
  std::snprintf(b, sizeof b,
                a >= 100 || (*suffix == '\0' && a == std::floor(a)) ? "%.0f%s"
                : a >= 10                                           ? "%.1f%s"
                                                                    : "%.2f%s",
                v, suffix);
  return b;
}

std::string Progress::duration(double s, bool compact) {
  if (!std::isfinite(s) || s < 0) return "?";
  const long t = std::lround(s);
  const long h = t / 3600, m = (t / 60) % 60, sec = t % 60;
  char b[32];
  if (compact) {
    if (h)
      std::snprintf(b, sizeof b, "%ld:%02ld:%02ld", h, m, sec);
    else
      std::snprintf(b, sizeof b, "%ld:%02ld", m, sec);
  } else if (h) {
    std::snprintf(b, sizeof b, "%ldh%02ldm", h, m);
  } else if (m) {
    std::snprintf(b, sizeof b, "%ldm%02lds", m, sec);
  } else if (s < 10) {
    std::snprintf(b, sizeof b, "%.1fs", s);
  } else {
    std::snprintf(b, sizeof b, "%lds", sec);
  }
  return b;
}

std::string Progress::status_line(double now, bool final) const {
  const double el = now - start_;
  const double rate = el > 0 ? static_cast<double>(done_) / el : 0;
  const std::string u = unit_.empty() ? "" : " " + unit_;
  std::string r = el > 0 ? human(rate) : std::string("-");
  r += u;
  r += "/s";
  const bool known = total_ > 0;
  const double frac =
      known ? std::clamp(static_cast<double>(done_) / static_cast<double>(total_), 0.0, 1.0) : 0;
  const double eta = rate > 0 && known ? static_cast<double>(total_ - done_) / rate : NAN;
  char pct[16];
  std::snprintf(pct, sizeof pct, "%3.0f%%", frac * 100);
  std::string count = std::to_string(done_);
  if (known) count += "/", count += std::to_string(total_);
  count += u;
  if (final) return label_ + ": done, " + count + " in " + duration(el, false) + " (" + r + ")";
  if (tty_) {
    std::string s = label_ + " ";
    if (known) {
      const int fill = static_cast<int>(frac * opt_.bar_width);
      s += "[";
      s.append(fill, '#').append(opt_.bar_width - fill, '-');
      s += "] ";
      s += pct;
      s += "  ";
    }
    s += count;
    s += "  ";
    s += r;
    if (known) s += "  ETA ", s += duration(eta, true);
    return s;
  }
  return label_ + ": " + count +
         (known ? " (" + std::to_string(std::lround(frac * 100)) + "%)" : "") + ", " + r +
         (known ? ", ETA " + duration(eta, false) : "");
}

}  // namespace kvlab
