#include "zk/fake_zk_client.h"

#include <gtest/gtest.h>

#include <thread>

namespace zk2etcd::zk {
namespace {

// Collects events; used with manual delivery (single-threaded).
struct Recorder {
  std::vector<WatchEvent> watches;
  std::vector<SessionEvent> sessions;
  ZkEventHandlers Handlers() {
    return ZkEventHandlers{[this](const WatchEvent& e) { watches.push_back(e); },
                           [this](const SessionEvent& e) { sessions.push_back(e); }};
  }
};

WatchEvent Event(WatchEventType type, std::string path) {
  return WatchEvent{type, KeeperState::kSyncConnected, std::move(path)};
}

// Runs an operation on a manual-delivery client and returns its result.
template <typename T, typename Start>
ZkResult<T> Await(FakeZkClient& client, Start start) {
  std::optional<ZkResult<T>> out;
  start([&out](ZkResult<T> r) { out.emplace(std::move(r)); });
  client.RunPending();
  EXPECT_TRUE(out.has_value());
  return std::move(*out);
}

class FakeZkClientTest : public ::testing::Test {
 protected:
  std::unique_ptr<FakeZkClient> Client(Recorder& recorder, std::string chroot = "") {
    FakeZkClientOptions options;
    options.manual_delivery = true;
    options.chroot = std::move(chroot);
    auto client = server_->NewClient(recorder.Handlers(), options);
    client->RunPending();
    return client;
  }
  ZkResult<CreateReply> Create(FakeZkClient& c, std::string path, std::string data = "",
                               CreateMode mode = CreateMode::kPersistent) {
    return Await<CreateReply>(
        c, [&](auto done) { c.Create(path, data, mode, OpenAclUnsafe(), std::move(done)); });
  }
  ZkResult<GetDataReply> Get(FakeZkClient& c, std::string path, bool watch = false) {
    return Await<GetDataReply>(c, [&](auto done) { c.GetData(path, watch, std::move(done)); });
  }
  ZkResult<SetDataReply> Set(FakeZkClient& c, std::string path, std::string data) {
    return Await<SetDataReply>(c, [&](auto done) { c.SetData(path, data, -1, std::move(done)); });
  }
  ZkResult<Ack> Delete(FakeZkClient& c, std::string path, int32_t version = -1) {
    return Await<Ack>(c, [&](auto done) { c.Delete(path, version, std::move(done)); });
  }
  ZkResult<MultiReply> Multi(FakeZkClient& c, std::vector<MultiOp> ops) {
    return Await<MultiReply>(c, [&](auto done) { c.Multi(std::move(ops), std::move(done)); });
  }
  ZkResult<GetAclReply> GetAcl(FakeZkClient& c, std::string path) {
    return Await<GetAclReply>(c, [&](auto done) { c.GetAcl(path, std::move(done)); });
  }
  ZkResult<Ack> Watch(FakeZkClient& c, std::string path, AddWatchMode mode) {
    return Await<Ack>(c, [&](auto done) { c.AddWatch(path, mode, std::move(done)); });
  }

  FakeClock clock_;
  std::shared_ptr<FakeZkServer> server_ = FakeZkServer::Create(&clock_);
};

TEST_F(FakeZkClientTest, ZxidsAndStatsFollowZooKeeper) {
  Recorder r;
  auto c = Client(r);
  ASSERT_EQ(r.sessions.size(), 1u);
  EXPECT_EQ(r.sessions[0].type, SessionEventType::kConnected);
  const int64_t z0 = server_->zxid();

  auto a = Create(*c, "/a", "x");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->zxid, z0 + 1);
  EXPECT_EQ(a->stat.czxid, z0 + 1);
  EXPECT_EQ(a->stat.mzxid, z0 + 1);
  EXPECT_EQ(a->stat.pzxid, z0 + 1);
  EXPECT_EQ(a->stat.data_length, 1);
  ASSERT_TRUE(Create(*c, "/a/b", "yy").ok());
  auto set = Set(*c, "/a/b", "zzz");
  ASSERT_TRUE(set.ok());
  EXPECT_EQ(set->stat.version, 1);
  EXPECT_EQ(set->stat.czxid, z0 + 2);
  EXPECT_EQ(set->stat.mzxid, z0 + 3);
  EXPECT_EQ(set->zxid, z0 + 3);

