// EtcdElection against the in-memory etcd: campaigns, their events, abandoning and resigning,
// and the takeover of a stale leader key of this replica.
#include "connectors/etcd/etcd_election.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "etcd/fake_etcd_client.h"

namespace zk2etcd::connectors {
namespace {

using std::chrono::seconds;

TEST(DecideTakeoverTest, OnlyAStaleKeyOfThisReplicaIsTakenOverAndOnlyOnce) {
  const etcd::KeyValue mine{"/e/1", "replica-a", 10, 10, 1, 111};
  const etcd::KeyValue other{"/e/2", "replica-b", 11, 11, 1, 222};
  // Nobody leads, or someone else does: wait.
  EXPECT_EQ(DecideTakeover(std::nullopt, "replica-a", 0, true), TakeoverAction::kNone);
  EXPECT_EQ(DecideTakeover(other, "replica-a", 0, true), TakeoverAction::kNone);
  EXPECT_EQ(DecideTakeover(other, "replica-a", 333, false), TakeoverAction::kNone);
  // A restarted process finds its predecessor's key.
  EXPECT_EQ(DecideTakeover(mine, "replica-a", 0, true), TakeoverAction::kTakeOver);
  // Later campaigns never take over a key of the same identity: another live process holds it.
  EXPECT_EQ(DecideTakeover(mine, "replica-a", 0, false), TakeoverAction::kWarnDuplicate);
  EXPECT_EQ(DecideTakeover(mine, "replica-a", 333, false), TakeoverAction::kWarnDuplicate);
  // The key is bound to the lease this process lost: its own, whatever the identity says.
  EXPECT_EQ(DecideTakeover(mine, "replica-a", 111, false), TakeoverAction::kRevokeOwnLease);
  EXPECT_EQ(DecideTakeover(other, "replica-a", 222, false), TakeoverAction::kRevokeOwnLease);
  // No identity, or a key without a lease, is never taken over.
  EXPECT_EQ(DecideTakeover(mine, "", 0, true), TakeoverAction::kNone);
  etcd::KeyValue leaseless = mine;
  leaseless.lease = 0;
  EXPECT_EQ(DecideTakeover(leaseless, "replica-a", 0, true), TakeoverAction::kNone);
}

constexpr char kName[] = "/zk2etcd/election";

class EtcdElectionTest : public ::testing::Test {
 protected:
  // Records the events of campaigns.
  class Events {
   public:
    std::function<void(const core::ElectionEvent&)> Callback() {
      return [this](const core::ElectionEvent& event) {
        std::lock_guard lock(mutex_);
        events_.push_back(event);
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

   private:
    std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<core::ElectionEvent> events_;
  };

  EtcdElectionOptions Options(const std::string& identity) {
    EtcdElectionOptions options;
    options.name = kName;
    options.identity = identity;
    return options;
  }
  size_t LogLines(const std::string& text) {
    size_t count = 0;
    for (const std::string& line : log_sink_->Lines()) {
      count += line.find(text) != std::string::npos ? 1 : 0;
    }
    return count;
  }

  SystemClock clock_;
  etcd::FakeEtcdClient etcd_{clock_};
  std::shared_ptr<ops::MemoryLogSink> log_sink_ = std::make_shared<ops::MemoryLogSink>();
  ops::Logger logger_{log_sink_, ops::LogFormat::kJson, ops::LogLevel::kDebug, clock_};
};

TEST_F(EtcdElectionTest, ACampaignOnAFreeElectionIsElectedAndAbandonStopsItsEvents) {
  EtcdElection election(etcd_, logger_, Options("replica-a"));
  EXPECT_EQ(election.Describe(), "etcd election /zk2etcd/election as replica-a");
  Events events;
  auto campaign = election.Campaign(events.Callback());
  ASSERT_TRUE(campaign.ok()) << campaign.error();
  EXPECT_EQ(LogLines("campaigning for leadership; standing by until elected"), 1u);
  auto elected = events.Wait(1);
  ASSERT_TRUE(elected.has_value());
  EXPECT_EQ(elected->type, core::ElectionEvent::Type::kElected);
  EXPECT_EQ(elected->campaign, *campaign);
  auto leader = etcd_.Leader(kName);
  ASSERT_TRUE(leader.ok());
  EXPECT_EQ(leader->value, "replica-a");
  EXPECT_EQ(elected->fence.key, leader->key);
  EXPECT_EQ(elected->fence.revision, leader->create_revision);

  // Abandoned: the lease is revoked (its key goes), and no event comes for it.
  election.Abandon();
  EXPECT_FALSE(etcd_.Leader(kName).ok());
  etcd_.Drain();
  EXPECT_EQ(events.size(), 1u);
  election.Abandon();  // idempotent

  // The next campaign has another number and is elected again.
  auto next = election.Campaign(events.Callback());
  ASSERT_TRUE(next.ok());
  EXPECT_NE(*next, *campaign);
  auto again = events.Wait(2);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->campaign, *next);
  EXPECT_EQ(again->type, core::ElectionEvent::Type::kElected);

