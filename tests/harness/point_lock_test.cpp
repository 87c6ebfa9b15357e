// Per-point lock files: exclusive across processes, stale locks (dead pid, or another host's
// lock whose heartbeat stopped) broken, live ones respected.
#include "framework/harness/point_lock.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace kvlab::harness {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir() {
  static int n = 0;
  const fs::path d = fs::temp_directory_path() /
                     ("kvlab_lock_" + std::to_string(getpid()) + "_" + std::to_string(n++));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// A pid that no longer exists: a child that has exited and been reaped.
pid_t dead_pid() {
  const pid_t p = fork();
  if (p == 0) _exit(0);
  waitpid(p, nullptr, 0);
  return p;
}

TEST(PointLock, ExclusiveAndReleased) {
  const std::string path = (fresh_dir() / "p.lock").string();
  LockHolder h;
  {
    auto a = PointLock::try_acquire(path, &h);
    ASSERT_TRUE(a);
    EXPECT_TRUE(fs::exists(path));
    EXPECT_FALSE(PointLock::try_acquire(path, &h));
    EXPECT_EQ(h.pid, getpid());
    EXPECT_EQ(h.host, this_host());
    const LockProbe pr = probe_lock(path);
    EXPECT_TRUE(pr.exists);
    EXPECT_FALSE(pr.stale);
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(probe_lock(path).exists);
  EXPECT_TRUE(PointLock::try_acquire(path, &h));
}

TEST(PointLock, StaleLockOfADeadProcessIsBroken) {
  const std::string path = (fresh_dir() / "p.lock").string();
  std::ofstream(path) << "pid=" << dead_pid() << " host=" << this_host() << " started=x\n";
  EXPECT_TRUE(probe_lock(path).stale);
  LockHolder h;
  auto a = PointLock::try_acquire(path, &h);
  ASSERT_TRUE(a);
  std::ifstream f(path);
  std::string text((std::istreambuf_iterator<char>(f)), {});
  EXPECT_NE(text.find("pid=" + std::to_string(getpid())), std::string::npos) << text;
}

TEST(PointLock, LiveLockOfAnotherProcessIsRespected) {
  const std::string path = (fresh_dir() / "p.lock").string();
  // pid 1 always exists (and may not be signalable: EPERM counts as alive).
  std::ofstream(path) << "pid=1 host=" << this_host() << " started=x\n";
  LockHolder h;
  EXPECT_FALSE(PointLock::try_acquire(path, &h));
  EXPECT_EQ(h.pid, 1);
  EXPECT_TRUE(fs::exists(path));
}

TEST(PointLock, OtherHostsLockIsStaleOnlyWhenItsHeartbeatStopped) {
  const std::string path = (fresh_dir() / "p.lock").string();
  std::ofstream(path) << "pid=12345 host=some-other-node started=x\n";
  LockHolder h;
  EXPECT_FALSE(PointLock::try_acquire(path, &h));
  EXPECT_EQ(h.host, "some-other-node");
  // Ten minutes without a heartbeat.
  const timespec old[2] = {{time(nullptr) - 600, 0}, {time(nullptr) - 600, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), old, 0), 0);
  EXPECT_TRUE(probe_lock(path).stale);
  EXPECT_TRUE(PointLock::try_acquire(path, &h));
}

TEST(PointLock, ExactlyOneOfManyRacingProcessesWins) {
  const fs::path dir = fresh_dir();
  const std::string path = (dir / "p.lock").string();
  // A stale lock to start with, so the racers also race to break it.
  std::ofstream(path) << "pid=" << dead_pid() << " host=" << this_host() << " started=x\n";
  constexpr int kProcs = 8;
  std::vector<pid_t> kids;
  for (int i = 0; i < kProcs; ++i) {
    const pid_t p = fork();
    if (p == 0) {
      LockHolder h;
      auto lock = PointLock::try_acquire(path, &h);
      if (lock) {
        std::ofstream(dir / ("won." + std::to_string(getpid()))) << "1";
        usleep(1000 * 1000);  // hold it while the others try
      }
      lock.reset();
      _exit(0);
    }
    kids.push_back(p);
  }
  for (pid_t p : kids) {
    int st = 0;
    waitpid(p, &st, 0);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  int winners = 0;
  for (const auto& e : fs::directory_iterator(dir))
    winners += e.path().filename().string().rfind("won.", 0) == 0;
  EXPECT_EQ(winners, 1);
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".break"));
}

}  // namespace
}  // namespace kvlab::harness
