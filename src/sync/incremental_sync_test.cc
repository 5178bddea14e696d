// IncrementalSync against an in-memory source and sink (core/testing): changes announced by the
// source reach the sink, folded per key, through sink outages and source read failures, with
// foreign keys retried after an adoption. No ZooKeeper, no etcd.
#include "sync/incremental_sync.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/wait_for_testing.h"
#include "core/testing/in_memory_sink.h"
#include "core/testing/in_memory_source.h"
#include "ops/log.h"
#include "sync/reconciler.h"

namespace zk2etcd::sync {
namespace {

using core::WriteOutcome;
using std::chrono::milliseconds;
using std::chrono::seconds;

// Forwards the source's announcements to the pipeline, and a reconnect to Resume(), as
// SyncService does.
class Forwarder : public core::SourceListener {
 public:
  void OnChange(const std::string& key) override {
    if (sync_ != nullptr) sync_->MarkDirty(key);
  }
  void OnSourceEvent(const core::SourceEvent& event) override {
    if (sync_ != nullptr && event.type == core::SourceEventType::kReconnected) sync_->Resume();
  }
  IncrementalSync* sync_ = nullptr;
};

class IncrementalSyncTest : public ::testing::Test {
 protected:
  IncrementalSyncTest() {
    writer_options_.initial_backoff = milliseconds(5);
    writer_options_.max_backoff = milliseconds(50);
    writer_ = std::make_unique<FencedWriter>(sink_, writer_options_, clock_);
    IncrementalSyncOptions options;
    options.on_change = [this](const AppliedChange& change) {
      std::lock_guard lock(mutex_);
      changes_.push_back(change);
    };
    sync_ = std::make_unique<IncrementalSync>(scope_, sink_, *writer_, nullptr, logger_, clock_,
                                              options);
    forwarder_.sync_ = sync_.get();
    sync_->SetSource(&source_);
    EXPECT_TRUE(source_.Open(forwarder_).ok());
  }
  // No announcement after Close; the pipeline stops reading; the writer finishes what it holds
  // (its callbacks reach the pipeline, so the pipeline goes last).
  ~IncrementalSyncTest() override {
    source_.Close();
    sync_->Stop();
    writer_->Stop();
    sync_.reset();
    writer_.reset();
  }

  std::optional<std::string> SinkValue(const std::string& key) const {
    auto entry = sink_.Get(key);
    return entry ? entry->value : std::nullopt;
  }
  bool WaitForValue(const std::string& key, const std::optional<std::string>& value) {
    return WaitFor([&] { return SinkValue(key) == value; }, seconds(10));
  }
  std::vector<AppliedChange> Changes() const {
    std::lock_guard lock(mutex_);
    return changes_;
  }
  std::vector<AppliedChange> ChangesOf(const std::string& sink_key) const {
    std::vector<AppliedChange> of;
    for (const AppliedChange& change : Changes()) {
      if (change.key == sink_key) of.push_back(change);
    }
    return of;
  }

