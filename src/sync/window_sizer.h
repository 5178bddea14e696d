// WindowSizer: how many etcd transactions a writer keeps in flight, sized by bandwidth-delay
// rather than by a fixed count.
//
// A fixed window W caps a writer at W transactions per round trip: on loopback (a round trip of
// well under a millisecond) a small W already keeps etcd busy, but 15 ms away each way the same W
// leaves etcd idle most of the time. The window that keeps etcd just busy is the bandwidth-delay
// product: the rate etcd completes transactions at (bandwidth) times the round trip without
// queueing (delay). Both are measured from the writer's own transactions, as TCP BBR does for
// packets:
//   - delay: the shortest latency seen (queueing only adds to it). It is never forgotten: a
//     transaction that waits behind the writer's own window is slower by that queue, and a
//     minimum taken only over recent samples would then grow with the window it sizes (BBR
//     needs a periodic drain to re-measure; a writer cannot stop writing for it). If the path
//     gets slower later, the window is that of the old, shorter delay: smaller, never larger;
//   - bandwidth: the highest delivery rate over the last `rate_period`, a transaction's rate
//     being the transactions completed while it was in flight over its latency;
//   - window = gain x bandwidth x delay, within [min_window, max_window].
// With gain 2 the window doubles every round trip while the network is the limit (each round
// trip delivers a whole window), and stops growing once etcd is (the rate no longer rises), at
// about twice what etcd can hold in flight; with a loopback delay it stays at min_window. Before
// that, `initial_window` transactions may go at once: through a 30 ms round trip, starting at 8
// took a 2,251-key first sync 4 round trips of writes where one would do.
//
// Use: OnTxnStarted when a transaction is sent, keep its ticket, OnTxnDone with the ticket when
// it completes (successfully or not); send while in-flight < window(). Times are passed in, so
// it needs no clock and tests are exact. Not thread-safe: call it under the writer's own lock.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>

namespace zk2etcd::sync {

struct WindowSizerOptions {
  size_t min_window = 8;
  size_t max_window = 64;  // memory and etcd's fairness to other clients bound it
  // The window until that many transactions have completed (0: min_window), or the measured one
  // if larger. Slow start from min_window costs a distant etcd log2(max / min) round trips
  // before the window is full; a window that is too large at first costs a near etcd nothing
  // but a short queue. FencedWriter starts at max_window.
  size_t initial_window = 0;
  double gain = 2.0;  // window over the measured bandwidth-delay product
  std::chrono::steady_clock::duration rate_period = std::chrono::seconds(2);
};

class WindowSizer {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  // What a transaction carries from its start to its completion.
  struct Ticket {
    TimePoint sent;
    uint64_t completed_before = 0;  // transactions completed when it was sent
  };

  explicit WindowSizer(WindowSizerOptions options = {});

  Ticket OnTxnStarted(TimePoint now) const;
  // Records a completed transaction (successful or not) and returns the new window.
  size_t OnTxnDone(const Ticket& ticket, TimePoint now);
  // Transactions to keep in flight at most.
  size_t window() const { return window_; }
  // The measurements behind it (0 until the first completion).
  std::chrono::steady_clock::duration min_latency() const;
  double txns_per_second() const;  // the highest delivery rate in the rate period

 private:
  struct Sample {
    TimePoint at;
    double value;
  };
  WindowSizerOptions options_;
  uint64_t completed_ = 0;
  double min_latency_s_ = 0;  // 0 until the first completion
  std::deque<Sample> rates_;  // txns/s; decreasing in value from front to back
  size_t window_;
};

}  // namespace zk2etcd::sync
