// FencedWriter against an in-memory sink (core/testing): group commit, ordering per key, retries,
// refusals split down to the write, fencing, stop and drain. No etcd.
#include "sync/fenced_writer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/wait_for_testing.h"
#include "core/testing/in_memory_sink.h"
#include "ops/log.h"

namespace zk2etcd::sync {
namespace {

using core::WriteOutcome;
using std::chrono::milliseconds;
using std::chrono::seconds;

core::SinkWrite Put(const std::string& key, const std::string& value, int64_t version) {
  core::SinkWrite write;
  write.type = core::SinkWrite::Type::kPut;
  write.key = key;
  write.value = value;
  write.version = version;
  return write;
}

core::SinkWrite Delete(const std::string& key, int64_t version) {
  core::SinkWrite write;
  write.type = core::SinkWrite::Type::kDelete;
  write.key = key;
  write.version = version;
  return write;
}

// Collects write results, thread-safely, in completion order.
class Results {
 public:
  FencedWriter::Done Callback(std::string name) {
    return [this, name = std::move(name)](const WriteResult& result) {
      std::lock_guard lock(mutex_);
      results_.emplace_back(name, result);
    };
  }
  size_t size() const {
    std::lock_guard lock(mutex_);
    return results_.size();
  }
  std::vector<std::pair<std::string, WriteResult>> Get() const {
    std::lock_guard lock(mutex_);
    return results_;
  }
  size_t Count(const std::function<bool(const WriteResult&)>& predicate) const {
    std::lock_guard lock(mutex_);
    size_t count = 0;
    for (const auto& [name, result] : results_) count += predicate(result) ? 1 : 0;
    return count;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::pair<std::string, WriteResult>> results_;
};

bool IsApplied(const WriteResult& result) {
  return result.ok() && *result == WriteOutcome::kApplied;
}
bool IsError(const WriteResult& result, WriteError::Code code) {
  return !result.ok() && result.error().code == code;
}

class FencedWriterTest : public ::testing::Test {
 protected:
  FencedWriterTest() {
    options_.initial_backoff = milliseconds(20);
    options_.max_backoff = milliseconds(100);
  }
  ~FencedWriterTest() override {
    if (writer_) writer_->Stop();
  }

  void MakeWriter(FencedWriter::TxnObserver observer = nullptr,
                  FencedWriter::RefusalObserver on_refused = nullptr) {
    writer_ = std::make_unique<FencedWriter>(*sink_, options_, clock_, std::move(observer),
                                             std::move(on_refused));
  }

  // Submits a write and waits for its result.
  WriteResult Write(core::SinkWrite write) {
    std::promise<WriteResult> done;
    writer_->Submit(std::move(write),
                    [&done](const WriteResult& result) { done.set_value(result); });
    auto future = done.get_future();
    EXPECT_EQ(future.wait_for(seconds(10)), std::future_status::ready);
    return future.get();
  }

