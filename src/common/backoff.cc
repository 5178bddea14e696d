#include "common/backoff.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <mutex>

namespace zk2etcd {

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

std::chrono::milliseconds BackoffDelay(const BackoffOptions& options, int retry, double random01) {
  const double initial = static_cast<double>(std::max<int64_t>(options.initial.count(), 0));
  const double cap = static_cast<double>(std::max<int64_t>(options.max.count(), 0));
  const int exponent = std::clamp(retry - 1, 0, 62);
  const double base =
      std::min(cap, initial * std::pow(std::max(options.multiplier, 1.0), exponent));
  const double jitter = std::clamp(options.jitter, 0.0, 1.0);
  const double random = std::clamp(random01, 0.0, 1.0);
  const double factor = options.jitter_direction == JitterDirection::kDown ? 1.0 - jitter * random
                                                                           : 1.0 + jitter * random;
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(base * factor)));
}

Backoff::Backoff(BackoffOptions options)
    : options_(options), random_(options.seed ? *options.seed : std::random_device{}()) {}

std::chrono::milliseconds Backoff::Next() {
  if (retries_ < std::numeric_limits<int>::max()) ++retries_;
  double random01 = 0.0;
  if (options_.jitter > 0.0) {
    // Below 1 even where the distribution rounds up to its end.
    random01 = std::min(std::uniform_real_distribution<double>(0.0, 1.0)(random_),
                        std::nextafter(1.0, 0.0));
  }
  current_ = BackoffDelay(options_, retries_, random01);
  return current_;
}

void Backoff::Reset() {
  retries_ = 0;
  current_ = std::chrono::milliseconds(0);
}

}  // namespace zk2etcd
