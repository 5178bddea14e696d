// IncrementalSync with an ownership store (--redis-server) that fails or hangs: changes that need
// no store never wait for it, and deletes refused while it was down are applied when it is back.
#include "sync/incremental_sync.h"

#include <gtest/gtest.h>

#include <thread>

#include "common/wait_for_testing.h"
#include "etcd/fake_etcd_client.h"
#include "ops/log.h"
#include "ownership/fake_ownership_store.h"
#include "zk/fake_zk_client.h"

namespace zk2etcd::sync {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class IncrementalOwnershipTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FencedWriterOptions writer_options;
    writer_options.initial_backoff = milliseconds(5);
    writer_options.max_backoff = milliseconds(50);
    writer_ = std::make_unique<FencedWriter>(etcd_, writer_options, clock_);
    IncrementalSyncOptions options;
    options.recorder.initial_backoff = milliseconds(5);
    options.recorder.max_backoff = milliseconds(20);
    options.on_ownership_store_back = [this] { ++store_back_; };
    incremental_ = std::make_unique<IncrementalSync>(scope_, layout_, *writer_, &store_, logger_,
                                                     clock_, options);
    zk::ZkEventHandlers handlers;
    handlers.on_watch = [this](const zk::WatchEvent& event) { incremental_->OnWatchEvent(event); };
    watcher_ = zk_server_->NewClient(handlers);
    ASSERT_TRUE(
        zk::blocking::AddWatch(*watcher_, "/dubbo", zk::AddWatchMode::kPersistentRecursive).ok());
    incremental_->SetClient(watcher_.get());
  }
  void TearDown() override {
    // Whatever a test left hanging must not hold up the teardown.
    store_.SetHanging(false);
    incremental_->SetClient(nullptr);
    incremental_->Stop();
    incremental_->StopOwnershipUpdates();
  }

  void Create(const std::string& path, const std::string& data) {
    ASSERT_TRUE(zk_server_->CreateNodeAll(path, data).ok()) << path;
  }
  std::optional<std::string> Etcd(const std::string& key) {
    auto kv = etcd_.store().Get(key);
    if (!kv) return std::nullopt;
    return kv->value;
  }
  size_t LogLines(const std::string& text) {
    size_t count = 0;
    for (const std::string& line : log_sink_->Lines())
      count += line.find(text) != std::string::npos;
    return count;
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

  SystemClock clock_;
  std::shared_ptr<zk::FakeZkServer> zk_server_ = zk::FakeZkServer::Create(&clock_);
  etcd::FakeEtcdClient etcd_{clock_};
  ownership::FakeOwnershipStore store_;
  std::shared_ptr<ops::MemoryLogSink> log_sink_ = std::make_shared<ops::MemoryLogSink>();
  ops::Logger logger_{log_sink_, ops::LogFormat::kJson, ops::LogLevel::kDebug, clock_};
  core::Scope scope_ = core::Scope::Create({"/dubbo"}, {}).value();
  KeyLayout layout_ = KeyLayout::Create("", "/zk2etcd/meta", scope_).value();
  std::unique_ptr<FencedWriter> writer_;
  std::unique_ptr<zk::FakeZkClient> watcher_;
  std::unique_ptr<IncrementalSync> incremental_;
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
    return !Etcd("/dubbo/svc/providers/p1") && !Etcd("/dubbo/svc/providers/p2") &&
           incremental_->ownership_updates_queued() == 0;
  }));
  EXPECT_EQ(incremental_->deferred_deletes(), 0u);
  EXPECT_EQ(store_back_.load(), 1);
  EXPECT_EQ(store_.records().count("/dubbo/svc/providers/p1"), 0u);
  EXPECT_EQ(store_.records().count("/dubbo/svc/providers/p2"), 0u);
  EXPECT_EQ(Etcd("/dubbo/svc/providers"), "");
}

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
  // Re-created behind the watcher's back (no event reaches IncrementalSync meanwhile).
  incremental_->SetClient(nullptr);
  watcher_.reset();
  Create("/dubbo/svc/providers/p1", "again");
  auto reader = zk_server_->NewClient({});
  incremental_->SetClient(reader.get());
  store_.SetAvailable(true);
  ASSERT_TRUE(WaitFor([&] {
    return store_back_.load() == 1 && incremental_->deferred_deletes() == 0 &&
           Etcd("/dubbo/svc/providers/p1") == "again";
  }));
  incremental_->SetClient(nullptr);
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
}  // namespace zk2etcd::sync
