#include "common/periodic_task.h"

#include <utility>

namespace zk2etcd {

PeriodicTask::PeriodicTask(std::chrono::nanoseconds interval, std::function<void()> task) {
  if (interval.count() <= 0) return;
  thread_ = std::thread([this, interval, task = std::move(task)] {
    std::unique_lock lock(mutex_);
    while (!wake_.wait_for(lock, interval, [this] { return stop_; })) {
      lock.unlock();
      task();
      lock.lock();
    }
  });
}

PeriodicTask::~PeriodicTask() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace zk2etcd
