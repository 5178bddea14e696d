// Worker: the one thread an in-memory source, sink or election answers on, so that callbacks
// never run inline and run in the order they were posted. Internal to the in-memory
// implementations. Thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

namespace zk2etcd::core::memory {

// A caller broke a REQUIRES of the interface: an engine bug the oracle reports loudly.
[[noreturn]] inline void ContractViolation(const char* what) {
  std::fprintf(stderr, "in-memory core: contract violation: %s\n", what);
  std::abort();
}

class Worker {
 public:
  Worker() : thread_([this] { Run(); }) {}
  // Runs every task posted so far, then joins.
  ~Worker() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void Post(std::function<void()> task) {
    {
      std::lock_guard lock(mu_);
      tasks_.push_back(std::move(task));
      ++posted_;
    }
    cv_.notify_all();
  }
  // Waits until every task posted before the call has run. Does nothing on the worker thread.
  void Flush() {
    if (OnWorkerThread()) return;
    std::unique_lock lock(mu_);
    const uint64_t target = posted_;
    cv_.wait(lock, [&] { return done_ >= target; });
  }
  bool OnWorkerThread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  void Run() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || !tasks_.empty(); });
      if (tasks_.empty()) return;  // stop_ and nothing left
      auto task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      task();
      task = nullptr;  // destroy captures outside the lock, before counting the task done
      lock.lock();
      ++done_;
      cv_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  uint64_t posted_ = 0;
  uint64_t done_ = 0;
  bool stop_ = false;
  std::thread thread_;  // last: starts after the rest is initialized
};

}  // namespace zk2etcd::core::memory