  auto parent = Get(*c, "/a");
  ASSERT_TRUE(parent.ok());
  EXPECT_EQ(parent->stat.num_children, 1);
  EXPECT_EQ(parent->stat.cversion, 1);
  EXPECT_EQ(parent->stat.pzxid, z0 + 2);
  EXPECT_EQ(parent->zxid, z0 + 3) << "reads carry the current zxid";

  auto missing = Get(*c, "/nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ZkErrorCode::kNoNode);
  EXPECT_EQ(missing.error().zxid, z0 + 3) << "NoNode carries the zxid of the observation";
  EXPECT_EQ(missing.error().message, "get /nope: no node");

  EXPECT_EQ(Delete(*c, "/a").error().code, ZkErrorCode::kNotEmpty);
  EXPECT_EQ(Delete(*c, "/a/b", 7).error().code, ZkErrorCode::kBadVersion);
  ASSERT_TRUE(Delete(*c, "/a/b", 1).ok());
  EXPECT_EQ(server_->GetNode("/a")->stat.pzxid, z0 + 4);
  EXPECT_EQ(server_->GetNode("/a")->stat.cversion, 2);
  EXPECT_EQ(Create(*c, "/a", "").error().code, ZkErrorCode::kNodeExists);
  EXPECT_EQ(Create(*c, "/x/y", "").error().code, ZkErrorCode::kNoNode);
  EXPECT_EQ(server_->zxid(), z0 + 4) << "failed writes take no zxid here";
}

TEST_F(FakeZkClientTest, SequentialNodesUseTheParentsChildVersion) {
  Recorder r;
  auto c = Client(r);
  ASSERT_TRUE(Create(*c, "/q").ok());
  EXPECT_EQ(Create(*c, "/q/", "", CreateMode::kPersistentSequential)->path, "/q/0000000000");
  EXPECT_EQ(Create(*c, "/q/n-", "", CreateMode::kPersistentSequential)->path, "/q/n-0000000001");
  ASSERT_TRUE(Delete(*c, "/q/0000000000").ok());
  EXPECT_EQ(Create(*c, "/q/n-", "", CreateMode::kEphemeralSequential)->path, "/q/n-0000000003");
}

TEST_F(FakeZkClientTest, EphemeralsGoWithTheirSession) {
  Recorder ra, rb;
  auto a = Client(ra);
  auto b = Client(rb);
  ASSERT_TRUE(Create(*a, "/e", "", CreateMode::kEphemeral).ok());
  EXPECT_EQ(server_->GetNode("/e")->stat.ephemeral_owner, a->session_id());
  EXPECT_EQ(Create(*a, "/e/child").error().code, ZkErrorCode::kNoChildrenForEphemerals);
  ASSERT_TRUE(Watch(*b, "/", AddWatchMode::kPersistentRecursive).ok());
  a->Close();
  a->RunPending();
  ASSERT_FALSE(ra.sessions.empty());
  EXPECT_EQ(ra.sessions.back().type, SessionEventType::kClosed);
  EXPECT_FALSE(server_->GetNode("/e"));
  b->RunPending();
  EXPECT_EQ(rb.watches, (std::vector<WatchEvent>{Event(WatchEventType::kNodeDeleted, "/e")}));
  EXPECT_EQ(Get(*a, "/").error().code, ZkErrorCode::kClosed);
}

TEST_F(FakeZkClientTest, PersistentRecursiveWatchSeesTheSubtreeInOrder) {
  Recorder ra, rb;
  auto a = Client(ra);
  auto b = Client(rb);
  ASSERT_TRUE(Create(*a, "/r").ok());
  ASSERT_TRUE(Watch(*b, "/r", AddWatchMode::kPersistentRecursive).ok());
  ASSERT_TRUE(Create(*a, "/r/a", "1").ok());
  ASSERT_TRUE(Create(*a, "/r/a/b", "2").ok());
  ASSERT_TRUE(Set(*a, "/r/a/b", "3").ok());
  ASSERT_TRUE(Set(*a, "/r/a/b", "4").ok());
  ASSERT_TRUE(Delete(*a, "/r/a/b").ok());
  ASSERT_TRUE(Create(*a, "/rx").ok()) << "outside the subtree (no path boundary)";
  ASSERT_TRUE(Set(*a, "/r", "root").ok());
  b->RunPending();
  EXPECT_EQ(rb.watches, (std::vector<WatchEvent>{
                            Event(WatchEventType::kNodeCreated, "/r/a"),
                            Event(WatchEventType::kNodeCreated, "/r/a/b"),
                            Event(WatchEventType::kNodeDataChanged, "/r/a/b"),
                            Event(WatchEventType::kNodeDataChanged, "/r/a/b"),
                            Event(WatchEventType::kNodeDeleted, "/r/a/b"),
                            Event(WatchEventType::kNodeDataChanged, "/r"),
                        }));
  EXPECT_TRUE(ra.watches.empty());
}

TEST_F(FakeZkClientTest, OneShotWatchesFireOnceAndPersistentOnesKeepFiring) {
  Recorder r;
  auto c = Client(r);
  ASSERT_TRUE(Create(*c, "/w").ok());
  ASSERT_TRUE(Create(*c, "/p").ok());
  ASSERT_TRUE(Get(*c, "/w", /*watch=*/true).ok());
  auto exists = Await<ExistsReply>(*c, [&](auto done) { c->Exists("/n", true, std::move(done)); });
  ASSERT_TRUE(exists.ok());
  EXPECT_FALSE(exists->stat.has_value());
  ASSERT_TRUE(Await<ChildrenReply>(*c, [&](auto done) {
                c->GetChildren("/w", true, std::move(done));
              }).ok());
  ASSERT_TRUE(Watch(*c, "/p", AddWatchMode::kPersistent).ok());
  EXPECT_EQ(server_->WatchCount(c->session_id()), 4u);

  ASSERT_TRUE(Set(*c, "/w", "1").ok());
  ASSERT_TRUE(Set(*c, "/w", "2").ok());
  ASSERT_TRUE(Create(*c, "/n").ok());
  ASSERT_TRUE(Create(*c, "/w/kid").ok());
  ASSERT_TRUE(Create(*c, "/w/kid2").ok());
  ASSERT_TRUE(Set(*c, "/p", "1").ok());
  ASSERT_TRUE(Create(*c, "/p/kid").ok());
  ASSERT_TRUE(Set(*c, "/p", "2").ok());
  ASSERT_TRUE(Create(*c, "/p/kid/grandkid").ok()) << "not seen by a non-recursive watch";
  EXPECT_EQ(r.watches, (std::vector<WatchEvent>{
                           Event(WatchEventType::kNodeDataChanged, "/w"),
                           Event(WatchEventType::kNodeCreated, "/n"),
                           Event(WatchEventType::kNodeChildrenChanged, "/w"),
                           Event(WatchEventType::kNodeDataChanged, "/p"),
                           Event(WatchEventType::kNodeChildrenChanged, "/p"),
                           Event(WatchEventType::kNodeDataChanged, "/p"),
                       }));
  EXPECT_EQ(server_->WatchCount(c->session_id()), 1u);
}

TEST_F(FakeZkClientTest, WatchEventComesBeforeTheReplyOfTheWriteThatFiredIt) {
  std::vector<std::string> order;
  FakeZkClientOptions options;
  options.manual_delivery = true;
  auto c = server_->NewClient(
      ZkEventHandlers{[&](const WatchEvent& e) { order.push_back("event " + e.path); }, nullptr},
      options);
  ASSERT_TRUE(Watch(*c, "/", AddWatchMode::kPersistentRecursive).ok());
  c->Create("/k", "", CreateMode::kPersistent, OpenAclUnsafe(),
            [&](auto) { order.push_back("reply"); });
  c->RunPending();
  EXPECT_EQ(order, (std::vector<std::string>{"event /k", "reply"}));
}

TEST_F(FakeZkClientTest, OverlappingWatchesGiveOneEventPerChange) {
  Recorder r;
  auto c = Client(r);
  ASSERT_TRUE(Create(*c, "/o").ok());
  ASSERT_TRUE(Create(*c, "/o/x").ok());
  ASSERT_TRUE(Watch(*c, "/o", AddWatchMode::kPersistentRecursive).ok());
  ASSERT_TRUE(Watch(*c, "/o/x", AddWatchMode::kPersistent).ok());
  ASSERT_TRUE(Get(*c, "/o/x", true).ok());
  ASSERT_TRUE(Set(*c, "/o/x", "v").ok());
  EXPECT_EQ(r.watches, (std::vector<WatchEvent>{Event(WatchEventType::kNodeDataChanged, "/o/x")}));
}

TEST_F(FakeZkClientTest, MultiIsAtomicAndTakesOneZxid) {
  Recorder r;
  auto c = Client(r);
  ASSERT_TRUE(Create(*c, "/m").ok());
  const int64_t before = server_->zxid();
  auto failed = Await<MultiReply>(*c, [&](auto done) {
    c->Multi({MultiOp::Create("/m/a", "1"), MultiOp::Create("/m/a", "2")}, std::move(done));
  });
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().code, ZkErrorCode::kNodeExists);
  EXPECT_NE(failed.error().message.find("operation 1 (create /m/a)"), std::string::npos)
      << failed.error().message;
  EXPECT_FALSE(server_->GetNode("/m/a")) << "nothing of a failed multi is applied";
  EXPECT_EQ(server_->zxid(), before);

