// Exponential backoff with jitter for retries and reconnects of the etcd client, with the
// randomness injected so that tests can fix it.
//
// BackoffDelay is a pure function. DefaultRandomSource() returns a thread-safe source.
#pragma once

#include <chrono>
#include <functional>

namespace zk2etcd::etcd {

struct BackoffPolicy {
  std::chrono::milliseconds initial{50};
  std::chrono::milliseconds max{2000};
  double multiplier = 2.0;
  // The delay is scaled by a random factor in [1 - jitter, 1], so that clients that failed
  // together do not retry together.
  double jitter = 0.5;
};

// Uniform in [0, 1). Must be thread-safe.
using RandomSource = std::function<double()>;

// A source seeded from std::random_device, safe to call from any thread.
RandomSource DefaultRandomSource();

// The delay before retry number `retry` (1 for the first retry): initial * multiplier^(retry-1),
// capped at max, then jittered with `random01` (a value in [0, 1)).
std::chrono::milliseconds BackoffDelay(const BackoffPolicy& policy, int retry, double random01);

}  // namespace zk2etcd::etcd
