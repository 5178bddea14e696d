// FakeOwnershipStore: an in-memory OwnershipStore for unit tests, with a switch that makes it
// unreachable. Thread-safe.
#pragma once

#include <map>
#include <mutex>

#include "ownership/ownership_store.h"

namespace zk2etcd::ownership {

class FakeOwnershipStore final : public OwnershipStore {
 public:
  OwnershipResult<std::vector<bool>> Lookup(const std::vector<std::string>& keys) override {
    std::lock_guard lock(mutex_);
    if (!available_) return Down();
    std::vector<bool> owned;
    for (const std::string& key : keys) owned.push_back(records_.count(key) > 0);
    return owned;
  }
  OwnershipResult<void> Record(
      const std::vector<std::pair<std::string, std::string>>& key_values) override {
    std::lock_guard lock(mutex_);
    if (!available_) return Down();
    for (const auto& [key, value] : key_values) records_[key] = value;
    return {};
  }
  OwnershipResult<void> Forget(const std::vector<std::string>& keys) override {
    std::lock_guard lock(mutex_);
    if (!available_) return Down();
    for (const std::string& key : keys) records_.erase(key);
    return {};
  }
  OwnershipResult<void> Ping() override {
    std::lock_guard lock(mutex_);
    if (!available_) return Down();
    return {};
  }

  void SetAvailable(bool available) {
    std::lock_guard lock(mutex_);
    available_ = available;
  }
  std::map<std::string, std::string> records() const {
    std::lock_guard lock(mutex_);
    return records_;
  }

 private:
  static Unexpected<OwnershipError> Down() {
    return Unexpected{OwnershipError{OwnershipErrorCode::kUnavailable, "fake store is down"}};
  }
  mutable std::mutex mutex_;
  bool available_ = true;
  std::map<std::string, std::string> records_;
};

}  // namespace zk2etcd::ownership