  auto ok = Await<MultiReply>(*c, [&](auto done) {
    c->Multi({MultiOp::Create("/m/a", "1"), MultiOp::SetData("/m/a", "2"), MultiOp::Check("/m", 0),
              MultiOp::Create("/m/b", "")},
             std::move(done));
  });
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->zxid, before + 1);
  ASSERT_EQ(ok->results.size(), 4u);
  EXPECT_EQ(ok->results[0].path, "/m/a");
  EXPECT_EQ(ok->results[1].stat.version, 1);
  EXPECT_EQ(server_->GetNode("/m/a")->data, "2");
  EXPECT_EQ(server_->GetNode("/m/b")->stat.czxid, before + 1);
}

TEST_F(FakeZkClientTest, MultiReadGivesEachReadItsOwnResult) {
  Recorder r;
  auto c = Client(r);
  ASSERT_TRUE(Create(*c, "/mr", "root").ok());
  ASSERT_TRUE(Create(*c, "/mr/a", "A").ok());
  auto reply = Await<MultiReadReply>(*c, [&](auto done) {
    c->MultiRead({ReadOp::GetData("/mr"), ReadOp::GetChildren("/mr"), ReadOp::GetData("/none")},
                 std::move(done));
  });
  ASSERT_TRUE(reply.ok());
  ASSERT_EQ(reply->results.size(), 3u);
  EXPECT_EQ(reply->results[0].data, "root");
  EXPECT_EQ(reply->results[1].children, (std::vector<std::string>{"a"}));
  EXPECT_EQ(reply->results[2].error, ZkErrorCode::kNoNode);
  EXPECT_EQ(reply->results[2].zxid, server_->zxid());
}

