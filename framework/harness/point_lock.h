// One process per sweep point: Slurm array tasks (and people re-running a sweep by hand) write
// into the same results folder, so a point is run only by whoever holds its lock file,
// <output>/<name>/<point-id>.lock, created with O_CREAT|O_EXCL (atomic on local file systems
// and on NFSv3+). The file says "pid=P host=H started=UTC". A lock is stale, and is broken, when
// its holder is gone: on this host, when pid P no longer exists; from another host, when the
// file's mtime (refreshed every 30 s by the holder) is older than 5 minutes. Breaking is itself
// serialised by a second O_EXCL file (<lock>.break), and only removes the exact stale lock read.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace kvlab::harness {

struct LockHolder {
  long pid = 0;
  std::string host;
  std::string started;
  std::string text() const;  // "pid 123 on host node01 since 2024-...": for messages
};

// What the lock file of a point says, without taking it.
struct LockProbe {
  bool exists = false;
  bool stale = false;  // its holder is gone (see above)
  LockHolder holder;
};
LockProbe probe_lock(const std::string& path);

class PointLock {
 public:
  // Takes the lock (breaking a stale one) or returns nullopt and fills `*busy` with the live
  // holder. Errors other than "held" (permissions, missing folder) throw kvlab::Error.
  static std::unique_ptr<PointLock> try_acquire(const std::string& path, LockHolder* busy);
  ~PointLock();  // stops the heartbeat and removes the file
  PointLock(const PointLock&) = delete;
  PointLock& operator=(const PointLock&) = delete;

  const std::string& path() const { return path_; }

 private:
  explicit PointLock(std::string path);
  std::string path_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread heartbeat_;
};

// Seconds after which a lock from another host counts as stale (its heartbeat stopped).
inline constexpr int kLockStaleSeconds = 300;
inline constexpr int kLockHeartbeatSeconds = 30;

std::string this_host();

}  // namespace kvlab::harness
