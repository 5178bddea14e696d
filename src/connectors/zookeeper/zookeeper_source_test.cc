// ZooKeeperSource against the in-memory ZooKeeper: the change stream (persistent and classic
// watches), session events, snapshot and reads, and Close.
#include "connectors/zookeeper/zookeeper_source.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <future>
#include <thread>

#include "common/wait_for_testing.h"
#include "zk/fake_zk_client.h"
#include "zk/forwarding_zk_client_for_test.h"

namespace zk2etcd::connectors {
namespace {

using core::SourceError;
using core::SourceEventType;
using std::chrono::milliseconds;

// Records what the source announces.
class RecordingListener final : public core::SourceListener {
 public:
  void OnChange(const std::string& key) override {
    std::lock_guard lock(mutex_);
    changes_.push_back(key);
  }
  void OnSourceEvent(const core::SourceEvent& event) override {
    std::lock_guard lock(mutex_);
    events_.push_back(event);
  }
  std::vector<std::string> changes() const {
    std::lock_guard lock(mutex_);
    return changes_;
  }
  size_t Count(const std::string& key) const {
    std::lock_guard lock(mutex_);
    return std::count(changes_.begin(), changes_.end(), key);
  }
  std::vector<SourceEventType> event_types() const {
    std::lock_guard lock(mutex_);
    std::vector<SourceEventType> types;
    for (const core::SourceEvent& event : events_) types.push_back(event.type);
    return types;
  }
  bool Saw(SourceEventType type) const {
    std::lock_guard lock(mutex_);
    return std::any_of(events_.begin(), events_.end(),
                       [type](const core::SourceEvent& event) { return event.type == type; });
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> changes_;
  std::vector<core::SourceEvent> events_;
};

// Sessions on the fake server, keeping the last one within reach of the test.
class TestFactory final : public zk::ZkClientFactory {
 public:
  explicit TestFactory(std::shared_ptr<zk::FakeZkServer> server) : server_(std::move(server)) {}
  zk::ZkResult<std::unique_ptr<zk::ZkClient>> NewClient(zk::ZkEventHandlers handlers) override {
    auto client = server_->NewClient(std::move(handlers));
    last_ = client.get();
    return std::unique_ptr<zk::ZkClient>(std::move(client));
  }
  zk::FakeZkClient* last() const { return last_; }

 private:
  std::shared_ptr<zk::FakeZkServer> server_;
  std::atomic<zk::FakeZkClient*> last_{nullptr};
};

// Sessions on the fake server that can also be asked for a session of a named server: records
// the names asked for, and counts the Close() of those sessions. After `named_sessions` of them,
// asking for one more fails (a server that refuses more connections).
class SecondSessionFactory final : public zk::ZkClientFactory {
 public:
  explicit SecondSessionFactory(std::shared_ptr<zk::FakeZkServer> server,
                                size_t named_sessions = SIZE_MAX)
      : server_(std::move(server)), named_sessions_(named_sessions) {}
  zk::ZkResult<std::unique_ptr<zk::ZkClient>> NewClient(zk::ZkEventHandlers handlers) override {
    if (fail_watches_) {
      return std::unique_ptr<zk::ZkClient>(
          std::make_unique<WatchFailingClient>(server_->NewClient(std::move(handlers))));
    }
    return std::unique_ptr<zk::ZkClient>(server_->NewClient(std::move(handlers)));
  }
  // Whether the sessions NewClient makes from now on fail every addWatch (a connection loss).
  void FailWatches(bool fail) { fail_watches_ = fail; }
  zk::ZkResult<std::unique_ptr<zk::ZkClient>> NewClientOf(const std::string& name,
                                                          zk::ZkEventHandlers handlers) override {
    {
      std::lock_guard lock(mutex_);
      servers_asked_.push_back(name);
      if (servers_asked_.size() > named_sessions_) {
        return Unexpected{
            zk::MakeZkError(zk::ZkErrorCode::kConnectionLoss, "too many connections")};
      }
    }
    return std::unique_ptr<zk::ZkClient>(
        std::make_unique<Client>(server_->NewClient(std::move(handlers)), closed_));
  }
  std::vector<std::string> servers_asked() const {
    std::lock_guard lock(mutex_);
    return servers_asked_;
  }
  size_t closed() const { return closed_.load(); }

 private:
  class Client final : public zk::ForwardingZkClient {
   public:
    Client(std::unique_ptr<zk::FakeZkClient> inner, std::atomic<size_t>& closed)
        : ForwardingZkClient(std::move(inner)), closed_(closed) {}
    void Close() override {
      if (!closed_once_.exchange(true)) ++closed_;
      ForwardingZkClient::Close();
    }

   private:
    std::atomic<size_t>& closed_;
    std::atomic<bool> closed_once_{false};
  };

  class WatchFailingClient final : public zk::ForwardingZkClient {
   public:
    explicit WatchFailingClient(std::unique_ptr<zk::FakeZkClient> inner)
        : ForwardingZkClient(std::move(inner)) {}
    void AddWatch(std::string_view, zk::AddWatchMode, zk::ZkCallback<zk::Ack> done) override {
      done(Unexpected{zk::MakeZkError(zk::ZkErrorCode::kConnectionLoss, "addWatch")});
    }
  };

  std::shared_ptr<zk::FakeZkServer> server_;
  std::atomic<bool> fail_watches_{false};
  const size_t named_sessions_;
  mutable std::mutex mutex_;
  std::vector<std::string> servers_asked_;
  std::atomic<size_t> closed_{0};
};

// Sessions whose multiReads are never answered: held until Close() fails them with kClosed, as a
// server that stopped answering leaves them to the client's Close.
class StallingFactory final : public zk::ZkClientFactory {
 public:
  explicit StallingFactory(std::shared_ptr<zk::FakeZkServer> server) : server_(std::move(server)) {}
  zk::ZkResult<std::unique_ptr<zk::ZkClient>> NewClient(zk::ZkEventHandlers handlers) override {
    return std::unique_ptr<zk::ZkClient>(
        std::make_unique<Client>(server_->NewClient(std::move(handlers)), held_));
  }
  size_t held() const { return held_.load(); }