TEST_F(FakeZkClientTest, InjectedErrorsHitTheNamedOperationsOnly) {
  Recorder r;
  auto c = Client(r);
  ASSERT_TRUE(Create(*c, "/i").ok());
  server_->InjectError(op_names::kGet, ZkErrorCode::kConnectionLoss, 2, "/i");
  EXPECT_TRUE(Get(*c, "/").ok()) << "other paths are not affected";
  auto first = Get(*c, "/i");
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(first.error().code, ZkErrorCode::kConnectionLoss);
  EXPECT_EQ(first.error().zxid, -1);
  EXPECT_FALSE(Get(*c, "/i").ok());
  EXPECT_TRUE(Get(*c, "/i").ok());
  server_->InjectError(op_names::kSet, ZkErrorCode::kBadVersion);
  auto set = Set(*c, "/i", "x");
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.error().zxid, server_->zxid()) << "server errors carry the zxid";
  EXPECT_EQ(server_->GetNode("/i")->data, "") << "an injected failure changes nothing";
}

TEST_F(FakeZkClientTest, ReconnectFiresChangedOneShotWatchesButPersistentOnesMissTheGap) {
  Recorder r;
  auto c = Client(r);
  ASSERT_TRUE(server_->CreateNode("/d", "0").ok());
  ASSERT_TRUE(server_->CreateNode("/same", "0").ok());
  ASSERT_TRUE(server_->CreateNode("/r").ok());
  ASSERT_TRUE(Get(*c, "/d", true).ok());
  ASSERT_TRUE(Get(*c, "/same", true).ok());
  ASSERT_TRUE(
      Await<ExistsReply>(*c, [&](auto done) { c->Exists("/new", true, std::move(done)); }).ok());
  ASSERT_TRUE(Watch(*c, "/r", AddWatchMode::kPersistentRecursive).ok());

  c->Disconnect();
  EXPECT_EQ(Get(*c, "/d").error().code, ZkErrorCode::kConnectionLoss);
  ASSERT_TRUE(server_->SetNodeData("/d", "1").ok());
  ASSERT_TRUE(server_->CreateNode("/new").ok());
  ASSERT_TRUE(server_->CreateNode("/r/missed").ok());
  c->Reconnect();
  c->RunPending();
  ASSERT_GE(r.sessions.size(), 3u);
  EXPECT_EQ(r.sessions[1].type, SessionEventType::kDisconnected);
  EXPECT_EQ(r.sessions[2].type, SessionEventType::kReconnected);
  EXPECT_EQ(r.watches, (std::vector<WatchEvent>{Event(WatchEventType::kNodeDataChanged, "/d"),
                                                Event(WatchEventType::kNodeCreated, "/new")}));
  // The persistent watch works again after the reconnect.
  ASSERT_TRUE(server_->CreateNode("/r/after").ok());
  c->RunPending();
  EXPECT_EQ(r.watches.back(), Event(WatchEventType::kNodeCreated, "/r/after"));
  // "/same" did not change: its watch is still armed, once.
  ASSERT_TRUE(server_->SetNodeData("/same", "1").ok());
  ASSERT_TRUE(server_->SetNodeData("/same", "2").ok());
  c->RunPending();
  EXPECT_EQ(r.watches.back(), Event(WatchEventType::kNodeDataChanged, "/same"));
  EXPECT_EQ(r.watches.size(), 4u);
}

