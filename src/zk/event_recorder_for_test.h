// EventRecorder: collects a ZkClient's watch and session events, delivered on the client's
// delivery thread, and lets a test wait for a condition on them (with a deadline) instead of
// sleeping. Thread-safe. For tests only.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <vector>

#include "zk/zk_client.h"

namespace zk2etcd::zk::testing {

class EventRecorder {
 public:
  ZkEventHandlers Handlers() {
    return ZkEventHandlers{[this](const WatchEvent& e) {
                             {
                               std::lock_guard lock(mutex_);
                               watches_.push_back(e);
                             }
                             cv_.notify_all();
                           },
                           [this](const SessionEvent& e) {
                             {
                               std::lock_guard lock(mutex_);
                               sessions_.push_back(e);
                             }
                             cv_.notify_all();
                           }};
  }

  // Waits until `done(watches, sessions)` holds; false after `timeout`.
  bool WaitFor(const std::function<bool(const std::vector<WatchEvent>&,
                                        const std::vector<SessionEvent>&)>& done,
               std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return done(watches_, sessions_); });
  }

  // Waits for the `nth` (1-based) session event of `type`.
  bool WaitForSession(SessionEventType type, std::chrono::milliseconds timeout, size_t nth = 1) {
    return WaitFor(
        [&](const auto&, const auto& sessions) {
          size_t seen = 0;
          for (const auto& e : sessions) seen += e.type == type ? 1 : 0;
          return seen >= nth;
        },
        timeout);
  }

  bool WaitForWatchCount(size_t count, std::chrono::milliseconds timeout) {
    return WaitFor([&](const auto& watches, const auto&) { return watches.size() >= count; },
                   timeout);
  }

  std::vector<WatchEvent> watches() const {
    std::lock_guard lock(mutex_);
    return watches_;
  }
  std::vector<SessionEvent> sessions() const {
    std::lock_guard lock(mutex_);
    return sessions_;
  }
  // The last session event of `type` (default-constructed if none).
  SessionEvent LastSession(SessionEventType type) const {
    std::lock_guard lock(mutex_);
    for (auto it = sessions_.rbegin(); it != sessions_.rend(); ++it) {
      if (it->type == type) return *it;
    }
    return SessionEvent{};
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<WatchEvent> watches_;
  std::vector<SessionEvent> sessions_;
};

}  // namespace zk2etcd::zk::testing
