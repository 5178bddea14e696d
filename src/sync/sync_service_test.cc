// SyncService against an in-memory source, sink and leader election (core/testing): the first
// sync, following changes, a lost source, reconnects, fatal errors, and leadership handed over
// between two services. No ZooKeeper, no etcd.
#include "sync/sync_service.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/wait_for_testing.h"
#include "core/testing/in_memory_election.h"
#include "core/testing/in_memory_sink.h"
#include "core/testing/in_memory_source.h"
#include "ops/log.h"
#include "sync/shared_election.h"

namespace zk2etcd::sync {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr auto kWait = seconds(10);

// One replica: a source of its own, a writer, a service on a thread.
class Replica {
 public:
  Replica(const core::Scope& scope, core::memory::InMemorySink& sink, ops::Logger& logger,
          const Clock& clock, core::LeaderElection* election = nullptr,
          milliseconds drain_timeout = seconds(5), std::function<void()> on_leaving = nullptr)
      : source_(scope) {
    FencedWriterOptions writer_options;
    writer_options.initial_backoff = milliseconds(5);
    writer_options.max_backoff = milliseconds(50);
    writer_ = std::make_unique<FencedWriter>(sink, writer_options, clock);
    SyncServiceOptions options;
    options.fullsync_interval = std::chrono::nanoseconds(0);
    options.retry_initial = milliseconds(10);
    options.retry_max = milliseconds(100);
    options.election_retry_max = milliseconds(100);
    options.drain_timeout = drain_timeout;
    options.on_leaving = std::move(on_leaving);
    options.on_reconcile = [this](const Result<ReconcileReport, ReconcileError>& result) {
      std::lock_guard lock(mutex_);
      if (result.ok()) {
        reports_.push_back(*result);
      } else {
        errors_.push_back(result.error().message);
      }
    };
    options.on_change = [this](const AppliedChange& change) {
      std::lock_guard lock(mutex_);
      changes_.push_back(change);
    };
    service_ = std::make_unique<SyncService>(scope, source_, sink, *writer_, nullptr, election,
                                             logger, clock, options);
  }
  // The service stops and its Run returns; the writer stops before the service (its pipeline)
  // goes.
  ~Replica() {
    (void)Stop();
    writer_->Stop();
    service_.reset();
  }

  void Start() {
    run_ = std::async(std::launch::async, [this] { return service_->Run(); });
  }
  // Stops the service; returns what Run returned.
  Result<void, std::string> Stop() {
    if (!run_.valid()) return stopped_;
    service_->Stop();
    EXPECT_EQ(run_.wait_for(kWait), std::future_status::ready);
    stopped_ = run_.get();
    return stopped_;
  }
  // Waits for Run to return by itself.
  std::optional<Result<void, std::string>> WaitForExit() {
    if (run_.wait_for(kWait) != std::future_status::ready) return std::nullopt;
    stopped_ = run_.get();
    return stopped_;
  }

  size_t reconciliations() const {
    std::lock_guard lock(mutex_);
    return reports_.size();
  }
  std::vector<ReconcileReport> reports() const {
    std::lock_guard lock(mutex_);
    return reports_;
  }
  size_t failed_reconciliations() const {
    std::lock_guard lock(mutex_);
    return errors_.size();
  }
  std::vector<AppliedChange> changes() const {
    std::lock_guard lock(mutex_);
    return changes_;
  }
  bool Wrote(const std::string& sink_key) const {
    for (const AppliedChange& change : changes()) {
      if (change.key == sink_key && change.outcome == core::WriteOutcome::kApplied) return true;
    }
    return false;
  }

  core::memory::InMemorySource& source() { return source_; }
  SyncService& service() { return *service_; }