TEST_F(FakeZkClientTest, ExpiryEndsTheSessionAndAFactoryMakesANewOne) {
  Recorder r;
  auto c = Client(r);
  ASSERT_TRUE(Create(*c, "/eph", "", CreateMode::kEphemeral).ok());
  c->ExpireSession();
  c->RunPending();
  EXPECT_EQ(r.sessions.back().type, SessionEventType::kExpired);
  EXPECT_FALSE(server_->GetNode("/eph"));
  EXPECT_EQ(Get(*c, "/").error().code, ZkErrorCode::kSessionExpired);
  EXPECT_EQ(c->session().state, SessionState::kExpired);

  FakeZkClientOptions options;
  options.manual_delivery = true;
  auto factory = server_->NewFactory(options);
  Recorder r2;
  auto fresh = factory->NewClient(r2.Handlers());
  ASSERT_TRUE(fresh.ok());
  EXPECT_NE((*fresh)->session().session_id, c->session_id());
  EXPECT_EQ((*fresh)->session().state, SessionState::kConnected);
}

TEST_F(FakeZkClientTest, ProtectedNodesNeedCredentials) {
  Recorder r, other;
  auto c = Client(r);
  auto o = Client(other);
  ASSERT_TRUE(server_->CreateNode("/secret", "s").ok());
  server_->ProtectNode("/secret", "alice:pw");
  EXPECT_EQ(Get(*c, "/secret").error().code, ZkErrorCode::kNoAuth);
  ASSERT_TRUE(
      Await<Ack>(*c, [&](auto done) { c->AddAuth("digest", "alice:pw", std::move(done)); }).ok());
  EXPECT_EQ(Get(*c, "/secret")->data, "s");
  // A node created with CreatorAllAcl is the creator's.
  auto mine = Await<CreateReply>(*c, [&](auto done) {
    c->Create("/mine", "m", CreateMode::kPersistent, CreatorAllAcl(), std::move(done));
  });
  ASSERT_TRUE(mine.ok());
  EXPECT_EQ(Get(*o, "/mine").error().code, ZkErrorCode::kNoAuth);
  // A malformed digest ends the session, as the server does.
  auto bad = Await<Ack>(*o, [&](auto done) { o->AddAuth("digest", "nocolon", std::move(done)); });
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ZkErrorCode::kAuthFailed);
  EXPECT_EQ(other.sessions.back().type, SessionEventType::kAuthFailed);
}