  // Resigning hands the election over at once.
  election.Resign();
  EXPECT_EQ(LogLines("resigned leadership"), 1u);
  EXPECT_FALSE(etcd_.Leader(kName).ok());
  etcd_.Drain();
  EXPECT_EQ(events.size(), 2u);
}

// Abandon does not wait for etcd to answer the lease's revoke (an outage must not hold the
// engine); a Resign that comes before the answer revokes the lease again, so that a standby does
// not wait for its TTL.
TEST_F(EtcdElectionTest, AbandonDoesNotWaitForTheRevokeAndResignRevokesALeaseLeftUnconfirmed) {
  EtcdElection election(etcd_, logger_, Options("replica-a"));
  Events events;
  ASSERT_TRUE(election.Campaign(events.Callback()).ok());
  ASSERT_TRUE(events.Wait(1).has_value());
  etcd_.HoldLeaseRevokes(1);  // Abandon's revoke is lost
  election.Abandon();
  EXPECT_TRUE(etcd_.Leader(kName).ok()) << "the revoke is still unanswered";
  EXPECT_EQ(etcd_.Calls("lease_revoke"), 0);
  election.Resign();
  EXPECT_FALSE(etcd_.Leader(kName).ok());
  EXPECT_EQ(etcd_.Calls("lease_revoke"), 1);
  etcd_.ReleaseLeaseRevokes();  // the lost revoke arrives late and finds no lease
  etcd_.Drain();
  EXPECT_EQ(etcd_.Calls("lease_revoke"), 2);

  // Answered: nothing is left for Resign to revoke.
  ASSERT_TRUE(election.Campaign(events.Callback()).ok());
  ASSERT_TRUE(events.Wait(2).has_value());
  election.Abandon();
  etcd_.Drain();
  EXPECT_FALSE(etcd_.Leader(kName).ok());
  election.Resign();
  EXPECT_EQ(etcd_.Calls("lease_revoke"), 3);
}

TEST_F(EtcdElectionTest, ALostLeaseEndsTheCampaign) {
  EtcdElection election(etcd_, logger_, Options("replica-a"));
  Events events;
  auto campaign = election.Campaign(events.Callback());
  ASSERT_TRUE(campaign.ok());
  ASSERT_TRUE(events.Wait(1).has_value());
  auto leader = etcd_.Leader(kName);
  ASSERT_TRUE(leader.ok());
  etcd::FakeEtcdClient other(etcd_.store(), clock_);
  ASSERT_TRUE(other.LeaseRevoke(leader->lease).ok());
  auto ended = events.Wait(2);
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(ended->type, core::ElectionEvent::Type::kEnded);
  EXPECT_EQ(ended->campaign, *campaign);
  EXPECT_FALSE(ended->reason.empty());
  election.Abandon();
  // The lease this process lost no longer matters; the next campaign wins.
  ASSERT_TRUE(election.Campaign(events.Callback()).ok());
  auto elected = events.Wait(3);
  ASSERT_TRUE(elected.has_value());
  EXPECT_EQ(elected->type, core::ElectionEvent::Type::kElected);
}

TEST_F(EtcdElectionTest, ACampaignThatCannotGrantItsLeaseFails) {
  EtcdElection election(etcd_, logger_, Options("replica-a"));
  Events events;
  etcd_.InjectFault("lease_grant", etcd::ErrorCode::kUnavailable);
  auto campaign = election.Campaign(events.Callback());
  ASSERT_FALSE(campaign.ok());
  EXPECT_NE(campaign.error().find("cannot grant the election lease"), std::string::npos);
  EXPECT_EQ(events.size(), 0u);
  ASSERT_TRUE(election.Campaign(events.Callback()).ok());
  ASSERT_TRUE(events.Wait(1).has_value());
}

// A process killed with -9 leaves its leader key behind, alive for the lease (60 s here). Its
// restart (the same identity) takes it over at once.
TEST_F(EtcdElectionTest, ARestartedReplicaTakesOverTheKeyItsKilledPredecessorLeft) {
  {
    etcd::FakeEtcdClient dead(etcd_.store(), clock_);
    auto lease = dead.LeaseGrant(seconds(60));
    ASSERT_TRUE(lease.ok());
    ASSERT_TRUE(dead.CampaignAndWait(kName, lease->id, "replica-a").ok());
  }
  ASSERT_TRUE(etcd_.Leader(kName).ok());
  EtcdElection restarted(etcd_, logger_, Options("replica-a"));
  Events events;
  ASSERT_TRUE(restarted.Campaign(events.Callback()).ok());
  auto elected = events.Wait(1);
  ASSERT_TRUE(elected.has_value());
  EXPECT_EQ(elected->type, core::ElectionEvent::Type::kElected);
  EXPECT_EQ(LogLines("took over the election from a previous process with the same identity"), 1u);
  restarted.Abandon();
}

// Another live process with the same identity leads: a later campaign never takes over.
TEST_F(EtcdElectionTest, ALiveProcessWithTheSameIdentityIsNotTakenOverTwice) {
  EtcdElection first(etcd_, logger_, Options("same"));
  Events first_events;
  ASSERT_TRUE(first.Campaign(first_events.Callback()).ok());
  ASSERT_TRUE(first_events.Wait(1).has_value());

  etcd::FakeEtcdClient etcd_b(etcd_.store(), clock_);
  EtcdElection second(etcd_b, logger_, Options("same"));
  Events second_events;
  ASSERT_TRUE(second.Campaign(second_events.Callback()).ok());  // takes over once
  ASSERT_TRUE(second_events.Wait(1).has_value());
  auto ended = first_events.Wait(2);
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(ended->type, core::ElectionEvent::Type::kEnded);
  first.Abandon();
  ASSERT_TRUE(first.Campaign(first_events.Callback()).ok());  // waits, with a warning
  EXPECT_EQ(LogLines("another live process leads with this replica's election identity"), 1u);
  etcd_.Drain();
  EXPECT_EQ(first_events.size(), 2u);
  second.Resign();
  auto elected = first_events.Wait(3);
  ASSERT_TRUE(elected.has_value());
  EXPECT_EQ(elected->type, core::ElectionEvent::Type::kElected);
  first.Abandon();
}

}  // namespace
}  // namespace zk2etcd::connectors