 private:
  // Holds multiRead requests (until Close); everything else goes to the fake.
  class Client final : public zk::ForwardingZkClient {
   public:
    Client(std::unique_ptr<zk::FakeZkClient> inner, std::atomic<size_t>& held)
        : ForwardingZkClient(std::move(inner)), held_(held) {}
    void MultiRead(std::vector<zk::ReadOp>, zk::ZkCallback<zk::MultiReadReply> done) override {
      std::lock_guard lock(mutex_);
      waiting_.push_back(std::move(done));
      ++held_;
    }
    void Close() override {
      std::vector<zk::ZkCallback<zk::MultiReadReply>> waiting;
      {
        std::lock_guard lock(mutex_);
        waiting.swap(waiting_);
      }
      for (auto& done : waiting) {
        done(Unexpected{zk::MakeZkError(zk::ZkErrorCode::kClosed, "multiRead")});
      }
      ForwardingZkClient::Close();
    }

   private:
    std::atomic<size_t>& held_;
    std::mutex mutex_;
    std::vector<zk::ZkCallback<zk::MultiReadReply>> waiting_;
  };

  std::shared_ptr<zk::FakeZkServer> server_;
  std::atomic<size_t> held_{0};
};

// Sessions on the fake server that count the reads of /dubbo's children (the walk's first
// request), keeping the last one within reach of the test.
class RootReadCountingFactory final : public zk::ZkClientFactory {
 public:
  explicit RootReadCountingFactory(std::shared_ptr<zk::FakeZkServer> server)
      : server_(std::move(server)) {}
  zk::ZkResult<std::unique_ptr<zk::ZkClient>> NewClient(zk::ZkEventHandlers handlers) override {
    auto client = server_->NewClient(std::move(handlers));
    last_ = client.get();
    ++clients_;
    return std::unique_ptr<zk::ZkClient>(std::make_unique<Client>(std::move(client), root_reads_));
  }
  size_t root_reads() const { return root_reads_.load(); }
  size_t clients() const { return clients_.load(); }
  zk::FakeZkClient* last() const { return last_; }

 private:
  class Client final : public zk::ForwardingZkClient {
   public:
    Client(std::unique_ptr<zk::FakeZkClient> inner, std::atomic<size_t>& root_reads)
        : ForwardingZkClient(std::move(inner)), root_reads_(root_reads) {}
    void MultiRead(std::vector<zk::ReadOp> ops, zk::ZkCallback<zk::MultiReadReply> done) override {
      for (const zk::ReadOp& op : ops) {
        if (op.kind == zk::ReadOp::Kind::kGetChildren && op.path == "/dubbo") ++root_reads_;
      }
      ForwardingZkClient::MultiRead(std::move(ops), std::move(done));
    }

   private:
    std::atomic<size_t>& root_reads_;
  };

