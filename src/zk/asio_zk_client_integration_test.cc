// AsioZkClient against a real ZooKeeper 3.8 (testing/ fixtures). Changes "from another session"
// are made with the official C client, an independent oracle. Tests that kill or pause a server
// start their own; the others share one and use distinct paths.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "ops/log.h"
#include "testing/loopback.h"
#include "testing/server_support.h"
#include "testing/shared_servers.h"
#include "testing/zookeeper_c_client.h"
#include "testing/zookeeper_server.h"
#include "zk/asio_zk_client.h"
#include "zk/event_recorder_for_test.h"
#include "zk/scripted_server_for_test.h"
#include "zk/tcp_proxy_for_test.h"

namespace zk2etcd::zk {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::EventRecorder;
using ::zk2etcd::testing::SharedZooKeeper;
using ::zk2etcd::testing::UniquePath;
using ::zk2etcd::testing::ZooKeeperCClient;
using ::zk2etcd::testing::ZooKeeperOptions;
using ::zk2etcd::testing::ZooKeeperServer;

WatchEvent Event(WatchEventType type, std::string path) {
  return WatchEvent{type, KeeperState::kSyncConnected, std::move(path)};
}

ZkClientOptions Options(const std::string& connect_string,
                        milliseconds timeout = milliseconds(20000)) {
  ZkClientOptions options;
  options.connect_string = connect_string;
  options.session_timeout = timeout;
  return options;
}

std::unique_ptr<ZkClient> Connect(ZkClientOptions options, EventRecorder& recorder) {
  auto client = NewAsioZkClient(std::move(options), recorder.Handlers());
  EXPECT_TRUE(client.ok()) << (client.ok() ? "" : client.error().message);
  if (!client.ok()) return nullptr;
  EXPECT_TRUE(recorder.WaitForSession(SessionEventType::kConnected, seconds(30)));
  return std::move(client).value();
}

// Data and exist watches the server holds, from the `wchs` four-letter command.
int64_t ServerWatchCount(int port) {
  auto reply = ::zk2etcd::testing::TcpExchange(port, "wchs", seconds(5));
  if (!reply.ok()) return -1;
  const size_t at = reply->find("Total watches:");
  if (at == std::string::npos) return -1;
  return std::stoll(reply->substr(at + 14));
}

// Creates `paths` (parents first, as listed) with multis of at most `batch` creates.
void CreateInBatches(ZkClient& client, const std::vector<std::string>& paths, size_t batch) {
  std::mutex mutex;
  std::condition_variable cv;
  size_t outstanding = 0;
  for (size_t i = 0; i < paths.size(); i += batch) {
    std::vector<MultiOp> ops;
    for (size_t j = i; j < std::min(paths.size(), i + batch); ++j) {
      ops.push_back(MultiOp::Create(paths[j], "v"));
    }
    {
      std::lock_guard lock(mutex);
      ++outstanding;
    }
    client.Multi(std::move(ops), [&](ZkResult<MultiReply> r) {
      EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
      std::lock_guard lock(mutex);
      --outstanding;
      cv.notify_all();
    });
  }
  std::unique_lock lock(mutex);
  ASSERT_TRUE(cv.wait_for(lock, seconds(120), [&] { return outstanding == 0; }));
}

TEST(AsioZkClientIntegrationTest, OperationsAgainstARealServer) {
  ZooKeeperServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, SharedZooKeeper());
  const std::string root = UniquePath("ops");
  EventRecorder recorder;
  auto client = Connect(Options(server->address()), recorder);
  ASSERT_TRUE(client);

  auto created = blocking::Create(*client, root, "root-data");
  ASSERT_TRUE(created.ok()) << created.error().message;
  EXPECT_EQ(created->path, root);
  EXPECT_EQ(created->stat.czxid, created->zxid);
  EXPECT_EQ(created->stat.data_length, 9);
  EXPECT_EQ(blocking::Create(*client, root, "").error().code, ZkErrorCode::kNodeExists);

  auto seq = blocking::Create(*client, root + "/s-", "", CreateMode::kPersistentSequential);
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ(seq->path, root + "/s-0000000000");
  auto eph = blocking::Create(*client, root + "/e", "", CreateMode::kEphemeral);
  ASSERT_TRUE(eph.ok());
  EXPECT_EQ(eph->stat.ephemeral_owner, client->session().session_id);
  EXPECT_EQ(blocking::Create(*client, root + "/e/x", "").error().code,
            ZkErrorCode::kNoChildrenForEphemerals);
  auto container = blocking::Create(*client, root + "/c", "", CreateMode::kContainer);
  ASSERT_TRUE(container.ok()) << container.error().message;

  auto data = blocking::GetData(*client, root);
  ASSERT_TRUE(data.ok());
  EXPECT_EQ(data->data, "root-data");
  EXPECT_EQ(data->stat.num_children, 3);
  auto children = blocking::GetChildren(*client, root);
  ASSERT_TRUE(children.ok());
  EXPECT_EQ(std::set<std::string>(children->children.begin(), children->children.end()),
            (std::set<std::string>{"s-0000000000", "e", "c"}));
  EXPECT_EQ(children->stat.cversion, 3);

  auto set = blocking::SetData(*client, root, "v2", 0);
  ASSERT_TRUE(set.ok());
  EXPECT_EQ(set->stat.version, 1);
  EXPECT_EQ(set->stat.mzxid, set->zxid);
  EXPECT_EQ(blocking::SetData(*client, root, "v3", 0).error().code, ZkErrorCode::kBadVersion);

