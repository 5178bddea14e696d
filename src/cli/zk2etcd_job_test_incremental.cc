// The zk2etcd job's incremental sync: ZooKeeperSource's change stream into IncrementalSync, the
// FencedWriter and EtcdSink (the IncrementalTest of the old sync/engine_test.cc), and with an
// ownership store (--redis-server) that fails or hangs (the old sync/incremental_sync_test.cc):
// changes that need no store never wait for it, and deletes refused while it was down are
// applied when it is back.
#include <gtest/gtest.h>

#include <future>
#include <memory>
#include <mutex>
#include <thread>

#include "cli/zk2etcd_job_test.h"

namespace zk2etcd::job_test {
namespace {

using sync::AppliedChange;
using sync::IncrementalSync;
using sync::IncrementalSyncOptions;

// The source opened with a listener that marks changes dirty, and IncrementalSync reading from
// it. TearDown stops everything whose callbacks reach IncrementalSync before it goes: the
// source (listener, reads), the writer (write callbacks), the recorder (store callbacks).
class IncrementalFixture : public JobTest {
 protected:
  using JobTest::JobTest;

  void StartIncremental(IncrementalSyncOptions options, ownership::OwnershipStore* store) {
    incremental_ = std::make_unique<IncrementalSync>(scope_, sink_, *writer_, store, logger_,
                                                     clock_, std::move(options));
    listener_ = std::make_unique<ForwardingListener>(*incremental_);
    auto opened = source_->Open(*listener_);
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    incremental_->SetSource(source_.get());
  }

  void TearDown() override {
    if (incremental_) incremental_->SetSource(nullptr);
    source_->Close();
    if (incremental_) incremental_->Stop();
    writer_->Stop();
    if (incremental_) incremental_->StopOwnershipUpdates();
    JobTest::TearDown();
  }

  // Before incremental_, whose recorder calls it (IncrementalOwnershipTest's store).
  ownership::FakeOwnershipStore store_;
  std::unique_ptr<IncrementalSync> incremental_;
  std::unique_ptr<ForwardingListener> listener_;
};

class IncrementalTest : public IncrementalFixture {
 protected:
  void SetUp() override {
    IncrementalFixture::SetUp();
    IncrementalSyncOptions options;
    options.on_change = [this](const AppliedChange& change) {
      std::lock_guard lock(mutex_);
      changes_.push_back(change);
    };
    StartIncremental(std::move(options), nullptr);
  }
  void Settle() {
    // Events are delivered on the client's thread, asynchronously: every change made so far has
    // been announced (and marked dirty) once a read sent now is answered, since the in-memory
    // ZooKeeper queues a session's watch events and replies in order. (Without this barrier a
    // busy machine could let Settle see an idle pipeline before the last event arrived.)
    auto answered = std::make_shared<std::promise<void>>();
    source_->ReadAsync("/dubbo",
                       [answered](core::SourceResult<core::EntryState>) { answered->set_value(); });
    ASSERT_EQ(answered->get_future().wait_for(seconds(5)), std::future_status::ready);
    // The writer completes on its own.
    for (int i = 0; i < 200; ++i) {
      if (incremental_->WaitIdle(milliseconds(20)) && writer_->Drain(milliseconds(20)) &&
          incremental_->queue_depth() == 0) {
        std::this_thread::sleep_for(milliseconds(5));
        if (incremental_->queue_depth() == 0) return;
      }
    }
    FAIL() << "incremental sync did not settle";
  }

  std::mutex mutex_;
  std::vector<AppliedChange> changes_;
};

// The Go tool synced only the top of a subtree created at once, and never synced setData.
TEST_F(IncrementalTest, DeepSubtreeDataChangesAndDeletesAreApplied) {
  Create("/dubbo/a/b/c/d", "leaf");
  Settle();
  EXPECT_EQ(Etcd("/dubbo"), "");
  EXPECT_EQ(Etcd("/dubbo/a/b/c"), "");
  EXPECT_EQ(Etcd("/dubbo/a/b/c/d"), "leaf");
  ASSERT_TRUE(zk_server_->SetNodeData("/dubbo/a/b/c/d", "changed").ok());
  Settle();
  EXPECT_EQ(Etcd("/dubbo/a/b/c/d"), "changed");
  ASSERT_TRUE(zk_server_->DeleteNode("/dubbo/a/b/c/d").ok());
  Settle();
  EXPECT_EQ(Etcd("/dubbo/a/b/c/d"), std::nullopt);
  EXPECT_EQ(Etcd("/dubbo/a/b/c"), "");
  Create("/dubbo/config/x", "excluded");
  Settle();
  EXPECT_EQ(Etcd("/dubbo/config/x"), std::nullopt);
}

TEST_F(IncrementalTest, ManyChangesToOneNodeEndWithTheLastValueAndTraceIds) {
  Create("/dubbo/hot", "0");
  for (int i = 1; i <= 200; ++i) {
    ASSERT_TRUE(zk_server_->SetNodeData("/dubbo/hot", std::to_string(i)).ok());
  }
  Settle();
  EXPECT_EQ(Etcd("/dubbo/hot"), "200");
  std::lock_guard lock(mutex_);
  ASSERT_FALSE(changes_.empty());
  EXPECT_LT(changes_.size(), 200u) << "events for a busy path are folded";
  for (const AppliedChange& change : changes_) EXPECT_EQ(change.trace_id.size(), 16u);
}

TEST_F(IncrementalTest, DeleteRacingARecreateLeavesTheNewNode) {
  Create("/dubbo/svc/providers/p", "v1");
  Settle();
  // Delete and re-create before the engine reads: the read sees the new node.
  ASSERT_TRUE(zk_server_->DeleteNode("/dubbo/svc/providers/p").ok());
  Create("/dubbo/svc/providers/p", "v2");
  Settle();
  EXPECT_EQ(Etcd("/dubbo/svc/providers/p"), "v2");
}

TEST_F(IncrementalTest, EtcdOutageDelaysButLosesNothing) {
  etcd_.SetUnavailable(true);
  Create("/dubbo/svc/providers/p", "v1");
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_EQ(Etcd("/dubbo/svc/providers/p"), std::nullopt);
  EXPECT_TRUE(writer_->retrying());
  etcd_.SetUnavailable(false);
  Settle();
  EXPECT_EQ(Etcd("/dubbo/svc/providers/p"), "v1");
}

class IncrementalOwnershipTest : public IncrementalFixture {
 protected:
  IncrementalOwnershipTest() : IncrementalFixture(/*excludes=*/{}) {}