  std::shared_ptr<zk::FakeZkServer> server_;
  std::atomic<size_t> root_reads_{0};
  std::atomic<size_t> clients_{0};
  std::atomic<zk::FakeZkClient*> last_{nullptr};
};

// The result of ReadAsync, and whether its callback ran on the calling thread.
struct AsyncRead {
  core::SourceResult<core::EntryState> result;
  bool inline_call = false;
};

AsyncRead ReadAsyncAndWait(core::Source& source, const std::string& key) {
  std::promise<AsyncRead> promise;
  const std::thread::id caller = std::this_thread::get_id();
  source.ReadAsync(key, [&](core::SourceResult<core::EntryState> result) {
    promise.set_value({std::move(result), std::this_thread::get_id() == caller});
  });
  auto future = promise.get_future();
  EXPECT_EQ(future.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  return future.get();
}

class ZooKeeperSourceTest : public ::testing::Test {
 protected:
  void Create(const std::string& path, const std::string& data = "") {
    ASSERT_TRUE(server_->CreateNodeAll(path, data).ok()) << path;
  }

  std::unique_ptr<ZooKeeperSource> NewSource(WatchMode mode = WatchMode::kAuto) {
    ZooKeeperSourceOptions options;
    options.watch_mode = mode;
    options.multi_read_batch = 15;
    return std::make_unique<ZooKeeperSource>(factory_, scope_, logger_, options);
  }

  // Opens, and reads a snapshot as the engine does (in classic mode, that sets the watches).
  void OpenAndRead(ZooKeeperSource& source) {
    auto opened = source.Open(listener_);
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    auto snapshot = source.ReadSnapshot({});
    ASSERT_TRUE(snapshot.ok()) << snapshot.error().message;
  }

  // Waits until `key` was announced at least `times` times.
  bool Announced(const std::string& key, size_t times = 1) {
    return WaitFor([&] { return listener_.Count(key) >= times; });
  }

  bool Logged(const std::string& text) const {
    for (const std::string& line : log_sink_->Lines()) {
      if (line.find(text) != std::string::npos) return true;
    }
    return false;
  }

  SystemClock clock_;
  std::shared_ptr<zk::FakeZkServer> server_ = zk::FakeZkServer::Create(&clock_);
  TestFactory factory_{server_};
  std::shared_ptr<ops::MemoryLogSink> log_sink_ = std::make_shared<ops::MemoryLogSink>();
  ops::Logger logger_{log_sink_, ops::LogFormat::kJson, ops::LogLevel::kDebug, clock_};
  core::Scope scope_ = core::Scope::Create({"/dubbo"}, {"/dubbo/config"}).value();
  RecordingListener listener_;
};

// A connect string's chroot that does not exist would read as an empty tree (and a sync would
// delete every key it wrote): the opening fails for good, naming it, in either watch mode; a
// chroot that exists opens.
TEST_F(ZooKeeperSourceTest, AChrootThatDoesNotExistFailsTheOpening) {
  Create("/app/dubbo");
  for (const WatchMode mode : {WatchMode::kAuto, WatchMode::kClassic}) {
    ZooKeeperSourceOptions options;
    options.watch_mode = mode;
    options.chroot = "/missing";
    auto missing = server_->NewFactory({.chroot = "/missing"});
    ZooKeeperSource source(*missing, scope_, logger_, options);
    auto opened = source.Open(listener_);
    ASSERT_FALSE(opened.ok());
    EXPECT_EQ(opened.error().code, SourceError::Code::kUnsupported);
    EXPECT_TRUE(opened.error().Fatal());
    EXPECT_NE(
        opened.error().message.find("the chroot /missing of the connect string does not exist"),
        std::string::npos)
        << opened.error().message;
    options.chroot = "/app";
    auto present = server_->NewFactory({.chroot = "/app"});
    ZooKeeperSource fine(*present, scope_, logger_, options);
    EXPECT_TRUE(fine.Open(listener_).ok());
    fine.Close();
  }
}

// An opening whose look at the chroot fails (the connection lost) is no opening, also in classic
// mode, where nothing else would fail it: the next one succeeds.
TEST_F(ZooKeeperSourceTest, AnOpeningWhoseChrootCheckFailsIsRetried) {
  Create("/dubbo");
  server_->InjectError(zk::op_names::kExists, zk::ZkErrorCode::kConnectionLoss, 1, "/");
  auto source = NewSource(WatchMode::kClassic);
  auto opened = source->Open(listener_);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().code, SourceError::Code::kUnavailable);
  EXPECT_TRUE(source->Open(listener_).ok());
}

TEST_F(ZooKeeperSourceTest, OpenRegistersWatchesAndAnnouncesInScopeChanges) {
  Create("/dubbo");
  auto source = NewSource();
  ASSERT_TRUE(source->Open(listener_).ok());
  const core::SourceStatus status = source->Status();
  EXPECT_TRUE(status.connected);
  EXPECT_FALSE(status.classic_watches);
  EXPECT_EQ(status.watches, 1u);
  EXPECT_NE(status.session_id, 0);
  EXPECT_EQ(server_->WatchCount(status.session_id), 1u);
  EXPECT_TRUE(WaitFor([&] { return listener_.Saw(SourceEventType::kConnected); }));
  EXPECT_TRUE(Logged("zookeeper session open, watches registered"));

  Create("/dubbo/a", "1");
  ASSERT_TRUE(server_->SetNodeData("/dubbo/a", "2").ok());
  Create("/dubbo/config/x", "excluded");
  Create("/other/x", "out of scope");
  Create("/dubbo/deep/b/c/d", "leaf");
  ASSERT_TRUE(server_->DeleteNode("/dubbo/a").ok());
  Create("/dubbo/last");
  ASSERT_TRUE(Announced("/dubbo/last"));
  EXPECT_EQ(listener_.Count("/dubbo/a"), 3u);  // created, changed, deleted
  EXPECT_EQ(listener_.Count("/dubbo/deep/b/c/d"), 1u);
  EXPECT_EQ(listener_.Count("/dubbo/deep"), 1u);
  for (const std::string& key : listener_.changes()) {
    EXPECT_TRUE(scope_.Contains(key)) << key;
  }
}

TEST_F(ZooKeeperSourceTest, SessionExpiryIsLostAndANewOpenStartsAgain) {
  Create("/dubbo");
  auto source = NewSource();
  ASSERT_TRUE(source->Open(listener_).ok());
  const int64_t first = source->Status().session_id;
  server_->ExpireSession(first);
  ASSERT_TRUE(WaitFor([&] { return listener_.Saw(SourceEventType::kLost); }));
  EXPECT_FALSE(source->Status().connected);
  EXPECT_TRUE(Logged("zookeeper session ended; opening a new one and reconciling everything"));

  source->Close();
  ASSERT_TRUE(source->Open(listener_).ok());
  EXPECT_NE(source->Status().session_id, first);
  EXPECT_TRUE(source->Status().connected);
  Create("/dubbo/after", "x");
  EXPECT_TRUE(Announced("/dubbo/after"));
}

TEST_F(ZooKeeperSourceTest, AConnectionLossIsDisconnectedThenReconnected) {
  Create("/dubbo");
  auto source = NewSource();
  ASSERT_TRUE(source->Open(listener_).ok());
  factory_.last()->Disconnect();
  ASSERT_TRUE(WaitFor([&] { return listener_.Saw(SourceEventType::kDisconnected); }));
  EXPECT_FALSE(source->Status().connected);
  const AsyncRead read = ReadAsyncAndWait(*source, "/dubbo");
  ASSERT_FALSE(read.result.ok());
  EXPECT_EQ(read.result.error().code, SourceError::Code::kUnavailable);
  factory_.last()->Reconnect();
  ASSERT_TRUE(WaitFor([&] { return listener_.Saw(SourceEventType::kReconnected); }));
  EXPECT_TRUE(source->Status().connected);
  EXPECT_FALSE(listener_.Saw(SourceEventType::kLost));
  Create("/dubbo/after", "x");
  EXPECT_TRUE(Announced("/dubbo/after"));
}

// ZooKeeper 3.4/3.5 have no addWatch: one-shot watches, set by the snapshot and every ReadAsync.
TEST_F(ZooKeeperSourceTest, ServersWithoutPersistentWatchesGetClassicWatches) {
  server_->SetAddWatchSupported(false);
  Create("/dubbo/svc/providers/p1", "a");
  auto source = NewSource();
  OpenAndRead(*source);
  EXPECT_TRUE(Logged("the ZooKeeper server has no persistent watches (older than 3.6)"));
  const core::SourceStatus status = source->Status();
  EXPECT_TRUE(status.classic_watches);
  EXPECT_EQ(status.watches, 4u);  // child watches of /dubbo, svc, providers and p1

  ASSERT_TRUE(server_->SetNodeData("/dubbo/svc/providers/p1", "b").ok());
  ASSERT_TRUE(Announced("/dubbo/svc/providers/p1"));
  // The engine reads what was announced; the read re-arms the data watch.
  const AsyncRead read = ReadAsyncAndWait(*source, "/dubbo/svc/providers/p1");
  ASSERT_TRUE(read.result.ok());
  EXPECT_EQ(read.result->value, "b");
  ASSERT_TRUE(server_->SetNodeData("/dubbo/svc/providers/p1", "c").ok());
  EXPECT_TRUE(Announced("/dubbo/svc/providers/p1", 2));

  Create("/dubbo/new/a/b/c", "deep");  // a subtree at once, under a node without children
  for (const char* path : {"/dubbo/new", "/dubbo/new/a", "/dubbo/new/a/b", "/dubbo/new/a/b/c"}) {
    EXPECT_TRUE(Announced(path)) << path;
  }
  Create("/dubbo/svc/providers/p1/child", "under a former leaf");
  EXPECT_TRUE(Announced("/dubbo/svc/providers/p1/child"));
  ASSERT_TRUE(server_->DeleteNode("/dubbo/svc/providers/p1/child").ok());
  EXPECT_TRUE(Announced("/dubbo/svc/providers/p1/child", 2));
  Create("/dubbo/config/x", "excluded");
  Create("/dubbo/last");
  ASSERT_TRUE(Announced("/dubbo/last"));
  EXPECT_EQ(listener_.Count("/dubbo/config/x"), 0u);
}

TEST_F(ZooKeeperSourceTest, PersistentModeOnAnOldServerIsFatal) {
  server_->SetAddWatchSupported(false);
  Create("/dubbo");
  auto source = NewSource(WatchMode::kPersistent);
  auto opened = source->Open(listener_);
  ASSERT_FALSE(opened.ok());
  EXPECT_TRUE(opened.error().Fatal());
  EXPECT_EQ(opened.error().code, SourceError::Code::kUnsupported);
  EXPECT_NE(opened.error().message.find("persistent recursive watches"), std::string::npos);
  EXPECT_FALSE(source->Status().connected);
}

TEST_F(ZooKeeperSourceTest, ParseWatchModeKnowsTheThreeModes) {
  EXPECT_EQ(ParseWatchMode("auto").value(), WatchMode::kAuto);
  EXPECT_EQ(ParseWatchMode("persistent").value(), WatchMode::kPersistent);
  EXPECT_EQ(ParseWatchMode("classic").value(), WatchMode::kClassic);
  EXPECT_FALSE(ParseWatchMode("sometimes").ok());
}

TEST_F(ZooKeeperSourceTest, ReadSnapshotIsSortedWithExactBytes) {
  const std::string binary("a\0b\xff", 4);
  const std::string large(200000, 'x');
  Create("/dubbo/b", binary);
  Create("/dubbo/a/z", large);
  Create("/dubbo/a/y");
  Create("/dubbo/config/hidden", "excluded");
  Create("/dubbox/near", "outside the prefix");
  auto source = NewSource();
  ASSERT_TRUE(source->Open(listener_).ok());
  auto snapshot = source->ReadSnapshot({});
  ASSERT_TRUE(snapshot.ok()) << snapshot.error().message;
  std::vector<std::string> keys;
  for (const core::SourceEntry& entry : snapshot->entries) {
    keys.push_back(entry.key);
    EXPECT_EQ(entry.value, server_->GetNode(entry.key)->data) << entry.key;
    EXPECT_EQ(entry.version, server_->GetNode(entry.key)->stat.mzxid) << entry.key;
    EXPECT_LE(entry.version, snapshot->point) << entry.key;
  }
  EXPECT_EQ(keys, (std::vector<std::string>{"/dubbo", "/dubbo/a", "/dubbo/a/y", "/dubbo/a/z",
                                            "/dubbo/b"}));
  EXPECT_EQ(snapshot->entries[4].value, binary);
  EXPECT_EQ(snapshot->entries[3].value, large);
  EXPECT_GT(snapshot->requests, 0u);
}

TEST_F(ZooKeeperSourceTest, RereadKeepsTheOrderAndReportsAbsentKeys) {
  Create("/dubbo/a", "A");
  Create("/dubbo/b", "B");
  auto source = NewSource();
  ASSERT_TRUE(source->Open(listener_).ok());
  const std::vector<std::string> keys{"/dubbo/b", "/dubbo/missing", "/dubbo/a"};
  const std::vector<size_t> expected_bytes{1, 0, 1};
  for (const std::vector<size_t>* expected :
       {static_cast<const std::vector<size_t>*>(nullptr), &expected_bytes}) {
    core::RereadOptions options;
    options.expected_bytes = expected;
    auto states = source->Reread(keys, options);
    ASSERT_TRUE(states.ok()) << states.error().message;
    ASSERT_EQ(states->size(), 3u);
    EXPECT_TRUE((*states)[0].exists);
    EXPECT_EQ((*states)[0].value, "B");
    EXPECT_EQ((*states)[0].version, server_->GetNode("/dubbo/b")->stat.mzxid);
    EXPECT_FALSE((*states)[1].exists);
    EXPECT_GT((*states)[1].observed_at, 0);
    EXPECT_EQ((*states)[2].value, "A");
  }
}

TEST_F(ZooKeeperSourceTest, ReadAsyncReadsOneKeyOffTheCallersThread) {
  Create("/dubbo/a", "A");
  auto source = NewSource();
  ASSERT_TRUE(source->Open(listener_).ok());
  const AsyncRead present = ReadAsyncAndWait(*source, "/dubbo/a");
  ASSERT_TRUE(present.result.ok()) << present.result.error().message;
  EXPECT_FALSE(present.inline_call);
  EXPECT_TRUE(present.result->exists);
  EXPECT_EQ(present.result->value, "A");
  EXPECT_EQ(present.result->version, server_->GetNode("/dubbo/a")->stat.mzxid);
  ASSERT_TRUE(server_->DeleteNode("/dubbo/a").ok());
  const int64_t deleted_at = server_->zxid();
  const AsyncRead absent = ReadAsyncAndWait(*source, "/dubbo/a");
  ASSERT_TRUE(absent.result.ok()) << absent.result.error().message;
  EXPECT_FALSE(absent.result->exists);
  EXPECT_GE(absent.result->observed_at, deleted_at);
}

TEST_F(ZooKeeperSourceTest, NodesTheFilterLeavesOutReadAsAbsentEverywhere) {
  Create("/dubbo/svc/providers");
  auto holder = server_->NewClient({});
  ASSERT_TRUE(
      zk::blocking::Create(*holder, "/dubbo/svc/providers/e", "E", zk::CreateMode::kEphemeral)
          .ok());
  Create("/dubbo/svc/providers/p", "P");
  ZooKeeperSourceOptions options;
  options.include = [](const std::string&, const zk::Stat& stat) {
    return stat.ephemeral_owner != 0;  // only ephemeral nodes, as zk2zk's reverse direction
  };
  for (size_t batch : {size_t{15}, size_t{1}}) {  // multiRead and one getData per node
    options.multi_read_batch = batch;
    ZooKeeperSource source(factory_, scope_, logger_, options);
    ASSERT_TRUE(source.Open(listener_).ok());
    auto snapshot = source.ReadSnapshot({});
    ASSERT_TRUE(snapshot.ok()) << snapshot.error().message;
    ASSERT_EQ(snapshot->entries.size(), 1u);  // the walk went below the persistent parents
    EXPECT_EQ(snapshot->entries[0].key, "/dubbo/svc/providers/e");
    auto states = source.Reread({"/dubbo/svc/providers/p", "/dubbo/svc/providers/e"}, {});
    ASSERT_TRUE(states.ok()) << states.error().message;
    EXPECT_FALSE((*states)[0].exists);
    EXPECT_GT((*states)[0].observed_at, 0);
    EXPECT_TRUE((*states)[1].exists);
    const AsyncRead persistent = ReadAsyncAndWait(source, "/dubbo/svc/providers/p");
    ASSERT_TRUE(persistent.result.ok());
    EXPECT_FALSE(persistent.result->exists);
    const AsyncRead ephemeral = ReadAsyncAndWait(source, "/dubbo/svc/providers/e");
    ASSERT_TRUE(ephemeral.result.ok());
    EXPECT_TRUE(ephemeral.result->exists);
    EXPECT_EQ(ephemeral.result->value, "E");
    source.Close();
  }
}

TEST_F(ZooKeeperSourceTest, TheAnnounceFilterSeesEachEventsPathAndType) {
  Create("/dubbo/echo", "mine");
  std::mutex mutex;
  std::vector<std::pair<std::string, zk::WatchEventType>> asked;
  ZooKeeperSourceOptions options;
  options.announce = [&](const std::string& path, zk::WatchEventType type) {
    std::lock_guard lock(mutex);
    asked.emplace_back(path, type);
    return path != "/dubbo/echo";  // a job's own echo: skipped without a read
  };
  ZooKeeperSource source(factory_, scope_, logger_, options);
  ASSERT_TRUE(source.Open(listener_).ok());
  ASSERT_TRUE(server_->SetNodeData("/dubbo/echo", "again").ok());
  ASSERT_TRUE(server_->CreateNode("/dubbo/client", "theirs").ok());
  ASSERT_TRUE(server_->DeleteNode("/dubbo/client").ok());
  ASSERT_TRUE(WaitFor([&] { return listener_.Count("/dubbo/client") == 2; }));
  EXPECT_EQ(listener_.Count("/dubbo/echo"), 0u);
  std::lock_guard lock(mutex);
  ASSERT_EQ(asked.size(), 3u);
  EXPECT_EQ(asked[0],
            std::make_pair(std::string("/dubbo/echo"), zk::WatchEventType::kNodeDataChanged));
  EXPECT_EQ(asked[1],
            std::make_pair(std::string("/dubbo/client"), zk::WatchEventType::kNodeCreated));
  EXPECT_EQ(asked[2],
            std::make_pair(std::string("/dubbo/client"), zk::WatchEventType::kNodeDeleted));
  source.Close();
}

TEST_F(ZooKeeperSourceTest, CloseEndsReadsAndIsIdempotent) {
  Create("/dubbo/a", "A");
  auto source = NewSource();
  ASSERT_TRUE(source->Open(listener_).ok());
  source->Close();
  source->Close();
  EXPECT_FALSE(source->Status().connected);
  const AsyncRead read = ReadAsyncAndWait(*source, "/dubbo/a");
  ASSERT_FALSE(read.result.ok());
  EXPECT_EQ(read.result.error().code, SourceError::Code::kUnavailable);
  EXPECT_FALSE(read.inline_call);
  auto snapshot = source->ReadSnapshot({});
  ASSERT_FALSE(snapshot.ok());
  EXPECT_EQ(snapshot.error().code, SourceError::Code::kClosed);
  auto states = source->Reread({"/dubbo/a"}, {});
  ASSERT_FALSE(states.ok());
  EXPECT_EQ(states.error().code, SourceError::Code::kClosed);
  // Nothing reaches the listener after Close, not even the session's end.
  Create("/dubbo/b");
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_EQ(listener_.Count("/dubbo/b"), 0u);
  EXPECT_FALSE(listener_.Saw(SourceEventType::kLost));
}

// With persistent watches, Open() opens the walk's other sessions (walk_sessions - 1) to the first
// session's server, and Close() closes them; each opening has its own. Classic mode (a server
// without persistent watches, whose walk sets watches and cannot send a read twice) keeps none:
// those asked for while the watches were are closed at once, and later openings ask for none.
TEST_F(ZooKeeperSourceTest, OpenAddsTheWalksSessionsToTheSameServer) {
  Create("/dubbo/a", "A");
  SecondSessionFactory factory(server_);
  ZooKeeperSourceOptions options;
  options.walk_sessions = 3;
  ZooKeeperSource source(factory, scope_, logger_, options);
  for (int opening = 1; opening <= 2; ++opening) {
    ASSERT_TRUE(source.Open(listener_).ok());
    EXPECT_EQ(factory.servers_asked(), std::vector<std::string>(2 * opening, "fake"));
    auto snapshot = source.ReadSnapshot({});
    ASSERT_TRUE(snapshot.ok()) << snapshot.error().message;
    EXPECT_EQ(snapshot->entries.size(), 2u);  // /dubbo and /dubbo/a
    EXPECT_EQ(factory.closed(), static_cast<size_t>(2 * (opening - 1)));
    source.Close();
    EXPECT_EQ(factory.closed(), static_cast<size_t>(2 * opening));
  }

  server_->SetAddWatchSupported(false);
  ZooKeeperSource classic(factory, scope_, logger_, options);
  ASSERT_TRUE(classic.Open(listener_).ok());
  EXPECT_TRUE(classic.Status().classic_watches);
  EXPECT_EQ(factory.servers_asked().size(), 6u);
  EXPECT_EQ(factory.closed(), 6u);
  classic.Close();
  ASSERT_TRUE(classic.Open(listener_).ok());
  EXPECT_TRUE(classic.Status().classic_watches);
  EXPECT_EQ(factory.servers_asked().size(), 6u);
  classic.Close();
  EXPECT_EQ(factory.closed(), 6u);
}

// Open() sends the walk's first request behind the watches, and the snapshot that follows uses
// its answer instead of reading the root again. Any change in scope after Open() (a new child of
// the prefix, which the head did not see, or a change deeper down), or a session event, makes
// the walk read the root again, and the snapshot holds the change; a change out of scope does
// not.
// The keys and values of a snapshot of `source`, in order.
std::vector<std::string> SnapshotKeys(ZooKeeperSource& source) {
  auto snapshot = source.ReadSnapshot({});
  EXPECT_TRUE(snapshot.ok()) << snapshot.error().message;
  std::vector<std::string> keys;
  if (!snapshot.ok()) return keys;
  for (const core::SourceEntry& entry : snapshot->entries) {
    keys.push_back(entry.key + "=" + entry.value);
  }
  return keys;
}

// Starts `source`'s opening ahead and waits until its walk's first read was sent.
bool StartedAhead(ZooKeeperSource& source, const RootReadCountingFactory& factory) {
  source.OpenAhead();
  return WaitFor([&] { return factory.root_reads() == 1; });
}

TEST_F(ZooKeeperSourceTest, TheWalkAfterAnOpeningStartsFromTheReadSentBehindTheWatches) {
  Create("/dubbo/a/x", "X");
  RootReadCountingFactory factory(server_);
  ZooKeeperSourceOptions options;
  options.multi_read_batch = 15;
  ZooKeeperSource source(factory, scope_, logger_, options);
  const auto read = [&] { return SnapshotKeys(source); };

  ASSERT_TRUE(source.Open(listener_).ok());
  EXPECT_EQ(factory.root_reads(), 1u);
  EXPECT_EQ(read(), (std::vector<std::string>{"/dubbo=", "/dubbo/a=", "/dubbo/a/x=X"}));
  EXPECT_EQ(factory.root_reads(), 1u);
  EXPECT_EQ(read().size(), 3u);  // a later walk reads the root itself
  EXPECT_EQ(factory.root_reads(), 2u);
  source.Close();

  ASSERT_TRUE(source.Open(listener_).ok());
  EXPECT_EQ(factory.root_reads(), 3u);
  Create("/dubbo/b", "B");  // a child of the prefix: the head did not see it
  ASSERT_TRUE(Announced("/dubbo/b"));
  EXPECT_EQ(read(),
            (std::vector<std::string>{"/dubbo=", "/dubbo/a=", "/dubbo/a/x=X", "/dubbo/b=B"}));
  EXPECT_EQ(factory.root_reads(), 4u);
  source.Close();

  ASSERT_TRUE(source.Open(listener_).ok());
  EXPECT_EQ(factory.root_reads(), 5u);
  ASSERT_TRUE(server_->SetNodeData("/dubbo/a/x", "X2").ok());  // below the head's reach
  ASSERT_TRUE(Announced("/dubbo/a/x"));
  EXPECT_EQ(read(),
            (std::vector<std::string>{"/dubbo=", "/dubbo/a=", "/dubbo/a/x=X2", "/dubbo/b=B"}));
  EXPECT_EQ(factory.root_reads(), 6u);
  source.Close();

  // A change out of scope (an excluded subtree, which the prefix's watch still reports) leaves
  // the head good. The read behind it is delivered after its event.
  ASSERT_TRUE(source.Open(listener_).ok());
  EXPECT_EQ(factory.root_reads(), 7u);
  Create("/dubbo/config/x", "excluded");
  ASSERT_TRUE(ReadAsyncAndWait(source, "/dubbo/config/x").result.ok());
  EXPECT_EQ(read().size(), 4u);
  EXPECT_EQ(factory.root_reads(), 7u);
  source.Close();

  ASSERT_TRUE(source.Open(listener_).ok());
  EXPECT_EQ(factory.root_reads(), 8u);
  factory.last()->Disconnect();
  ASSERT_TRUE(WaitFor([&] { return listener_.Saw(SourceEventType::kDisconnected); }));
  factory.last()->Reconnect();
  ASSERT_TRUE(WaitFor([&] { return listener_.Saw(SourceEventType::kReconnected); }));
  EXPECT_EQ(read().size(), 4u);
  EXPECT_EQ(factory.root_reads(), 9u);
  source.Close();
}

// sync starts the opening while it dials etcd: Open() completes it, with the session, the watch
// and the walk's first read sent once, and the session's first connection handed to its listener.
TEST_F(ZooKeeperSourceTest, AnOpeningStartedAheadIsCompletedByOpen) {
  Create("/dubbo/a/x", "X");
  RootReadCountingFactory factory(server_);
  ZooKeeperSource source(factory, scope_, logger_, {});
  ASSERT_TRUE(StartedAhead(source, factory));
  source.OpenAhead();  // started already: nothing more
  // Read on that session: answered after its first connection was delivered to the source.
  ASSERT_TRUE(ReadAsyncAndWait(source, "/dubbo").result.ok());
  ASSERT_TRUE(source.Open(listener_).ok());
  EXPECT_EQ(factory.clients(), 1u);
  EXPECT_EQ(factory.root_reads(), 1u);
  EXPECT_EQ(listener_.event_types(), (std::vector<SourceEventType>{SourceEventType::kConnected}))
      << "handed to the listener by Open()";
  EXPECT_TRUE(source.Status().connected);
  EXPECT_EQ(server_->WatchCount(source.Status().session_id), 1u);
  EXPECT_EQ(SnapshotKeys(source),
            (std::vector<std::string>{"/dubbo=", "/dubbo/a=", "/dubbo/a/x=X"}));
  EXPECT_EQ(factory.root_reads(), 1u) << "the walk started from the read sent ahead";
  Create("/dubbo/b", "B");
  EXPECT_TRUE(Announced("/dubbo/b"));
  source.OpenAhead();  // open: nothing
  EXPECT_EQ(factory.clients(), 1u);
  source.Close();
}

// A change between the watch and Open() reaches no listener, but the walk after Open() reads it
// (the read sent ahead did not see it, so the walk reads the prefix again).
TEST_F(ZooKeeperSourceTest, AChangeBeforeOpenIsReadByTheWalkAfterIt) {
  Create("/dubbo/a", "A");
  RootReadCountingFactory factory(server_);
  ZooKeeperSource source(factory, scope_, logger_, {});
  ASSERT_TRUE(StartedAhead(source, factory));
  ASSERT_TRUE(WaitFor([&] {
    const zk::FakeZkClient* client = factory.last();
    return client != nullptr && server_->WatchCount(client->session().session_id) == 1;
  }));
  Create("/dubbo/b", "B");
  // Read on the same session: answered after the change's event was delivered.
  ASSERT_TRUE(ReadAsyncAndWait(source, "/dubbo/b").result.ok());
  ASSERT_TRUE(source.Open(listener_).ok());
  EXPECT_EQ(factory.clients(), 1u);
  EXPECT_EQ(SnapshotKeys(source),
            (std::vector<std::string>{"/dubbo=", "/dubbo/a=A", "/dubbo/b=B"}));
  EXPECT_EQ(factory.root_reads(), 2u);
  EXPECT_EQ(listener_.Count("/dubbo/b"), 0u);
  ASSERT_TRUE(server_->SetNodeData("/dubbo/b", "B2").ok());
  EXPECT_TRUE(Announced("/dubbo/b"));
  source.Close();
}

// A connection lost and found again before Open(): the opening started ahead still serves (the
// client registered the watch again; the walk after Open() reads what changed), and its listener
// hears the session's events in order.
TEST_F(ZooKeeperSourceTest, TheSessionsEventsBeforeOpenReachItsListenerInOrder) {
  Create("/dubbo/a", "A");
  RootReadCountingFactory factory(server_);
  ZooKeeperSource source(factory, scope_, logger_, {});
  ASSERT_TRUE(StartedAhead(source, factory));
  zk::FakeZkClient* ahead = factory.last();
  ahead->Disconnect();
  Create("/dubbo/b", "B");
  ahead->Reconnect();
  // Read on that session: answered after its session events were delivered to the source.
  ASSERT_TRUE(ReadAsyncAndWait(source, "/dubbo/a").result.ok());
  ASSERT_TRUE(source.Open(listener_).ok());
  EXPECT_EQ(factory.clients(), 1u);
  EXPECT_EQ(listener_.event_types(), (std::vector<SourceEventType>{SourceEventType::kConnected,
                                                                   SourceEventType::kDisconnected,
                                                                   SourceEventType::kReconnected}));
  EXPECT_TRUE(source.Status().connected);
  EXPECT_EQ(SnapshotKeys(source),
            (std::vector<std::string>{"/dubbo=", "/dubbo/a=A", "/dubbo/b=B"}));
  EXPECT_EQ(factory.root_reads(), 2u) << "the read sent ahead is not used after a reconnect";
  Create("/dubbo/c", "C");
  EXPECT_TRUE(Announced("/dubbo/c"));
  source.Close();
}

// A session that ended before Open() (expired), a Close() before Open(), or watches that failed
// (ZooKeeper out of reach for a whole session timeout while etcd was dialled): Open() starts
// afresh on a new session.
TEST_F(ZooKeeperSourceTest, AnOpeningStartedAheadThatCannotServeIsStartedAfresh) {
  Create("/dubbo/a", "A");
  {
    RootReadCountingFactory factory(server_);
    ZooKeeperSource source(factory, scope_, logger_, {});
    ASSERT_TRUE(StartedAhead(source, factory));
    const int64_t ahead_session = factory.last()->session().session_id;
    server_->ExpireSession(ahead_session);
    ASSERT_TRUE(WaitFor([&] { return ReadAsyncAndWait(source, "/dubbo/a").result.ok() == false; }));
    ASSERT_TRUE(source.Open(listener_).ok());
    EXPECT_EQ(factory.clients(), 2u);
    EXPECT_NE(source.Status().session_id, ahead_session);
    EXPECT_FALSE(listener_.Saw(SourceEventType::kLost));
    EXPECT_EQ(SnapshotKeys(source), (std::vector<std::string>{"/dubbo=", "/dubbo/a=A"}));
    source.Close();

    source.OpenAhead();
    ASSERT_TRUE(WaitFor([&] { return factory.clients() == 3u; }));
    const int64_t closed_session = factory.last()->session().session_id;
    source.Close();
    EXPECT_EQ(server_->WatchCount(closed_session), 0u);
    ASSERT_TRUE(source.Open(listener_).ok());
    EXPECT_EQ(factory.clients(), 4u);
    Create("/dubbo/c", "C");
    EXPECT_TRUE(Announced("/dubbo/c"));
    source.Close();
  }
  SecondSessionFactory failing(server_);
  ZooKeeperSource source(failing, scope_, logger_, {});
  failing.FailWatches(true);
  source.OpenAhead();
  failing.FailWatches(false);
  ASSERT_TRUE(source.Open(listener_).ok());
  EXPECT_TRUE(source.Status().connected);
  Create("/dubbo/d", "D");
  EXPECT_TRUE(Announced("/dubbo/d"));
  source.Close();
}

// A server that refuses the walk's second helper: Open() stops asking, the walk reads with the
// first session and the one helper it got, and Close() closes that one.
TEST_F(ZooKeeperSourceTest, AWalkSessionTheServerRefusesIsDoneWithout) {
  Create("/dubbo/a", "A");
  SecondSessionFactory factory(server_, /*named_sessions=*/1);
  ZooKeeperSourceOptions options;
  options.walk_sessions = 4;
  ZooKeeperSource source(factory, scope_, logger_, options);
  ASSERT_TRUE(source.Open(listener_).ok());
  EXPECT_EQ(factory.servers_asked().size(), 2u);  // one made, one refused, no third asked
  auto snapshot = source.ReadSnapshot({});
  ASSERT_TRUE(snapshot.ok()) << snapshot.error().message;
  EXPECT_EQ(snapshot->entries.size(), 2u);
  source.Close();
  EXPECT_EQ(factory.closed(), 1u);
}

// A watch the server does not register fails the opening (kUnavailable, to be retried) and says
// so; the walk's sessions asked for meanwhile are closed, and the next opening of the same
// source starts afresh (its own sessions, its own first read).
TEST_F(ZooKeeperSourceTest, AWatchThatFailsFailsTheOpeningAndClosesWhatItOpened) {
  Create("/dubbo/a", "A");
  SecondSessionFactory factory(server_);
  ZooKeeperSourceOptions options;
  options.walk_sessions = 3;
  ZooKeeperSource source(factory, scope_, logger_, options);
  factory.FailWatches(true);
  auto opened = source.Open(listener_);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().code, SourceError::Code::kUnavailable);
  EXPECT_TRUE(Logged("cannot register the persistent recursive watch; retrying"));
  EXPECT_EQ(factory.servers_asked().size(), 2u);
  EXPECT_EQ(factory.closed(), 2u);
  EXPECT_FALSE(source.Status().connected);
  EXPECT_FALSE(source.ReadSnapshot({}).ok());  // closed: no client, no head