  // NoNode carries the zxid at which the absence was observed: at least the delete's.
  auto deleted = blocking::Delete(*client, root + "/s-0000000000");
  ASSERT_TRUE(deleted.ok());
  auto gone = blocking::GetData(*client, root + "/s-0000000000");
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().code, ZkErrorCode::kNoNode);
  EXPECT_GE(gone.error().zxid, deleted->zxid);
  EXPECT_NE(gone.error().message.find(root + "/s-0000000000"), std::string::npos);
  auto exists = blocking::Exists(*client, root + "/s-0000000000");
  ASSERT_TRUE(exists.ok());
  EXPECT_FALSE(exists->stat.has_value());
  EXPECT_GE(exists->zxid, deleted->zxid);
  EXPECT_EQ(blocking::Delete(*client, root).error().code, ZkErrorCode::kNotEmpty);

  // multi: all or nothing.
  auto multi = blocking::Multi(
      *client, {MultiOp::Create(root + "/m1", "a"), MultiOp::SetData(root + "/m1", "b"),
                MultiOp::Check(root, 1), MultiOp::Delete(root + "/c")});
  ASSERT_TRUE(multi.ok()) << multi.error().message;
  ASSERT_EQ(multi->results.size(), 4u);
  EXPECT_EQ(multi->results[0].path, root + "/m1");
  EXPECT_EQ(multi->results[1].stat.version, 1);
  auto failed = blocking::Multi(
      *client, {MultiOp::Create(root + "/m2", "a"), MultiOp::Delete(root + "/absent")});
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().code, ZkErrorCode::kNoNode);
  EXPECT_NE(failed.error().message.find("operation 1 (delete " + root + "/absent)"),
            std::string::npos)
      << failed.error().message;
  EXPECT_FALSE(blocking::Exists(*client, root + "/m2")->stat.has_value());

  // multi-read (3.6+): several reads, each with its own result, one zxid.
  auto reads = blocking::MultiRead(*client, {ReadOp::GetData(root), ReadOp::GetChildren(root),
                                             ReadOp::GetData(root + "/absent")});
  ASSERT_TRUE(reads.ok()) << reads.error().message;
  ASSERT_EQ(reads->results.size(), 3u);
  EXPECT_EQ(reads->results[0].data, "v2");
  EXPECT_EQ(reads->results[0].stat.version, 1);
  EXPECT_EQ(reads->results[1].children.size(), 2u);
  EXPECT_EQ(reads->results[2].error, ZkErrorCode::kNoNode);
  EXPECT_EQ(reads->results[2].zxid, reads->zxid);

  auto synced = blocking::Sync(*client, root);
  ASSERT_TRUE(synced.ok());
  EXPECT_EQ(synced->path, root);

  // removeWatches: a removed persistent recursive watch sees nothing more.
  ASSERT_TRUE(blocking::Create(*client, root + "/rw", "").ok());
  ASSERT_TRUE(blocking::Create(*client, root + "/pw", "").ok());
  ASSERT_TRUE(blocking::AddWatch(*client, root + "/rw", AddWatchMode::kPersistentRecursive).ok());
  ASSERT_TRUE(blocking::AddWatch(*client, root + "/pw", AddWatchMode::kPersistent).ok());
  // ZooKeeper 3.8 cannot remove persistent watches by type (3.9 can); kAny works on both.
  auto by_type = blocking::RemoveWatches(*client, root + "/rw", WatcherType::kPersistentRecursive);
  if (!by_type.ok()) {
    EXPECT_EQ(by_type.error().code, ZkErrorCode::kUnimplemented) << by_type.error().message;
    auto removed = blocking::RemoveWatches(*client, root + "/rw", WatcherType::kAny);
    ASSERT_TRUE(removed.ok()) << removed.error().ToString();
  }
  EXPECT_EQ(blocking::RemoveWatches(*client, root + "/rw", WatcherType::kAny).error().code,
            ZkErrorCode::kNoWatcher);
  ASSERT_TRUE(blocking::Create(*client, root + "/rw/x", "").ok());
  ASSERT_TRUE(blocking::SetData(*client, root + "/pw", "marker").ok());
  ASSERT_TRUE(recorder.WaitForWatchCount(1, seconds(10)));
  EXPECT_EQ(recorder.watches(),
            (std::vector<WatchEvent>{Event(WatchEventType::kNodeDataChanged, root + "/pw")}));
  client->Close();
}