  SystemClock clock_;
  std::unique_ptr<core::memory::InMemorySink> sink_ =
      std::make_unique<core::memory::InMemorySink>(core::memory::InMemorySink::Options{
          .key_prefix = "/sink", .max_writes = 8, .max_bytes = 1 << 20});
  FencedWriterOptions options_;
  std::unique_ptr<FencedWriter> writer_;
};

TEST_F(FencedWriterTest, ALoneWriteGoesAtOnceAndEachOutcomeComesBack) {
  MakeWriter();
  EXPECT_EQ(Write(Put("/a", "1", 10)).value(), WriteOutcome::kApplied);
  EXPECT_EQ(sink_->Get("/a")->value, "1");
  EXPECT_EQ(sink_->Get("/a")->owner->source_version, 10);
  EXPECT_EQ(Write(Put("/a", "older", 5)).value(), WriteOutcome::kStale);
  EXPECT_EQ(sink_->Get("/a")->value, "1");
  EXPECT_EQ(Write(Delete("/absent", 10)).value(), WriteOutcome::kAlreadyAbsent);
  sink_->PutForeign("/theirs", "x");
  EXPECT_EQ(Write(Put("/theirs", "mine", 10)).value(), WriteOutcome::kForeign);
  EXPECT_EQ(sink_->Get("/theirs")->value, "x");
  EXPECT_EQ(Write(Delete("/a", 11)).value(), WriteOutcome::kApplied);
  EXPECT_FALSE(sink_->Get("/a").has_value());
  EXPECT_EQ(writer_->pending(), 0u);
  EXPECT_FALSE(writer_->retrying());
}

TEST_F(FencedWriterTest, ABurstGoesInFewBatchesWithinTheSinksLimit) {
  options_.max_txns_in_flight = 1;
  MakeWriter();
  Results results;
  // The first write goes alone and is held; the rest queue behind it.
  sink_->PauseApplies();
  writer_->Submit(Put("/k/first", "v", 1), results.Callback("first"));
  ASSERT_TRUE(WaitFor([&] { return sink_->batches_submitted() == 1; }));
  for (int i = 0; i < 49; ++i) {
    writer_->Submit(Put("/k/" + std::to_string(i), "v", 1), results.Callback(std::to_string(i)));
  }
  sink_->ResumeApplies();
  ASSERT_TRUE(writer_->Drain(seconds(10)));
  EXPECT_EQ(results.Count(IsApplied), 50u);
  EXPECT_EQ(sink_->Size(), 50u);
  EXPECT_LE(sink_->max_batch_seen(), 8u);
  // 1 + ceil(49 / 8).
  EXPECT_EQ(sink_->batches_submitted(), 8u);
}

TEST_F(FencedWriterTest, ABatchCapBelowTheSinksLimitIsKept) {
  options_.max_txns_in_flight = 1;
  options_.max_writes_per_batch = 3;
  MakeWriter();
  Results results;
  sink_->PauseApplies();
  writer_->Submit(Put("/k/first", "v", 1), results.Callback("first"));
  ASSERT_TRUE(WaitFor([&] { return sink_->batches_submitted() == 1; }));
  for (int i = 0; i < 12; ++i) {
    writer_->Submit(Put("/k/" + std::to_string(i), "v", 1), results.Callback(std::to_string(i)));
  }
  sink_->ResumeApplies();
  ASSERT_TRUE(writer_->Drain(seconds(10)));
  EXPECT_EQ(results.Count(IsApplied), 13u);
  EXPECT_EQ(sink_->max_batch_seen(), 3u);
  EXPECT_EQ(sink_->batches_submitted(), 5u);
}

// Under a rate limit the writes are spread from the first batch on: batches of at most a burst
// (a tenth of a second's worth), each after the tokens it takes. (A burst of repairs went in one
// batch at once, and only what came after it waited.)
TEST_F(FencedWriterTest, ARateLimitSpreadsABurstFromTheFirstBatchOn) {
  sink_ = std::make_unique<core::memory::InMemorySink>(core::memory::InMemorySink::Options{
      .key_prefix = "/sink", .max_writes = 64, .max_bytes = 1 << 20});
  RateLimiter limiter(100, clock_);  // bursts of 10
  options_.rate_limiter = &limiter;
  options_.max_txns_in_flight = 8;
  MakeWriter();
  Results results;
  const auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < 40; ++i) {
    writer_->Submit(Put("/r/" + std::to_string(i), "v", 1), results.Callback(std::to_string(i)));
  }
  ASSERT_TRUE(writer_->Drain(seconds(10)));
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(results.Count(IsApplied), 40u);
  EXPECT_LE(sink_->max_batch_seen(), 10u);  // a burst, though the sink takes 64
  // 40 writes at 100 a second: a burst of 10 at once, the last batch's tokens owed after it.
  EXPECT_GE(took, milliseconds(190));
  EXPECT_LT(took, seconds(3));
}

TEST_F(FencedWriterTest, ARateLimitKeepsBatchesWithinABurst) {
  RateLimiter limiter(30, clock_);  // bursts of 3
  options_.rate_limiter = &limiter;
  MakeWriter();
  Results results;
  for (int i = 0; i < 12; ++i) {
    writer_->Submit(Put("/b/" + std::to_string(i), "v", 1), results.Callback(std::to_string(i)));
  }
  ASSERT_TRUE(writer_->Drain(seconds(10)));
  EXPECT_EQ(results.Count(IsApplied), 12u);
  EXPECT_LE(sink_->max_batch_seen(), 3u);
}

TEST_F(FencedWriterTest, BatchesInFlightStayWithinTheByteCap) {
  options_.max_txns_in_flight = 64;
  options_.max_writes_per_batch = 1;
  const std::string value(1000, 'v');
  const size_t write_bytes = sink_->Cost(Put("/k/0", value, 1), 0).bytes;
  options_.max_bytes_in_flight = 4 * write_bytes;  // four one-write batches, not 64
  MakeWriter();
  Results results;
  sink_->PauseApplies();
  for (int i = 0; i < 20; ++i) {
    writer_->Submit(Put("/k/" + std::to_string(i), value, 1), results.Callback(std::to_string(i)));
  }
  EXPECT_TRUE(WaitFor([&] { return sink_->batches_submitted() >= 4; }));
  std::this_thread::sleep_for(milliseconds(100));  // time to go past the cap, if it would
  EXPECT_EQ(sink_->batches_submitted(), 4u);
  sink_->ResumeApplies();
  ASSERT_TRUE(writer_->Drain(seconds(10)));
  EXPECT_EQ(results.Count(IsApplied), 20u);
}

TEST_F(FencedWriterTest, AWriteLargerThanTheByteCapStillGoesAlone) {
  options_.max_bytes_in_flight = 10;
  MakeWriter();
  EXPECT_EQ(Write(Put("/big", std::string(5000, 'v'), 1)).value(), WriteOutcome::kApplied);
}

TEST_F(FencedWriterTest, WritesOfOneKeyNeverShareABatchAndApplyInOrder) {
  options_.max_txns_in_flight = 1;
  MakeWriter();
  Results results;
  sink_->PauseApplies();
  writer_->Submit(Put("/other", "v", 1), results.Callback("other"));
  ASSERT_TRUE(WaitFor([&] { return sink_->batches_submitted() == 1; }));
  // InMemorySink aborts on a batch that holds one key twice.
  for (int version = 1; version <= 5; ++version) {
    writer_->Submit(Put("/a", "v" + std::to_string(version), version * 10),
                    results.Callback("a" + std::to_string(version)));
    writer_->Submit(Put("/b" + std::to_string(version), "v", 1),
                    results.Callback("b" + std::to_string(version)));
  }
  writer_->Submit(Delete("/a", 60), results.Callback("a-delete"));
  writer_->Submit(Put("/a", "last", 70), results.Callback("a-last"));
  sink_->ResumeApplies();
  ASSERT_TRUE(writer_->Drain(seconds(10)));
  // Applied in submission order: none of them was stale.
  EXPECT_EQ(results.Count(IsApplied), 13u);
  std::vector<std::string> order;
  for (const auto& [name, result] : results.Get()) {
    if (name[0] == 'a') order.push_back(name);
  }
  EXPECT_THAT(order, ::testing::ElementsAre("a1", "a2", "a3", "a4", "a5", "a-delete", "a-last"));
  EXPECT_EQ(sink_->Get("/a")->value, "last");
  EXPECT_EQ(sink_->Get("/a")->owner->source_version, 70);
  // Seven writes of /a, at most one per batch, after the first.
  EXPECT_GE(sink_->batches_submitted(), 8u);
}

TEST_F(FencedWriterTest, ARetryableFailureIsRetriedWithBackoffUntilApplied) {
  std::mutex mutex;
  std::vector<std::optional<core::SinkError>> attempts;
  MakeWriter([&](size_t, const std::optional<core::SinkError>& error, std::chrono::nanoseconds) {
    std::lock_guard lock(mutex);
    attempts.push_back(error);
  });
  sink_->FailNextApplies(3, core::SinkError::Code::kUnavailable);
  Results results;
  writer_->Submit(Put("/a", "1", 10), results.Callback("a"));
  ASSERT_TRUE(writer_->Drain(seconds(10)));
  EXPECT_EQ(results.Count(IsApplied), 1u);
  EXPECT_FALSE(writer_->retrying());
  EXPECT_EQ(sink_->Get("/a")->value, "1");
  EXPECT_EQ(sink_->batches_submitted(), 4u);
  std::lock_guard lock(mutex);
  ASSERT_EQ(attempts.size(), 4u);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(attempts[i].has_value());
    EXPECT_EQ(attempts[i]->code, core::SinkError::Code::kUnavailable);
  }
  EXPECT_FALSE(attempts[3].has_value());
}

// The retry backoff runs on the injected clock: while it stands still, real time passing does not
// bring the retry; advancing it does.
TEST(FencedWriterClockTest, RetriesWaitForTheInjectedClock) {
  FakeClock clock;
  core::memory::InMemorySink sink;
  FencedWriterOptions options;
  options.initial_backoff = milliseconds(200);
  options.max_backoff = milliseconds(200);
  FencedWriter writer(sink, options, clock);
  sink.FailNextApplies(1, core::SinkError::Code::kUnavailable);
  std::promise<WriteResult> done;
  writer.Submit(Put("/a", "1", 10), [&done](const WriteResult& result) { done.set_value(result); });
  auto future = done.get_future();
  // Three times the longest backoff in real time: a writer on the system clock would have
  // retried by now.
  EXPECT_EQ(future.wait_for(milliseconds(600)), std::future_status::timeout);
  EXPECT_EQ(sink.batches_submitted(), 1u);
  EXPECT_TRUE(writer.retrying());
  clock.Advance(milliseconds(400));
  ASSERT_EQ(future.wait_for(seconds(10)), std::future_status::ready);
  EXPECT_EQ(future.get().value(), WriteOutcome::kApplied);
  writer.Stop();
}

// What the failure log tests share: a writer on a fake clock over an in-memory sink, logging to
// memory. The writer sleeps its backoff in real time, computed on its clock: a short one, and the
// clock moved far past it after each failure.
class FencedWriterFailureLogTest : public ::testing::Test {
 protected:
  FencedWriterFailureLogTest() {
    options_.initial_backoff = milliseconds(100);
    options_.max_backoff = milliseconds(100);
    options_.logger = &logger_;
    options_.failure_log_period = seconds(60);
    options_.log_name = "the sink";
  }
  ~FencedWriterFailureLogTest() override {
    if (writer_) writer_->Stop();
  }