 private:
  core::memory::InMemorySource source_;
  std::unique_ptr<FencedWriter> writer_;
  std::unique_ptr<SyncService> service_;
  std::future<Result<void, std::string>> run_;
  Result<void, std::string> stopped_;
  mutable std::mutex mutex_;
  std::vector<ReconcileReport> reports_;
  std::vector<std::string> errors_;
  std::vector<AppliedChange> changes_;
};

class SyncServiceTest : public ::testing::Test {
 protected:
  std::optional<std::string> SinkValue(const std::string& key) const {
    auto entry = sink_.Get(key);
    return entry ? entry->value : std::nullopt;
  }
  bool WaitForValue(const std::string& key, const std::optional<std::string>& value) {
    return WaitFor([&] { return SinkValue(key) == value; }, kWait);
  }
  // The sink's fence is the leader's.
  bool FenceFollowsLeader(const core::memory::InMemoryElectionGroup& group) const {
    const auto fence = sink_.fence();
    const auto leader = group.LeaderFence();
    if (!fence || !leader) return fence.has_value() == leader.has_value();
    return fence->key == leader->key && fence->revision == leader->revision;
  }

  SystemClock clock_;
  std::shared_ptr<ops::MemoryLogSink> log_sink_ = std::make_shared<ops::MemoryLogSink>();
  ops::Logger logger_{log_sink_, ops::LogFormat::kJson, ops::LogLevel::kDebug, clock_};
  core::Scope scope_ = core::Scope::Create({"/dubbo"}, {"/dubbo/config"}).value();
  core::memory::InMemorySink sink_;
};

TEST_F(SyncServiceTest, SyncsAtStartThenFollowsChangesAndStopsCleanly) {
  Replica replica(scope_, sink_, logger_, clock_);
  for (int i = 0; i < 5; ++i) replica.source().Put("/dubbo/k" + std::to_string(i), "v");
  replica.source().Put("/dubbo/config/x", "excluded");
  sink_.PutOwned("/dubbo/extra", "ours", 1);
  replica.Start();
  ASSERT_TRUE(WaitFor([&] { return replica.reconciliations() >= 1; }, kWait));
  EXPECT_EQ(sink_.Values().size(), 5u);
  EXPECT_FALSE(sink_.Get("/dubbo/extra").has_value());
  EXPECT_FALSE(sink_.Get("/dubbo/config/x").has_value());
  const SyncStatus status = replica.service().Status();
  EXPECT_TRUE(status.first_sync_done);
  EXPECT_TRUE(status.leader);
  EXPECT_TRUE(status.source_connected);
  EXPECT_EQ(status.reconciliations, 1u);

  replica.source().Put("/dubbo/new", "after the first sync");
  replica.source().Put("/dubbo/k0", "changed");
  ASSERT_TRUE(replica.source().Delete("/dubbo/k1"));
  ASSERT_TRUE(WaitForValue("/dubbo/new", "after the first sync"));
  ASSERT_TRUE(WaitForValue("/dubbo/k0", "changed"));
  ASSERT_TRUE(WaitForValue("/dubbo/k1", std::nullopt));
  ASSERT_TRUE(WaitFor([&] { return replica.Wrote("/sink/dubbo/new"); }, kWait));
  EXPECT_EQ(replica.reconciliations(), 1u);  // changes go through the incremental pipeline

  const auto stopped = replica.Stop();
  EXPECT_TRUE(stopped.ok()) << stopped.error();
  EXPECT_FALSE(replica.source().Status().connected);
}

// Periodic full syncs start on time, start to start: the Run loop wakes for the next one (it
// slept up to its one-second wake past it: 7.2 s between the starts of a 7 s period).
TEST_F(SyncServiceTest, PeriodicFullSyncsStartOnTime) {
  Replica replica(scope_, sink_, logger_, clock_);
  replica.source().Put("/dubbo/k", "v");
  replica.Start();
  ASSERT_TRUE(WaitFor([&] { return replica.reconciliations() >= 1; }, kWait));
  const auto since = std::chrono::steady_clock::now();
  replica.service().SetFullSyncInterval(milliseconds(200));
  ASSERT_TRUE(WaitFor([&] { return replica.reconciliations() >= 6; }, kWait));
  // Five periods of 200 ms; with one-second wakes they took five seconds.
  EXPECT_LT(std::chrono::steady_clock::now() - since, milliseconds(2500));
}

// A stop while the sink answers none of the first sync's repairs (etcd down) does not wait for
// the sink: the repairs get the drain's time, then the writer is stopped and Run returns.
TEST_F(SyncServiceTest, AStopWhileTheSinkAnswersNoRepairEndsAfterTheDrainTime) {
  Replica replica(scope_, sink_, logger_, clock_, nullptr, milliseconds(300));
  for (int i = 0; i < 10; ++i) replica.source().Put("/dubbo/k" + std::to_string(i), "v");
  sink_.FailNextApplies(1'000'000);  // every batch, for as long as the test runs
  replica.Start();
  const auto logged = [&](const std::string& text) {
    for (const std::string& line : log_sink_->Lines()) {
      if (line.find(text) != std::string::npos) return true;
    }
    return false;
  };
  ASSERT_TRUE(WaitFor([&] { return logged("reconciliation started"); }, kWait));
  std::this_thread::sleep_for(milliseconds(200));  // the repairs fail and are retried
  const auto stop_at = std::chrono::steady_clock::now();
  replica.service().Stop();
  const auto exit = replica.WaitForExit();
  if (!exit) sink_.FailNextApplies(0);  // let the writer finish, so the replica can go
  ASSERT_TRUE(exit.has_value()) << "Run still waits for the sink";
  EXPECT_TRUE(exit->ok()) << exit->error();
  EXPECT_LT(std::chrono::steady_clock::now() - stop_at, seconds(3));
  EXPECT_TRUE(logged("repairs still unanswered at the stop deadline are abandoned"));
  EXPECT_EQ(sink_.Size(), 0u);
}

// A node the first sync reads a second time (to repair it: the sink lacks it) is deleted before
// the repair goes out, and the incremental path's delete lands first (the sink has nothing to
// delete yet). The repair's put then creates the node again, as nothing in the sink remembers
// the deletion: the service deletes it again, and the sink ends without it. (The stream has a
// gap during the snapshot, so every candidate is read a second time: without one, only those
// announced since the reconciliation began are, and the next test covers that.)
TEST_F(SyncServiceTest, ANodeDeletedWhileItsRepairIsUnderWayDoesNotStayInTheSink) {
  Replica replica(scope_, sink_, logger_, clock_);
  replica.source().Put("/dubbo/a", "A");
  replica.source().Put("/dubbo/b", "B");
  std::atomic<bool> gap{false};
  replica.source().SetSnapshotHook([&] {
    if (gap.exchange(true)) return;
    replica.source().Disconnect();
    replica.source().Reconnect();
    replica.source().Drain();
  });
  std::atomic<bool> deleted{false};
  replica.source().SetRereadHook([&](const std::vector<std::string>& keys) {
    if (std::find(keys.begin(), keys.end(), "/dubbo/a") == keys.end() || deleted.exchange(true)) {
      return;
    }
    replica.source().Delete("/dubbo/a");
    EXPECT_TRUE(WaitFor(
        [&] {
          for (const AppliedChange& change : replica.changes()) {
            if (change.type == core::SinkWrite::Type::kDelete && change.outcome) return true;
          }
          return false;
        },
        kWait))
        << "the incremental path's delete did not complete";
  });
  replica.Start();
  ASSERT_TRUE(WaitFor([&] { return replica.reconciliations() >= 1; }, kWait));
  EXPECT_TRUE(deleted.load());
  EXPECT_EQ(SinkValue("/dubbo/b"), "B");
  EXPECT_TRUE(WaitForValue("/dubbo/a", std::nullopt)) << "the deleted node stayed in the sink";
  EXPECT_EQ(replica.reports().front().deleted_again, 1u);
  EXPECT_EQ(replica.reports().front().reread, 2u);
}

// The first sync repairs from its snapshot what the source announced no change of since the
// reconciliation began, and reads a second time only what it did announce: a node changed
// right after the walk read it ends with its newest value, whichever write lands last.
TEST_F(SyncServiceTest, OnlyNodesAnnouncedSinceTheReconciliationBeganAreReadASecondTime) {
  Replica replica(scope_, sink_, logger_, clock_);
  replica.source().Put("/dubbo/a", "A");
  replica.source().Put("/dubbo/b", "B");
  replica.source().Put("/dubbo/c", "C");
  sink_.PutOwned("/dubbo/gone", "ours", 1);  // absent from the source: always read again
  std::atomic<bool> changed{false};
  const size_t listings_before = sink_.listings_read();
  replica.source().SetSnapshotHook([&] {
    if (changed.exchange(true)) return;
    // After the sink was listed (while the walk ran), so that /dubbo/b is a difference.
    EXPECT_TRUE(WaitFor([&] { return sink_.listings_read() > listings_before; }, kWait));
    replica.source().Put("/dubbo/b", "B2");
    replica.source().Drain();  // announced before the second read
  });
  const size_t reads_before = replica.source().reads();
  replica.Start();
  ASSERT_TRUE(WaitFor([&] { return replica.reconciliations() >= 1; }, kWait));
  const ReconcileReport report = replica.reports().front();
  EXPECT_EQ(report.reread, 2u);  // /dubbo/b and /dubbo/gone
  // /dubbo/a and /dubbo/c from the walk, /dubbo/b from its second read (B2, or stale if the
  // incremental path's write of B2 landed first).
  EXPECT_EQ(report.fixed_puts + report.stale, 3u);
  EXPECT_EQ(report.fixed_deletes, 1u);
  EXPECT_TRUE(WaitForValue("/dubbo/b", "B2"));
  EXPECT_EQ(SinkValue("/dubbo/a"), "A");
  EXPECT_EQ(SinkValue("/dubbo/c"), "C");
  EXPECT_EQ(SinkValue("/dubbo/gone"), std::nullopt);
  // The second read and the incremental path's read of /dubbo/b: nothing else was read again.
  EXPECT_LE(replica.source().reads() - reads_before, 3u);
  EXPECT_TRUE(replica.Stop().ok());
}

TEST_F(SyncServiceTest, ALostSourceIsOpenedAgainAndReconciled) {
  Replica replica(scope_, sink_, logger_, clock_);
  replica.source().Put("/dubbo/a", "1");
  replica.Start();
  ASSERT_TRUE(WaitFor([&] { return replica.reconciliations() >= 1; }, kWait));
  // The next two opens fail, so the change below is made while the source is closed: it is never
  // announced, only the reconciliation after the new Open can bring it.
  replica.source().FailOpen(2, core::SourceError::Code::kUnavailable);
  replica.source().Lose();
  replica.source().Put("/dubbo/while-lost", "x");
  ASSERT_TRUE(WaitForValue("/dubbo/while-lost", "x"));
  // on_reconcile runs after the repairs it reports.
  ASSERT_TRUE(WaitFor([&] { return replica.reconciliations() >= 2; }, kWait));
  EXPECT_GE(replica.source().snapshots_read(), 2u);
  EXPECT_FALSE(replica.Wrote("/sink/dubbo/while-lost"));  // not by the incremental pipeline
  // And it follows changes again.
  replica.source().Put("/dubbo/after", "y");
  ASSERT_TRUE(WaitForValue("/dubbo/after", "y"));
  EXPECT_TRUE(replica.Stop().ok());
}

TEST_F(SyncServiceTest, AReconnectBringsAReconciliation) {
  Replica replica(scope_, sink_, logger_, clock_);
  replica.source().Put("/dubbo/a", "1");
  replica.Start();
  ASSERT_TRUE(WaitFor([&] { return replica.reconciliations() >= 1; }, kWait));
  replica.source().Disconnect();
  replica.source().Put("/dubbo/while-disconnected", "x");  // not announced
  replica.source().Reconnect();
  ASSERT_TRUE(WaitFor([&] { return replica.reconciliations() >= 2; }, kWait));
  ASSERT_TRUE(WaitForValue("/dubbo/while-disconnected", "x"));
  EXPECT_EQ(replica.reconciliations(), 2u);
  EXPECT_TRUE(replica.Stop().ok());
}

TEST_F(SyncServiceTest, ARequestedReconciliationRuns) {
  Replica replica(scope_, sink_, logger_, clock_);
  replica.Start();
  ASSERT_TRUE(WaitFor([&] { return replica.reconciliations() >= 1; }, kWait));
  // Ours, written from a source version older than the source's point, and not in the source.
  replica.source().Put("/dubbo/a", "1");
  replica.source().Put("/dubbo/b", "2");
  sink_.PutOwned("/dubbo/extra", "ours", 1);
  replica.service().RequestReconcile();
  ASSERT_TRUE(WaitFor([&] { return replica.reconciliations() >= 2; }, kWait));
  EXPECT_FALSE(sink_.Get("/dubbo/extra").has_value());
  EXPECT_TRUE(replica.Stop().ok());
}

TEST_F(SyncServiceTest, AFailedReconciliationIsRetried) {
  Replica replica(scope_, sink_, logger_, clock_);
  replica.source().Put("/dubbo/a", "1");
  sink_.FailNextReads(4, core::SinkError::Code::kUnavailable);  // two runs: point and listing
  replica.Start();
  ASSERT_TRUE(WaitFor([&] { return replica.reconciliations() >= 1; }, kWait));
  EXPECT_GE(replica.failed_reconciliations(), 1u);
  EXPECT_EQ(SinkValue("/dubbo/a"), "1");
  EXPECT_TRUE(replica.Stop().ok());
}

TEST_F(SyncServiceTest, AnOpenFailingFatallyEndsRun) {
  Replica replica(scope_, sink_, logger_, clock_);
  replica.source().FailOpen(1, core::SourceError::Code::kAuthFailed);
  replica.Start();
  const auto exited = replica.WaitForExit();
  ASSERT_TRUE(exited.has_value()) << "Run did not return";
  ASSERT_FALSE(exited->ok());
  EXPECT_FALSE(exited->error().empty());
  EXPECT_EQ(replica.reconciliations(), 0u);
}

TEST_F(SyncServiceTest, AnOpenFailingForNowIsRetried) {
  Replica replica(scope_, sink_, logger_, clock_);
  replica.source().Put("/dubbo/a", "1");
  replica.source().FailOpen(3, core::SourceError::Code::kUnavailable);
  replica.Start();
  ASSERT_TRUE(WaitForValue("/dubbo/a", "1"));
  EXPECT_TRUE(replica.Stop().ok());
}

// Two services of one process under one shared election (zk2zk's two directions): the one that
// leaves its Run first (a stop, or a fatal error) stops both campaigning (on_leaving) before it
// resigns, so the other does not campaign again and take a new lock.
TEST_F(SyncServiceTest, ServicesSharingAnElectionDoNotCampaignAgainWhenOneLeaves) {
  auto group = std::make_shared<core::memory::InMemoryElectionGroup>();
  core::memory::InMemoryElection real(group, "p");
  auto shared = std::make_unique<SharedElection>(real, 2);
  std::function<void()> leaving;  // set before either runs
  const auto on_leaving = [&leaving] { leaving(); };
  auto forward = std::make_unique<Replica>(scope_, sink_, logger_, clock_, &shared->member(0),
                                           seconds(5), on_leaving);
  auto reverse = std::make_unique<Replica>(scope_, sink_, logger_, clock_, &shared->member(1),
                                           seconds(5), on_leaving);
  leaving = [&] {
    forward->service().StopCampaigning();
    reverse->service().StopCampaigning();
  };
  forward->Start();
  reverse->Start();
  ASSERT_TRUE(WaitFor(
      [&] { return forward->service().Status().leader && reverse->service().Status().leader; },
      kWait));
  EXPECT_TRUE(forward->Stop().ok());  // resigns the shared election: the reverse's ends
  ASSERT_TRUE(WaitFor([&] { return !reverse->service().Status().leader; }, kWait));
  std::this_thread::sleep_for(milliseconds(300));  // the election's retry is at most 100 ms
  EXPECT_EQ(group->Campaigns(), 0u);
  EXPECT_FALSE(reverse->service().Status().campaigning);
  EXPECT_TRUE(reverse->Stop().ok());
  bool ended = false;
  for (const std::string& line : log_sink_->Lines()) {
    ended |= line.find("leadership ended: stopping") != std::string::npos;
    EXPECT_EQ(line.find("campaigning again"), std::string::npos) << line;
    EXPECT_EQ(line.find("leadership lost"), std::string::npos) << line;
  }
  EXPECT_TRUE(ended);
  reverse.reset();
  forward.reset();
  shared.reset();
}

class ElectionTest : public SyncServiceTest {
 protected:
  ElectionTest() { group_->AttachSink(&sink_); }
  ~ElectionTest() override {
    // The replicas go first (their destructors stop them), then the group lets go of the sink.
    b_.reset();
    a_.reset();
    group_->AttachSink(nullptr);
  }