// 1. A persistent recursive watch sees all of 10,000 changes by another session, in order.
TEST(AsioZkClientIntegrationTest, PersistentRecursiveWatchSeesTenThousandChangesInOrder) {
  ZooKeeperServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, SharedZooKeeper());
  const std::string root = UniquePath("recursive");
  std::unique_ptr<ZooKeeperCClient> other;
  ASSERT_FIXTURE_OK_AND_ASSIGN(other, ZooKeeperCClient::Connect(server->address(), seconds(20)));
  ASSERT_FIXTURE_OK(other->Create(root, ""));

  EventRecorder recorder;
  auto client = Connect(Options(server->address()), recorder);
  ASSERT_TRUE(client);
  ASSERT_TRUE(blocking::AddWatch(*client, root, AddWatchMode::kPersistentRecursive).ok());

  // 2,500 rounds of four changes: a node, a child of it, new data for the child, its delete.
  std::vector<WatchEvent> expected;
  for (int i = 0; i < 2500; ++i) {
    const std::string node = root + "/n" + std::to_string(i);
    const std::string child = node + "/c";
    ASSERT_FIXTURE_OK(other->Create(node, "a"));
    ASSERT_FIXTURE_OK(other->Create(child, "b"));
    ASSERT_FIXTURE_OK(other->Set(child, "c"));
    ASSERT_FIXTURE_OK(other->Delete(child));
    expected.push_back(Event(WatchEventType::kNodeCreated, node));
    expected.push_back(Event(WatchEventType::kNodeCreated, child));
    expected.push_back(Event(WatchEventType::kNodeDataChanged, child));
    expected.push_back(Event(WatchEventType::kNodeDeleted, child));
  }
  ASSERT_EQ(expected.size(), 10000u);
  // A last change marks the end: nothing may come between it and the 10,000.
  ASSERT_FIXTURE_OK(other->Set(root, "end"));
  expected.push_back(Event(WatchEventType::kNodeDataChanged, root));
  ASSERT_TRUE(recorder.WaitForWatchCount(expected.size(), seconds(120)))
      << "got " << recorder.watches().size();
  const auto events = recorder.watches();
  ASSERT_EQ(events.size(), expected.size()) << "none twice";
  for (size_t i = 0; i < expected.size(); ++i) {
    ASSERT_EQ(events[i], expected[i]) << "event " << i;
  }
  client->Close();
}

// 2. kill -9 and restart within the session timeout: same session, ephemerals and watches live.
TEST(AsioZkClientIntegrationTest, Kill9AndRestartKeepsTheSession) {
  std::unique_ptr<ZooKeeperServer> server;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, ZooKeeperServer::Start());
  ASSERT_FIXTURE_OK(server->CreateDigestProtectedNode("/secret", "s3cret", "alice", "pw"));
  EventRecorder recorder;
  ZkClientOptions options = Options(server->address(), milliseconds(30000));
  options.max_reconnect_delay = milliseconds(200);
  SystemClock clock;
  ops::Logger logger(std::make_shared<ops::StderrLogSink>(), ops::LogFormat::kText,
                     ops::LogLevel::kDebug, clock);
  if (std::getenv("ZK_DEBUG_LOG") != nullptr) options.logger = &logger;
  auto client = Connect(options, recorder);
  ASSERT_TRUE(client);
  const int64_t session_id = client->session().session_id;
  ASSERT_NE(session_id, 0);
  ASSERT_TRUE(blocking::AddAuth(*client, "digest", "alice:pw").ok());
  ASSERT_TRUE(blocking::Create(*client, "/k", "").ok());
  ASSERT_TRUE(blocking::Create(*client, "/k/eph", "mine", CreateMode::kEphemeral).ok());
  ASSERT_TRUE(blocking::AddWatch(*client, "/k", AddWatchMode::kPersistentRecursive).ok());

  server->Kill9();
  ASSERT_TRUE(recorder.WaitForSession(SessionEventType::kDisconnected, seconds(20)));
  ASSERT_FIXTURE_OK(server->Restart());
  ASSERT_TRUE(recorder.WaitForSession(SessionEventType::kReconnected, seconds(25)));
  EXPECT_EQ(recorder.LastSession(SessionEventType::kReconnected).session_id, session_id);
  EXPECT_EQ(client->session().session_id, session_id);
  for (const auto& e : recorder.sessions()) {
    EXPECT_NE(e.type, SessionEventType::kExpired);
  }

  std::unique_ptr<ZooKeeperCClient> other;
  ASSERT_FIXTURE_OK_AND_ASSIGN(other, ZooKeeperCClient::Connect(server->address(), seconds(20)));
  std::optional<std::string> eph;
  ASSERT_FIXTURE_OK_AND_ASSIGN(eph, other->Get("/k/eph"));
  EXPECT_EQ(eph, "mine") << "the session's ephemeral survived";
  ASSERT_FIXTURE_OK(other->Create("/k/after", "x"));
  ASSERT_TRUE(recorder.WaitFor(
      [](const auto& watches, const auto&) {
        return std::find(watches.begin(), watches.end(),
                         Event(WatchEventType::kNodeCreated, "/k/after")) != watches.end();
      },
      seconds(20)))
      << "the recursive watch was re-registered";
  auto secret = blocking::GetData(*client, "/secret");
  ASSERT_TRUE(secret.ok()) << "credentials were sent again: " << secret.error().message;
  EXPECT_EQ(secret->data, "s3cret");
  client->Close();
}

