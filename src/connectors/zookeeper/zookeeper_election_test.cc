// ZooKeeperElection on the in-memory ZooKeeper: the lock recipe's campaigns and their fences,
// standbys taking over when the leader abandons or loses its session, the lock node deleted
// under a campaign, the takeover of this replica's own stale node, and campaigns that cannot
// start.
#include "connectors/zookeeper/zookeeper_election.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "zk/fake_zk_client.h"
#include "zk/forwarding_zk_client_for_test.h"

namespace zk2etcd::connectors {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Type = core::ElectionEvent::Type;

constexpr char kLockPath[] = "/zk2zk/default/election";

TEST(DecideLockTakeoverTest, OnlyAStaleNodeOfThisReplicaIsTakenOverAndOnlyAtTheFirstCampaign) {
  const int64_t me = 100;
  const std::vector<int64_t> none;
  const std::vector<int64_t> past = {77, 88};
  // Another replica's node, or not an ephemeral one: wait in line.
  EXPECT_EQ(DecideLockTakeover("replica-b", 5, "replica-a", me, none, true),
            LockTakeoverAction::kNone);
  EXPECT_EQ(DecideLockTakeover("replica-a", 0, "replica-a", me, none, true),
            LockTakeoverAction::kNone);
  // This session's own node is never stale.
  EXPECT_EQ(DecideLockTakeover("replica-a", me, "replica-a", me, none, true),
            LockTakeoverAction::kNone);
  // A restarted process finds its predecessor's node.
  EXPECT_EQ(DecideLockTakeover("replica-a", 5, "replica-a", me, none, true),
            LockTakeoverAction::kTakeOver);
  // Later campaigns never take over a node of the same identity: another live process holds it.
  EXPECT_EQ(DecideLockTakeover("replica-a", 5, "replica-a", me, past, false),
            LockTakeoverAction::kWarnDuplicate);
  // A session this process closed: its own, whatever the identity says.
  EXPECT_EQ(DecideLockTakeover("replica-a", 88, "replica-a", me, past, false),
            LockTakeoverAction::kDeleteOwnStale);
  EXPECT_EQ(DecideLockTakeover("replica-b", 77, "replica-a", me, past, false),
            LockTakeoverAction::kDeleteOwnStale);
  // No identity: never taken over.
  EXPECT_EQ(DecideLockTakeover("", 5, "", me, none, true), LockTakeoverAction::kNone);
}

TEST(LockSequenceTest, OnlyLockNodesHaveASequence) {
  EXPECT_EQ(LockSequence("lock-0000000003"), 3);
  EXPECT_EQ(LockSequence("lock-2147483647"), 2147483647);
  EXPECT_EQ(LockSequence("lock-000000003"), -1);
  EXPECT_EQ(LockSequence("lock-00000000x3"), -1);
  EXPECT_EQ(LockSequence("lease-0000000003"), -1);
  EXPECT_EQ(LockSequence("other"), -1);
}

// Records the events of campaigns and the threads they came on.
class Events {
 public:
  std::function<void(const core::ElectionEvent&)> Callback() {
    return [this](const core::ElectionEvent& event) {
      std::lock_guard lock(mutex_);
      events_.push_back(event);
      threads_.push_back(std::this_thread::get_id());
      changed_.notify_all();
    };
  }
  // Waits for the n-th event (1-based); nullopt after 5 s.
  std::optional<core::ElectionEvent> Wait(size_t n) {
    std::unique_lock lock(mutex_);
    if (!changed_.wait_for(lock, seconds(5), [&] { return events_.size() >= n; })) {
      return std::nullopt;
    }
    return events_[n - 1];
  }
  size_t size() {
    std::lock_guard lock(mutex_);
    return events_.size();
  }
  std::thread::id thread(size_t n) {
    std::lock_guard lock(mutex_);
    return threads_.at(n - 1);
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<core::ElectionEvent> events_;
  std::vector<std::thread::id> threads_;
};

// Sessions on the fake server, each kept alive (closed) after its owner let go of it, so that the
// test can wait until every client's deliveries are done: Settle() instead of sleeping.
class RecordingFactory final : public zk::ZkClientFactory {
 public:
  explicit RecordingFactory(std::shared_ptr<zk::FakeZkServer> server)
      : server_(std::move(server)) {}
  zk::ZkResult<std::unique_ptr<zk::ZkClient>> NewClient(zk::ZkEventHandlers handlers) override {
    std::shared_ptr<zk::FakeZkClient> client = server_->NewClient(std::move(handlers));
    std::lock_guard lock(mutex_);
    clients_.push_back(client);
    // The election owns a forwarding handle; the fake stays here for Settle().
    return std::unique_ptr<zk::ZkClient>(
        std::make_unique<zk::ForwardingZkClient>(std::move(client)));
  }
  zk::FakeZkClient* last() {
    std::lock_guard lock(mutex_);
    return clients_.empty() ? nullptr : clients_.back().get();
  }
  // Waits until no client has anything left to deliver, including what their deliveries cause
  // on the others (a chain here is at most a few clients long).
  void Settle() {
    std::vector<std::shared_ptr<zk::FakeZkClient>> clients;
    {
      std::lock_guard lock(mutex_);
      clients = clients_;
    }
    for (int pass = 0; pass < 3; ++pass) {
      for (auto& client : clients) client->RunPending();
    }
  }