  // Writes `key` while the sink fails its next `failures` batches with `code`, moving the clock
  // 16 s on after each retryable failure has been handled (so the n-th attempt goes 16 * (n - 1)
  // s after the first), and returns the write's result.
  WriteResult WriteThroughFailures(
      const std::string& key, size_t failures,
      core::SinkError::Code code = core::SinkError::Code::kUnavailable) {
    sink_.FailNextApplies(static_cast<int>(failures), code);
    const size_t before = sink_.batches_submitted();
    auto done = std::make_shared<std::promise<WriteResult>>();  // outlives a failed ASSERT
    writer_->Submit(Put(key, "v", 10),
                    [done](const WriteResult& result) { done->set_value(result); });
    for (size_t attempt = 1; code == core::SinkError::Code::kUnavailable && attempt <= failures;
         ++attempt) {
      // Attempt `attempt` failed and its retry is due later on the clock.
      EXPECT_TRUE(WaitFor([&] {
        return sink_.batches_submitted() == before + attempt && writer_->retry_at() > clock_.Now();
      }));
      clock_.Advance(seconds(16));
    }
    auto future = done->get_future();
    EXPECT_EQ(future.wait_for(seconds(10)), std::future_status::ready);
    return future.get();
  }

  // The lines logged so far whose message is `message`.
  std::vector<std::string> Lines(const std::string& message) const {
    std::vector<std::string> found;
    for (const std::string& line : log_sink_->Lines()) {
      if (line.find("\"msg\":\"" + message + "\"") != std::string::npos) found.push_back(line);
    }
    return found;
  }