// 3. Paused past the session timeout: expiry is reported; a new session can be opened.
TEST(AsioZkClientIntegrationTest, PausedPastTheSessionTimeoutExpiresAndANewSessionOpens) {
  std::unique_ptr<ZooKeeperServer> server;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, ZooKeeperServer::Start());
  EventRecorder recorder;
  auto client = Connect(Options(server->address(), milliseconds(3000)), recorder);
  ASSERT_TRUE(client);
  const int64_t old_session = client->session().session_id;
  ASSERT_TRUE(blocking::Create(*client, "/old-eph", "", CreateMode::kEphemeral).ok());

  server->Pause();
  const auto paused_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(recorder.WaitForSession(SessionEventType::kDisconnected, seconds(20)));
  ASSERT_TRUE(recorder.WaitForSession(SessionEventType::kExpired, seconds(20)));
  const auto expired_after = std::chrono::steady_clock::now() - paused_at;
  EXPECT_GE(expired_after, milliseconds(2000));
  EXPECT_LT(expired_after, seconds(15));
  EXPECT_EQ(recorder.LastSession(SessionEventType::kExpired).session_id, old_session);
  EXPECT_EQ(client->session().state, SessionState::kExpired);
  EXPECT_EQ(blocking::GetData(*client, "/").error().code, ZkErrorCode::kSessionExpired);
  server->Resume();

  // The owner opens a new session (through the factory, as the engine does).
  auto factory = NewAsioZkClientFactory(Options(server->address(), milliseconds(3000)));
  EventRecorder fresh_recorder;
  auto fresh = factory->NewClient(fresh_recorder.Handlers());
  ASSERT_TRUE(fresh.ok());
  ASSERT_TRUE(fresh_recorder.WaitForSession(SessionEventType::kConnected, seconds(30)));
  EXPECT_NE((*fresh)->session().session_id, old_session);
  // The server expires the old session too: its ephemeral goes.
  auto exists = blocking::Exists(**fresh, "/old-eph", /*watch=*/true);
  ASSERT_TRUE(exists.ok());
  if (exists->stat.has_value()) {
    ASSERT_TRUE(fresh_recorder.WaitForWatchCount(1, seconds(30)));
    EXPECT_EQ(fresh_recorder.watches()[0], Event(WatchEventType::kNodeDeleted, "/old-eph"));
  }
  (*fresh)->Close();
  client->Close();
}

// 4. 100,000 one-shot watches survive a reconnect, re-registered in SetWatches2 frames of at
// most 128 KiB; nodes that changed meanwhile fire once, the others stay armed.
TEST(AsioZkClientIntegrationTest, HundredThousandOneShotWatchesSurviveAReconnect) {
  ZooKeeperServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, SharedZooKeeper());
  const std::string root = UniquePath("watches");
  constexpr int kNodes = 100000;
  testing::TcpProxy proxy(server->port());
  EventRecorder recorder;
  ZkClientOptions options = Options(proxy.address(), milliseconds(30000));
  options.max_reconnect_delay = milliseconds(100);
  auto client = Connect(options, recorder);
  ASSERT_TRUE(client);
  auto name = [&](int i) {
    char buffer[32];
    std::snprintf(buffer, sizeof(buffer), "/n%06d", i);
    return root + buffer;
  };
  std::vector<std::string> paths{root};
  for (int i = 0; i < kNodes; ++i) paths.push_back(name(i));
  CreateInBatches(*client, paths, 1000);
  const int64_t watches_before = ServerWatchCount(server->port());

  // A data watch on every node, a child watch on the root, an exist watch on an absent node.
  std::atomic<int> armed{0};
  for (int i = 0; i < kNodes; ++i) {
    client->Exists(name(i), true, [&](ZkResult<ExistsReply> r) {
      EXPECT_TRUE(r.ok() && r->stat.has_value());
      ++armed;
    });
  }
  ASSERT_TRUE(blocking::GetChildren(*client, root, /*watch=*/true).ok());
  ASSERT_FALSE(blocking::Exists(*client, root + "/absent", /*watch=*/true)->stat.has_value());
  ASSERT_EQ(armed.load(), kNodes);
  // `wchs` counts data and exist watches (child watches are kept apart).
  EXPECT_GE(ServerWatchCount(server->port()) - watches_before, kNodes + 1);

  // Cut the connection and change things while the client is away.
  proxy.SetRefuse(true);
  proxy.DropAll();
  ASSERT_TRUE(recorder.WaitForSession(SessionEventType::kDisconnected, seconds(20)));
  std::unique_ptr<ZooKeeperCClient> other;
  ASSERT_FIXTURE_OK_AND_ASSIGN(other, ZooKeeperCClient::Connect(server->address(), seconds(20)));
  ASSERT_FIXTURE_OK(other->Set(name(42), "changed while away"));
  ASSERT_FIXTURE_OK(other->Create(root + "/absent", ""));
  const size_t frames_before = proxy.client_frames().size();
  proxy.SetRefuse(false);
  ASSERT_TRUE(recorder.WaitForSession(SessionEventType::kReconnected, seconds(30)));
  // Requests after the reconnect are answered after every SetWatches2 frame was processed.
  ASSERT_TRUE(blocking::Sync(*client, root).ok());
  ASSERT_TRUE(recorder.WaitForWatchCount(3, seconds(20)));
  auto events = recorder.watches();
  std::sort(events.begin(), events.end(),
            [](const auto& a, const auto& b) { return a.path < b.path; });
  EXPECT_EQ(events, (std::vector<WatchEvent>{
                        Event(WatchEventType::kNodeChildrenChanged, root),
                        Event(WatchEventType::kNodeCreated, root + "/absent"),
                        Event(WatchEventType::kNodeDataChanged, name(42)),
                    }));

  // The frames that re-registered the watches.
  size_t set_watches_frames = 0;
  size_t set_watches_bytes = 0;
  const auto frames = proxy.client_frames();
  for (size_t i = frames_before; i < frames.size(); ++i) {
    if (frames[i].type != static_cast<int32_t>(proto::OpCode::kSetWatches2)) continue;
    ++set_watches_frames;
    set_watches_bytes += frames[i].bytes;
    EXPECT_LE(frames[i].bytes, 128u * 1024);
  }
  size_t largest = 0;
  for (size_t i = frames_before; i < frames.size(); ++i) {
    if (frames[i].type == static_cast<int32_t>(proto::OpCode::kSetWatches2)) {
      largest = std::max(largest, frames[i].bytes);
    }
  }
  std::printf("SetWatches2 after reconnect: %zu frames, %zu bytes in all, largest %zu bytes\n",
              set_watches_frames, set_watches_bytes, largest);
  EXPECT_GE(set_watches_frames, 10u);
  EXPECT_GE(set_watches_bytes, static_cast<size_t>(kNodes) * 20);
  EXPECT_GE(ServerWatchCount(server->port()) - watches_before, kNodes - 1)
      << "the unchanged nodes' watches are armed again on the server";

  // A node that did not change while away still fires, once.
  ASSERT_FIXTURE_OK(other->Set(name(77777), "after"));
  ASSERT_FIXTURE_OK(other->Set(name(77777), "again"));
  ASSERT_FIXTURE_OK(other->Set(name(42), "not watched any more"));
  ASSERT_TRUE(recorder.WaitForWatchCount(4, seconds(20)));
  ASSERT_TRUE(blocking::Sync(*client, root).ok());
  events = recorder.watches();
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[3], Event(WatchEventType::kNodeDataChanged, name(77777)));
  client->Close();
}

