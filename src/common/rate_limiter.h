// RateLimiter: at most `per_second` units (writes) per second, on average, for everything that
// shares one limiter (--max-write-rate: a mirror's repairs and its changes together).
//
// A token bucket that may go into debt: Take(n) always takes n tokens and returns how long the
// caller must wait before acting, so a batch larger than the bucket still goes, just later. The
// bucket holds at most a tenth of a second's worth of tokens (at least one), so that an idle
// period allows only a short burst. Time comes from the injected Clock. Thread-safe.
#pragma once

#include <chrono>
#include <cstddef>
#include <mutex>

#include "common/clock.h"

namespace zk2etcd {

class RateLimiter {
 public:
  // REQUIRES: per_second > 0.
  RateLimiter(double per_second, const Clock& clock);

  // Takes `units` tokens; returns how long to wait before using them (zero: at once).
  std::chrono::nanoseconds Take(size_t units);

  double per_second() const { return per_second_; }
  // The most units a burst may take at once (the bucket's size, at least 1): a caller that sends
  // in batches keeps them this small, so that its rate is kept from the first batch on.
  size_t burst() const { return static_cast<size_t>(capacity_); }

 private:
  const double per_second_;
  const double capacity_;
  const Clock& clock_;
  std::mutex mutex_;
  double tokens_;
  std::chrono::steady_clock::time_point refilled_;
};

}  // namespace zk2etcd