  factory.FailWatches(false);
  ASSERT_TRUE(source.Open(listener_).ok());
  EXPECT_EQ(factory.servers_asked().size(), 4u);
  Create("/dubbo/b", "B");
  ASSERT_TRUE(Announced("/dubbo/b"));
  auto snapshot = source.ReadSnapshot({});
  ASSERT_TRUE(snapshot.ok()) << snapshot.error().message;
  EXPECT_EQ(snapshot->entries.size(), 3u);  // /dubbo, /dubbo/a, /dubbo/b
  source.Close();
  EXPECT_EQ(factory.closed(), 4u);
}

// A walk against a server that never answers ends at once when another thread closes the source.
TEST_F(ZooKeeperSourceTest, CloseEndsASnapshotInProgress) {
  Create("/dubbo/a", "A");
  StallingFactory factory(server_);
  ZooKeeperSource source(factory, scope_, logger_);
  ASSERT_TRUE(source.Open(listener_).ok());
  auto walk = std::async(std::launch::async, [&] { return source.ReadSnapshot({}); });
  ASSERT_TRUE(WaitFor([&] { return factory.held() > 0; }));
  source.Close();
  ASSERT_EQ(walk.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  auto snapshot = walk.get();
  ASSERT_FALSE(snapshot.ok());
  EXPECT_EQ(snapshot.error().code, SourceError::Code::kClosed) << snapshot.error().message;
}

}  // namespace
}  // namespace zk2etcd::connectors
