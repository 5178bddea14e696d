#include "common/periodic_task.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "common/wait_for_testing.h"

namespace zk2etcd {
namespace {

using std::chrono::milliseconds;

TEST(PeriodicTaskTest, RunsEveryIntervalUntilDestroyedAndNeverAfter) {
  std::atomic<int> runs{0};
  {
    PeriodicTask task(milliseconds(5), [&] { ++runs; });
    EXPECT_TRUE(WaitFor([&] { return runs.load() >= 3; }, std::chrono::seconds(10)));
  }
  const int at_destruction = runs.load();
  std::this_thread::sleep_for(milliseconds(30));
  EXPECT_EQ(runs.load(), at_destruction);
}

TEST(PeriodicTaskTest, DestructionDoesNotWaitForTheNextInterval) {
  const auto start = std::chrono::steady_clock::now();
  {
    PeriodicTask task(std::chrono::hours(1), [] {});
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(PeriodicTaskTest, AZeroIntervalRunsNothing) {
  std::atomic<int> runs{0};
  {
    PeriodicTask task(milliseconds(0), [&] { ++runs; });
  }
  EXPECT_EQ(runs.load(), 0);
}

}  // namespace
}  // namespace zk2etcd