 private:
  std::shared_ptr<zk::FakeZkServer> server_;
  std::mutex mutex_;
  std::vector<std::shared_ptr<zk::FakeZkClient>> clients_;
};

// A factory that cannot make clients (a connection string that does not parse, say).
class FailingFactory final : public zk::ZkClientFactory {
 public:
  zk::ZkResult<std::unique_ptr<zk::ZkClient>> NewClient(zk::ZkEventHandlers /*handlers*/) override {
    return Unexpected{zk::MakeZkError(zk::ZkErrorCode::kInvalidArgument, "connect")};
  }
};

class ZooKeeperElectionTest : public ::testing::Test {
 protected:
  ZooKeeperElectionOptions Options(const std::string& identity) {
    ZooKeeperElectionOptions options;
    options.lock_path = kLockPath;
    options.identity = identity;
    options.start_timeout = milliseconds(200);
    return options;
  }
  std::unique_ptr<ZooKeeperElection> NewElection(const std::string& identity) {
    return std::make_unique<ZooKeeperElection>(factory_, logger_, Options(identity));
  }
  size_t LogLines(const std::string& text) {
    size_t count = 0;
    for (const std::string& line : log_sink_->Lines()) {
      count += line.find(text) != std::string::npos ? 1 : 0;
    }
    return count;
  }
  int64_t OwnerOf(const std::string& path) {
    auto node = server_->GetNode(path);
    return node ? node->stat.ephemeral_owner : 0;
  }
  // Lets every event owed so far be delivered.
  void Settle() { factory_.Settle(); }

  SystemClock clock_;
  std::shared_ptr<zk::FakeZkServer> server_ = zk::FakeZkServer::Create();
  RecordingFactory factory_{server_};
  std::shared_ptr<ops::MemoryLogSink> log_sink_ = std::make_shared<ops::MemoryLogSink>();
  ops::Logger logger_{log_sink_, ops::LogFormat::kJson, ops::LogLevel::kDebug, clock_};
};

TEST_F(ZooKeeperElectionTest, AFirstCampaignIsElectedWithItsLockNodeAsTheFence) {
  Events events;
  auto election = NewElection("replica-a");
  EXPECT_EQ(election->Describe(), "zookeeper lock /zk2zk/default/election as replica-a");
  auto campaign = election->Campaign(events.Callback());
  ASSERT_TRUE(campaign.ok()) << campaign.error();
  EXPECT_EQ(LogLines("campaigning for leadership; standing by until elected"), 1u);
  auto elected = events.Wait(1);
  ASSERT_TRUE(elected.has_value());
  EXPECT_EQ(elected->type, Type::kElected);
  EXPECT_EQ(elected->campaign, *campaign);
  EXPECT_NE(events.thread(1), std::this_thread::get_id());  // never inline

  // The ancestors exist (persistent), the lock node holds the identity and is this session's.
  ASSERT_EQ(server_->Children(kLockPath).size(), 1u);
  const std::string node = std::string(kLockPath) + "/" + server_->Children(kLockPath)[0];
  EXPECT_EQ(node, std::string(kLockPath) + "/lock-0000000000");
  auto stat = server_->GetNode(node);
  ASSERT_TRUE(stat.has_value());
  EXPECT_EQ(stat->data, "replica-a");
  EXPECT_EQ(stat->stat.ephemeral_owner, factory_.last()->session_id());
  EXPECT_EQ(server_->GetNode("/zk2zk/default")->stat.ephemeral_owner, 0);
  EXPECT_EQ(elected->fence.key, node);
  EXPECT_EQ(elected->fence.revision, stat->stat.czxid);

  // Abandoned: the session closes, its node goes, and no event comes.
  election->Abandon();
  EXPECT_FALSE(server_->GetNode(node).has_value());
  Settle();
  EXPECT_EQ(events.size(), 1u);
  election->Abandon();  // idempotent

  // The next campaign has another number, node and fence.
  auto next = election->Campaign(events.Callback());
  ASSERT_TRUE(next.ok()) << next.error();
  EXPECT_NE(*next, *campaign);
  auto again = events.Wait(2);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->type, Type::kElected);
  EXPECT_EQ(again->campaign, *next);
  EXPECT_NE(again->fence.key, elected->fence.key);
  EXPECT_EQ(again->fence.key.rfind(std::string(kLockPath) + "/lock-", 0), 0u);
  EXPECT_GT(again->fence.revision, elected->fence.revision);