  FakeClock clock_;
  std::shared_ptr<ops::MemoryLogSink> log_sink_ = std::make_shared<ops::MemoryLogSink>();
  ops::Logger logger_{log_sink_, ops::LogFormat::kJson, ops::LogLevel::kDebug, clock_};
  core::memory::InMemorySink sink_;
  FencedWriterOptions options_;
  std::unique_ptr<FencedWriter> writer_;
};

// A run of failures is logged when it starts, at most every failure_log_period while it lasts,
// and when a batch is applied again.
TEST_F(FencedWriterFailureLogTest, ARunOfFailuresIsLoggedWhenItStartsWhileItLastsAndWhenItEnds) {
  writer_ = std::make_unique<FencedWriter>(sink_, options_, clock_);
  // Attempts at 0, 16, ..., 112 s of the clock, applied at 128 s.
  ASSERT_EQ(WriteThroughFailures("/a", 8).value(), WriteOutcome::kApplied);
  writer_->Stop();

  const auto failing = Lines("the sink writes failing; retrying");
  ASSERT_EQ(failing.size(), 1u);
  EXPECT_THAT(failing[0], ::testing::HasSubstr("\"level\":\"warn\""));
  EXPECT_THAT(failing[0], ::testing::HasSubstr("batch failed (injected)"));
  const auto still = Lines("the sink writes still failing; retrying");
  ASSERT_EQ(still.size(), 1u);  // at 64 s, the fifth; the next would come at 124 s or later
  EXPECT_THAT(still[0], ::testing::HasSubstr("\"level\":\"warn\""));
  EXPECT_THAT(still[0], ::testing::HasSubstr("\"failing_s\":64"));
  EXPECT_THAT(still[0], ::testing::HasSubstr("\"failed_batches\":5"));
  const auto again = Lines("the sink writes applied again");
  ASSERT_EQ(again.size(), 1u);
  EXPECT_THAT(again[0], ::testing::HasSubstr("\"level\":\"info\""));
  EXPECT_THAT(again[0], ::testing::HasSubstr("\"failing_s\":128"));
  EXPECT_THAT(again[0], ::testing::HasSubstr("\"failed_batches\":8"));
}

// Failures that come and go log at most one warning a period (and an "applied again" only after
// a warned run); failures that are not retried log nothing.
TEST_F(FencedWriterFailureLogTest, FailuresThatComeAndGoWarnAtMostOnceAPeriod) {
  writer_ = std::make_unique<FencedWriter>(sink_, options_, clock_);
  ASSERT_EQ(WriteThroughFailures("/a", 1).value(), WriteOutcome::kApplied);  // warned at 0 s
  ASSERT_EQ(WriteThroughFailures("/b", 1).value(), WriteOutcome::kApplied);  // 16 s: silent
  // Not retried: not logged.
  ASSERT_FALSE(WriteThroughFailures("/c", 1, core::SinkError::Code::kRefused).ok());
  clock_.Advance(seconds(60));
  ASSERT_EQ(WriteThroughFailures("/d", 1).value(), WriteOutcome::kApplied);  // 92 s: warned
  writer_->Stop();
  EXPECT_EQ(Lines("the sink writes failing; retrying").size(), 2u);
  EXPECT_EQ(Lines("the sink writes applied again").size(), 2u);
  EXPECT_TRUE(Lines("the sink writes still failing; retrying").empty());
}

TEST_F(FencedWriterTest, RetryingIsTrueWhileTheSinkFails) {
  options_.initial_backoff = milliseconds(200);
  options_.max_backoff = milliseconds(200);
  MakeWriter();
  sink_->FailNextApplies(1, core::SinkError::Code::kUnavailable);
  Results results;
  writer_->Submit(Put("/a", "1", 10), results.Callback("a"));
  // The first attempt failed; the next waits at least 200 ms.
  ASSERT_TRUE(WaitFor([&] { return writer_->retrying(); }));
  EXPECT_EQ(writer_->pending(), 1u);
  ASSERT_TRUE(writer_->Drain(seconds(10)));
  EXPECT_EQ(results.Count(IsApplied), 1u);
  EXPECT_FALSE(writer_->retrying());
  EXPECT_EQ(writer_->pending(), 0u);
}

TEST_F(FencedWriterTest, ARefusedWriteIsSplitOutAndTheOthersApply) {
  options_.max_txns_in_flight = 1;
  std::mutex mutex;
  std::vector<std::string> refused_keys;
  MakeWriter(nullptr, [&](const core::SinkWrite& write, const core::SinkError& error) {
    std::lock_guard lock(mutex);
    refused_keys.push_back(write.key);
    EXPECT_EQ(error.code, core::SinkError::Code::kRefused);
  });
  sink_->RefuseKey("/k/5");
  Results results;
  sink_->PauseApplies();
  writer_->Submit(Put("/k/first", "v", 1), results.Callback("/k/first"));
  ASSERT_TRUE(WaitFor([&] { return sink_->batches_submitted() == 1; }));
  for (int i = 0; i < 8; ++i) {
    const std::string key = "/k/" + std::to_string(i);
    writer_->Submit(Put(key, "v", 1), results.Callback(key));
  }
  sink_->ResumeApplies();
  ASSERT_TRUE(writer_->Drain(seconds(10)));
  EXPECT_EQ(results.Count(IsApplied), 8u);
  EXPECT_EQ(
      results.Count([](const WriteResult& r) { return IsError(r, WriteError::Code::kRefused); }),
      1u);
  for (const auto& [key, result] : results.Get()) {
    if (key == "/k/5") {
      ASSERT_FALSE(result.ok());
      EXPECT_EQ(result.error().code, WriteError::Code::kRefused);
      ASSERT_TRUE(result.error().sink_error.has_value());
      EXPECT_EQ(result.error().sink_error->code, core::SinkError::Code::kRefused);
      EXPECT_NE(result.error().message.find("/sink/k/5"), std::string::npos)
          << result.error().message;
    } else {
      EXPECT_TRUE(IsApplied(result)) << key;
    }
  }
  EXPECT_EQ(writer_->refused_writes(), 1u);
  EXPECT_FALSE(sink_->Get("/k/5").has_value());
  EXPECT_EQ(sink_->Size(), 8u);
  std::lock_guard lock(mutex);
  EXPECT_THAT(refused_keys, ::testing::ElementsAre("/k/5"));
}

// zk2zk's sink leaves out a create whose source node is gone by the time its ACL is read (a
// short-lived ephemeral): the node's delete follows, so this is not a failure to report.
TEST_F(FencedWriterTest, AWriteTheSinkSkippedCompletesAsStaleNotAsAFailure) {
  size_t refusals = 0;
  MakeWriter(nullptr, [&refusals](const core::SinkWrite&, const core::SinkError&) { ++refusals; });
  sink_->SkipKey("/gone");
  EXPECT_EQ(Write(Put("/gone", "g", 10)).value(), WriteOutcome::kStale);
  EXPECT_FALSE(sink_->Get("/gone").has_value());
  EXPECT_EQ(Write(Put("/kept", "k", 10)).value(), WriteOutcome::kApplied);
  EXPECT_EQ(refusals, 0u);
  EXPECT_FALSE(writer_->retrying());
}

TEST_F(FencedWriterTest, AFenceTheSinkRejectsFailsWithNotLeader) {
  MakeWriter();
  sink_->SetFence(core::Fence{"/election/a", 7});
  writer_->SetLeader(core::Fence{"/election/b", 8});
  const WriteResult refused = Write(Put("/a", "1", 10));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, WriteError::Code::kNotLeader);
  ASSERT_TRUE(refused.error().sink_error.has_value());
  EXPECT_EQ(refused.error().sink_error->code, core::SinkError::Code::kNotLeader);
  // The fence it was sent under, so that the election can tell an old term's failure.
  ASSERT_TRUE(refused.error().fence.has_value());
  EXPECT_EQ(refused.error().fence->key, "/election/b");
  EXPECT_EQ(refused.error().fence->revision, 8);
  EXPECT_FALSE(sink_->Get("/a").has_value());
  EXPECT_EQ(writer_->refused_writes(), 0u);

