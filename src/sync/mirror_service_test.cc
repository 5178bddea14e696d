// MirrorService against an in-memory source with a history and an in-memory checkpointed sink
// (core/testing): the initial copy, ordered changes applied atomically with their checkpoint,
// resuming from the checkpoint, compaction, leadership, sink outages and the rate limit. No etcd.
#include "sync/mirror_service.h"

#include <gtest/gtest.h>

#include <future>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/wait_for_testing.h"
#include "core/testing/in_memory_election.h"
#include "core/testing/in_memory_sink.h"
#include "core/testing/in_memory_source.h"
#include "ops/log.h"

namespace zk2etcd::sync {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr auto kWait = seconds(10);

// One mirror process: a writer and a service on a thread, over a shared source and sink.
class Mirror {
 public:
  Mirror(const core::Scope& scope, core::Source& source, core::memory::InMemorySink& sink,
         ops::Logger& logger, const Clock& clock, core::LeaderElection* election = nullptr,
         RateLimiter* rate_limiter = nullptr, bool reconcile_on_resume = false) {
    FencedWriterOptions writer_options;
    writer_options.initial_backoff = milliseconds(5);
    writer_options.max_backoff = milliseconds(50);
    writer_options.rate_limiter = rate_limiter;
    writer_ = std::make_unique<FencedWriter>(sink, writer_options, clock);
    MirrorServiceOptions options;
    options.retry_initial = milliseconds(5);
    options.retry_max = milliseconds(50);
    options.election_retry_max = milliseconds(50);
    options.rate_limiter = rate_limiter;
    options.reconcile_on_resume = reconcile_on_resume;
    options.on_reconcile = [this](ReconcileCause cause,
                                  const Result<ReconcileReport, ReconcileError>& result) {
      std::lock_guard lock(mutex_);
      if (result.ok()) {
        causes_.push_back(cause);
        reports_.push_back(*result);
      }
    };
    options.on_applied = [this](const AppliedBatch& batch) {
      std::lock_guard lock(mutex_);
      batches_.push_back(batch);
    };
    service_ = std::make_unique<MirrorService>(scope, source, sink, sink, *writer_, election,
                                               logger, clock, options);
  }
  ~Mirror() {
    (void)Stop();
    writer_->Stop();
    service_.reset();
  }

  void Start() {
    run_ = std::async(std::launch::async, [this] { return service_->Run(); });
  }
  Result<void, std::string> Stop() {
    if (!run_.valid()) return stopped_;
    service_->Stop();
    EXPECT_EQ(run_.wait_for(kWait), std::future_status::ready);
    stopped_ = run_.get();
    return stopped_;
  }

  std::vector<ReconcileCause> causes() const {
    std::lock_guard lock(mutex_);
    return causes_;
  }
  std::vector<ReconcileReport> reports() const {
    std::lock_guard lock(mutex_);
    return reports_;
  }
  std::vector<AppliedBatch> batches() const {
    std::lock_guard lock(mutex_);
    return batches_;
  }
  MirrorService& service() { return *service_; }

 private:
  std::unique_ptr<FencedWriter> writer_;
  std::unique_ptr<MirrorService> service_;
  std::future<Result<void, std::string>> run_;
  Result<void, std::string> stopped_;
  mutable std::mutex mutex_;
  std::vector<ReconcileCause> causes_;
  std::vector<ReconcileReport> reports_;
  std::vector<AppliedBatch> batches_;
};

class MirrorServiceTest : public ::testing::Test {
 protected:
  MirrorServiceTest() { source_.set_exact_snapshots(true); }
  ~MirrorServiceTest() override {
    if (HasFailure()) {
      for (const std::string& line : log_sink_->Lines()) std::cerr << line << "\n";
    }
  }