TEST_F(FakeZkClientTest, ChrootMapsPathsBothWays) {
  Recorder r;
  ASSERT_TRUE(server_->CreateNode("/app").ok());
  auto c = Client(r, "/app");
  ASSERT_TRUE(Watch(*c, "/", AddWatchMode::kPersistentRecursive).ok());
  auto created = Create(*c, "/x", "1");
  ASSERT_TRUE(created.ok());
  EXPECT_EQ(created->path, "/x");
  EXPECT_TRUE(server_->GetNode("/app/x"));
  ASSERT_TRUE(server_->CreateNode("/outside").ok());
  EXPECT_EQ(r.watches, (std::vector<WatchEvent>{Event(WatchEventType::kNodeCreated, "/x")}));
  auto children =
      Await<ChildrenReply>(*c, [&](auto done) { c->GetChildren("/", false, std::move(done)); });
  EXPECT_EQ(children->children, (std::vector<std::string>{"x"}));
}

TEST_F(FakeZkClientTest, RemoveWatchesStopsEventsAndReportsMissingWatches) {
  Recorder r;
  auto c = Client(r);
  ASSERT_TRUE(server_->CreateNode("/rw").ok());
  ASSERT_TRUE(Watch(*c, "/rw", AddWatchMode::kPersistentRecursive).ok());
  ASSERT_TRUE(Await<Ack>(*c, [&](auto done) {
                c->RemoveWatches("/rw", WatcherType::kPersistentRecursive, std::move(done));
              }).ok());
  ASSERT_TRUE(server_->CreateNode("/rw/x").ok());
  c->RunPending();
  EXPECT_TRUE(r.watches.empty());
  auto again = Await<Ack>(*c, [&](auto done) {
    c->RemoveWatches("/rw", WatcherType::kPersistentRecursive, std::move(done));
  });
  EXPECT_EQ(again.error().code, ZkErrorCode::kNoWatcher);
}

TEST_F(FakeZkClientTest, ServerWithoutAddWatch) {
  Recorder r;
  auto c = Client(r);
  server_->SetAddWatchSupported(false);
  EXPECT_EQ(Watch(*c, "/", AddWatchMode::kPersistentRecursive).error().code,
            ZkErrorCode::kUnimplemented);
}

TEST_F(FakeZkClientTest, InvalidPathsAreRejected) {
  Recorder r;
  auto c = Client(r);
  EXPECT_EQ(Get(*c, "relative").error().code, ZkErrorCode::kInvalidArgument);
  EXPECT_EQ(Create(*c, "/a/").error().code, ZkErrorCode::kInvalidArgument);
}

MultiOp TtlCreate(std::string path, int64_t ttl_ms,
                  CreateMode mode = CreateMode::kPersistentWithTtl) {
  MultiOp op = MultiOp::Create(std::move(path), "", mode);
  op.ttl_ms = ttl_ms;
  return op;
}

