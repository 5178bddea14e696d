// FakeOwnershipStore: an in-memory OwnershipStore for unit tests, with switches that make it
// unreachable (calls fail at once) or hanging (calls block until released, or fail after the
// hang timeout if one is set, as a real store's own timeout would). Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>

#include "ownership/ownership_store.h"

namespace zk2etcd::ownership {

class FakeOwnershipStore final : public OwnershipStore {
 public:
  OwnershipResult<std::vector<bool>> Lookup(const std::vector<std::string>& keys) override {
    std::unique_lock lock(mutex_);
    if (!Answers(lock)) return Down();
    std::vector<bool> owned;
    for (const std::string& key : keys) owned.push_back(records_.count(key) > 0);
    return owned;
  }
  OwnershipResult<void> Record(
      const std::vector<std::pair<std::string, std::string>>& key_values) override {
    std::unique_lock lock(mutex_);
    if (!Answers(lock)) return Down();
    ++record_calls_;
    for (const auto& [key, value] : key_values) records_[key] = value;
    return {};
  }
  OwnershipResult<void> Forget(const std::vector<std::string>& keys) override {
    std::unique_lock lock(mutex_);
    if (!Answers(lock)) return Down();
    ++forget_calls_;
    for (const std::string& key : keys) records_.erase(key);
    return {};
  }
  OwnershipResult<void> Ping() override {
    std::unique_lock lock(mutex_);
    if (!Answers(lock)) return Down();
    return {};
  }

  void SetAvailable(bool available) {
    std::lock_guard lock(mutex_);
    available_ = available;
  }
  // While hanging, every call blocks until SetHanging(false) (then it is served as usual) or
  // until the hang timeout passes (then it fails as unavailable).
  void SetHanging(bool hanging) {
    std::lock_guard lock(mutex_);
    hanging_ = hanging;
    released_.notify_all();
  }
  // nullopt (the default): hanging calls wait until released, however long that takes.
  void SetHangTimeout(std::optional<std::chrono::milliseconds> timeout) {
    std::lock_guard lock(mutex_);
    hang_timeout_ = timeout;
  }
  // Calls blocked by SetHanging(true) right now, and since the start.
  size_t hung_calls() const {
    std::lock_guard lock(mutex_);
    return hung_calls_;
  }
  size_t total_hung_calls() const {
    std::lock_guard lock(mutex_);
    return total_hung_calls_;
  }
  // Record and Forget calls the store served.
  size_t record_calls() const {
    std::lock_guard lock(mutex_);
    return record_calls_;
  }
  size_t forget_calls() const {
    std::lock_guard lock(mutex_);
    return forget_calls_;
  }
  std::map<std::string, std::string> records() const {
    std::lock_guard lock(mutex_);
    return records_;
  }

 private:
  static Unexpected<OwnershipError> Down() {
    return Unexpected{OwnershipError{OwnershipErrorCode::kUnavailable, "fake store is down"}};
  }
  // Waits out a hang; whether the call is then served. REQUIRES: lock holds mutex_.
  bool Answers(std::unique_lock<std::mutex>& lock) {
    if (hanging_) {
      ++hung_calls_;
      ++total_hung_calls_;
      bool released = true;
      if (hang_timeout_) {
        released = released_.wait_for(lock, *hang_timeout_, [this] { return !hanging_; });
      } else {
        released_.wait(lock, [this] { return !hanging_; });
      }
      --hung_calls_;
      if (!released) return false;
    }
    return available_;
  }

  mutable std::mutex mutex_;
  std::condition_variable released_;
  bool available_ = true;
  bool hanging_ = false;
  std::optional<std::chrono::milliseconds> hang_timeout_;
  size_t hung_calls_ = 0;
  size_t total_hung_calls_ = 0;
  size_t record_calls_ = 0;
  size_t forget_calls_ = 0;
  std::map<std::string, std::string> records_;
};

}  // namespace zk2etcd::ownership
