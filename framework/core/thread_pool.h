// One fixed thread pool for the whole process (DESIGN.md section 6). parallel_for splits
// [0, n) into contiguous chunks, one per worker; the calling thread takes part. Nested calls run
// inline on the caller. Cost: one wake-up and one barrier per call (~a few microseconds).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kvlab {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return threads_; }

  // Calls fn(begin, end, worker) on disjoint chunks covering [0, n); worker in [0, threads()).
  // Blocks until every chunk is done. Exceptions from fn are rethrown on the caller (first one).
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn);

  // Calls fn(task, worker) for each task in [0, n_tasks), tasks handed out dynamically.
  void parallel_tasks(int64_t n_tasks, const std::function<void(int64_t, int)>& fn);

  // The process-wide pool; set_global_threads rebuilds it (not while a call is running).
  static ThreadPool& global();
  static void set_global_threads(int threads);

 private:
  void worker_loop(int id);
  void run(const std::function<void(int)>& body);

  int threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_start_, cv_done_;
  const std::function<void(int)>* body_ = nullptr;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

}  // namespace kvlab
