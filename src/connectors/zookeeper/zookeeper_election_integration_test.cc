// ZooKeeperElection against a real ZooKeeper 3.8 (the binary's shared server; each test under
// its own path): a standby takes over within a second of the leader leaving, and the fence a sink
// checks (a multi's Check on the lock node) holds exactly while its campaign leads.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <optional>
#include <vector>

#include "connectors/zookeeper/zookeeper_election.h"
#include "ops/log.h"
#include "testing/loopback.h"
#include "testing/server_support.h"
#include "testing/shared_servers.h"
#include "zk/asio_zk_client.h"

namespace zk2etcd::connectors {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;
using Type = core::ElectionEvent::Type;
using ::zk2etcd::testing::SharedZooKeeper;
using ::zk2etcd::testing::UniquePath;
using ::zk2etcd::testing::ZooKeeperServer;

// Records the events of a campaign with the time each came.
class Events {
 public:
  std::function<void(const core::ElectionEvent&)> Callback() {
    return [this](const core::ElectionEvent& event) {
      std::lock_guard lock(mutex_);
      events_.push_back(event);
      times_.push_back(steady_clock::now());
      changed_.notify_all();
    };
  }
  // The n-th event (1-based) and when it came; nullopt after `timeout`.
  std::optional<std::pair<core::ElectionEvent, steady_clock::time_point>> Wait(
      size_t n, milliseconds timeout = milliseconds(10000)) {
    std::unique_lock lock(mutex_);
    if (!changed_.wait_for(lock, timeout, [&] { return events_.size() >= n; })) {
      return std::nullopt;
    }
    return std::make_pair(events_[n - 1], times_[n - 1]);
  }
  size_t size() {
    std::lock_guard lock(mutex_);
    return events_.size();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<core::ElectionEvent> events_;
  std::vector<steady_clock::time_point> times_;
};

zk::ZkClientOptions ClientOptions(const std::string& connect_string) {
  zk::ZkClientOptions options;
  options.connect_string = connect_string;
  options.session_timeout = milliseconds(10000);
  return options;
}

class ZooKeeperElectionIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FIXTURE_OK_AND_ASSIGN(server_, SharedZooKeeper());
    factory_ = zk::NewAsioZkClientFactory(ClientOptions(server_->address()));
    auto sink = zk::NewAsioZkClient(ClientOptions(server_->address()), {});
    ASSERT_TRUE(sink.ok()) << sink.error().ToString();
    sink_ = std::move(sink).value();
    lock_path_ = UniquePath("election") + "/default/election";
  }
  ZooKeeperElectionOptions Options(const std::string& identity) {
    ZooKeeperElectionOptions options;
    options.lock_path = lock_path_;
    options.identity = identity;
    return options;
  }
  // A sink's fenced write: applies only while `fence` leads.
  zk::ZkResult<zk::MultiReply> FencedWrite(const core::Fence& fence, const std::string& name) {
    return zk::blocking::Multi(*sink_, {zk::MultiOp::Check(fence.key, -1),
                                        zk::MultiOp::Create(lock_path_ + "-" + name, "v")});
  }
  bool Exists(const std::string& path) {
    auto exists = zk::blocking::Exists(*sink_, path);
    return exists.ok() && exists->stat.has_value();
  }

  SystemClock clock_;
  std::shared_ptr<ops::MemoryLogSink> log_sink_ = std::make_shared<ops::MemoryLogSink>();
  ops::Logger logger_{log_sink_, ops::LogFormat::kJson, ops::LogLevel::kDebug, clock_};
  ZooKeeperServer* server_ = nullptr;
  std::unique_ptr<zk::ZkClientFactory> factory_;
  std::unique_ptr<zk::ZkClient> sink_;
  std::string lock_path_;
};