  std::optional<std::string> SinkValue(const std::string& key) const {
    auto entry = sink_.Get(key);
    return entry ? entry->value : std::nullopt;
  }
  // The sink holds exactly the source's in-scope keys and values (plus `foreign` ones).
  bool Converged(const std::map<std::string, std::string>& foreign = {}) const {
    std::map<std::string, std::string> expected = foreign;
    core::SnapshotOptions options;
    for (const char* key :
         {"/registry/a", "/registry/b", "/registry/c", "/registry2/x", "/registry/t1",
          "/registry/t2", "/registry/t3", "/registry/late", "/registry/down"}) {
      if (auto entry = source_.Get(key)) expected[key] = entry->value;
    }
    return sink_.Values() == expected;
  }
  bool CheckpointIs(int64_t point) const { return sink_.checkpoint() == point; }
  // The sink holds a checkpoint before the mirror hears back and records its batch: waits until
  // the last batch recorded is the one of `point`.
  static bool BatchRecorded(Mirror& mirror, int64_t point) {
    return WaitFor(
        [&] {
          const std::vector<AppliedBatch> batches = mirror.batches();
          return !batches.empty() && batches.back().checkpoint == point;
        },
        kWait);
  }

  // An election whose only candidate is this replica ("replica-1"), fencing sink_; group_
  // deposes it.
  core::memory::InMemoryElection& Election() {
    if (!election_) {
      group_ = std::make_shared<core::memory::InMemoryElectionGroup>();
      group_->AttachSink(&sink_);
      election_ = std::make_unique<core::memory::InMemoryElection>(group_, "replica-1");
    }
    return *election_;
  }