// 5. Chroot, and a digest-protected node readable only after auth.
TEST(AsioZkClientIntegrationTest, ChrootAndDigestAuth) {
  ZooKeeperServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, SharedZooKeeper());
  const std::string chroot = UniquePath("chroot");
  std::unique_ptr<ZooKeeperCClient> other;
  ASSERT_FIXTURE_OK_AND_ASSIGN(other, ZooKeeperCClient::Connect(server->address(), seconds(20)));
  ASSERT_FIXTURE_OK(other->Create(chroot, ""));
  ASSERT_FIXTURE_OK(server->CreateDigestProtectedNode(chroot + "/secret", "s3cret", "alice", "pw"));

  EventRecorder recorder;
  auto client = Connect(Options(server->address() + chroot), recorder);
  ASSERT_TRUE(client);
  ASSERT_TRUE(blocking::AddWatch(*client, "/", AddWatchMode::kPersistentRecursive).ok());
  auto created = blocking::Create(*client, "/a", "in chroot");
  ASSERT_TRUE(created.ok()) << created.error().message;
  EXPECT_EQ(created->path, "/a");
  std::optional<std::string> seen;
  ASSERT_FIXTURE_OK_AND_ASSIGN(seen, other->Get(chroot + "/a"));
  EXPECT_EQ(seen, "in chroot");
  auto seq = blocking::Create(*client, "/q-", "", CreateMode::kPersistentSequential);
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ(seq->path.rfind("/q-", 0), 0u) << seq->path;
  ASSERT_FIXTURE_OK(other->Create(chroot + "/b", ""));
  auto children = blocking::GetChildren(*client, "/");
  ASSERT_TRUE(children.ok());
  EXPECT_EQ(children->children.size(), 4u);  // secret, a, q-..., b
  EXPECT_EQ(blocking::Sync(*client, "/a")->path, "/a");
  auto root_data = blocking::GetData(*client, "/");
  EXPECT_TRUE(root_data.ok()) << "\"/\" is the chroot itself";
  ASSERT_TRUE(recorder.WaitForWatchCount(3, seconds(10)));
  const auto events = recorder.watches();
  EXPECT_EQ(events[0], Event(WatchEventType::kNodeCreated, "/a"));
  EXPECT_EQ(events[1], Event(WatchEventType::kNodeCreated, seq->path));
  EXPECT_EQ(events[2], Event(WatchEventType::kNodeCreated, "/b"));

  auto denied = blocking::GetData(*client, "/secret");
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.error().code, ZkErrorCode::kNoAuth);
  EXPECT_NE(denied.error().message.find("/secret"), std::string::npos);
  ASSERT_TRUE(blocking::AddAuth(*client, "digest", "alice:pw").ok());
  auto allowed = blocking::GetData(*client, "/secret");
  ASSERT_TRUE(allowed.ok()) << allowed.error().message;
  EXPECT_EQ(allowed->data, "s3cret");
  client->Close();

  // Credentials given up front are used from the first request on.
  ZkClientOptions with_auth = Options(server->address() + chroot);
  with_auth.auth = {{"digest", "alice:pw"}};
  EventRecorder second_recorder;
  auto second = Connect(with_auth, second_recorder);
  ASSERT_TRUE(second);
  EXPECT_EQ(blocking::GetData(*second, "/secret")->data, "s3cret");
  second->Close();

  // A factory's client of one named server (a walk's second session) keeps the factory's chroot
  // and credentials.
  auto factory = NewAsioZkClientFactory(with_auth);
  EventRecorder third_recorder;
  auto third = factory->NewClientOf(server->address(), third_recorder.Handlers());
  ASSERT_TRUE(third.ok()) << third.error().message;
  ASSERT_TRUE(third_recorder.WaitForSession(SessionEventType::kConnected, seconds(30)));
  EXPECT_EQ((*third)->session().server, server->address());
  auto through_third = blocking::GetData(**third, "/secret");
  ASSERT_TRUE(through_third.ok()) << through_third.error().message;
  EXPECT_EQ(through_third->data, "s3cret");
  (*third)->Close();
}