TEST_F(FakeZkClientTest, RefusedMultiNamesItsFailedOperationByIndex) {
  Recorder r;
  auto c = Client(r);
  ASSERT_TRUE(Create(*c, "/f").ok());
  auto failed = Multi(*c, {MultiOp::Check("/f", 0), MultiOp::Create("/f/a", ""),
                           MultiOp::SetData("/f", "x", 5), MultiOp::Delete("/f/absent")});
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().code, ZkErrorCode::kBadVersion);
  EXPECT_EQ(failed.error().failed_op, 2);
  EXPECT_NE(failed.error().message.find("operation 2 (set /f)"), std::string::npos)
      << failed.error().message;

  auto first = Multi(*c, {MultiOp::Delete("/absent")});
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(first.error().failed_op, 0);

  // Errors that are not a refused operation carry no index.
  EXPECT_EQ(Get(*c, "/absent").error().failed_op, -1);
  server_->InjectError(op_names::kMulti, ZkErrorCode::kConnectionLoss);
  auto lost = Multi(*c, {MultiOp::Create("/f/b", "")});
  ASSERT_FALSE(lost.ok());
  EXPECT_EQ(lost.error().code, ZkErrorCode::kConnectionLoss);
  EXPECT_EQ(lost.error().failed_op, -1);
  auto invalid = Multi(*c, {MultiOp::Create("/f/b", ""), MultiOp::Create("bad", "")});
  ASSERT_FALSE(invalid.ok());
  EXPECT_EQ(invalid.error().code, ZkErrorCode::kInvalidArgument);
  EXPECT_EQ(invalid.error().failed_op, -1);
}

TEST_F(FakeZkClientTest, GetAclReturnsTheAclGivenAtCreate) {
  Recorder r;
  auto c = Client(r);
  const std::vector<Acl> read_only = {Acl{kPermRead, "world", "anyone"},
                                      Acl{kPermAll, "ip", "10.0.0.1"}};
  auto created = Await<CreateReply>(*c, [&](auto done) {
    c->Create("/acl", "d", CreateMode::kPersistent, read_only, std::move(done));
  });
  ASSERT_TRUE(created.ok());
  auto acl = GetAcl(*c, "/acl");
  ASSERT_TRUE(acl.ok()) << acl.error().message;
  EXPECT_EQ(acl->acl, read_only);
  EXPECT_EQ(acl->stat, created->stat);
  EXPECT_EQ(acl->zxid, server_->zxid());

  MultiOp op = MultiOp::Create("/acl/m", "");
  op.acl = {Acl{kPermRead | kPermWrite, "world", "anyone"}};
  ASSERT_TRUE(Multi(*c, {op}).ok());
  EXPECT_EQ(GetAcl(*c, "/acl/m")->acl, op.acl);
  EXPECT_EQ(GetAcl(*c, "/acl/m")->stat, server_->GetNode("/acl/m")->stat);

  ASSERT_TRUE(server_->CreateNode("/direct").ok());
  EXPECT_EQ(GetAcl(*c, "/direct")->acl, OpenAclUnsafe());
  EXPECT_EQ(GetAcl(*c, "/")->acl, OpenAclUnsafe());

  auto missing = GetAcl(*c, "/absent");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ZkErrorCode::kNoNode);
  EXPECT_EQ(missing.error().zxid, server_->zxid());
  EXPECT_EQ(missing.error().message, "get_acl /absent: no node");

  server_->ProtectNode("/acl", "alice:pw");
  EXPECT_EQ(GetAcl(*c, "/acl").error().code, ZkErrorCode::kNoAuth);
}

// As ZooKeeper sends Stats to clients: only ephemerals have an ephemeralOwner.
TEST_F(FakeZkClientTest, StatsShowNodeKindsAsZooKeeperSendsThem) {
  Recorder r;
  auto c = Client(r);
  auto persistent = Create(*c, "/p");
  auto ephemeral = Create(*c, "/e", "", CreateMode::kEphemeral);
  auto container = Create(*c, "/c", "", CreateMode::kContainer);
  ASSERT_TRUE(persistent.ok() && ephemeral.ok() && container.ok());
  EXPECT_EQ(NodeKindOf(persistent->stat), NodeKind::kPersistent);
  EXPECT_EQ(NodeKindOf(ephemeral->stat), NodeKind::kEphemeral);
  EXPECT_EQ(ephemeral->stat.ephemeral_owner, c->session_id());
  EXPECT_EQ(container->stat.ephemeral_owner, 0);
  EXPECT_EQ(NodeKindOf(container->stat), NodeKind::kPersistent);
  EXPECT_TRUE(Create(*c, "/c/child").ok()) << "containers may have children";
  EXPECT_EQ(Create(*c, "/e/child").error().code, ZkErrorCode::kNoChildrenForEphemerals);
  EXPECT_EQ(TtlOf(container->stat), 0);
}

