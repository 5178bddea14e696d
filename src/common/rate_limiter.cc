#include "common/rate_limiter.h"

#include <algorithm>

namespace zk2etcd {

RateLimiter::RateLimiter(double per_second, const Clock& clock)
    : per_second_(per_second),
      capacity_(std::max(1.0, per_second / 10)),
      clock_(clock),
      tokens_(capacity_),
      refilled_(clock.Now()) {}

std::chrono::nanoseconds RateLimiter::Take(size_t units) {
  std::lock_guard lock(mutex_);
  const auto now = clock_.Now();
  if (now > refilled_) {
    const double elapsed = std::chrono::duration<double>(now - refilled_).count();
    tokens_ = std::min(capacity_, tokens_ + elapsed * per_second_);
    refilled_ = now;
  }
  tokens_ -= static_cast<double>(units);
  if (tokens_ >= 0) return std::chrono::nanoseconds(0);
  return std::chrono::nanoseconds(static_cast<int64_t>(-tokens_ / per_second_ * 1e9));
}

}  // namespace zk2etcd