// 6. A fake server that answers the connect with an oversized frame: the client closes that
// connection with a clear error and goes on to the real server listed second.
TEST(AsioZkClientIntegrationTest, MalformedFrameFromAFakeServerThenTheRealOne) {
  ZooKeeperServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, SharedZooKeeper());
  std::atomic<bool> closed_by_client{false};
  testing::ScriptedServer fake([&](testing::ScriptedConnection& c, int) {
    c.ReadFrame();
    c.Write(
        std::string("\x7f\xff\xff\xf0"
                    "not a zookeeper",
                    19));
    closed_by_client = c.WaitForClose(seconds(10));
  });
  auto sink = std::make_shared<ops::MemoryLogSink>();
  SystemClock clock;
  ops::Logger logger(sink, ops::LogFormat::kJson, ops::LogLevel::kInfo, clock);
  ZkClientOptions options = Options(fake.address() + "," + server->address());
  options.random = [] { return uint64_t{0}; };  // the fake first
  options.logger = &logger;
  EventRecorder recorder;
  auto client = Connect(options, recorder);
  ASSERT_TRUE(client);
  EXPECT_EQ(recorder.LastSession(SessionEventType::kConnected).server, server->address());
  EXPECT_EQ(fake.connections(), 1);
  const std::string error = client->session().last_error;
  EXPECT_NE(error.find("bad frame from " + fake.address()), std::string::npos) << error;
  EXPECT_NE(error.find("exceeds the limit"), std::string::npos) << error;
  bool logged = false;
  for (const auto& line : sink->Lines()) {
    logged |= line.find("exceeds the limit") != std::string::npos &&
              line.find("\"level\":\"warn\"") != std::string::npos;
  }
  EXPECT_TRUE(logged);
  EXPECT_TRUE(blocking::Exists(*client, "/").ok());
  client->Close();
  EXPECT_TRUE(closed_by_client);
}

// Successive sessions of one ensemble in one outage (`sync` opens a new one after each session
// timeout) share ZkClientOptions::outage_warned: the outage is one warning, not one per session
// (the others' first failed attempts are debug lines); a session that connects clears it.
TEST(AsioZkClientIntegrationTest, SessionsOfOneEnsembleWarnOnceAnOutage) {
  ZooKeeperServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, SharedZooKeeper());
  int dead_port = 0;
  ASSERT_FIXTURE_OK_AND_ASSIGN(dead_port, ::zk2etcd::testing::PickFreePort());
  auto sink = std::make_shared<ops::MemoryLogSink>();
  SystemClock clock;
  ops::Logger logger(sink, ops::LogFormat::kText, ops::LogLevel::kDebug, clock);
  ZkClientOptions dead = Options("127.0.0.1:" + std::to_string(dead_port));
  dead.logger = &logger;
  dead.outage_warned = std::make_shared<std::atomic<bool>>(false);
  const auto count = [&](const std::string& text) {
    size_t n = 0;
    for (const std::string& line : sink->Lines()) n += line.find(text) != std::string::npos;
    return n;
  };
  const std::string first_attempt = "zookeeper connection attempt failed server=";
  for (size_t session = 1; session <= 3; ++session) {
    EventRecorder recorder;
    auto client = NewAsioZkClient(dead, recorder.Handlers());
    ASSERT_TRUE(client.ok());
    const auto deadline = std::chrono::steady_clock::now() + seconds(10);
    while (count(first_attempt) < session && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(10));
    }
    (*client)->Close();
  }
  EXPECT_EQ(count(first_attempt), 3u);
  EXPECT_EQ(count("WARN zookeeper connection attempt failed"), 1u);
  EXPECT_EQ(count("DEBUG zookeeper connection attempt failed server="), 2u);
  EXPECT_TRUE(dead.outage_warned->load());

  ZkClientOptions live = Options(server->address());
  live.logger = &logger;
  live.outage_warned = dead.outage_warned;
  EventRecorder recorder;
  auto client = Connect(live, recorder);
  ASSERT_TRUE(client);
  EXPECT_FALSE(dead.outage_warned->load());
  client->Close();
}