  writer_->SetLeader(core::Fence{"/election/a", 7});
  EXPECT_EQ(Write(Put("/a", "1", 10)).value(), WriteOutcome::kApplied);
  // Without a leader the batch goes unfenced.
  writer_->SetLeader(std::nullopt);
  EXPECT_EQ(Write(Put("/b", "1", 10)).value(), WriteOutcome::kApplied);
}

// A batch sent under a leadership this process has since lost and won again (it waited out an
// outage) fails its old fence; it goes again under the new one instead of failing with
// kNotLeader, which would depose the new term.
TEST_F(FencedWriterTest, ABatchOfAnEarlierLeadershipGoesAgainUnderTheCurrentOne) {
  MakeWriter();
  Results results;
  sink_->SetFence(core::Fence{"/election/lock-0", 7});
  writer_->SetLeader(core::Fence{"/election/lock-0", 7});
  sink_->PauseApplies();
  writer_->Submit(Put("/a", "1", 10), results.Callback("a"));
  ASSERT_TRUE(WaitFor([&] { return sink_->batches_submitted() == 1; }));
  // The lock is lost (its session expired) and won again with a new lock node.
  sink_->SetFence(core::Fence{"/election/lock-1", 9});
  writer_->SetLeader(core::Fence{"/election/lock-1", 9});
  sink_->ResumeApplies();
  ASSERT_TRUE(writer_->Drain(seconds(10)));
  EXPECT_EQ(results.Count(IsApplied), 1u);
  ASSERT_TRUE(sink_->Get("/a").has_value());
  EXPECT_EQ(sink_->Get("/a")->value, "1");
  EXPECT_EQ(sink_->batches_submitted(), 2u);

  // Deposed for good (no leadership now): the batch fails with kNotLeader.
  sink_->PauseApplies();
  writer_->Submit(Put("/b", "1", 10), results.Callback("b"));
  ASSERT_TRUE(WaitFor([&] { return sink_->batches_submitted() == 3; }));
  sink_->SetFence(core::Fence{"/election/lock-2", 11});
  writer_->SetLeader(std::nullopt);
  sink_->ResumeApplies();
  ASSERT_TRUE(writer_->Drain(seconds(10)));
  EXPECT_EQ(
      results.Count([](const WriteResult& r) { return IsError(r, WriteError::Code::kNotLeader); }),
      1u);
  EXPECT_FALSE(sink_->Get("/b").has_value());
}