TEST_F(FakeZkClientTest, TtlNodesNeedMultiAndExtendedTypes) {
  Recorder r;
  auto c = Client(r);
  const int64_t before = server_->zxid();
  auto plain = Create(*c, "/t", "", CreateMode::kPersistentWithTtl);
  ASSERT_FALSE(plain.ok());
  EXPECT_EQ(plain.error().code, ZkErrorCode::kInvalidArgument);
  EXPECT_NE(plain.error().message.find("Multi"), std::string::npos) << plain.error().message;

  // ZooKeeper's default: extended types off, TTL creates unimplemented.
  auto disabled = Multi(*c, {MultiOp::Create("/before", ""), TtlCreate("/t", 1000)});
  ASSERT_FALSE(disabled.ok());
  EXPECT_EQ(disabled.error().code, ZkErrorCode::kUnimplemented);
  EXPECT_EQ(disabled.error().failed_op, 1);
  EXPECT_EQ(server_->zxid(), before);

  server_->SetExtendedTypesEnabled(true);
  auto created =
      Multi(*c, {TtlCreate("/t", 1000),
                 TtlCreate("/t/s-", kMaxTtlMs, CreateMode::kPersistentSequentialWithTtl)});
  ASSERT_TRUE(created.ok()) << created.error().message;
  EXPECT_EQ(created->results[1].path, "/t/s-0000000000");
  // The server sends no TTL marker to clients.
  EXPECT_EQ(created->results[0].stat.ephemeral_owner, 0);
  EXPECT_EQ(NodeKindOf(server_->GetNode("/t/s-0000000000")->stat), NodeKind::kPersistent);
  EXPECT_TRUE(Create(*c, "/t/child").ok()) << "TTL nodes may have children";
  for (int64_t bad : {int64_t{0}, int64_t{-1}, kMaxTtlMs + 1}) {
    auto refused = Multi(*c, {TtlCreate("/u", bad)});
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().code, ZkErrorCode::kInvalidArgument) << bad;
    EXPECT_EQ(refused.error().failed_op, 0);
  }
  EXPECT_EQ(Create(*c, "/t2", "", CreateMode::kPersistentSequentialWithTtl).error().code,
            ZkErrorCode::kInvalidArgument);
}

class CountingObserver final : public OpObserver {
 public:
  void OnOp(std::string_view op, std::string_view status, std::chrono::nanoseconds) override {
    std::lock_guard lock(mutex_);
    ops.push_back(std::string(op) + ":" + std::string(status));
  }
  std::mutex mutex_;
  std::vector<std::string> ops;
};

TEST_F(FakeZkClientTest, ThreadDeliveryAndBlockingHelpers) {
  CountingObserver observer;
  FakeZkClientOptions options;
  options.observer = &observer;
  std::mutex mutex;
  std::vector<WatchEvent> events;
  std::thread::id callback_thread;
  auto c = server_->NewClient(ZkEventHandlers{[&](const WatchEvent& e) {
                                                std::lock_guard lock(mutex);
                                                events.push_back(e);
                                                callback_thread = std::this_thread::get_id();
                                              },
                                              nullptr},
                              options);
  ASSERT_TRUE(blocking::AddWatch(*c, "/", AddWatchMode::kPersistentRecursive).ok());
  ASSERT_TRUE(blocking::CreateAll(*c, "/t/u/v", "leaf").ok());
  EXPECT_EQ(blocking::GetData(*c, "/t/u/v")->data, "leaf");
  EXPECT_EQ(blocking::GetData(*c, "/t/none").error().code, ZkErrorCode::kNoNode);
  c->RunPending();
  {
    std::lock_guard lock(mutex);
    EXPECT_EQ(events.size(), 3u);
    EXPECT_NE(callback_thread, std::this_thread::get_id());
  }
  c->Close();
  std::lock_guard lock(observer.mutex_);
  EXPECT_EQ(observer.ops.front(), "add_watch:success");
  EXPECT_NE(std::find(observer.ops.begin(), observer.ops.end(), "get:no_node"), observer.ops.end());
}

}  // namespace
}  // namespace zk2etcd::zk