  SystemClock clock_;
  std::shared_ptr<ops::MemoryLogSink> log_sink_ = std::make_shared<ops::MemoryLogSink>();
  ops::Logger logger_{log_sink_, ops::LogFormat::kJson, ops::LogLevel::kDebug, clock_};
  core::Scope scope_ = core::Scope::ForKeyPrefix("/registry");
  core::memory::InMemorySource source_{scope_};
  core::memory::InMemorySink sink_;
  std::shared_ptr<core::memory::InMemoryElectionGroup> group_;
  std::unique_ptr<core::memory::InMemoryElection> election_;
};

TEST_F(MirrorServiceTest, CopiesAtStartThenAppliesEachSourceTransactionAtomically) {
  source_.Put("/registry/a", "1");
  source_.Put("/registry/b", "2");
  source_.Put("/registry2/x", "string prefix: in scope");
  source_.Put("/other/y", "out of scope");
  sink_.PutForeign("/registry/foreign", "another tool's");
  sink_.PutOwned("/registry/stale", "ours, gone from the source", 1);
  Mirror mirror(scope_, source_, sink_, logger_, clock_);
  mirror.Start();
  ASSERT_TRUE(WaitFor([&] { return mirror.reports().size() == 1; }, kWait));
  EXPECT_EQ(mirror.causes(), (std::vector<ReconcileCause>{ReconcileCause::kStart}));
  EXPECT_TRUE(Converged({{"/registry/foreign", "another tool's"}}));
  EXPECT_FALSE(sink_.Get("/registry/stale").has_value());
  EXPECT_FALSE(sink_.Get("/other/y").has_value());
  EXPECT_TRUE(CheckpointIs(source_.point()));
  // The exact snapshot was not read a second time.
  EXPECT_EQ(source_.reads(), 0u);

  const size_t atomic_before = sink_.atomic_batches_applied();
  const int64_t txn = source_.Apply({{"/registry/t1", true, "x", 0, 0},
                                     {"/registry/t2", true, "y", 0, 0},
                                     {"/registry/a", false, "", 0, 0}});
  ASSERT_TRUE(WaitFor([&] { return CheckpointIs(txn); }, kWait));
  EXPECT_EQ(sink_.atomic_batches_applied(), atomic_before + 1);  // one transaction
  const auto t1 = sink_.Get("/registry/t1");
  const auto t2 = sink_.Get("/registry/t2");
  ASSERT_TRUE(t1 && t2);
  EXPECT_EQ(t1->version, t2->version);  // written at one sink point
  EXPECT_FALSE(sink_.Get("/registry/a").has_value());
  EXPECT_EQ(t1->owner->source_version, txn);
  EXPECT_TRUE(Converged({{"/registry/foreign", "another tool's"}}));

  // A change of a foreign key is left alone.
  source_.Put("/registry/foreign", "the source's");
  ASSERT_TRUE(WaitFor([&] { return CheckpointIs(source_.point()); }, kWait));
  ASSERT_TRUE(BatchRecorded(mirror, source_.point()));
  EXPECT_EQ(SinkValue("/registry/foreign"), "another tool's");
  EXPECT_EQ(mirror.batches().back().foreign, 1u);

  EXPECT_TRUE(mirror.Stop().ok());
  EXPECT_FALSE(source_.Status().connected);
}

TEST_F(MirrorServiceTest, ARestartResumesFromTheCheckpointAndCopiesOnlyTheChanges) {
  source_.Put("/registry/a", "1");
  source_.Put("/registry/b", "2");
  {
    Mirror mirror(scope_, source_, sink_, logger_, clock_);
    mirror.Start();
    ASSERT_TRUE(WaitFor([&] { return CheckpointIs(source_.point()); }, kWait));
    ASSERT_TRUE(mirror.Stop().ok());
  }
  ASSERT_EQ(source_.snapshots_read(), 1u);
  // A restart with nothing changed writes nothing.
  {
    const int64_t sink_point = sink_.point();
    Mirror mirror(scope_, source_, sink_, logger_, clock_);
    mirror.Start();
    ASSERT_TRUE(WaitFor([&] { return mirror.service().Status().first_sync_done; }, kWait));
    ASSERT_TRUE(mirror.Stop().ok());
    EXPECT_EQ(sink_.point(), sink_point);
    EXPECT_EQ(source_.snapshots_read(), 1u);
  }
  // Changes made while no mirror ran arrive, and only they.
  const int64_t checkpoint = *sink_.checkpoint();
  source_.Put("/registry/b", "changed while down");
  source_.Delete("/registry/a");
  source_.Put("/registry/down", "new while down");
  const size_t applied_before = sink_.writes_applied();
  Mirror mirror(scope_, source_, sink_, logger_, clock_);
  mirror.Start();
  ASSERT_TRUE(WaitFor([&] { return CheckpointIs(source_.point()); }, kWait));
  EXPECT_EQ(source_.snapshots_read(), 1u);  // no reconciliation
  EXPECT_EQ(source_.last_open_after(), checkpoint);
  EXPECT_EQ(sink_.writes_applied(), applied_before + 3);
  EXPECT_TRUE(Converged());
  EXPECT_TRUE(mirror.causes().empty());
}

TEST_F(MirrorServiceTest, ACompactedCheckpointIsReconciledAndTheMirrorCarriesOn) {
  source_.Put("/registry/a", "1");
  {
    Mirror mirror(scope_, source_, sink_, logger_, clock_);
    mirror.Start();
    ASSERT_TRUE(WaitFor([&] { return CheckpointIs(source_.point()); }, kWait));
    ASSERT_TRUE(mirror.Stop().ok());
  }
  source_.Put("/registry/b", "while down");
  source_.Delete("/registry/a");
  source_.Compact(source_.point());  // the checkpoint's history is gone
  Mirror mirror(scope_, source_, sink_, logger_, clock_);
  mirror.Start();
  ASSERT_TRUE(WaitFor([&] { return mirror.reports().size() == 1; }, kWait));
  EXPECT_EQ(mirror.causes(), (std::vector<ReconcileCause>{ReconcileCause::kCompaction}));
  EXPECT_TRUE(Converged());
  EXPECT_TRUE(CheckpointIs(source_.point()));
  source_.Put("/registry/late", "after");
  ASSERT_TRUE(WaitFor([&] { return SinkValue("/registry/late") == "after"; }, kWait));
}

TEST_F(MirrorServiceTest, AStreamThatFallsBehindACompactionReconciles) {
  source_.Put("/registry/a", "1");
  Mirror mirror(scope_, source_, sink_, logger_, clock_);
  mirror.Start();
  ASSERT_TRUE(WaitFor([&] { return CheckpointIs(source_.point()); }, kWait));
  // The mirror is held applying b, while c is made and compacted away; then its stream breaks.
  sink_.PauseApplies();
  const size_t submitted = sink_.batches_submitted();
  source_.Put("/registry/b", "applied");
  ASSERT_TRUE(WaitFor([&] { return sink_.batches_submitted() > submitted; }, kWait));
  source_.Put("/registry/c", "compacted before the mirror saw it applied");
  source_.Put("/registry/late", "also");
  source_.Compact(source_.point());
  source_.BreakStream();
  // Every change and the break reach the mirror before b applies: the mirror, which applies one
  // batch at a time, then finds c and late queued behind the break and drops them. (Were the
  // break to arrive after b applied, the mirror would apply c and late first, its checkpoint
  // would reach the compaction, and it would resume from there with nothing to reconcile.)
  source_.Drain();
  sink_.ResumeApplies();
  ASSERT_TRUE(WaitFor([&] { return mirror.reports().size() == 2; }, kWait));
  EXPECT_EQ(mirror.causes().back(), ReconcileCause::kCompaction);
  ASSERT_TRUE(WaitFor([&] { return Converged(); }, kWait));
  source_.Put("/registry/t1", "followed again");
  ASSERT_TRUE(WaitFor([&] { return SinkValue("/registry/t1") == "followed again"; }, kWait));
}

TEST_F(MirrorServiceTest, ASetLargerThanABatchIsSplitAndOnlyItsLastPartCarriesItsPoint) {
  core::memory::InMemorySink small({.key_prefix = "/sink", .max_writes = 4});
  Mirror mirror(scope_, source_, small, logger_, clock_);
  mirror.Start();
  ASSERT_TRUE(WaitFor([&] { return small.checkpoint().has_value(); }, kWait));
  std::vector<core::SourceChange> changes;
  for (int i = 0; i < 10; ++i) changes.push_back({"/registry/k" + std::to_string(i), true, "v"});
  const int64_t point = source_.Apply(changes);
  ASSERT_TRUE(WaitFor([&] { return small.checkpoint() == point; }, kWait));
  EXPECT_EQ(small.Values().size(), 10u);
  EXPECT_LE(small.max_batch_seen(), 3u);  // AtomicLimits: one write less than Limits
}

TEST_F(MirrorServiceTest, AWriteTooLargeForAnAtomicBatchGoesAloneAndTheCheckpointFollows) {
  core::memory::InMemorySink sink({.key_prefix = "/sink", .max_atomic_bytes = 1000});
  Mirror mirror(scope_, source_, sink, logger_, clock_);
  mirror.Start();
  ASSERT_TRUE(WaitFor([&] { return sink.checkpoint().has_value(); }, kWait));
  const size_t atomic_before = sink.atomic_batches_applied();
  const std::string large(5000, 'x');
  const int64_t point =
      source_.Apply({{"/registry/large", true, large, 0, 0}, {"/registry/small", true, "s", 0, 0}});
  ASSERT_TRUE(WaitFor([&] { return sink.checkpoint() == point; }, kWait));
  const auto stored = sink.Get("/registry/large");
  ASSERT_TRUE(stored && stored->value);
  EXPECT_EQ(*stored->value, large);
  EXPECT_EQ(stored->owner->source_version, point);
  EXPECT_EQ(sink.Get("/registry/small")->value, "s");
  // The small write and the checkpoint went atomically, the large one through the writer.
  EXPECT_EQ(sink.atomic_batches_applied(), atomic_before + 1);
  ASSERT_TRUE(BatchRecorded(mirror, point));
  const std::vector<AppliedBatch> batches = mirror.batches();
  ASSERT_GE(batches.size(), 2u);
  EXPECT_EQ(batches[batches.size() - 2].applied, 1u);  // the large write, alone
  EXPECT_EQ(batches.back().checkpoint, point);
}

TEST_F(MirrorServiceTest, AWriteTheSinkSkipsIsNoFailureAndTheCheckpointMovesOn) {
  Mirror mirror(scope_, source_, sink_, logger_, clock_);
  mirror.Start();
  ASSERT_TRUE(WaitFor([&] { return sink_.checkpoint().has_value(); }, kWait));
  sink_.SkipKey("/registry/expiring");
  const int64_t point = source_.Apply(
      {{"/registry/expiring", true, "its lease ended", 0, 0}, {"/registry/b", true, "2", 0, 0}});
  ASSERT_TRUE(WaitFor([&] { return CheckpointIs(point); }, kWait));
  EXPECT_FALSE(sink_.Get("/registry/expiring").has_value());
  EXPECT_EQ(SinkValue("/registry/b"), "2");
  ASSERT_TRUE(BatchRecorded(mirror, point));
  EXPECT_EQ(mirror.batches().back().absent, 1u);
  EXPECT_EQ(mirror.batches().back().failed, 0u);
}

TEST_F(MirrorServiceTest, ASinkOutageIsRetriedAndNothingIsLost) {
  Mirror mirror(scope_, source_, sink_, logger_, clock_);
  mirror.Start();
  ASSERT_TRUE(WaitFor([&] { return sink_.checkpoint().has_value(); }, kWait));
  sink_.FailNextApplies(5);
  for (int i = 0; i < 20; ++i) source_.Put("/registry/k" + std::to_string(i), std::to_string(i));
  ASSERT_TRUE(WaitFor([&] { return CheckpointIs(source_.point()); }, kWait));
  EXPECT_EQ(sink_.Values().size(), 20u);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(SinkValue("/registry/k" + std::to_string(i)), std::to_string(i));
  }
  // Five failed batches: one warning when they start, one line when a batch applies again.
  const auto count = [&](const std::string& text) {
    int n = 0;
    for (const std::string& line : log_sink_->Lines()) n += line.find(text) != std::string::npos;
    return n;
  };
  ASSERT_TRUE(WaitFor([&] { return count("memory sink writes applied again") == 1; }, kWait));
  EXPECT_EQ(count("memory sink writes failing; retrying") + count("still failing"), 1);
}

