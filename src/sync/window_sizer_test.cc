// WindowSizer against simulated links: the window grows to the bandwidth-delay product of a
// distant etcd, stays small next to a near one, and follows an etcd that gets slower.
#include "sync/window_sizer.h"

#include <gtest/gtest.h>

#include <deque>

namespace zk2etcd::sync {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using TimePoint = WindowSizer::TimePoint;

// A writer that always has work, against an etcd `round_trip` away that completes one
// transaction every `service` (a single queue behind the network). Runs `txns` transactions and
// returns the window at the end.
size_t Simulate(WindowSizer& sizer, TimePoint& now, std::chrono::nanoseconds round_trip,
                std::chrono::nanoseconds service, int txns) {
  struct InFlight {
    WindowSizer::Ticket ticket;
    TimePoint done;
  };
  std::deque<InFlight> in_flight;
  TimePoint server_free = now;
  int sent = 0;
  while (sent < txns || !in_flight.empty()) {
    while (sent < txns && in_flight.size() < sizer.window()) {
      // Arrives after half the round trip, waits for the server, returns after the other half.
      const TimePoint arrives = now + round_trip / 2;
      server_free = std::max(server_free, arrives) + service;
      in_flight.push_back({sizer.OnTxnStarted(now), server_free + round_trip / 2});
      ++sent;
    }
    now = in_flight.front().done;  // completions are in order: one queue
    sizer.OnTxnDone(in_flight.front().ticket, now);
    in_flight.pop_front();
  }
  return sizer.window();
}

TEST(WindowSizerTest, StartsAtTheMinimum) {
  WindowSizer sizer({.min_window = 8, .max_window = 64});
  EXPECT_EQ(sizer.window(), 8u);
}

TEST(WindowSizerTest, AnInitialWindowHoldsUntilThatManyTransactionsCompleted) {
  WindowSizer sizer({.min_window = 8, .max_window = 64, .initial_window = 32});
  EXPECT_EQ(sizer.window(), 32u);
  TimePoint now{};
  // Near etcd: the measured window is the minimum, but not before 32 completions.
  for (int i = 0; i < 31; ++i) {
    const auto ticket = sizer.OnTxnStarted(now);
    now += milliseconds(1);
    EXPECT_EQ(sizer.OnTxnDone(ticket, now), 32u) << i;
  }
  const auto ticket = sizer.OnTxnStarted(now);
  now += milliseconds(1);
  EXPECT_EQ(sizer.OnTxnDone(ticket, now), 8u);
}

TEST(WindowSizerTest, AnInitialWindowIsBoundedByTheMinimumAndMaximum) {
  EXPECT_EQ(WindowSizer({.min_window = 8, .max_window = 64, .initial_window = 100}).window(), 64u);
  EXPECT_EQ(WindowSizer({.min_window = 8, .max_window = 64, .initial_window = 2}).window(), 8u);
}

TEST(WindowSizerTest, AnInitialWindowSendsAFirstBurstToADistantEtcdInOneRoundTrip) {
  // 36 transactions (a 2,251-key first sync) 30 ms away, 1 ms each at etcd.
  const auto elapsed = [](size_t initial_window) {
    WindowSizer sizer({.min_window = 8, .max_window = 64, .initial_window = initial_window});
    TimePoint now{};
    Simulate(sizer, now, milliseconds(30), milliseconds(1), 36);
    return now - TimePoint{};
  };
  EXPECT_EQ(elapsed(64), milliseconds(30 + 36));
  // Slow start from 8 (8, then 16, then the rest) takes at least one more round trip.
  EXPECT_GE(elapsed(8), elapsed(64) + milliseconds(30));
}

TEST(WindowSizerTest, NearEtcdKeepsTheMinimumWindow) {
  WindowSizer sizer({.min_window = 8, .max_window = 64});
  TimePoint now{};
  // 0.2 ms round trip, 1 ms per transaction: etcd is the limit, one in flight would do.
  EXPECT_EQ(Simulate(sizer, now, microseconds(200), milliseconds(1), 500), 8u);
  // Also after starting with the largest window.
  WindowSizer starting_wide({.min_window = 8, .max_window = 64, .initial_window = 64});
  EXPECT_EQ(Simulate(starting_wide, now, microseconds(200), milliseconds(1), 500), 8u);
}

TEST(WindowSizerTest, DistantEtcdGetsAboutTwiceTheBandwidthDelayProduct) {
  WindowSizer sizer({.min_window = 8, .max_window = 256});
  TimePoint now{};
  // 30 ms round trip, 1 ms per transaction: 30 transactions fill the pipe.
  const size_t window = Simulate(sizer, now, milliseconds(30), milliseconds(1), 2000);
  EXPECT_GE(window, 50u);
  EXPECT_LE(window, 80u);
  EXPECT_NEAR(std::chrono::duration<double>(sizer.min_latency()).count(), 0.031, 0.002);
  EXPECT_NEAR(sizer.txns_per_second(), 1000, 50);
}

TEST(WindowSizerTest, TheWindowDoublesEachRoundTripWhileTheNetworkIsTheLimit) {
  WindowSizer sizer({.min_window = 4, .max_window = 1024});
  TimePoint now{};
  // 100 ms round trip, 0.1 ms per transaction: the product is 1,000 transactions.
  Simulate(sizer, now, milliseconds(100), microseconds(100), 4);
  EXPECT_EQ(sizer.window(), 8u);
  Simulate(sizer, now, milliseconds(100), microseconds(100), 8);
  EXPECT_EQ(sizer.window(), 16u);
  Simulate(sizer, now, milliseconds(100), microseconds(100), 16);
  EXPECT_EQ(sizer.window(), 32u);
}

TEST(WindowSizerTest, NeverAboveTheMaximum) {
  WindowSizer sizer({.min_window = 8, .max_window = 20});
  TimePoint now{};
  EXPECT_EQ(Simulate(sizer, now, milliseconds(100), microseconds(100), 1000), 20u);
}

TEST(WindowSizerTest, FollowsASlowerEtcdDown) {
  WindowSizer sizer({.min_window = 8, .max_window = 256});
  TimePoint now{};
  ASSERT_GT(Simulate(sizer, now, milliseconds(30), milliseconds(1), 2000), 50u);
  // etcd now takes 4 ms a transaction: the old rate ages out of its 2 s period and the window
  // follows 2 x 250/s x 31 ms.
  const size_t window = Simulate(sizer, now, milliseconds(30), milliseconds(4), 1500);
  EXPECT_GE(window, 14u);
  EXPECT_LE(window, 20u);
}

TEST(WindowSizerTest, OwnQueueingDoesNotInflateTheWindow) {
  WindowSizer sizer({.min_window = 8, .max_window = 256});
  TimePoint now{};
  // Near etcd for 30 simulated seconds: every transaction waits behind the seven before it
  // (8 ms), which must not be taken for a longer path.
  EXPECT_EQ(Simulate(sizer, now, microseconds(200), milliseconds(1), 30000), 8u);
}

}  // namespace
}  // namespace zk2etcd::sync