  // Resigning hands over at once too.
  election->Resign();
  EXPECT_EQ(LogLines("resigned leadership"), 1u);
  EXPECT_TRUE(server_->Children(kLockPath).empty());
  Settle();
  EXPECT_EQ(events.size(), 2u);
}

TEST_F(ZooKeeperElectionTest, AStandbyIsElectedWhenTheLeaderAbandons) {
  Events a_events;
  Events b_events;
  auto a = NewElection("replica-a");
  auto b = NewElection("replica-b");
  ASSERT_TRUE(a->Campaign(a_events.Callback()).ok());
  ASSERT_TRUE(a_events.Wait(1).has_value());
  auto b_campaign = b->Campaign(b_events.Callback());
  ASSERT_TRUE(b_campaign.ok());
  Settle();
  EXPECT_EQ(b_events.size(), 0u);  // waits in line
  EXPECT_EQ(server_->Children(kLockPath).size(), 2u);

  a->Abandon();
  auto elected = b_events.Wait(1);
  ASSERT_TRUE(elected.has_value());
  EXPECT_EQ(elected->type, Type::kElected);
  EXPECT_EQ(elected->campaign, *b_campaign);
  EXPECT_EQ(elected->fence.key, std::string(kLockPath) + "/lock-0000000001");
  EXPECT_EQ(OwnerOf(elected->fence.key), factory_.last()->session_id());
  Settle();
  EXPECT_EQ(a_events.size(), 1u);
}

TEST_F(ZooKeeperElectionTest, TheLeadersSessionExpiryEndsItsCampaignAndElectsTheStandby) {
  Events a_events;
  Events b_events;
  auto a = NewElection("replica-a");
  auto b = NewElection("replica-b");
  auto a_campaign = a->Campaign(a_events.Callback());
  ASSERT_TRUE(a_campaign.ok());
  auto a_elected = a_events.Wait(1);
  ASSERT_TRUE(a_elected.has_value());
  ASSERT_TRUE(b->Campaign(b_events.Callback()).ok());
  // Not yet elected: the standby waits for the leader's node.
  Settle();
  EXPECT_EQ(b_events.size(), 0u);

  server_->ExpireSession(OwnerOf(a_elected->fence.key));
  auto ended = a_events.Wait(2);
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(ended->type, Type::kEnded);
  EXPECT_EQ(ended->campaign, *a_campaign);
  EXPECT_NE(ended->reason.find("expired"), std::string::npos) << ended->reason;
  auto b_elected = b_events.Wait(1);
  ASSERT_TRUE(b_elected.has_value());
  EXPECT_EQ(b_elected->type, Type::kElected);

  // The engine abandons the ended campaign and campaigns again: now second in line.
  a->Abandon();
  ASSERT_TRUE(a->Campaign(a_events.Callback()).ok());
  Settle();
  EXPECT_EQ(a_events.size(), 2u);
}

TEST_F(ZooKeeperElectionTest, AWaitingCampaignWatchesOnlyItsPredecessor) {
  Events a_events;
  Events b_events;
  Events c_events;
  auto a = NewElection("replica-a");
  auto b = NewElection("replica-b");
  auto c = NewElection("replica-c");
  ASSERT_TRUE(a->Campaign(a_events.Callback()).ok());
  ASSERT_TRUE(a_events.Wait(1).has_value());
  ASSERT_TRUE(b->Campaign(b_events.Callback()).ok());
  ASSERT_TRUE(c->Campaign(c_events.Callback()).ok());
  Settle();
  // The middle one leaves: the last one now waits for the leader, and nobody is elected.
  b->Abandon();
  Settle();
  EXPECT_EQ(c_events.size(), 0u);
  EXPECT_EQ(a_events.size(), 1u);
  a->Abandon();
  auto elected = c_events.Wait(1);
  ASSERT_TRUE(elected.has_value());
  EXPECT_EQ(elected->type, Type::kElected);
  EXPECT_EQ(elected->fence.key, std::string(kLockPath) + "/lock-0000000002");
}

TEST_F(ZooKeeperElectionTest, ALockNodeDeletedExternallyEndsTheCampaign) {
  Events a_events;
  Events b_events;
  Events waiting;
  auto a = NewElection("replica-a");
  auto b = NewElection("replica-b");
  auto a_campaign = a->Campaign(a_events.Callback());
  ASSERT_TRUE(a_campaign.ok());
  auto a_elected = a_events.Wait(1);
  ASSERT_TRUE(a_elected.has_value());
  auto b_campaign = b->Campaign(b_events.Callback());
  ASSERT_TRUE(b_campaign.ok());
  Settle();

  // The leader's node deleted by someone: the leader is deposed, the standby elected.
  ASSERT_TRUE(server_->DeleteNode(a_elected->fence.key).ok());
  auto ended = a_events.Wait(2);
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(ended->type, Type::kEnded);
  EXPECT_EQ(ended->campaign, *a_campaign);
  EXPECT_NE(ended->reason.find("deleted"), std::string::npos) << ended->reason;
  auto b_elected = b_events.Wait(1);
  ASSERT_TRUE(b_elected.has_value());
  EXPECT_EQ(b_elected->type, Type::kElected);

  // A waiting campaign whose node is deleted ends too (it would never lead: no node to fence).
  a->Abandon();
  auto third = a->Campaign(waiting.Callback());
  ASSERT_TRUE(third.ok());
  Settle();
  const auto children = server_->Children(kLockPath);
  ASSERT_EQ(children.size(), 2u);
  ASSERT_TRUE(server_->DeleteNode(std::string(kLockPath) + "/" + children[1]).ok());
  auto waiting_ended = waiting.Wait(1);
  ASSERT_TRUE(waiting_ended.has_value());
  EXPECT_EQ(waiting_ended->type, Type::kEnded);
  EXPECT_EQ(waiting_ended->campaign, *third);
  Settle();
  EXPECT_EQ(b_events.size(), 1u);  // the leader is untouched
}

TEST_F(ZooKeeperElectionTest, ADisconnectionIsNoEndAndALostPredecessorIsSeenAfterReconnecting) {
  Events a_events;
  Events b_events;
  auto a = NewElection("replica-a");
  auto b = NewElection("replica-b");
  ASSERT_TRUE(a->Campaign(a_events.Callback()).ok());
  ASSERT_TRUE(a_events.Wait(1).has_value());
  zk::FakeZkClient* a_client = factory_.last();
  ASSERT_TRUE(b->Campaign(b_events.Callback()).ok());
  zk::FakeZkClient* b_client = factory_.last();
  Settle();

  // The leader's connection comes and goes: still the leader.
  a_client->InjectConnectionLoss();
  Settle();
  EXPECT_EQ(a_events.size(), 1u);

  // The standby is disconnected while the leader leaves; it learns of it on reconnecting.
  b_client->Disconnect();
  a->Abandon();
  Settle();
  EXPECT_EQ(b_events.size(), 0u);
  b_client->Reconnect();
  auto elected = b_events.Wait(1);
  ASSERT_TRUE(elected.has_value());
  EXPECT_EQ(elected->type, Type::kElected);
}

TEST_F(ZooKeeperElectionTest, TheFirstCampaignTakesOverTheStaleNodeOfItsOwnIdentity) {
  // A killed predecessor of replica-a left its node; its session has not expired yet.
  auto predecessor = server_->NewClient({});
  ASSERT_TRUE(zk::blocking::CreateAll(*predecessor, kLockPath).ok());
  auto stale = zk::blocking::Create(*predecessor, std::string(kLockPath) + "/lock-", "replica-a",
                                    zk::CreateMode::kEphemeralSequential);
  ASSERT_TRUE(stale.ok());
  // Another replica's live node is left alone; it came later, so it is second in line.
  auto other = server_->NewClient({});
  auto others = zk::blocking::Create(*other, std::string(kLockPath) + "/lock-", "replica-b",
                                     zk::CreateMode::kEphemeralSequential);
  ASSERT_TRUE(others.ok());

  Events events;
  auto election = NewElection("replica-a");
  ASSERT_TRUE(election->Campaign(events.Callback()).ok());
  EXPECT_FALSE(server_->GetNode(stale->path).has_value());
  EXPECT_TRUE(server_->GetNode(others->path).has_value());
  EXPECT_EQ(LogLines("took over the election from a previous process with the same identity"), 1u);
  // replica-b's node is now first: replica-a waits for it, not for a session timeout.
  Settle();
  EXPECT_EQ(events.size(), 0u);
  other->Close();
  auto elected = events.Wait(1);
  ASSERT_TRUE(elected.has_value());
  EXPECT_EQ(elected->type, Type::kElected);
}

TEST_F(ZooKeeperElectionTest, ALaterCampaignWaitsBehindALiveProcessOfTheSameIdentityAndWarnsOnce) {
  Events events;
  Events waiting[3];
  Events last;
  auto election = NewElection("replica-a");
  ASSERT_TRUE(election->Campaign(events.Callback()).ok());
  ASSERT_TRUE(events.Wait(1).has_value());
  election->Abandon();

  // Meanwhile another process with the same identity campaigned.
  auto twin = server_->NewClient({});
  auto twins = zk::blocking::Create(*twin, std::string(kLockPath) + "/lock-", "replica-a",
                                    zk::CreateMode::kEphemeralSequential);
  ASSERT_TRUE(twins.ok());

  for (Events& standby : waiting) {
    ASSERT_TRUE(election->Campaign(standby.Callback()).ok());
    EXPECT_TRUE(server_->GetNode(twins->path).has_value());
    Settle();
    EXPECT_EQ(standby.size(), 0u);
    election->Abandon();
  }
  EXPECT_EQ(LogLines("another live process campaigns with this replica's election identity"), 1u);
  EXPECT_EQ(LogLines("took over"), 0u);

  // When the twin goes, this one leads.
  ASSERT_TRUE(election->Campaign(last.Callback()).ok());
  twin->Close();
  auto elected = last.Wait(1);
  ASSERT_TRUE(elected.has_value());
  EXPECT_EQ(elected->type, Type::kElected);
}

TEST_F(ZooKeeperElectionTest, ACampaignFailsWithoutASession) {
  // A server that never answers: the session is never established.
  zk::FakeZkClientOptions silent;
  silent.manual_delivery = true;
  auto unreachable = server_->NewFactory(silent);
  Events events;
  ZooKeeperElection election(*unreachable, logger_, Options("replica-a"));
  const auto start = std::chrono::steady_clock::now();
  auto campaign = election.Campaign(events.Callback());
  ASSERT_FALSE(campaign.ok());
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(200));
  EXPECT_NE(campaign.error().find("no ZooKeeper session within 200 ms"), std::string::npos)
      << campaign.error();
  EXPECT_EQ(events.size(), 0u);
  election.Abandon();