TEST_F(FencedWriterTest, StopCompletesQueuedWritesWithStopped) {
  options_.max_txns_in_flight = 1;
  MakeWriter();
  Results results;
  sink_->PauseApplies();
  writer_->Submit(Put("/in-flight", "v", 1), results.Callback("in-flight"));
  ASSERT_TRUE(WaitFor([&] { return sink_->batches_submitted() == 1; }));
  for (int i = 0; i < 4; ++i) {
    writer_->Submit(Put("/queued/" + std::to_string(i), "v", 1),
                    results.Callback("queued" + std::to_string(i)));
  }
  std::thread stopper([&] { writer_->Stop(); });
  // The queued ones complete at once; Stop waits for the batch in flight.
  ASSERT_TRUE(WaitFor([&] { return results.size() == 4; }));
  EXPECT_EQ(
      results.Count([](const WriteResult& r) { return IsError(r, WriteError::Code::kStopped); }),
      4u);
  sink_->ResumeApplies();
  stopper.join();
  ASSERT_EQ(results.size(), 5u);
  EXPECT_EQ(results.Get().back().first, "in-flight");
  EXPECT_TRUE(IsApplied(results.Get().back().second));
  // Later writes complete at once.
  const WriteResult late = Write(Put("/late", "v", 1));
  EXPECT_TRUE(IsError(late, WriteError::Code::kStopped));
  EXPECT_EQ(sink_->Size(), 1u);
  writer_->Stop();  // idempotent
}