// 6b. What a new session sends behind its handshake (reads, a watch registration) a real server
// answers once the session is set up: the requests wait in the client while a first server takes
// them and ends the connection unanswered, so that all of them go behind the real server's
// handshake.
TEST(AsioZkClientIntegrationTest, ARealServerAnswersWhatANewSessionSentBehindItsHandshake) {
  ZooKeeperServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, SharedZooKeeper());
  const std::string root = UniquePath("behind-handshake");
  std::unique_ptr<ZooKeeperCClient> other;
  ASSERT_FIXTURE_OK_AND_ASSIGN(other, ZooKeeperCClient::Connect(server->address(), seconds(20)));
  ASSERT_FIXTURE_OK(other->Create(root, "root-data"));
  ASSERT_FIXTURE_OK(other->Create(root + "/a", "a-data"));
  std::mutex mutex;
  std::vector<int32_t> taken_by_the_first;
  std::promise<void> asked;
  std::shared_future<void> all_asked = asked.get_future().share();
  testing::ScriptedServer first([&](testing::ScriptedConnection& c, int) {
    if (!c.ReadFrame()) return;
    all_asked.wait_for(seconds(10));  // bounded: a test that failed early does not hang
    const auto behind = c.ReadArriving();
    std::lock_guard lock(mutex);
    taken_by_the_first = testing::TypesOf(behind);
  });
  ZkClientOptions options = Options(first.address() + "," + server->address());
  options.random = [] { return uint64_t{0}; };  // the first server first
  EventRecorder recorder;
  auto created = NewAsioZkClient(options, recorder.Handlers());
  ASSERT_TRUE(created.ok());
  std::unique_ptr<ZkClient> client = std::move(created).value();
  std::promise<ZkResult<Ack>> watch;
  std::promise<ZkResult<MultiReadReply>> read;
  std::promise<ZkResult<ExistsReply>> missing;
  client->AddWatch(root, AddWatchMode::kPersistentRecursive,
                   [&](ZkResult<Ack> r) { watch.set_value(std::move(r)); });
  client->MultiRead({ReadOp::GetData(root), ReadOp::GetChildren(root)},
                    [&](ZkResult<MultiReadReply> r) { read.set_value(std::move(r)); });
  client->Exists(root + "/b", false,
                 [&](ZkResult<ExistsReply> r) { missing.set_value(std::move(r)); });
  asked.set_value();
  auto watched = watch.get_future().get();
  ASSERT_TRUE(watched.ok()) << watched.error().message;
  auto reply = read.get_future().get();
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  ASSERT_EQ(reply->results.size(), 2u);
  EXPECT_EQ(reply->results[0].data, "root-data");
  EXPECT_EQ(reply->results[1].children, (std::vector<std::string>{"a"}));
  auto absent = missing.get_future().get();
  ASSERT_TRUE(absent.ok()) << absent.error().message;
  EXPECT_FALSE(absent->stat.has_value());
  EXPECT_EQ(recorder.LastSession(SessionEventType::kConnected).server, server->address());
  // The watch registered behind the handshake is the session's: it sees a change.
  ASSERT_FIXTURE_OK(other->Create(root + "/b", "b-data"));
  ASSERT_TRUE(recorder.WaitForWatchCount(1, seconds(20)));
  EXPECT_EQ(recorder.watches()[0], Event(WatchEventType::kNodeCreated, root + "/b"));
  client->Close();
  std::lock_guard lock(mutex);
  EXPECT_EQ(taken_by_the_first,
            (std::vector<int32_t>{static_cast<int32_t>(proto::OpCode::kAddWatch),
                                  static_cast<int32_t>(proto::OpCode::kMultiRead),
                                  static_cast<int32_t>(proto::OpCode::kExists)}))
      << "the requests went behind the first server's handshake too";
}

// 7. A refused multi names its failed operation by index; GetAcl returns the ACL as the server
// stores it ("auth" replaced by the session's digest identity).
TEST(AsioZkClientIntegrationTest, FailedOpIndexAndGetAcl) {
  ZooKeeperServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, SharedZooKeeper());
  const std::string root = UniquePath("acl");
  EventRecorder recorder;
  auto client = Connect(Options(server->address()), recorder);
  ASSERT_TRUE(client);
  ASSERT_TRUE(blocking::Create(*client, root, "").ok());

  auto failed =
      blocking::Multi(*client, {MultiOp::Create(root + "/a", ""), MultiOp::Check(root, 0),
                                MultiOp::SetData(root, "x", 7), MultiOp::Delete(root + "/absent")});
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().code, ZkErrorCode::kBadVersion);
  EXPECT_EQ(failed.error().failed_op, 2);
  EXPECT_NE(failed.error().message.find("operation 2 (set " + root + ")"), std::string::npos)
      << failed.error().message;
  auto first = blocking::Multi(*client, {MultiOp::Delete(root + "/absent")});
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(first.error().code, ZkErrorCode::kNoNode);
  EXPECT_EQ(first.error().failed_op, 0);
  EXPECT_EQ(blocking::GetData(*client, root + "/absent").error().failed_op, -1);

  const std::vector<Acl> read_only = {Acl{kPermRead, "world", "anyone"}};
  auto created = blocking::Create(*client, root + "/ro", "d", CreateMode::kPersistent, read_only);
  ASSERT_TRUE(created.ok()) << created.error().message;
  auto acl = blocking::GetAcl(*client, root + "/ro");
  ASSERT_TRUE(acl.ok()) << acl.error().message;
  EXPECT_EQ(acl->acl, read_only);
  EXPECT_EQ(acl->stat, created->stat);
  EXPECT_GE(acl->zxid, created->zxid);
  EXPECT_EQ(blocking::GetAcl(*client, root)->acl, OpenAclUnsafe());

  ASSERT_TRUE(blocking::AddAuth(*client, "digest", "alice:pw").ok());
  MultiOp creator = MultiOp::Create(root + "/mine", "");
  creator.acl = CreatorAllAcl();
  ASSERT_TRUE(blocking::Multi(*client, {creator}).ok());
  auto mine = blocking::GetAcl(*client, root + "/mine");
  ASSERT_TRUE(mine.ok()) << mine.error().message;
  ASSERT_EQ(mine->acl.size(), 1u);
  EXPECT_EQ(mine->acl[0].perms, kPermAll);
  EXPECT_EQ(mine->acl[0].scheme, "digest");
  EXPECT_EQ(mine->acl[0].id.rfind("alice:", 0), 0u) << mine->acl[0].id;

  auto missing = blocking::GetAcl(*client, root + "/absent");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ZkErrorCode::kNoNode);
  EXPECT_GE(missing.error().zxid, created->zxid);
  EXPECT_NE(missing.error().message.find("get_acl " + root + "/absent"), std::string::npos);
  client->Close();
}

