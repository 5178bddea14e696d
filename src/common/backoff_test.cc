#include "common/backoff.h"

#include <gtest/gtest.h>

#include <vector>

namespace zk2etcd {
namespace {

using std::chrono::milliseconds;

std::vector<milliseconds> Delays(Backoff& backoff, int count) {
  std::vector<milliseconds> delays;
  for (int i = 0; i < count; ++i) delays.push_back(backoff.Next());
  return delays;
}

TEST(BackoffTest, DoublesFromTheInitialDelayUpToTheCap) {
  Backoff backoff({.initial = milliseconds(100), .max = milliseconds(1000)});
  EXPECT_EQ(backoff.current(), milliseconds(0));
  EXPECT_EQ(backoff.retries(), 0);
  EXPECT_EQ(Delays(backoff, 7),
            (std::vector<milliseconds>{milliseconds(100), milliseconds(200), milliseconds(400),
                                       milliseconds(800), milliseconds(1000), milliseconds(1000),
                                       milliseconds(1000)}));
  EXPECT_EQ(backoff.current(), milliseconds(1000));
  EXPECT_EQ(backoff.retries(), 7);
}

TEST(BackoffTest, StaysAtTheCapForever) {
  Backoff backoff({.initial = milliseconds(1), .max = milliseconds(30000)});
  for (int i = 0; i < 10000; ++i) backoff.Next();
  EXPECT_EQ(backoff.Next(), milliseconds(30000));
}

TEST(BackoffTest, OtherMultiplier) {
  Backoff backoff({.initial = milliseconds(10), .max = milliseconds(100), .multiplier = 3.0});
  EXPECT_EQ(Delays(backoff, 4), (std::vector<milliseconds>{milliseconds(10), milliseconds(30),
                                                           milliseconds(90), milliseconds(100)}));
}

TEST(BackoffTest, InitialAboveTheCapGivesTheCap) {
  Backoff backoff({.initial = milliseconds(500), .max = milliseconds(200)});
  EXPECT_EQ(Delays(backoff, 2), (std::vector<milliseconds>{milliseconds(200), milliseconds(200)}));
}

TEST(BackoffTest, ResetStartsOver) {
  Backoff backoff({.initial = milliseconds(50), .max = milliseconds(2000)});
  Delays(backoff, 5);
  backoff.Reset();
  EXPECT_EQ(backoff.current(), milliseconds(0));
  EXPECT_EQ(backoff.retries(), 0);
  EXPECT_EQ(Delays(backoff, 3),
            (std::vector<milliseconds>{milliseconds(50), milliseconds(100), milliseconds(200)}));
}

TEST(BackoffTest, JitterDownStaysWithinBounds) {
  Backoff backoff({.initial = milliseconds(100),
                   .max = milliseconds(1600),
                   .jitter = 0.5,
                   .jitter_direction = JitterDirection::kDown,
                   .seed = 7});
  bool varied = false;
  for (int round = 0; round < 50; ++round) {
    backoff.Reset();
    int64_t base = 100;
    for (int i = 0; i < 8; ++i) {
      const milliseconds delay = backoff.Next();
      EXPECT_GE(delay.count(), base / 2) << "retry " << i + 1;
      EXPECT_LE(delay.count(), base) << "retry " << i + 1;
      varied |= delay.count() != base;
      base = std::min<int64_t>(base * 2, 1600);
    }
  }
  EXPECT_TRUE(varied);
}

TEST(BackoffTest, JitterUpStaysWithinBounds) {
  Backoff backoff({.initial = milliseconds(5),
                   .max = milliseconds(500),
                   .jitter = 0.5,
                   .jitter_direction = JitterDirection::kUp,
                   .seed = 0x5eed});
  bool varied = false;
  for (int round = 0; round < 50; ++round) {
    backoff.Reset();
    int64_t base = 5;
    for (int i = 0; i < 10; ++i) {
      const milliseconds delay = backoff.Next();
      EXPECT_GE(delay.count(), base) << "retry " << i + 1;
      EXPECT_LE(delay.count(), base + base / 2) << "retry " << i + 1;
      varied |= delay.count() != base;
      base = std::min<int64_t>(base * 2, 500);
    }
  }
  EXPECT_TRUE(varied);
}

TEST(BackoffTest, JitterIsDeterministicForASeed) {
  const BackoffOptions options{
      .initial = milliseconds(100), .max = milliseconds(10000), .jitter = 0.5, .seed = 42};
  Backoff first(options);
  Backoff second(options);
  EXPECT_EQ(Delays(first, 20), Delays(second, 20));
  // Reset does not reseed: the generator goes on, the arithmetic starts over.
  first.Reset();
  Backoff third(options);
  EXPECT_NE(Delays(first, 20), Delays(third, 20));

  BackoffOptions other = options;
  other.seed = 43;
  Backoff a(options);
  Backoff b(other);
  EXPECT_NE(Delays(a, 20), Delays(b, 20));
}

TEST(BackoffDelayTest, IsThePureFormOfTheSameArithmetic) {
  const BackoffOptions options{.initial = milliseconds(50), .max = milliseconds(1000)};
  Backoff backoff(options);
  for (int retry = 1; retry <= 10; ++retry) {
    EXPECT_EQ(backoff.Next(), BackoffDelay(options, retry, 0.0)) << retry;
  }
  // Out-of-range arguments are clamped.
  EXPECT_EQ(BackoffDelay(options, 0, 0.0), milliseconds(50));
  EXPECT_EQ(BackoffDelay(options, -5, 0.0), milliseconds(50));
  EXPECT_EQ(BackoffDelay(options, 1 << 30, 0.0), milliseconds(1000));
  const BackoffOptions jittered{
      .initial = milliseconds(100), .max = milliseconds(1000), .jitter = 0.5};
  EXPECT_EQ(BackoffDelay(jittered, 1, 0.5), milliseconds(75));
  EXPECT_EQ(BackoffDelay(jittered, 1, 2.0), milliseconds(50));
  BackoffOptions up = jittered;
  up.jitter_direction = JitterDirection::kUp;
  EXPECT_EQ(BackoffDelay(up, 1, 0.5), milliseconds(125));
  EXPECT_EQ(BackoffDelay(up, 2, 0.0), milliseconds(200));
}

TEST(BackoffDelayTest, ZeroInitialStaysZero) {
  Backoff backoff({.initial = milliseconds(0), .max = milliseconds(500), .jitter = 0.5});
  EXPECT_EQ(Delays(backoff, 3),
            (std::vector<milliseconds>{milliseconds(0), milliseconds(0), milliseconds(0)}));
}

TEST(DefaultRandomSourceTest, ReturnsValuesInTheUnitInterval) {
  RandomSource random = DefaultRandomSource();
  for (int i = 0; i < 1000; ++i) {
    const double r = random();
    EXPECT_GE(r, 0.0);
    EXPECT_LT(r, 1.0);
  }
}

}  // namespace
}  // namespace zk2etcd