TEST_F(ZooKeeperElectionIntegrationTest, AStandbyLeadsWithinASecondOfTheLeaderLeaving) {
  ZooKeeperElection a(*factory_, logger_, Options("replica-a"));
  ZooKeeperElection b(*factory_, logger_, Options("replica-b"));
  Events a_events;
  Events b_events;

  const auto campaign_start = steady_clock::now();
  auto a_campaign = a.Campaign(a_events.Callback());
  ASSERT_TRUE(a_campaign.ok()) << a_campaign.error();
  auto a_elected = a_events.Wait(1);
  ASSERT_TRUE(a_elected.has_value());
  EXPECT_EQ(a_elected->first.type, Type::kElected);
  const core::Fence a_fence = a_elected->first.fence;
  EXPECT_EQ(a_fence.key.rfind(lock_path_ + "/lock-", 0), 0u) << a_fence.key;
  std::printf(
      "first campaign elected after %.1f ms\n",
      std::chrono::duration<double, std::milli>(a_elected->second - campaign_start).count());

  auto b_campaign = b.Campaign(b_events.Callback());
  ASSERT_TRUE(b_campaign.ok()) << b_campaign.error();
  // The standby waits in line (its node is there, behind the leader's).
  auto children = zk::blocking::GetChildren(*sink_, lock_path_);
  ASSERT_TRUE(children.ok());
  EXPECT_EQ(children->children.size(), 2u);
  EXPECT_FALSE(b_events.Wait(1, milliseconds(300)).has_value());

  // While it leads, the fence key exists and the leader's fenced writes apply.
  auto stat = zk::blocking::Exists(*sink_, a_fence.key);
  ASSERT_TRUE(stat.ok());
  ASSERT_TRUE(stat->stat.has_value());
  EXPECT_EQ(stat->stat->czxid, a_fence.revision);
  auto written = FencedWrite(a_fence, "a-1");
  EXPECT_TRUE(written.ok()) << written.error().ToString();

  // The leader leaves: the standby leads within a second.
  const auto left = steady_clock::now();
  a.Abandon();
  auto b_elected = b_events.Wait(1);
  ASSERT_TRUE(b_elected.has_value());
  EXPECT_EQ(b_elected->first.type, Type::kElected);
  EXPECT_EQ(b_elected->first.campaign, *b_campaign);
  const auto takeover = b_elected->second - left;
  std::printf("standby elected %.1f ms after the leader left\n",
              std::chrono::duration<double, std::milli>(takeover).count());
  EXPECT_LT(takeover, seconds(1));
  EXPECT_EQ(a_events.size(), 1u);  // no event after Abandon

  // The deposed leader's fenced writes fail; the new leader's apply.
  EXPECT_FALSE(Exists(a_fence.key));
  auto stale = FencedWrite(a_fence, "a-2");
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.error().code, zk::ZkErrorCode::kNoNode) << stale.error().ToString();
  EXPECT_FALSE(Exists(lock_path_ + "-a-2"));
  const core::Fence b_fence = b_elected->first.fence;
  EXPECT_NE(b_fence.key, a_fence.key);
  EXPECT_GT(b_fence.revision, a_fence.revision);
  auto fresh = FencedWrite(b_fence, "b-1");
  EXPECT_TRUE(fresh.ok()) << fresh.error().ToString();
  b.Resign();
}

TEST_F(ZooKeeperElectionIntegrationTest, ADeletedLockNodeDeposesTheLeaderAndFailsItsFence) {
  ZooKeeperElection a(*factory_, logger_, Options("replica-a"));
  Events events;
  auto campaign = a.Campaign(events.Callback());
  ASSERT_TRUE(campaign.ok()) << campaign.error();
  auto elected = events.Wait(1);
  ASSERT_TRUE(elected.has_value());
  const core::Fence fence = elected->first.fence;
  ASSERT_TRUE(FencedWrite(fence, "1").ok());

  const auto deleted_at = steady_clock::now();
  ASSERT_TRUE(zk::blocking::Delete(*sink_, fence.key).ok());
  auto ended = events.Wait(2);
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(ended->first.type, Type::kEnded);
  EXPECT_EQ(ended->first.campaign, *campaign);
  std::printf("deposed %.1f ms after its lock node was deleted\n",
              std::chrono::duration<double, std::milli>(ended->second - deleted_at).count());
  EXPECT_FALSE(FencedWrite(fence, "2").ok());
  a.Abandon();
}

TEST_F(ZooKeeperElectionIntegrationTest, ACampaignFailsWhenTheEnsembleIsUnreachable) {
  int port = 0;
  ASSERT_FIXTURE_OK_AND_ASSIGN(port, ::zk2etcd::testing::PickFreePort());
  auto unreachable = zk::NewAsioZkClientFactory(ClientOptions("127.0.0.1:" + std::to_string(port)));
  ZooKeeperElectionOptions options = Options("replica-a");
  options.start_timeout = milliseconds(500);
  ZooKeeperElection election(*unreachable, logger_, options);
  Events events;
  const auto start = steady_clock::now();
  auto campaign = election.Campaign(events.Callback());
  const auto took = steady_clock::now() - start;
  ASSERT_FALSE(campaign.ok());
  EXPECT_NE(campaign.error().find("no ZooKeeper session within 500 ms"), std::string::npos)
      << campaign.error();
  EXPECT_LT(took, seconds(3));
  EXPECT_EQ(events.size(), 0u);
}

}  // namespace
}  // namespace zk2etcd::connectors