  // Both sources get the same changes, so they hold the same versions.
  void PutBoth(const std::string& key, const std::string& value) {
    a_->source().Put(key, value);
    b_->source().Put(key, value);
  }

  // Starts `a`, waits until it leads and synced, then starts `b` as the standby.
  void StartBoth() {
    a_->Start();
    ASSERT_TRUE(WaitFor([&] { return group_->Leader() == "a"; }, kWait));
    ASSERT_TRUE(WaitFor([&] { return a_->reconciliations() >= 1; }, kWait));
    b_->Start();
    ASSERT_TRUE(WaitFor([&] { return group_->Campaigns() == 2; }, kWait));
    EXPECT_EQ(group_->Leader(), "a");
  }

  std::shared_ptr<core::memory::InMemoryElectionGroup> group_ =
      std::make_shared<core::memory::InMemoryElectionGroup>();
  core::memory::InMemoryElection election_a_{group_, "a"};
  core::memory::InMemoryElection election_b_{group_, "b"};
  std::unique_ptr<Replica> a_ =
      std::make_unique<Replica>(scope_, sink_, logger_, clock_, &election_a_);
  std::unique_ptr<Replica> b_ =
      std::make_unique<Replica>(scope_, sink_, logger_, clock_, &election_b_);
};

TEST_F(ElectionTest, OnlyTheLeaderWrites) {
  PutBoth("/dubbo/a", "1");
  ASSERT_NO_FATAL_FAILURE(StartBoth());
  EXPECT_EQ(SinkValue("/dubbo/a"), "1");
  PutBoth("/dubbo/b", "2");
  ASSERT_TRUE(WaitForValue("/dubbo/b", "2"));
  // on_change runs after the write it reports.
  ASSERT_TRUE(WaitFor([&] { return a_->Wrote("/sink/dubbo/b"); }, kWait));
  EXPECT_TRUE(b_->changes().empty());
  EXPECT_EQ(b_->reconciliations(), 0u);
  EXPECT_TRUE(a_->service().Status().leader);
  EXPECT_FALSE(b_->service().Status().leader);
  EXPECT_TRUE(FenceFollowsLeader(*group_));
}

// An idle standby sleeps: its Run loop waited zero seconds at a time for a reconciliation it may
// not run (about a fifth of a core, measured on the release binary).
TEST_F(ElectionTest, AnIdleStandbyDoesNotSpin) {
  PutBoth("/dubbo/a", "1");
  ASSERT_NO_FATAL_FAILURE(StartBoth());
  const auto cpu = [] {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    return std::chrono::seconds(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
           std::chrono::microseconds(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
  };
  const auto before = cpu();
  std::this_thread::sleep_for(seconds(1));
  const auto used = cpu() - before;
  EXPECT_LT(used, milliseconds(100))
      << std::chrono::duration_cast<milliseconds>(used).count() << " ms of CPU in 1 s";
  EXPECT_FALSE(b_->service().Status().leader);
}

TEST_F(ElectionTest, ADeposedLeadersStandbyTakesOver) {
  PutBoth("/dubbo/a", "1");
  ASSERT_NO_FATAL_FAILURE(StartBoth());
  group_->Depose();
  ASSERT_TRUE(WaitFor([&] { return group_->Leader() == "b"; }, kWait));
  ASSERT_TRUE(WaitFor([&] { return b_->reconciliations() >= 1; }, kWait));
  PutBoth("/dubbo/after", "x");
  ASSERT_TRUE(WaitForValue("/dubbo/after", "x"));
  ASSERT_TRUE(WaitFor([&] { return b_->Wrote("/sink/dubbo/after"); }, kWait));
  EXPECT_FALSE(a_->Wrote("/sink/dubbo/after"));
  // The deposed one campaigns again and stands by.
  ASSERT_TRUE(WaitFor([&] { return group_->Campaigns() == 2; }, kWait));
  EXPECT_FALSE(a_->service().Status().leader);
  EXPECT_TRUE(a_->Stop().ok());
  EXPECT_TRUE(b_->Stop().ok());
}

TEST_F(ElectionTest, AStoppedLeadersStandbyTakesOver) {
  PutBoth("/dubbo/a", "1");
  ASSERT_NO_FATAL_FAILURE(StartBoth());
  EXPECT_TRUE(a_->Stop().ok());  // resigns
  ASSERT_TRUE(WaitFor([&] { return group_->Leader() == "b"; }, kWait));
  PutBoth("/dubbo/after", "x");
  ASSERT_TRUE(WaitForValue("/dubbo/after", "x"));
  EXPECT_EQ(group_->Campaigns(), 1u);
  EXPECT_TRUE(b_->Stop().ok());
}

TEST_F(ElectionTest, AWriteRefusedByTheFenceMakesTheLeaderStepDown) {
  PutBoth("/dubbo/a", "1");
  ASSERT_NO_FATAL_FAILURE(StartBoth());
  // Someone else's leadership, as far as the sink can tell.
  sink_.SetFence(core::Fence{"/election/someone-else", 1000});
  PutBoth("/dubbo/b", "2");
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const AppliedChange& change : a_->changes()) {
          if (change.not_leader) return true;
        }
        return false;
      },
      kWait));
  // `a` stepped down; `b` leads, and the sink's fence follows it.
  ASSERT_TRUE(WaitFor([&] { return group_->Leader() == "b"; }, kWait));
  ASSERT_TRUE(WaitForValue("/dubbo/b", "2"));
  EXPECT_FALSE(a_->Wrote("/sink/dubbo/b"));
  EXPECT_TRUE(FenceFollowsLeader(*group_));
  EXPECT_TRUE(a_->Stop().ok());
  EXPECT_TRUE(b_->Stop().ok());
}

