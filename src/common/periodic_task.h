// PeriodicTask: runs a function on a thread of its own every `interval`, from construction until
// destruction, for background chores of a command (a progress line, a watch on a counter).
//
// The first run comes one interval after construction. The destructor wakes the thread and joins
// it: a run under way finishes first, no run starts after. An interval of zero or less runs
// nothing (and starts no thread). Destroy it from any thread but the task's own.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace zk2etcd {

class PeriodicTask {
 public:
  PeriodicTask(std::chrono::nanoseconds interval, std::function<void()> task);
  ~PeriodicTask();
  PeriodicTask(const PeriodicTask&) = delete;
  PeriodicTask& operator=(const PeriodicTask&) = delete;

 private:
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;  // guarded by mutex_
  std::thread thread_;
};

}  // namespace zk2etcd