// A change the sink refuses for good (e.g. over the destination's request limit) does not hold up
// the mirror: its batch goes key by key, the refused key is logged and counted, and the others
// and the checkpoint move on. (It was retried whole, forever, and nothing after it applied.)
TEST_F(MirrorServiceTest, AChangeTheSinkRefusesIsLoggedAndTheMirrorMovesOn) {
  Mirror mirror(scope_, source_, sink_, logger_, clock_);
  mirror.Start();
  ASSERT_TRUE(WaitFor([&] { return sink_.checkpoint().has_value(); }, kWait));
  sink_.RefuseKey("/registry/refused");
  const int64_t refused_at = source_.Apply(
      {{"/registry/refused", true, "too large", 0, 0}, {"/registry/beside", true, "b", 0, 0}});
  source_.Put("/registry/after", "a");
  ASSERT_TRUE(WaitFor([&] { return CheckpointIs(source_.point()); }, kWait));
  EXPECT_GT(source_.point(), refused_at);
  EXPECT_FALSE(sink_.Get("/registry/refused").has_value());
  EXPECT_EQ(SinkValue("/registry/beside"), "b");
  EXPECT_EQ(SinkValue("/registry/after"), "a");
  size_t failed = 0;
  for (const AppliedBatch& batch : mirror.batches()) failed += batch.failed;
  EXPECT_EQ(failed, 1u);
  const auto count = [&](const std::string& text) {
    int n = 0;
    for (const std::string& line : log_sink_->Lines()) n += line.find(text) != std::string::npos;
    return n;
  };
  EXPECT_EQ(count("a change the sink refuses could not be applied"), 1);
  EXPECT_EQ(count("applied key by key"), 1);
  EXPECT_FALSE(mirror.service().Status().sink_failing);
  EXPECT_TRUE(mirror.Stop().ok());
}

