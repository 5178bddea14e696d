// RecordingObserver: an OpObserver for tests that keeps every reported (op, status) pair.
// Thread-safe.
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/op_observer.h"

namespace zk2etcd::etcd {

class RecordingObserver final : public OpObserver {
 public:
  void OnOp(std::string_view op, std::string_view status,
            std::chrono::nanoseconds duration) override {
    std::lock_guard lock(mutex_);
    ops_.emplace_back(std::string(op), std::string(status));
    durations_.push_back(duration);
  }
  std::vector<std::pair<std::string, std::string>> ops() const {
    std::lock_guard lock(mutex_);
    return ops_;
  }
  int Count(std::string_view op, std::string_view status) const {
    std::lock_guard lock(mutex_);
    int count = 0;
    for (const auto& [o, s] : ops_) count += (o == op && s == status) ? 1 : 0;
    return count;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::pair<std::string, std::string>> ops_;
  std::vector<std::chrono::nanoseconds> durations_;
};

}  // namespace zk2etcd::etcd
