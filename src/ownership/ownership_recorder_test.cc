#include "ownership/ownership_recorder.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include "common/wait_for_testing.h"
#include "ownership/fake_ownership_store.h"

namespace zk2etcd::ownership {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class OwnershipRecorderTest : public ::testing::Test {
 protected:
  OwnershipRecorderOptions Options() {
    OwnershipRecorderOptions options;
    options.initial_backoff = milliseconds(5);
    options.max_backoff = milliseconds(20);
    options.on_reachable = [this] { ++back_; };
    options.on_unreachable = [this](const OwnershipError&) { ++lost_; };
    return options;
  }
  // Asks for a confirmation and waits (bounded) for its answer.
  std::optional<bool> Confirm(OwnershipRecorder& recorder) {
    auto answer = std::make_shared<std::promise<bool>>();
    auto future = answer->get_future();
    recorder.ConfirmReachable([answer](bool reachable) { answer->set_value(reachable); });
    if (future.wait_for(seconds(5)) != std::future_status::ready) return std::nullopt;
    return future.get();
  }

  SystemClock clock_;
  FakeOwnershipStore store_;
  std::atomic<int> back_{0};
  std::atomic<int> lost_{0};
};

TEST_F(OwnershipRecorderTest, RecordAndForgetReturnAtOnceWhileTheStoreHangs) {
  store_.SetHanging(true);
  OwnershipRecorder recorder(store_, clock_, Options());
  recorder.Record("/a", "1");
  ASSERT_TRUE(WaitFor([&] { return store_.hung_calls() == 1; }));
  const auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < 1000; ++i) recorder.Record("/k" + std::to_string(i), "v");
  recorder.Forget("/a");
  EXPECT_LT(std::chrono::steady_clock::now() - started, seconds(1));
  EXPECT_EQ(recorder.queued(), 1002u);  // 1 in flight, 1,001 queued
  store_.SetHanging(false);
  ASSERT_TRUE(WaitFor([&] { return recorder.queued() == 0; }));
  EXPECT_EQ(store_.records().size(), 1000u);
  EXPECT_EQ(store_.records().count("/a"), 0u) << "the later Forget wins";
}

TEST_F(OwnershipRecorderTest, UpdatesOfOneKeyCoalesceToTheLatestInOneBatch) {
  store_.SetHanging(true);
  OwnershipRecorder recorder(store_, clock_, Options());
  recorder.Record("/blocker", "x");
  ASSERT_TRUE(WaitFor([&] { return store_.hung_calls() == 1; }));
  recorder.Record("/k", "1");
  recorder.Forget("/k");
  recorder.Record("/k", "2");
  recorder.Record("/k", "3");
  recorder.Record("/gone", "x");
  recorder.Forget("/gone");
  EXPECT_EQ(recorder.queued(), 3u);  // /blocker in flight, /k and /gone queued
  store_.SetHanging(false);
  ASSERT_TRUE(WaitFor([&] { return recorder.queued() == 0; }));
  EXPECT_EQ(store_.records().at("/k"), "3");
  EXPECT_EQ(store_.records().count("/gone"), 0u);
  // One call for /blocker, then one batch: one Record (/k) and one Forget (/gone).
  EXPECT_EQ(store_.record_calls(), 2u);
  EXPECT_EQ(store_.forget_calls(), 1u);
}

TEST_F(OwnershipRecorderTest, FailedUpdatesStayQueuedAndGoWhenTheStoreAnswersAgain) {
  store_.SetAvailable(false);
  OwnershipRecorder recorder(store_, clock_, Options());
  recorder.Record("/k", "1");
  recorder.Record("/old", "x");
  ASSERT_TRUE(WaitFor([&] { return lost_.load() == 1; }));
  EXPECT_FALSE(recorder.reachable());
  // Newer updates while the store is down replace the failed ones.
  recorder.Record("/k", "2");
  recorder.Forget("/old");
  EXPECT_EQ(recorder.queued(), 2u);
  EXPECT_EQ(back_.load(), 0);
  store_.SetAvailable(true);
  ASSERT_TRUE(WaitFor([&] { return back_.load() == 1 && recorder.queued() == 0; }));
  EXPECT_TRUE(recorder.reachable());
  EXPECT_EQ(store_.records(), (std::map<std::string, std::string>{{"/k", "2"}}));
  EXPECT_EQ(lost_.load(), 1) << "reported once per outage";
}

