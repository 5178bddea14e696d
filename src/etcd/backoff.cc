#include "etcd/backoff.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>
#include <random>

namespace zk2etcd::etcd {

RandomSource DefaultRandomSource() {
  struct State {
    std::mutex mutex;
    std::mt19937_64 engine{std::random_device{}()};
    std::uniform_real_distribution<double> uniform{0.0, 1.0};
  };
  auto state = std::make_shared<State>();
  return [state] {
    std::lock_guard lock(state->mutex);
    return state->uniform(state->engine);
  };
}

std::chrono::milliseconds BackoffDelay(const BackoffPolicy& policy, int retry, double random01) {
  const double initial = static_cast<double>(std::max<int64_t>(policy.initial.count(), 0));
  const double cap = static_cast<double>(std::max<int64_t>(policy.max.count(), 0));
  const int exponent = std::clamp(retry - 1, 0, 62);
  const double base = std::min(cap, initial * std::pow(std::max(policy.multiplier, 1.0), exponent));
  const double jitter = std::clamp(policy.jitter, 0.0, 1.0);
  const double factor = 1.0 - jitter * std::clamp(random01, 0.0, 1.0);
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(base * factor)));
}

}  // namespace zk2etcd::etcd