TEST_F(FencedWriterTest, DrainWaitsForEveryWriteSubmittedBefore) {
  MakeWriter();
  Results results;
  sink_->PauseApplies();
  for (int i = 0; i < 5; ++i) {
    writer_->Submit(Put("/k/" + std::to_string(i), "v", 1), results.Callback(std::to_string(i)));
  }
  EXPECT_FALSE(writer_->Drain(milliseconds(20)));  // held by the sink
  EXPECT_EQ(writer_->pending(), 5u);
  sink_->ResumeApplies();
  ASSERT_TRUE(writer_->Drain(seconds(10)));
  EXPECT_EQ(results.size(), 5u);
  EXPECT_EQ(writer_->pending(), 0u);
  EXPECT_TRUE(writer_->Drain(milliseconds(0)));  // nothing left
}

TEST_F(FencedWriterTest, TheTxnObserverSeesEachBatch) {
  options_.max_txns_in_flight = 1;
  std::mutex mutex;
  size_t calls = 0;
  size_t writes = 0;
  size_t errors = 0;
  MakeWriter([&](size_t count, const std::optional<core::SinkError>& error,
                 std::chrono::nanoseconds duration) {
    std::lock_guard lock(mutex);
    ++calls;
    writes += count;
    errors += error.has_value() ? 1 : 0;
    EXPECT_GE(duration.count(), 0);
  });
  Results results;
  sink_->PauseApplies();
  writer_->Submit(Put("/k/first", "v", 1), results.Callback("first"));
  ASSERT_TRUE(WaitFor([&] { return sink_->batches_submitted() == 1; }));
  for (int i = 0; i < 20; ++i) {
    writer_->Submit(Put("/k/" + std::to_string(i), "v", 1), results.Callback(std::to_string(i)));
  }
  sink_->FailNextApplies(1, core::SinkError::Code::kUnavailable);  // the second batch fails once
  sink_->ResumeApplies();
  ASSERT_TRUE(writer_->Drain(seconds(10)));
  EXPECT_EQ(results.Count(IsApplied), 21u);
  std::lock_guard lock(mutex);
  EXPECT_EQ(calls, sink_->batches_submitted());
  EXPECT_EQ(errors, 1u);
  // Every write once, plus the failed batch's writes once more.
  EXPECT_GT(writes, 21u);
  EXPECT_LE(writes, 21u + 8u);
}

}  // namespace
}  // namespace zk2etcd::sync