  void SetUp() override {
    IncrementalFixture::SetUp();
    IncrementalSyncOptions options;
    options.recorder.initial_backoff = milliseconds(5);
    options.recorder.max_backoff = milliseconds(20);
    options.on_ownership_store_back = [this] { ++store_back_; };
    StartIncremental(std::move(options), &store_);
  }
  void TearDown() override {
    // Whatever a test left hanging must not hold up the teardown.
    store_.SetHanging(false);
    IncrementalFixture::TearDown();
  }

  // Every node of `paths` has reached etcd and the store holds the records of everything.
  void SyncAndRecord(const std::vector<std::string>& paths) {
    for (const std::string& path : paths) Create(path, "v");
    ASSERT_TRUE(WaitFor([&] {
      for (const std::string& path : paths) {
        if (Etcd(path) != "v" || store_.records().count(path) == 0) return false;
      }
      return incremental_->ownership_updates_queued() == 0;
    }));
  }

  std::atomic<int> store_back_{0};
};

TEST_F(IncrementalOwnershipTest, CreatesAndDataChangesDoNotWaitForAHangingStore) {
  SyncAndRecord({"/dubbo/svc/providers/p1"});
  store_.SetHanging(true);  // until released: no timeout at all
  ASSERT_TRUE(zk_server_->SetNodeData("/dubbo/svc/providers/p1", "changed").ok());
  ASSERT_TRUE(WaitFor([&] { return store_.hung_calls() == 1; }));  // its Record hangs
  Create("/dubbo/svc/providers/p2", "new");
  ASSERT_TRUE(zk_server_->SetNodeData("/dubbo/svc/providers/p1", "changed again").ok());
  EXPECT_TRUE(WaitFor([&] {
    return Etcd("/dubbo/svc/providers/p2") == "new" &&
           Etcd("/dubbo/svc/providers/p1") == "changed again";
  }));
  EXPECT_TRUE(incremental_->WaitIdle(seconds(5)));
  EXPECT_GE(incremental_->ownership_updates_queued(), 2u);
  store_.SetHanging(false);
  ASSERT_TRUE(WaitFor([&] { return incremental_->ownership_updates_queued() == 0; }));
  EXPECT_EQ(store_.records().at("/dubbo/svc/providers/p1"), "changed again");
  EXPECT_EQ(store_.records().at("/dubbo/svc/providers/p2"), "new");
}

TEST_F(IncrementalOwnershipTest, DeletesWhileTheStoreIsDownAreDeferredAndAppliedWhenItIsBack) {
  SyncAndRecord({"/dubbo/svc/providers/p1", "/dubbo/svc/providers/p2"});
  store_.SetAvailable(false);
  ASSERT_TRUE(zk_server_->DeleteNode("/dubbo/svc/providers/p1").ok());
  ASSERT_TRUE(zk_server_->DeleteNode("/dubbo/svc/providers/p2").ok());
  ASSERT_TRUE(WaitFor([&] { return incremental_->deferred_deletes() == 2; }));
  EXPECT_TRUE(incremental_->WaitIdle(seconds(5)));
  EXPECT_EQ(Etcd("/dubbo/svc/providers/p1"), "v") << "deleted while the store was down";
  EXPECT_EQ(Etcd("/dubbo/svc/providers/p2"), "v") << "deleted while the store was down";
  EXPECT_EQ(LogLines("delete deferred"), 2u);
  EXPECT_EQ(store_back_.load(), 0);
  store_.SetAvailable(true);
  EXPECT_TRUE(WaitFor([&] {
    // queue_depth: the deletes' callbacks, which queue the Forgets, have run.
    return !Etcd("/dubbo/svc/providers/p1") && !Etcd("/dubbo/svc/providers/p2") &&
           incremental_->queue_depth() == 0 && incremental_->ownership_updates_queued() == 0;
  }));
  EXPECT_EQ(incremental_->deferred_deletes(), 0u);
  EXPECT_EQ(store_back_.load(), 1);
  EXPECT_EQ(store_.records().count("/dubbo/svc/providers/p1"), 0u);
  EXPECT_EQ(store_.records().count("/dubbo/svc/providers/p2"), 0u);
  EXPECT_EQ(Etcd("/dubbo/svc/providers"), "");
}

// Was flaky before issue 12 (a heap use-after-free under ASan): the fixture destroyed
// IncrementalSync while the writer still owed the delete's callback, which calls into it. The
// fixture now stops the writer first (IncrementalFixture::TearDown); the test also waits for
// that callback (WaitIdle) so that it ends with nothing in flight.
TEST_F(IncrementalOwnershipTest, ADeleteWaitsOutAHangingStoreAndIsDeferredWhenItTimesOut) {
  SyncAndRecord({"/dubbo/svc/providers/p1"});
  store_.SetHanging(true);
  store_.SetHangTimeout(milliseconds(300));
  ASSERT_TRUE(zk_server_->DeleteNode("/dubbo/svc/providers/p1").ok());
  ASSERT_TRUE(WaitFor([&] { return store_.hung_calls() == 1; }));  // the delete's ping
  EXPECT_EQ(Etcd("/dubbo/svc/providers/p1"), "v");
  ASSERT_TRUE(WaitFor([&] { return incremental_->deferred_deletes() == 1; }));
  EXPECT_EQ(Etcd("/dubbo/svc/providers/p1"), "v");
  store_.SetHanging(false);
  EXPECT_TRUE(WaitFor(
      [&] { return !Etcd("/dubbo/svc/providers/p1") && incremental_->deferred_deletes() == 0; }));
  EXPECT_TRUE(incremental_->WaitIdle(seconds(5)));
}

TEST_F(IncrementalOwnershipTest, ANodeCreatedAgainWhileItsDeleteWaitsIsKept) {
  SyncAndRecord({"/dubbo/svc/providers/p1"});
  store_.SetAvailable(false);
  ASSERT_TRUE(zk_server_->DeleteNode("/dubbo/svc/providers/p1").ok());
  ASSERT_TRUE(WaitFor([&] { return incremental_->deferred_deletes() == 1; }));
  Create("/dubbo/svc/providers/p1", "again");
  ASSERT_TRUE(WaitFor([&] { return Etcd("/dubbo/svc/providers/p1") == "again"; }));
  EXPECT_EQ(incremental_->deferred_deletes(), 0u);
  store_.SetAvailable(true);
  ASSERT_TRUE(WaitFor([&] {
    return store_back_.load() == 1 && incremental_->ownership_updates_queued() == 0 &&
           incremental_->WaitIdle(milliseconds(0));
  }));
  EXPECT_EQ(Etcd("/dubbo/svc/providers/p1"), "again");
  EXPECT_EQ(store_.records().at("/dubbo/svc/providers/p1"), "again");
}

TEST_F(IncrementalOwnershipTest, ADeferredDeleteReadAgainAfterARecreateWritesTheNewNode) {
  SyncAndRecord({"/dubbo/svc/providers/p1"});
  store_.SetAvailable(false);
  ASSERT_TRUE(zk_server_->DeleteNode("/dubbo/svc/providers/p1").ok());
  ASSERT_TRUE(WaitFor([&] { return incremental_->deferred_deletes() == 1; }));
  // Re-created behind the change stream's back (no change reaches IncrementalSync meanwhile).
  incremental_->SetSource(nullptr);
  source_->Close();
  Create("/dubbo/svc/providers/p1", "again");
  std::unique_ptr<ZooKeeperSource> reader = NewSource();
  ASSERT_TRUE(reader->Open(ignoring_).ok());
  incremental_->SetSource(reader.get());
  store_.SetAvailable(true);
  ASSERT_TRUE(WaitFor([&] {
    return store_back_.load() == 1 && incremental_->deferred_deletes() == 0 &&
           Etcd("/dubbo/svc/providers/p1") == "again";
  }));
  incremental_->SetSource(nullptr);
  reader->Close();
}

TEST_F(IncrementalOwnershipTest, StopOwnershipUpdatesReturnsWhileTheStoreHangs) {
  SyncAndRecord({"/dubbo/svc/providers/p1"});
  store_.SetHanging(true);
  store_.SetHangTimeout(milliseconds(300));
  ASSERT_TRUE(zk_server_->SetNodeData("/dubbo/svc/providers/p1", "changed").ok());
  ASSERT_TRUE(WaitFor([&] { return store_.hung_calls() == 1; }));
  incremental_->Stop();
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(incremental_->StopOwnershipUpdates(), 1u);
  EXPECT_LT(std::chrono::steady_clock::now() - started, seconds(1));
  EXPECT_EQ(store_.total_hung_calls(), 1u);
}

}  // namespace
}  // namespace zk2etcd::job_test