  // A factory that cannot make a client.
  FailingFactory failing;
  ZooKeeperElection broken(failing, logger_, Options("replica-a"));
  auto refused = broken.Campaign(events.Callback());
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().find("cannot create a ZooKeeper client"), std::string::npos);

  // A session whose create fails: the campaign fails and its session is closed.
  server_->InjectError(zk::op_names::kCreate, zk::ZkErrorCode::kConnectionLoss, 1,
                       std::string(kLockPath) + "/lock-");
  ASSERT_TRUE(server_->CreateNodeAll(kLockPath, "").ok());
  auto election2 = NewElection("replica-a");
  auto lost = election2->Campaign(events.Callback());
  ASSERT_FALSE(lost.ok());
  EXPECT_NE(lost.error().find("cannot create the election's lock node"), std::string::npos)
      << lost.error();
  EXPECT_EQ(factory_.last()->session().state, zk::SessionState::kClosed);
  Settle();
  EXPECT_EQ(events.size(), 0u);

  // Once the server answers, the same election campaigns.
  auto ok = election2->Campaign(events.Callback());
  ASSERT_TRUE(ok.ok()) << ok.error();
  ASSERT_TRUE(events.Wait(1).has_value());
}

TEST_F(ZooKeeperElectionTest, DestroyingACampaigningElectionClosesItsSession) {
  Events events;
  auto a = NewElection("replica-a");
  ASSERT_TRUE(a->Campaign(events.Callback()).ok());
  ASSERT_TRUE(events.Wait(1).has_value());
  a.reset();
  EXPECT_TRUE(server_->Children(kLockPath).empty());
}

}  // namespace
}  // namespace zk2etcd::connectors
