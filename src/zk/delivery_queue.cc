#include "zk/delivery_queue.h"

namespace zk2etcd::zk::detail {

bool DeliveryQueue::TryPush(std::unique_ptr<Completion>& completion) {
  {
    std::lock_guard lock(mutex_);
    if (finished_) return false;
    queue_.push_back(std::move(completion));
  }
  cv_.notify_one();
  return true;
}

void DeliveryQueue::PushAll(std::vector<std::unique_ptr<Completion>>& batch) {
  {
    std::lock_guard lock(mutex_);
    for (auto& c : batch) queue_.push_back(std::move(c));
  }
  batch.clear();
  cv_.notify_one();
}

void DeliveryQueue::StopAndJoin() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (OnDeliveryThread()) return;
  std::lock_guard join_lock(join_mutex_);
  if (thread_.joinable()) thread_.join();
}

void DeliveryQueue::Loop() {
  std::vector<std::unique_ptr<Completion>> batch;
  while (true) {
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [this] { return !queue_.empty() || stopping_; });
      if (queue_.empty()) {
        finished_ = true;
        return;
      }
      batch.swap(queue_);
    }
    for (auto& completion : batch) completion->Run();
    batch.clear();
  }
}

}  // namespace zk2etcd::zk::detail
