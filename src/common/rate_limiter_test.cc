#include "common/rate_limiter.h"

#include <gtest/gtest.h>

namespace zk2etcd {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;

TEST(RateLimiterTest, AShortBurstGoesAtOnceThenTheRateHolds) {
  FakeClock clock;
  RateLimiter limiter(100, clock);  // a bucket of 10
  EXPECT_EQ(limiter.Take(10), nanoseconds(0));
  // 10 more: 10 tokens of debt, 0.1 s at 100/s.
  EXPECT_EQ(limiter.Take(10), milliseconds(100));
  clock.Advance(milliseconds(100));
  // The debt is paid; one more unit waits a hundredth of a second.
  EXPECT_EQ(limiter.Take(1), milliseconds(10));
}

TEST(RateLimiterTest, ABatchLargerThanTheBucketStillGoesLater) {
  FakeClock clock;
  RateLimiter limiter(50, clock);  // a bucket of 5
  EXPECT_EQ(limiter.Take(105), milliseconds(2000));
}

TEST(RateLimiterTest, IdleTimeRefillsOnlyUpToTheBucket) {
  FakeClock clock;
  RateLimiter limiter(10, clock);  // a bucket of 1
  clock.Advance(std::chrono::hours(1));
  EXPECT_EQ(limiter.Take(1), nanoseconds(0));
  EXPECT_EQ(limiter.Take(1), milliseconds(100));
}

TEST(RateLimiterTest, SustainedUseAveragesTheRate) {
  FakeClock clock;
  RateLimiter limiter(1000, clock);
  nanoseconds waited{0};
  for (int i = 0; i < 100; ++i) {
    const nanoseconds wait = limiter.Take(100);
    clock.Advance(wait);
    waited += wait;
  }
  // 10,000 units at 1,000/s: 10 s, less the first bucket (100 units, 0.1 s).
  EXPECT_NEAR(std::chrono::duration<double>(waited).count(), 9.9, 0.01);
}

}  // namespace
}  // namespace zk2etcd