// A batch that failed and waits to be sent again shows in the status (/readyz says the
// destination is not answering) until one applies.
TEST_F(MirrorServiceTest, AFailedBatchWaitingForItsRetryShowsInTheStatus) {
  Mirror mirror(scope_, source_, sink_, logger_, clock_);
  mirror.Start();
  ASSERT_TRUE(WaitFor([&] { return sink_.checkpoint().has_value(); }, kWait));
  sink_.FailNextApplies(1'000'000);
  source_.Put("/registry/a", "1");
  ASSERT_TRUE(WaitFor([&] { return mirror.service().Status().sink_failing; }, kWait));
  sink_.FailNextApplies(0);
  ASSERT_TRUE(WaitFor([&] { return CheckpointIs(source_.point()); }, kWait));
  EXPECT_FALSE(mirror.service().Status().sink_failing);
  // Retries are not failed writes: the one change applied once.
  size_t failed = 0;
  for (const AppliedBatch& batch : mirror.batches()) failed += batch.failed;
  EXPECT_EQ(failed, 0u);
  EXPECT_TRUE(mirror.Stop().ok());
}

// A batch the sink does not answer shows in the status: how long it has waited, and the lag of
// its changes (they left the queue, but are not applied).
TEST_F(MirrorServiceTest, ABatchTheSinkDoesNotAnswerShowsInTheStatus) {
  Mirror mirror(scope_, source_, sink_, logger_, clock_);
  mirror.Start();
  ASSERT_TRUE(WaitFor([&] { return sink_.checkpoint().has_value(); }, kWait));
  EXPECT_EQ(mirror.service().Status().unanswered_for.count(), 0);
  sink_.PauseApplies();
  source_.Put("/registry/a", "1");
  ASSERT_TRUE(
      WaitFor([&] { return mirror.service().Status().unanswered_for > milliseconds(200); }, kWait));
  const MirrorStatus status = mirror.service().Status();
  EXPECT_EQ(status.queued_change_sets, 0u);  // taken into the batch
  EXPECT_GE(status.oldest_queued_age, status.unanswered_for);
  sink_.ResumeApplies();
  ASSERT_TRUE(WaitFor([&] { return CheckpointIs(source_.point()); }, kWait));
  ASSERT_TRUE(
      WaitFor([&] { return mirror.service().Status().unanswered_for.count() == 0; }, kWait));
  EXPECT_EQ(mirror.service().Status().oldest_queued_age.count(), 0);
  EXPECT_TRUE(mirror.Stop().ok());
}

