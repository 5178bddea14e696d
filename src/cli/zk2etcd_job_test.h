// What the zk2etcd job's tests share: the job as `sync` wires it (ZooKeeperSource over the
// in-memory ZooKeeper, EtcdSink and EtcdElection over the in-memory etcd, the engine's classes),
// without the command line. These are the engine tests of before issue 12, ported to the
// core/ interfaces: same scenarios, same expectations.
//
// Teardown order matters: the writer's callbacks point into IncrementalSync (and SyncService,
// which owns one), and the source's into its listener; so the source is closed and the writer
// stopped before anything their callbacks reach is destroyed (JobTest::TearDown, and
// IncrementalFixture's order of members).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "common/clock.h"
#include "common/wait_for_testing.h"
#include "connectors/etcd/etcd_election.h"
#include "connectors/etcd/etcd_sink.h"
#include "connectors/etcd/fenced_txn.h"
#include "connectors/etcd/key_layout.h"
#include "connectors/zookeeper/zookeeper_source.h"
#include "core/scope.h"
#include "core/sink.h"
#include "core/source.h"
#include "etcd/fake_etcd_client.h"
#include "ops/log.h"
#include "ownership/fake_ownership_store.h"
#include "sync/fenced_writer.h"
#include "sync/incremental_sync.h"
#include "sync/reconciler.h"
#include "sync/sync_service.h"
#include "zk/fake_zk_client.h"

namespace zk2etcd::job_test {

using connectors::EncodeZxid;
using connectors::EtcdSink;
using connectors::KeyLayout;
using connectors::ZooKeeperSource;
using core::SinkWrite;
using core::WriteOutcome;
using std::chrono::milliseconds;
using std::chrono::seconds;
using sync::AdoptPolicy;
using sync::Difference;
using sync::FencedWriter;
using sync::FencedWriterOptions;
using sync::ReconcileOptions;
using sync::ReconcileReport;
using sync::WriteError;
using sync::WriteResult;

// A listener that ignores everything: for sources only read from (reconciliations).
class IgnoringListener final : public core::SourceListener {
 public:
  void OnChange(const std::string&) override {}
  void OnSourceEvent(const core::SourceEvent&) override {}
};

// Hands every change to an IncrementalSync, as SyncService's listener does.
class ForwardingListener final : public core::SourceListener {
 public:
  explicit ForwardingListener(sync::IncrementalSync& incremental) : incremental_(incremental) {}
  void OnChange(const std::string& key) override { incremental_.MarkDirty(key); }
  void OnSourceEvent(const core::SourceEvent&) override {}

 private:
  sync::IncrementalSync& incremental_;
};

inline SinkWrite Put(const std::string& key, std::string value, int64_t zxid) {
  SinkWrite write;
  write.key = key;
  write.value = std::move(value);
  write.version = zxid;
  return write;
}

// Submits a write and waits for its result.
inline WriteResult Write(FencedWriter& writer, SinkWrite write) {
  std::promise<WriteResult> done;
  writer.Submit(std::move(write), [&done](const WriteResult& result) { done.set_value(result); });
  return done.get_future().get();
}

inline size_t CountLines(const ops::MemoryLogSink& sink, const std::string& text) {
  const auto lines = sink.Lines();
  return std::count_if(lines.begin(), lines.end(), [&](const std::string& line) {
    return line.find(text) != std::string::npos;
  });
}

// The old EngineTest: one ZooKeeper, one etcd, the job's source, sink and writer over them.
class JobTest : public ::testing::Test {
 protected:
  explicit JobTest(std::vector<std::string> excludes = {"/dubbo/config"})
      : scope_(core::Scope::Create({"/dubbo"}, excludes).value()),
        layout_(KeyLayout::Create("", "/zk2etcd/meta", scope_).value()) {
    writer_options_.initial_backoff = milliseconds(5);
    writer_options_.max_backoff = milliseconds(50);
  }

  void SetUp() override {
    writer_ = std::make_unique<FencedWriter>(sink_, writer_options_, clock_);
    source_ = NewSource();
  }
  void TearDown() override {
    if (source_) source_->Close();
    if (writer_) writer_->Stop();
  }

  std::unique_ptr<ZooKeeperSource> NewSource(
      connectors::WatchMode mode = connectors::WatchMode::kAuto, size_t walk_sessions = 4) {
    connectors::ZooKeeperSourceOptions options;
    options.watch_mode = mode;
    options.multi_read_batch = 15;
    options.walk_sessions = walk_sessions;
    return std::make_unique<ZooKeeperSource>(*factory_, scope_, logger_, options);
  }

  // Opens the fixture's source for reconciliations (once).
  void OpenSource() {
    if (source_open_) return;
    auto opened = source_->Open(ignoring_);
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    source_open_ = true;
  }

  void Create(const std::string& path, const std::string& data = "") {
    ASSERT_TRUE(zk_server_->CreateNodeAll(path, data).ok()) << path;
  }

  std::optional<std::string> Etcd(const std::string& key) {
    auto kv = etcd_.store().Get(key);
    if (!kv) return std::nullopt;
    return kv->value;
  }

  size_t LogLines(const std::string& text) { return CountLines(*log_sink_, text); }

  ReconcileReport Reconcile(ownership::OwnershipStore* ownership = nullptr, bool fix = true,
                            AdoptPolicy adopt = AdoptPolicy::kNone) {
    OpenSource();
    sync::Reconciler reconciler(scope_, sink_, writer_.get(), ownership, logger_, clock_);
    ReconcileOptions options;
    options.fix = fix;
    options.adopt = adopt;
    auto report = reconciler.Run(*source_, options);
    EXPECT_TRUE(report.ok()) << report.error().message;
    return report.ok() ? std::move(report).value() : ReconcileReport{};
  }

  SystemClock clock_;
  std::shared_ptr<zk::FakeZkServer> zk_server_ = zk::FakeZkServer::Create(&clock_);
  std::unique_ptr<zk::ZkClientFactory> factory_ = zk_server_->NewFactory();
  etcd::FakeEtcdClient etcd_{clock_};
  std::shared_ptr<ops::MemoryLogSink> log_sink_ = std::make_shared<ops::MemoryLogSink>();
  ops::Logger logger_{log_sink_, ops::LogFormat::kJson, ops::LogLevel::kDebug, clock_};
  core::Scope scope_;
  KeyLayout layout_;
  EtcdSink sink_{etcd_, layout_};
  FencedWriterOptions writer_options_;
  std::unique_ptr<FencedWriter> writer_;
  IgnoringListener ignoring_;
  std::unique_ptr<ZooKeeperSource> source_;
  bool source_open_ = false;
};

}  // namespace zk2etcd::job_test
