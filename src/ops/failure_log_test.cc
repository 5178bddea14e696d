// FailureLog: a run of failures is a warning when it starts, at most one warning a period while
// it lasts, and an info line when it ends; failures that come and go warn at most once a period.
#include "ops/failure_log.h"

#include <gtest/gtest.h>

namespace zk2etcd::ops {
namespace {

using std::chrono::seconds;

TEST(FailureLogTest, ARunIsLoggedWhenItStartsWhileItLastsAndWhenItEnds) {
  FailureLog log("etcd writes", seconds(60));
  const FailureLog::TimePoint t0{};
  auto first = log.OnFailure(t0, "unavailable");
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->level, LogLevel::kWarn);
  EXPECT_EQ(first->message, "etcd writes failing; retrying");
  EXPECT_EQ(first->error, "unavailable");
  EXPECT_EQ(first->failures, 1u);
  for (int i = 1; i < 30; ++i) EXPECT_FALSE(log.OnFailure(t0 + seconds(i), "unavailable"));
  auto still = log.OnFailure(t0 + seconds(60), "unavailable");
  ASSERT_TRUE(still.has_value());
  EXPECT_EQ(still->message, "etcd writes still failing; retrying");
  EXPECT_EQ(still->failures, 31u);
  EXPECT_DOUBLE_EQ(still->failing_s, 60.0);
  auto again = log.OnSuccess(t0 + seconds(61));
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->level, LogLevel::kInfo);
  EXPECT_EQ(again->message, "etcd writes applied again");
  EXPECT_EQ(again->failures, 31u);
  EXPECT_FALSE(log.OnSuccess(t0 + seconds(62)));  // nothing to end
}

TEST(FailureLogTest, FailuresThatComeAndGoWarnAtMostOnceAPeriod) {
  FailureLog log("etcd writes", seconds(60));
  const FailureLog::TimePoint t0{};
  EXPECT_TRUE(log.OnFailure(t0, "e"));
  EXPECT_TRUE(log.OnSuccess(t0 + seconds(1)));
  // A new run within the period: not warned, so its end is not logged either.
  EXPECT_FALSE(log.OnFailure(t0 + seconds(2), "e"));
  EXPECT_FALSE(log.OnSuccess(t0 + seconds(3)));
  auto later = log.OnFailure(t0 + seconds(61), "e");
  ASSERT_TRUE(later.has_value());
  EXPECT_EQ(later->message, "etcd writes failing; retrying");
  EXPECT_EQ(later->failures, 1u);
}

TEST(FailureLogTest, AnotherWordingNamesTheLines) {
  FailureLog log(FailureLog::Wording{"redis unreachable; retrying",
                                     "redis still unreachable; retrying", "redis reachable again"},
                 seconds(60));
  const FailureLog::TimePoint t0{};
  EXPECT_EQ(log.OnFailure(t0, "e")->message, "redis unreachable; retrying");
  EXPECT_FALSE(log.OnFailure(t0 + seconds(1), "e"));
  EXPECT_EQ(log.OnFailure(t0 + seconds(60), "e")->message, "redis still unreachable; retrying");
  EXPECT_EQ(log.OnSuccess(t0 + seconds(61))->message, "redis reachable again");
}

}  // namespace
}  // namespace zk2etcd::ops