// An interrupted change stream (its server unreachable) shows in the status and is logged once
// when it starts and once when it ends; the stream then goes on.
TEST_F(MirrorServiceTest, ASourceOutageShowsInTheStatusAndIsLoggedWhenItStartsAndEnds) {
  source_.Put("/registry/a", "1");
  Mirror mirror(scope_, source_, sink_, logger_, clock_);
  mirror.Start();
  ASSERT_TRUE(WaitFor([&] { return mirror.reports().size() == 1; }, kWait));
  EXPECT_TRUE(mirror.service().Status().source_connected);
  source_.Disconnect();
  ASSERT_TRUE(WaitFor([&] { return !mirror.service().Status().source_connected; }, kWait));
  source_.Reconnect();
  ASSERT_TRUE(WaitFor([&] { return mirror.service().Status().source_connected; }, kWait));
  source_.Put("/registry/b", "2");
  ASSERT_TRUE(WaitFor([&] { return Converged(); }, kWait));
  EXPECT_TRUE(mirror.Stop().ok());
  int unreachable = 0, back = 0;
  for (const std::string& line : log_sink_->Lines()) {
    unreachable += line.find("source unreachable; retrying") != std::string::npos;
    back += line.find("source answers again") != std::string::npos;
  }
  EXPECT_EQ(unreachable, 1);
  EXPECT_EQ(back, 1);
}

TEST_F(MirrorServiceTest, OnlyTheLeaderWritesAndANewLeadershipResumesFromTheCheckpoint) {
  source_.Put("/registry/a", "1");
  Mirror mirror(scope_, source_, sink_, logger_, clock_, &Election());
  mirror.Start();
  ASSERT_TRUE(WaitFor([&] { return CheckpointIs(source_.point()); }, kWait));
  EXPECT_TRUE(mirror.service().Status().leader);
  group_->Depose();
  // Deposed, it closes the stream, campaigns again, and as the only candidate leads again,
  // resuming from the checkpoint instead of copying everything.
  source_.Put("/registry/b", "across the leadership change");
  ASSERT_TRUE(
      WaitFor([&] { return SinkValue("/registry/b") == "across the leadership change"; }, kWait));
  EXPECT_EQ(source_.snapshots_read(), 1u);
  EXPECT_GE(source_.ordered_opens(), 2u);
  EXPECT_TRUE(mirror.Stop().ok());
}