TEST_F(OwnershipRecorderTest, AFailedUpdateDoesNotOverwriteANewerOneQueuedWhileItWasSent) {
  store_.SetHanging(true);
  store_.SetHangTimeout(milliseconds(50));
  OwnershipRecorder recorder(store_, clock_, Options());
  recorder.Record("/k", "old");
  ASSERT_TRUE(WaitFor([&] { return store_.hung_calls() == 1; }));
  recorder.Forget("/k");  // queued while the Record is in flight; that Record then fails
  ASSERT_TRUE(WaitFor([&] { return lost_.load() == 1; }));
  store_.SetHanging(false);
  ASSERT_TRUE(WaitFor([&] { return back_.load() == 1 && recorder.queued() == 0; }));
  EXPECT_TRUE(store_.records().empty());
}

TEST_F(OwnershipRecorderTest, ConfirmationsFollowTheStore) {
  OwnershipRecorder recorder(store_, clock_, Options());
  EXPECT_EQ(Confirm(recorder), true);
  store_.SetAvailable(false);
  EXPECT_EQ(Confirm(recorder), false);
  EXPECT_FALSE(recorder.reachable());
  EXPECT_EQ(Confirm(recorder), false);
  store_.SetAvailable(true);
  ASSERT_TRUE(WaitFor([&] { return back_.load() == 1; }));
  EXPECT_EQ(Confirm(recorder), true);
}

TEST_F(OwnershipRecorderTest, AConfirmationWaitsForAHangingStoreAndFailsWithItsTimeout) {
  store_.SetHanging(true);
  store_.SetHangTimeout(milliseconds(200));
  OwnershipRecorder recorder(store_, clock_, Options());
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(Confirm(recorder), false);
  EXPECT_GE(std::chrono::steady_clock::now() - started, milliseconds(200));
  store_.SetHanging(false);
  ASSERT_TRUE(WaitFor([&] { return back_.load() == 1; }));
}

TEST_F(OwnershipRecorderTest, ReportedFailureMakesTheWorkerWatchForTheStoresReturn) {
  OwnershipRecorder recorder(store_, clock_, Options());
  store_.SetAvailable(false);
  recorder.ReportUnreachable({OwnershipErrorCode::kUnavailable, "seen elsewhere"});
  EXPECT_FALSE(recorder.reachable());
  EXPECT_EQ(Confirm(recorder), false);
  store_.SetAvailable(true);
  ASSERT_TRUE(WaitFor([&] { return back_.load() == 1; }));
  EXPECT_TRUE(recorder.reachable());
}

TEST_F(OwnershipRecorderTest, StopWhileTheStoreHangsWaitsForOneTimeoutAtMost) {
  store_.SetHanging(true);
  store_.SetHangTimeout(milliseconds(300));
  OwnershipRecorder recorder(store_, clock_, Options());
  recorder.Record("/a", "1");
  ASSERT_TRUE(WaitFor([&] { return store_.hung_calls() == 1; }));
  recorder.Record("/b", "2");
  std::promise<bool> answer;
  recorder.ConfirmReachable([&answer](bool reachable) { answer.set_value(reachable); });
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(recorder.Stop(), 2u) << "both updates dropped";
  EXPECT_LT(std::chrono::steady_clock::now() - started, milliseconds(300 + 700));
  EXPECT_EQ(store_.total_hung_calls(), 1u) << "no second call to a store that did not answer";
  auto future = answer.get_future();
  ASSERT_EQ(future.wait_for(seconds(0)), std::future_status::ready);
  EXPECT_FALSE(future.get());
  // After Stop: confirmations are refused at once, updates dropped.
  EXPECT_EQ(Confirm(recorder), false);
  recorder.Record("/c", "3");
  EXPECT_EQ(recorder.queued(), 0u);
}

TEST_F(OwnershipRecorderTest, StopSendsWhatIsQueuedWhenTheStoreAnswers) {
  store_.SetHanging(true);
  auto recorder = std::make_unique<OwnershipRecorder>(store_, clock_, Options());
  recorder->Record("/a", "1");
  ASSERT_TRUE(WaitFor([&] { return store_.hung_calls() == 1; }));
  recorder->Forget("/a");
  recorder->Record("/b", "2");
  auto stopped = std::async(std::launch::async, [&] { return recorder->Stop(); });
  EXPECT_EQ(stopped.wait_for(milliseconds(50)), std::future_status::timeout);
  store_.SetHanging(false);
  ASSERT_EQ(stopped.wait_for(seconds(5)), std::future_status::ready);
  EXPECT_EQ(stopped.get(), 0u);
  EXPECT_EQ(store_.records(), (std::map<std::string, std::string>{{"/b", "2"}}));
}

}  // namespace
}  // namespace zk2etcd::ownership
