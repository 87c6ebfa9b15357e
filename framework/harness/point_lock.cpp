#include "framework/harness/point_lock.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

#include "framework/core/error.h"

namespace kvlab::harness {

namespace {

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

// The file's text, or "" when it is missing or empty (a holder between create and write).
std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

LockHolder parse(const std::string& text) {
  LockHolder h;
  std::istringstream in(text);
  std::string tok;
  while (in >> tok) {
    const auto eq = tok.find('=');
    if (eq == std::string::npos) continue;
    const std::string k = tok.substr(0, eq), v = tok.substr(eq + 1);
    if (k == "pid") h.pid = std::atol(v.c_str());
    if (k == "host") h.host = v;
    if (k == "started") h.started = v;
  }
  return h;
}

// Seconds since the file was last modified (-1 when it is gone).
double age_seconds(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return -1;
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return std::chrono::duration<double>(now).count() -
         (st.st_mtim.tv_sec + st.st_mtim.tv_nsec * 1e-9);
}

bool is_stale(const std::string& path, const std::string& text) {
  const LockHolder h = parse(text);
  if (h.pid > 0 && h.host == this_host()) {
    if (::kill(static_cast<pid_t>(h.pid), 0) == 0) return false;
    return errno == ESRCH;  // EPERM: alive, someone else's
  }
  // Another host, or not yet written: trust the heartbeat.
  return age_seconds(path) > kLockStaleSeconds;
}

}  // namespace

std::string this_host() {
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  return host;
}

std::string LockHolder::text() const {
  if (pid <= 0) return "a process that is starting";
  return str("pid ", pid, " on ", host, started.empty() ? "" : " since " + started);
}

LockProbe probe_lock(const std::string& path) {
  LockProbe p;
  const std::string text = read_all(path);
  if (::access(path.c_str(), F_OK) != 0) return p;
  p.exists = true;
  p.holder = parse(text);
  p.stale = is_stale(path, text);
  return p;
}

std::unique_ptr<PointLock> PointLock::try_acquire(const std::string& path, LockHolder* busy) {
  for (int attempt = 0; attempt < 20; ++attempt) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) {
      const std::string text =
          str("pid=", ::getpid(), " host=", this_host(), " started=", utc_now(), "\n");
      const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
      ::close(fd);
      if (!ok) {
        ::unlink(path.c_str());
        fail(path, ": cannot write the lock file: ", std::strerror(errno));
      }
      return std::unique_ptr<PointLock>(new PointLock(path));
    }
    if (errno != EEXIST) fail(path, ": cannot create the lock file: ", std::strerror(errno));

    const std::string text = read_all(path);
    if (::access(path.c_str(), F_OK) != 0) continue;  // released meanwhile: try again
    if (!is_stale(path, text)) {
      if (busy) *busy = parse(text);
      return nullptr;
    }
    // Break the stale lock under <lock>.break, removing it only if it is still the one we read.
    const std::string brk = path + ".break";
    const int bfd = ::open(brk.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (bfd < 0) {
      if (errno != EEXIST) fail(brk, ": cannot create: ", std::strerror(errno));
      // Someone else is breaking it; a breaker that died leaves a file nobody refreshes.
      if (age_seconds(brk) > 60) ::unlink(brk.c_str());
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    ::close(bfd);
    if (read_all(path) == text) ::unlink(path.c_str());
    ::unlink(brk.c_str());
  }
  fail(path, ": could not take the lock after 20 tries (another process keeps breaking it?)");
}

PointLock::PointLock(std::string path) : path_(std::move(path)) {
  heartbeat_ = std::thread([this] {
    std::unique_lock<std::mutex> lk(mu_);
    while (!cv_.wait_for(lk, std::chrono::seconds(kLockHeartbeatSeconds), [this] { return stop_; }))
      ::utimensat(AT_FDCWD, path_.c_str(), nullptr, 0);  // mtime = now: "still alive"
  });
}

PointLock::~PointLock() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  heartbeat_.join();
  ::unlink(path_.c_str());
}

}  // namespace kvlab::harness