// A leadership that ends while the Run thread waits for a batch's answer (a destination that
// stopped answering) is not reported as leadership meanwhile: the status says so at once,
// although the step-down waits for the answer. (A stalled mirror showed leader=1 beside the
// replica that had taken over.)
TEST_F(MirrorServiceTest, ALeadershipThatEndsWhileABatchWaitsIsNotReportedMeanwhile) {
  source_.Put("/registry/a", "1");
  Mirror mirror(scope_, source_, sink_, logger_, clock_, &Election());
  mirror.Start();
  ASSERT_TRUE(WaitFor([&] { return CheckpointIs(source_.point()); }, kWait));
  ASSERT_TRUE(mirror.service().Status().leader);
  sink_.PauseApplies();
  source_.Put("/registry/b", "2");
  ASSERT_TRUE(
      WaitFor([&] { return mirror.service().Status().unanswered_for > milliseconds(50); }, kWait));
  group_->Depose();
  EXPECT_TRUE(WaitFor([&] { return !mirror.service().Status().leader; }, milliseconds(500)));
  sink_.ResumeApplies();
  ASSERT_TRUE(WaitFor([&] { return SinkValue("/registry/b") == "2"; }, kWait));
  EXPECT_TRUE(mirror.Stop().ok());
}

// reconcile_on_resume (--adopt=all, expired lease copies): the first opening reconciles from the
// source's current point instead of replaying what changed since the checkpoint; a later opening
// (a new leadership) resumes from the checkpoint as usual.
TEST_F(MirrorServiceTest, ReconcileOnResumeReconcilesOnlyTheFirstOpeningFromTheCurrentPoint) {
  source_.Put("/registry/a", "1");
  {
    Mirror mirror(scope_, source_, sink_, logger_, clock_);
    mirror.Start();
    ASSERT_TRUE(WaitFor([&] { return CheckpointIs(source_.point()); }, kWait));
    ASSERT_TRUE(mirror.Stop().ok());
  }
  source_.Put("/registry/b", "changed while down");
  const int64_t point_at_start = source_.point();
  Mirror mirror(scope_, source_, sink_, logger_, clock_, &Election(), nullptr,
                /*reconcile_on_resume=*/true);
  mirror.Start();
  ASSERT_TRUE(WaitFor([&] { return CheckpointIs(source_.point()); }, kWait));
  EXPECT_TRUE(Converged());
  EXPECT_EQ(source_.snapshots_read(), 2u);  // the first copy, then this start's reconciliation
  EXPECT_EQ(source_.last_open_after(), point_at_start);
  EXPECT_EQ(mirror.causes(), std::vector<ReconcileCause>{ReconcileCause::kStart});

  group_->Depose();
  source_.Put("/registry/c", "across the leadership change");
  ASSERT_TRUE(
      WaitFor([&] { return SinkValue("/registry/c") == "across the leadership change"; }, kWait));
  EXPECT_EQ(source_.snapshots_read(), 2u);  // resumed, not reconciled again
  EXPECT_EQ(mirror.causes().size(), 1u);
  EXPECT_TRUE(mirror.Stop().ok());
}

TEST_F(MirrorServiceTest, TheRateLimitSpacesTheWrites) {
  RateLimiter limiter(200, clock_);  // a bucket of 20
  Mirror mirror(scope_, source_, sink_, logger_, clock_, nullptr, &limiter);
  mirror.Start();
  ASSERT_TRUE(WaitFor([&] { return sink_.checkpoint().has_value(); }, kWait));
  const auto started = clock_.Now();
  for (int i = 0; i < 120; ++i) source_.Put("/registry/k" + std::to_string(i), "v");
  ASSERT_TRUE(WaitFor([&] { return CheckpointIs(source_.point()); }, kWait));
  // 120 writes at 200/s after a bucket of 20: at least 0.5 s.
  EXPECT_GE(clock_.Now() - started, milliseconds(450));
}

}  // namespace
}  // namespace zk2etcd::sync
