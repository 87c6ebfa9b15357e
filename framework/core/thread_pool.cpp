#include "framework/core/thread_pool.h"

#include <atomic>
#include <memory>

#include "framework/core/error.h"

namespace kvlab {

namespace {
thread_local bool t_in_pool = false;
std::unique_ptr<ThreadPool>& global_slot() {
  static std::unique_ptr<ThreadPool> pool;
  return pool;
}
}  // namespace

ThreadPool::ThreadPool(int threads) : threads_(threads < 1 ? 1 : threads) {
  for (int i = 1; i < threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_start_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop(int id) {
  t_in_pool = true;
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int)>* body;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_start_.wait(lk, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      body = body_;
    }
    try {
      (*body)(id);
    } catch (...) {
      std::lock_guard<std::mutex> lk(mu_);
      if (!error_) error_ = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (--pending_ == 0) cv_done_.notify_one();
    }
  }
}

void ThreadPool::run(const std::function<void(int)>& body) {
  if (threads_ == 1 || t_in_pool) {
    body(0);
    return;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    body_ = &body;
    pending_ = threads_ - 1;
    error_ = nullptr;
    ++generation_;
  }
  cv_start_.notify_all();
  std::exception_ptr mine;
  t_in_pool = true;
  try {
    body(0);
  } catch (...) {
    mine = std::current_exception();
  }
  t_in_pool = false;
  std::unique_lock<std::mutex> lk(mu_);
  cv_done_.wait(lk, [&] { return pending_ == 0; });
  if (mine) std::rethrow_exception(mine);
  if (error_) std::rethrow_exception(error_);
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  const int64_t parts = std::min<int64_t>(threads_, n);
  if (parts == 1 || t_in_pool) {
    fn(0, n, 0);
    return;
  }
  run([&](int w) {
    if (w >= parts) return;
    const int64_t b = n * w / parts, e = n * (w + 1) / parts;
    if (b < e) fn(b, e, w);
  });
}

void ThreadPool::parallel_tasks(int64_t n_tasks, const std::function<void(int64_t, int)>& fn) {
  if (n_tasks <= 0) return;
  if (threads_ == 1 || n_tasks == 1 || t_in_pool) {
    for (int64_t i = 0; i < n_tasks; ++i) fn(i, 0);
    return;
  }
  std::atomic<int64_t> next{0};
  run([&](int w) {
    for (int64_t i = next.fetch_add(1); i < n_tasks; i = next.fetch_add(1)) fn(i, w);
  });
}

ThreadPool& ThreadPool::global() {
  auto& p = global_slot();
  if (!p) {
    unsigned hc = std::thread::hardware_concurrency();
    p = std::make_unique<ThreadPool>(hc ? static_cast<int>(hc) : 1);
  }
  return *p;
}

void ThreadPool::set_global_threads(int threads) {
  auto& p = global_slot();
  if (p && p->threads() == threads) return;
  p = std::make_unique<ThreadPool>(threads);
}

}  // namespace kvlab