// A full sync whose repairs the fence refuses stops at the first (one line, not one per key), the
// leader steps down, and the new leader's full sync repairs what the old one could not.
TEST_F(ElectionTest, AFullSyncRefusedByTheFenceStopsAndTheLeaderStepsDown) {
  for (int i = 0; i < 50; ++i) PutBoth("/dubbo/k" + std::to_string(i), "v");
  ASSERT_NO_FATAL_FAILURE(StartBoth());
  ASSERT_TRUE(WaitForValue("/dubbo/k49", "v"));
  for (int i = 0; i < 50; ++i) sink_.DeleteValue("/dubbo/k" + std::to_string(i));
  sink_.SetFence(core::Fence{"/election/someone-else", 1000});
  a_->service().RequestReconcile();
  ASSERT_TRUE(WaitFor([&] { return a_->failed_reconciliations() >= 1; }, kWait));
  ASSERT_TRUE(WaitFor([&] { return group_->Leader() == "b"; }, kWait));
  ASSERT_TRUE(WaitForValue("/dubbo/k0", "v"));
  ASSERT_TRUE(WaitForValue("/dubbo/k49", "v"));
  size_t refused = 0, stopped = 0, per_key = 0;
  for (const std::string& line : log_sink_->Lines()) {
    refused += line.find("repairs refused: this replica no longer leads") != std::string::npos;
    stopped +=
        line.find("reconciliation stopped: this replica no longer leads") != std::string::npos;
    per_key += line.find("repair failed") != std::string::npos;
  }
  EXPECT_EQ(refused, 1u);
  EXPECT_EQ(stopped, 1u);
  EXPECT_EQ(per_key, 0u);
  EXPECT_TRUE(FenceFollowsLeader(*group_));
  EXPECT_TRUE(a_->Stop().ok());
  EXPECT_TRUE(b_->Stop().ok());
}

}  // namespace
}  // namespace zk2etcd::sync
