// Exponential backoff with optional jitter: the one retry policy of zk2etcd. Every retry loop
// takes its delays from here: the etcd client's calls and watches, the ZooKeeper client's
// connection attempts, the CLI's connect loops, the sync service's session, reconciliation and
// election retries, and the fenced writer.
//
// The delay of retry n (1 for the first) is initial * multiplier^(n-1), capped at max, then
// jittered: multiplied by a random factor in [1 - jitter, 1] (JitterDirection::kDown, the
// default) or in [1, 1 + jitter] (kUp, which may exceed max by that fraction), and rounded to the
// nearest millisecond. Without jitter the delays are exact: initial, 2 initial, 4 initial, ...,
// max, max, ...
//
// Two forms of the same arithmetic:
//   BackoffDelay(options, retry, random01)  a pure function, for callers that count their
//                                           attempts themselves or share one random source
//                                           between threads (the etcd client)
//   Backoff                                 the state of one retry loop: Next() returns the next
//                                           delay and advances; Reset() after a success
//
// Thread-safety: BackoffDelay is a pure function and DefaultRandomSource() returns a thread-safe
// source. A Backoff is not thread-safe: use one per retry loop, from one thread at a time (or
// under its owner's mutex).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <random>

namespace zk2etcd {

enum class JitterDirection {
  kDown,  // the delay is drawn from [base * (1 - jitter), base]
  kUp,    // the delay is drawn from [base, base * (1 + jitter)]
};

struct BackoffOptions {
  // The first delay.
  std::chrono::milliseconds initial{100};
  // The cap of the delay before jitter.
  std::chrono::milliseconds max{10000};
  // Growth per retry; values below 1 count as 1.
  double multiplier = 2.0;
  // The random fraction of each delay, in [0, 1], so that clients that failed together do not
  // retry together. 0: no randomness.
  double jitter = 0.0;
  JitterDirection jitter_direction = JitterDirection::kDown;
  // Seeds a Backoff's jitter: the same seed gives the same delays. Unset: std::random_device.
  // BackoffDelay takes its randomness as an argument and ignores this.
  std::optional<uint64_t> seed = std::nullopt;
};

// Uniform in [0, 1). Must be thread-safe.
using RandomSource = std::function<double()>;

// A source seeded from std::random_device, safe to call from any thread.
RandomSource DefaultRandomSource();

// The delay before retry number `retry` (1 for the first retry): initial * multiplier^(retry-1),
// capped at max, then jittered with `random01` (a value in [0, 1); 0 gives the unjittered delay).
std::chrono::milliseconds BackoffDelay(const BackoffOptions& options, int retry, double random01);

// One retry loop's backoff.
class Backoff {
 public:
  explicit Backoff(BackoffOptions options);

  // The delay before the next retry (BackoffDelay of the next retry number, jittered from this
  // backoff's own seeded generator), and advances. The first call after construction or Reset()
  // returns the initial delay.
  std::chrono::milliseconds Next();
  // Starts over: current() becomes 0 and the next Next() returns the initial delay.
  void Reset();

  // The delay the last Next() returned; 0 before the first Next() and after Reset().
  std::chrono::milliseconds current() const { return current_; }
  // Next() calls since construction or the last Reset().
  int retries() const { return retries_; }
  const BackoffOptions& options() const { return options_; }

 private:
  BackoffOptions options_;
  int retries_ = 0;
  std::chrono::milliseconds current_{0};
  std::mt19937_64 random_;
};

}  // namespace zk2etcd