// 8. Node kinds from the Stat the server returns (it hides the container marker: ephemeralOwner
// is 0); TTL creates on a server with extended types off (ZooKeeper's default) are refused with
// Unimplemented, and Create refuses TTL modes without the network.
TEST(AsioZkClientIntegrationTest, NodeKindsAndTtlCreatesWithoutExtendedTypes) {
  ZooKeeperServer* server = nullptr;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, SharedZooKeeper());
  const std::string root = UniquePath("kinds");
  EventRecorder recorder;
  auto client = Connect(Options(server->address()), recorder);
  ASSERT_TRUE(client);
  auto persistent = blocking::Create(*client, root, "");
  auto ephemeral = blocking::Create(*client, root + "/e", "", CreateMode::kEphemeral);
  auto container = blocking::Create(*client, root + "/c", "", CreateMode::kContainer);
  ASSERT_TRUE(persistent.ok() && ephemeral.ok() && container.ok());
  EXPECT_EQ(NodeKindOf(persistent->stat), NodeKind::kPersistent);
  EXPECT_EQ(NodeKindOf(ephemeral->stat), NodeKind::kEphemeral);
  EXPECT_EQ(ephemeral->stat.ephemeral_owner, client->session().session_id);
  EXPECT_EQ(container->stat.ephemeral_owner, 0);
  EXPECT_EQ(NodeKindOf(container->stat), NodeKind::kPersistent);
  EXPECT_EQ(blocking::Exists(*client, root + "/c")->stat->ephemeral_owner, 0);
  EXPECT_EQ(blocking::GetData(*client, root + "/c")->stat.ephemeral_owner, 0);

  auto plain = blocking::Create(*client, root + "/t", "", CreateMode::kPersistentWithTtl);
  ASSERT_FALSE(plain.ok());
  EXPECT_EQ(plain.error().code, ZkErrorCode::kInvalidArgument);
  EXPECT_EQ(plain.error().zxid, -1) << "refused without asking the server";

  MultiOp ttl = MultiOp::Create(root + "/t", "", CreateMode::kPersistentWithTtl);
  ttl.ttl_ms = 60000;
  auto refused = blocking::Multi(*client, {MultiOp::Create(root + "/before", ""), ttl});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ZkErrorCode::kUnimplemented) << refused.error().ToString();
  EXPECT_EQ(refused.error().failed_op, 1);
  EXPECT_FALSE(blocking::Exists(*client, root + "/before")->stat.has_value());
  client->Close();
}

// 9. With zookeeper.extendedTypesEnabled=true: TTL nodes through a multi's createTTL; the server
// checks the TTL's range, and hides the TTL marker (ephemeralOwner 0) as the container's.
TEST(AsioZkClientIntegrationTest, TtlNodesWithExtendedTypes) {
  ZooKeeperOptions zk_options;
  zk_options.extended_types = true;
  std::unique_ptr<ZooKeeperServer> server;
  ASSERT_FIXTURE_OK_AND_ASSIGN(server, ZooKeeperServer::Start(zk_options));
  EventRecorder recorder;
  auto client = Connect(Options(server->address()), recorder);
  ASSERT_TRUE(client);
  ASSERT_TRUE(blocking::Create(*client, "/ttl", "").ok());

  MultiOp ttl = MultiOp::Create("/ttl/a", "data", CreateMode::kPersistentWithTtl);
  ttl.ttl_ms = 3600000;
  MultiOp sequential = MultiOp::Create("/ttl/s-", "", CreateMode::kPersistentSequentialWithTtl);
  sequential.ttl_ms = kMaxTtlMs;
  auto created = blocking::Multi(*client, {ttl, sequential});
  ASSERT_TRUE(created.ok()) << created.error().ToString();
  ASSERT_EQ(created->results.size(), 2u);
  EXPECT_EQ(created->results[0].path, "/ttl/a");
  EXPECT_EQ(created->results[1].path, "/ttl/s-0000000001");
  EXPECT_EQ(created->results[0].stat.ephemeral_owner, 0);
  EXPECT_EQ(created->results[1].stat.ephemeral_owner, 0);
  auto read = blocking::GetData(*client, "/ttl/s-0000000001");
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->stat.ephemeral_owner, 0);
  EXPECT_EQ(NodeKindOf(read->stat), NodeKind::kPersistent);
  EXPECT_EQ(TtlOf(read->stat), 0);
  auto exists = blocking::Exists(*client, "/ttl/a");
  ASSERT_TRUE(exists.ok() && exists->stat.has_value());
  EXPECT_EQ(exists->stat->ephemeral_owner, 0);
  EXPECT_EQ(blocking::GetData(*client, "/ttl/a")->data, "data");
  EXPECT_TRUE(blocking::Create(*client, "/ttl/a/child", "").ok()) << "TTL nodes may have children";

  // Extended types change nothing for containers and ephemerals.
  auto container = blocking::Create(*client, "/ttl/c", "", CreateMode::kContainer);
  auto ephemeral = blocking::Create(*client, "/ttl/e", "", CreateMode::kEphemeral);
  ASSERT_TRUE(container.ok() && ephemeral.ok());
  EXPECT_EQ(container->stat.ephemeral_owner, 0);
  EXPECT_EQ(NodeKindOf(ephemeral->stat), NodeKind::kEphemeral);
  EXPECT_EQ(ephemeral->stat.ephemeral_owner, client->session().session_id);

  for (int64_t bad : {int64_t{0}, kMaxTtlMs + 1}) {
    MultiOp out_of_range = MultiOp::Create("/ttl/bad", "", CreateMode::kPersistentWithTtl);
    out_of_range.ttl_ms = bad;
    auto refused = blocking::Multi(*client, {MultiOp::Check("/ttl", -1), out_of_range});
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().code, ZkErrorCode::kInvalidArgument)
        << bad << ": " << refused.error().ToString();
    EXPECT_EQ(refused.error().failed_op, 1);
  }
  client->Close();
}

}  // namespace
}  // namespace zk2etcd::zk
