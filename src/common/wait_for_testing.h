// Test helper: waits for a condition that another thread makes true, polling, bounded in time.
// Header-only and used only by tests; no production code includes it. Thread-safe as far as
// `condition` is.
#pragma once

#include <chrono>
#include <functional>
#include <thread>

namespace zk2etcd {

// Polls `condition` every `poll` until it holds or `timeout` passes; returns its last value.
inline bool WaitFor(const std::function<bool()>& condition,
                    std::chrono::milliseconds timeout = std::chrono::seconds(5),
                    std::chrono::milliseconds poll = std::chrono::milliseconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(poll);
  }
  return condition();
}

}  // namespace zk2etcd