  SystemClock clock_;
  std::shared_ptr<ops::MemoryLogSink> log_sink_ = std::make_shared<ops::MemoryLogSink>();
  ops::Logger logger_{log_sink_, ops::LogFormat::kJson, ops::LogLevel::kDebug, clock_};
  core::Scope scope_ = core::Scope::Create({"/dubbo"}, {"/dubbo/config"}).value();
  core::memory::InMemorySink sink_;
  core::memory::InMemorySource source_{scope_};
  Forwarder forwarder_;
  FencedWriterOptions writer_options_;
  std::unique_ptr<FencedWriter> writer_;
  std::unique_ptr<IncrementalSync> sync_;
  mutable std::mutex mutex_;
  std::vector<AppliedChange> changes_;
};

TEST_F(IncrementalSyncTest, AnnouncedChangesReachTheSink) {
  source_.Put("/dubbo/a", "1");
  source_.Put("/dubbo/b", "2");
  ASSERT_TRUE(WaitForValue("/dubbo/a", "1"));
  ASSERT_TRUE(WaitForValue("/dubbo/b", "2"));
  EXPECT_EQ(sink_.Get("/dubbo/a")->owner->source_version, source_.Get("/dubbo/a")->version);
  source_.Put("/dubbo/a", "changed");
  ASSERT_TRUE(source_.Delete("/dubbo/b"));
  ASSERT_TRUE(WaitForValue("/dubbo/a", "changed"));
  ASSERT_TRUE(WaitFor([&] { return !sink_.Get("/dubbo/b").has_value(); }, seconds(10)));
  // Out of scope: never announced, never written.
  source_.Put("/dubbo/config/x", "excluded");
  source_.Put("/other", "outside");
  sync_->MarkDirty("/dubbo/config/y");  // ignored, too
  source_.Drain();
  ASSERT_TRUE(sync_->WaitIdle(seconds(10)));
  EXPECT_EQ(sink_.Keys(), std::vector<std::string>{"/dubbo/a"});
  EXPECT_EQ(sync_->queue_depth(), 0u);
}

TEST_F(IncrementalSyncTest, ManyChangesOfOneKeyEndWithTheLastValue) {
  for (int i = 0; i < 200; ++i) source_.Put("/dubbo/a", "v" + std::to_string(i));
  const int64_t last = source_.Get("/dubbo/a")->version;
  ASSERT_TRUE(WaitForValue("/dubbo/a", "v199"));
  source_.Drain();
  ASSERT_TRUE(sync_->WaitIdle(seconds(10)));
  EXPECT_EQ(sink_.Get("/dubbo/a")->owner->source_version, last);
  const std::vector<AppliedChange> changes = ChangesOf("/sink/dubbo/a");
  ASSERT_FALSE(changes.empty());
  EXPECT_LE(changes.size(), 200u);
  // Folded: one key is read again after each write, never in parallel; versions never go back.
  int64_t previous = 0;
  for (const AppliedChange& change : changes) {
    EXPECT_EQ(change.trace_id.size(), 16u);
    EXPECT_EQ(change.type, core::SinkWrite::Type::kPut);
    ASSERT_TRUE(change.outcome.has_value()) << change.error;
    EXPECT_EQ(*change.outcome, WriteOutcome::kApplied);
    EXPECT_GE(change.version, previous);
    previous = change.version;
  }
  EXPECT_EQ(changes.back().version, last);
  EXPECT_EQ(sync_->queue_depth(), 0u);
}

TEST_F(IncrementalSyncTest, ADeleteRacingARecreateLeavesTheNewValue) {
  source_.Put("/dubbo/a", "1");
  ASSERT_TRUE(WaitForValue("/dubbo/a", "1"));
  ASSERT_TRUE(sync_->WaitIdle(seconds(10)));
  // The delete is read and written; the sink holds its batch while the key is created again.
  sink_.PauseApplies();
  const size_t batches = sink_.batches_submitted();
  ASSERT_TRUE(source_.Delete("/dubbo/a"));
  ASSERT_TRUE(WaitFor([&] { return sink_.batches_submitted() > batches; }, seconds(10)));
  source_.Put("/dubbo/a", "2");
  source_.Drain();
  sink_.ResumeApplies();
  ASSERT_TRUE(WaitForValue("/dubbo/a", "2"));
  ASSERT_TRUE(sync_->WaitIdle(seconds(10)));
  EXPECT_EQ(SinkValue("/dubbo/a"), "2");
  EXPECT_EQ(sink_.Get("/dubbo/a")->owner->source_version, source_.Get("/dubbo/a")->version);
  const std::vector<AppliedChange> changes = ChangesOf("/sink/dubbo/a");
  ASSERT_GE(changes.size(), 3u);
  EXPECT_EQ(changes[1].type, core::SinkWrite::Type::kDelete);
  EXPECT_EQ(changes.back().type, core::SinkWrite::Type::kPut);
}

TEST_F(IncrementalSyncTest, ARecreateBeforeTheDeleteIsReadLeavesTheNewValue) {
  source_.Put("/dubbo/a", "1");
  ASSERT_TRUE(WaitForValue("/dubbo/a", "1"));
  ASSERT_TRUE(source_.Delete("/dubbo/a"));
  source_.Put("/dubbo/a", "2");
  ASSERT_TRUE(WaitForValue("/dubbo/a", "2"));
  source_.Drain();
  ASSERT_TRUE(sync_->WaitIdle(seconds(10)));
  EXPECT_EQ(SinkValue("/dubbo/a"), "2");
}

TEST_F(IncrementalSyncTest, ASinkOutageDelaysButLosesNothing) {
  sink_.FailNextApplies(5, core::SinkError::Code::kUnavailable);
  for (int i = 0; i < 20; ++i) source_.Put("/dubbo/k" + std::to_string(i), "v");
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(WaitForValue("/dubbo/k" + std::to_string(i), "v"));
  source_.Drain();
  ASSERT_TRUE(sync_->WaitIdle(seconds(10)));
  EXPECT_EQ(sink_.Size(), 20u);
  for (const AppliedChange& change : Changes()) {
    ASSERT_TRUE(change.outcome.has_value()) << change.key << ": " << change.error;
    EXPECT_EQ(*change.outcome, WriteOutcome::kApplied);
  }
}

TEST_F(IncrementalSyncTest, FailedReadsStayQueuedUntilResume) {
  source_.FailNextReads(2, core::SourceError::Code::kUnavailable);
  source_.Put("/dubbo/a", "1");
  source_.Put("/dubbo/b", "2");
  // Twice: the announcements, then the reads they issued.
  source_.Drain();
  source_.Drain();
  EXPECT_EQ(sync_->queue_depth(), 2u);
  EXPECT_EQ(sink_.Size(), 0u);
  EXPECT_FALSE(sync_->WaitIdle(milliseconds(0)));
  // After a reconnect, Resume() sends them.
  source_.Disconnect();
  source_.Reconnect();
  ASSERT_TRUE(WaitForValue("/dubbo/a", "1"));
  ASSERT_TRUE(WaitForValue("/dubbo/b", "2"));
  ASSERT_TRUE(sync_->WaitIdle(seconds(10)));
}

TEST_F(IncrementalSyncTest, ReadsWaitWithoutASource) {
  sync_->SetSource(nullptr);
  source_.Put("/dubbo/a", "1");
  source_.Drain();
  EXPECT_EQ(sync_->queue_depth(), 1u);
  EXPECT_EQ(source_.reads(), 0u);
  sync_->SetSource(&source_);
  ASSERT_TRUE(WaitForValue("/dubbo/a", "1"));
}

TEST_F(IncrementalSyncTest, AppliedChangesCarryTheSinkKeyVersionAndOutcome) {
  const int64_t put_version = source_.Put("/dubbo/a", "1");
  ASSERT_TRUE(WaitForValue("/dubbo/a", "1"));
  ASSERT_TRUE(sync_->WaitIdle(seconds(10)));
  ASSERT_TRUE(source_.Delete("/dubbo/a"));
  const int64_t deleted_at = source_.point();
  ASSERT_TRUE(WaitFor([&] { return !sink_.Get("/dubbo/a").has_value(); }, seconds(10)));
  ASSERT_TRUE(sync_->WaitIdle(seconds(10)));
  const std::vector<AppliedChange> changes = Changes();
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[0].key, "/sink/dubbo/a");
  EXPECT_EQ(changes[0].type, core::SinkWrite::Type::kPut);
  EXPECT_EQ(changes[0].version, put_version);
  EXPECT_EQ(changes[0].outcome, WriteOutcome::kApplied);
  EXPECT_TRUE(changes[0].error.empty());
  EXPECT_FALSE(changes[0].not_leader);
  EXPECT_GE(changes[0].delay, changes[0].read_delay);
  EXPECT_EQ(changes[1].key, "/sink/dubbo/a");
  EXPECT_EQ(changes[1].type, core::SinkWrite::Type::kDelete);
  EXPECT_EQ(changes[1].version, deleted_at);
  EXPECT_EQ(changes[1].outcome, WriteOutcome::kApplied);
  EXPECT_NE(changes[0].trace_id, changes[1].trace_id);
}

// Trace ids tie a change's log lines and audit line together: a restarted process (or the other
// direction of zk2zk) must not hand out the same ones.
TEST_F(IncrementalSyncTest, EachInstanceDrawsItsOwnTraceIds) {
  source_.Put("/dubbo/a", "1");
  ASSERT_TRUE(WaitForValue("/dubbo/a", "1"));
  ASSERT_TRUE(sync_->WaitIdle(seconds(10)));
  IncrementalSyncOptions options;
  options.on_change = [this](const AppliedChange& change) {
    std::lock_guard lock(mutex_);
    changes_.push_back(change);
  };
  auto restarted =
      std::make_unique<IncrementalSync>(scope_, sink_, *writer_, nullptr, logger_, clock_, options);
  restarted->SetSource(&source_);
  sync_->Stop();
  forwarder_.sync_ = restarted.get();
  source_.Put("/dubbo/b", "1");
  ASSERT_TRUE(WaitForValue("/dubbo/b", "1"));
  ASSERT_TRUE(restarted->WaitIdle(seconds(10)));
  source_.Close();
  restarted->Stop();
  const std::vector<AppliedChange> changes = Changes();
  ASSERT_EQ(changes.size(), 2u);
  // Each instance's first id.
  EXPECT_NE(changes[0].trace_id, changes[1].trace_id);
}

TEST_F(IncrementalSyncTest, AFailedWriteIsReportedWithItsError) {
  sink_.SetFence(core::Fence{"/election/other", 1});
  writer_->SetLeader(core::Fence{"/election/me", 2});
  source_.Put("/dubbo/a", "1");
  ASSERT_TRUE(WaitFor([&] { return !Changes().empty(); }, seconds(10)));
  const AppliedChange change = Changes()[0];
  EXPECT_FALSE(change.outcome.has_value());
  EXPECT_TRUE(change.not_leader);
  EXPECT_FALSE(change.error.empty());
  EXPECT_FALSE(sink_.Get("/dubbo/a").has_value());
}

TEST_F(IncrementalSyncTest, ForeignKeysAreWrittenAgainAfterAnAdoption) {
  sink_.PutForeign("/dubbo/a", "1");
  source_.Put("/dubbo/a", "1");
  ASSERT_TRUE(WaitFor([&] { return !ChangesOf("/sink/dubbo/a").empty(); }, seconds(10)));
  EXPECT_EQ(ChangesOf("/sink/dubbo/a")[0].outcome, WriteOutcome::kForeign);
  ASSERT_TRUE(sync_->WaitIdle(seconds(10)));
  // The key changes again while it is still foreign: refused, too.
  source_.Put("/dubbo/a", "2");
  ASSERT_TRUE(WaitFor([&] { return ChangesOf("/sink/dubbo/a").size() == 2; }, seconds(10)));
  EXPECT_EQ(ChangesOf("/sink/dubbo/a")[1].outcome, WriteOutcome::kForeign);
  EXPECT_EQ(SinkValue("/dubbo/a"), "1");
  // An adoption (the value differs now, so only --adopt=all takes it) makes the key ours.
  ReconcileOptions options;
  options.adopt = AdoptPolicy::kAll;
  sink_.PutForeign("/dubbo/a", "1");  // as another writer left it
  {
    Reconciler reconciler(scope_, sink_, writer_.get(), nullptr, logger_, clock_);
    auto report = reconciler.Run(source_, options);
    ASSERT_TRUE(report.ok()) << report.error().message;
    EXPECT_EQ(report->fixed_puts, 1u);
  }
  // The refused paths are read and written again: now applied (or stale: the adoption wrote the
  // same version), never foreign.
  const size_t before = ChangesOf("/sink/dubbo/a").size();
  sync_->RetryForeign();
  ASSERT_TRUE(
      WaitFor([&] { return ChangesOf("/sink/dubbo/a").size() == before + 1; }, seconds(10)));
  const AppliedChange retried = ChangesOf("/sink/dubbo/a").back();
  ASSERT_TRUE(retried.outcome.has_value());
  EXPECT_NE(*retried.outcome, WriteOutcome::kForeign);
  EXPECT_EQ(retried.version, source_.Get("/dubbo/a")->version);
  EXPECT_EQ(SinkValue("/dubbo/a"), "2");
  ASSERT_TRUE(sync_->WaitIdle(seconds(10)));
  // Retried once: the set is empty now.
  sync_->RetryForeign();
  ASSERT_TRUE(sync_->WaitIdle(seconds(10)));
  EXPECT_EQ(ChangesOf("/sink/dubbo/a").size(), before + 1);
}

TEST_F(IncrementalSyncTest, ForgetForeignDropsTheRefusedPaths) {
  sink_.PutForeign("/dubbo/a", "theirs");
  source_.Put("/dubbo/a", "1");
  ASSERT_TRUE(WaitFor([&] { return !Changes().empty(); }, seconds(10)));
  ASSERT_TRUE(sync_->WaitIdle(seconds(10)));
  sync_->ForgetForeign();
  sync_->RetryForeign();
  ASSERT_TRUE(sync_->WaitIdle(seconds(10)));
  EXPECT_EQ(Changes().size(), 1u);
  EXPECT_EQ(SinkValue("/dubbo/a"), "theirs");
}

TEST_F(IncrementalSyncTest, StopDropsWhatIsQueued) {
  sync_->SetSource(nullptr);
  source_.Put("/dubbo/a", "1");
  source_.Drain();
  EXPECT_EQ(sync_->queue_depth(), 1u);
  sync_->Stop();
  sync_->SetSource(&source_);
  sync_->MarkDirty("/dubbo/b");
  source_.Drain();
  EXPECT_EQ(sink_.Size(), 0u);
  EXPECT_EQ(source_.reads(), 0u);
}

}  // namespace
}  // namespace zk2etcd::sync
