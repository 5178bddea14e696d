// SharedElection over the in-memory election: members lead together on one real campaign, join a
// leadership that holds, end together, and a member that steps down takes the others with it;
// two ElectionDrivers (two services of one process) lead and step down together.
#include "sync/shared_election.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "core/testing/in_memory_election.h"
#include "ops/log.h"
#include "sync/election_driver.h"

namespace zk2etcd::sync {
namespace {

using core::ElectionEvent;
using core::memory::InMemoryElection;
using core::memory::InMemoryElectionGroup;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Type = ElectionEvent::Type;

// Records the events of a member's campaigns and the threads they came on.
class Events {
 public:
  std::function<void(const ElectionEvent&)> Callback() {
    return [this](const ElectionEvent& event) {
      std::lock_guard lock(mutex_);
      events_.push_back(event);
      threads_.push_back(std::this_thread::get_id());
      changed_.notify_all();
    };
  }
  // The n-th event (1-based); nullopt after 5 s.
  std::optional<ElectionEvent> Wait(size_t n) {
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
  std::vector<ElectionEvent> events_;
  std::vector<std::thread::id> threads_;
};

class SharedElectionTest : public ::testing::Test {
 protected:
  // Every event owed so far delivered: the real election's, then the members'.
  void Drain() {
    real_.Drain();
    shared_->Drain();
  }

  std::shared_ptr<InMemoryElectionGroup> group_ = std::make_shared<InMemoryElectionGroup>("/e");
  InMemoryElection real_{group_, "replica-a"};
  InMemoryElection other_{group_, "replica-b"};  // another replica of the job
  Events first_;
  Events second_;
  Events third_;  // another replica's
  std::unique_ptr<SharedElection> shared_ = std::make_unique<SharedElection>(real_, 2);
};

TEST_F(SharedElectionTest, MembersCampaigningTogetherLeadTogetherWithTheRealFence) {
  EXPECT_EQ(shared_->members(), 2u);
  EXPECT_EQ(shared_->member(0).Describe(), real_.Describe());
  EXPECT_EQ(shared_->member(1).Describe(), real_.Describe());
  // Another replica leads: both members wait behind one real campaign.
  ASSERT_TRUE(other_.Campaign([](const ElectionEvent&) {}).ok());
  auto a = shared_->member(0).Campaign(first_.Callback());
  auto b = shared_->member(1).Campaign(second_.Callback());
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(group_->Campaigns(), 2u);  // other_ and ONE real campaign
  Drain();
  EXPECT_EQ(first_.size(), 0u);
  EXPECT_EQ(second_.size(), 0u);

  other_.Abandon();
  auto first = first_.Wait(1);
  auto second = second_.Wait(1);
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(first->type, Type::kElected);
  EXPECT_EQ(second->type, Type::kElected);
  EXPECT_EQ(first->campaign, *a);
  EXPECT_EQ(second->campaign, *b);
  const auto fence = group_->LeaderFence();
  ASSERT_TRUE(fence.has_value());
  EXPECT_EQ(first->fence.key, fence->key);
  EXPECT_EQ(first->fence.revision, fence->revision);
  EXPECT_EQ(second->fence.key, fence->key);
  EXPECT_EQ(second->fence.revision, fence->revision);
  EXPECT_EQ(group_->Leader(), "replica-a");
}

TEST_F(SharedElectionTest, AMemberCampaigningWhileTheLeadershipHoldsIsElectedAsynchronously) {
  auto a = shared_->member(0).Campaign(first_.Callback());
  ASSERT_TRUE(a.ok());
  auto first = first_.Wait(1);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->type, Type::kElected);

  auto b = shared_->member(1).Campaign(second_.Callback());
  ASSERT_TRUE(b.ok());
  auto second = second_.Wait(1);
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->type, Type::kElected);
  EXPECT_EQ(second->campaign, *b);
  EXPECT_EQ(second->fence.key, first->fence.key);
  EXPECT_EQ(second->fence.revision, first->fence.revision);
  EXPECT_NE(second_.thread(1), std::this_thread::get_id());  // never inline
  EXPECT_EQ(group_->Campaigns(), 1u);                        // no second real campaign
  Drain();
  EXPECT_EQ(first_.size(), 1u);
}

TEST_F(SharedElectionTest, TheRealCampaignsEndEndsEveryMembersCampaign) {
  auto a = shared_->member(0).Campaign(first_.Callback());
  auto b = shared_->member(1).Campaign(second_.Callback());
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE(first_.Wait(1).has_value());
  ASSERT_TRUE(second_.Wait(1).has_value());

  group_->Depose("lease lost (test)");
  auto first = first_.Wait(2);
  auto second = second_.Wait(2);
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(first->type, Type::kEnded);
  EXPECT_EQ(first->campaign, *a);
  EXPECT_EQ(first->reason, "lease lost (test)");
  EXPECT_EQ(second->type, Type::kEnded);
  EXPECT_EQ(second->campaign, *b);

  // The engine abandons and campaigns again: a new real campaign, fresh member numbers.
  shared_->member(0).Abandon();
  shared_->member(1).Abandon();
  auto a2 = shared_->member(0).Campaign(first_.Callback());
  ASSERT_TRUE(a2.ok());
  EXPECT_NE(*a2, *a);
  auto again = first_.Wait(3);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->type, Type::kElected);
  EXPECT_EQ(again->campaign, *a2);
  EXPECT_EQ(group_->Campaigns(), 1u);
}

TEST_F(SharedElectionTest, AMemberThatAbandonsWhileLeadingTakesTheLeadershipWithIt) {
  ASSERT_TRUE(other_.Campaign([](const ElectionEvent&) {}).ok());
  auto a = shared_->member(0).Campaign(first_.Callback());
  auto b = shared_->member(1).Campaign(second_.Callback());
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  other_.Abandon();
  ASSERT_TRUE(first_.Wait(1).has_value());
  ASSERT_TRUE(second_.Wait(1).has_value());

  // Member 0's fence failed: it steps down, and so does the process.
  shared_->member(0).Abandon();
  EXPECT_EQ(group_->Campaigns(), 0u);  // the real leadership is handed over
  auto second = second_.Wait(2);
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->type, Type::kEnded);
  EXPECT_EQ(second->campaign, *b);
  EXPECT_EQ(second->reason, "a service sharing the election stepped down");
  Drain();
  EXPECT_EQ(first_.size(), 1u);  // nothing after its own Abandon
  shared_->member(0).Abandon();  // idempotent

  // Member 1 leaves its ended campaign after member 0 campaigned again: the new real campaign
  // is not its to end.
  auto a2 = shared_->member(0).Campaign(first_.Callback());
  ASSERT_TRUE(a2.ok());
  ASSERT_TRUE(first_.Wait(2).has_value());
  shared_->member(1).Abandon();
  EXPECT_EQ(group_->Leader(), "replica-a");
  Drain();
  EXPECT_EQ(first_.size(), 2u);

  // And joins it again when it campaigns.
  auto b2 = shared_->member(1).Campaign(second_.Callback());
  ASSERT_TRUE(b2.ok());
  EXPECT_NE(*b2, *b);
  auto rejoined = second_.Wait(3);
  ASSERT_TRUE(rejoined.has_value());
  EXPECT_EQ(rejoined->type, Type::kElected);
  EXPECT_EQ(rejoined->campaign, *b2);
}

TEST_F(SharedElectionTest, AMemberThatAbandonsWhileCampaigningEndsTheRealCampaign) {
  ASSERT_TRUE(other_.Campaign([](const ElectionEvent&) {}).ok());
  auto a = shared_->member(0).Campaign(first_.Callback());
  auto b = shared_->member(1).Campaign(second_.Callback());
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(group_->Campaigns(), 2u);

  shared_->member(1).Abandon();
  EXPECT_EQ(group_->Campaigns(), 1u);  // out of the line
  auto first = first_.Wait(1);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->type, Type::kEnded);
  EXPECT_EQ(first->campaign, *a);
  // The other replica's leaving elects nobody here any more.
  other_.Abandon();
  Drain();
  EXPECT_EQ(first_.size(), 1u);
  EXPECT_EQ(second_.size(), 0u);
}

TEST_F(SharedElectionTest, AMemberThatResignsResignsTheRealLeadership) {
  auto a = shared_->member(0).Campaign(first_.Callback());
  auto b = shared_->member(1).Campaign(second_.Callback());
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE(first_.Wait(1).has_value());
  ASSERT_TRUE(second_.Wait(1).has_value());
  // A standby of another replica waits.
  ASSERT_TRUE(other_.Campaign(third_.Callback()).ok());

  shared_->member(1).Resign();
  EXPECT_EQ(group_->Leader(), "replica-b");
  auto first = first_.Wait(2);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->type, Type::kEnded);
  EXPECT_EQ(first->reason, "a service sharing the election resigned");
  auto elected = third_.Wait(1);
  ASSERT_TRUE(elected.has_value());
  EXPECT_EQ(elected->type, Type::kElected);
  other_.Abandon();
}

TEST_F(SharedElectionTest, AMemberCampaignFailsWhenTheRealOneCannotStart) {
  real_.FailNextCampaigns(1);
  auto failed = shared_->member(0).Campaign(first_.Callback());
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error(), "in-memory election: campaign failed (injected)");
  EXPECT_EQ(group_->Campaigns(), 0u);
  // Nothing is left in progress: the next campaign of either member starts the real one.
  auto b = shared_->member(1).Campaign(second_.Callback());
  ASSERT_TRUE(b.ok());
  auto elected = second_.Wait(1);
  ASSERT_TRUE(elected.has_value());
  EXPECT_EQ(elected->type, Type::kElected);
  auto a = shared_->member(0).Campaign(first_.Callback());
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(first_.Wait(1).has_value());
  Drain();
  EXPECT_EQ(first_.size(), 1u);
}

TEST_F(SharedElectionTest, DestroyingItAbandonsTheRealCampaign) {
  ASSERT_TRUE(shared_->member(0).Campaign(first_.Callback()).ok());
  ASSERT_TRUE(first_.Wait(1).has_value());
  shared_.reset();
  EXPECT_EQ(group_->Campaigns(), 0u);
}

// One service's Run loop, reduced to what drives its election.
class DrivenService {
 public:
  DrivenService(core::LeaderElection& election, ops::Logger& logger, const Clock& clock)
      : driver_(&election, logger, clock, mutex_, wake_, Options(), Hooks()),
        thread_([this] { Run(); }) {}
  ~DrivenService() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

  void FenceFailed(const std::string& reason, std::optional<core::Fence> fence = std::nullopt) {
    driver_.FenceFailed(reason, std::move(fence));
  }
  // Waits until `done` holds for the counters; false after `timeout`.
  bool WaitFor(const std::function<bool(int elected, int deposed)>& done,
               std::chrono::milliseconds timeout = seconds(5)) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return done(elected_, deposed_); });
  }
  core::Fence fence() {
    std::lock_guard lock(mutex_);
    return fence_;
  }

 private:
  static ElectionDriverOptions Options() {
    ElectionDriverOptions options;
    options.elected_message = "elected leader (test)";
    options.retry.initial = milliseconds(10);
    options.retry.max = milliseconds(50);
    return options;
  }
  ElectionDriverHooks Hooks() {
    ElectionDriverHooks hooks;
    hooks.on_elected = [this](const core::Fence& fence, std::chrono::nanoseconds) {
      std::lock_guard lock(mutex_);
      ++elected_;
      fence_ = fence;
      changed_.notify_all();
    };
    hooks.on_deposed = [this] {
      std::lock_guard lock(mutex_);
      ++deposed_;
      changed_.notify_all();
    };
    return hooks;
  }
  void Run() {
    for (;;) {
      driver_.Poll();
      std::unique_lock lock(mutex_);
      if (stop_) break;
      wake_.wait_for(lock, milliseconds(20), [&] { return stop_ || driver_.HasEventsLocked(); });
      if (stop_) break;
    }
    driver_.StepDown("stopping (test)");
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable changed_;
  int elected_ = 0;
  int deposed_ = 0;
  core::Fence fence_;
  bool stop_ = false;
  ElectionDriver driver_;
  std::thread thread_;  // last
};

TEST_F(SharedElectionTest, TwoDriversOnOneSharedElectionLeadAndStepDownTogether) {
  SystemClock clock;
  auto sink = std::make_shared<ops::MemoryLogSink>();
  ops::Logger logger(sink, ops::LogFormat::kJson, ops::LogLevel::kDebug, clock);
  {
    DrivenService forward(shared_->member(0), logger, clock);
    DrivenService backward(shared_->member(1), logger, clock);
    auto led_once = [](int elected, int) { return elected == 1; };
    ASSERT_TRUE(forward.WaitFor(led_once));
    ASSERT_TRUE(backward.WaitFor(led_once));
    EXPECT_EQ(forward.fence().key, backward.fence().key);
    EXPECT_EQ(forward.fence().revision, backward.fence().revision);
    EXPECT_EQ(group_->Campaigns(), 1u);
    const int64_t first_revision = forward.fence().revision;

    // One direction's write finds its fence failed: both step down, then both lead again under
    // one new real campaign.
    forward.FenceFailed("check failed (test)");
    auto deposed_and_back = [](int elected, int deposed) { return deposed == 1 && elected == 2; };
    ASSERT_TRUE(forward.WaitFor(deposed_and_back));
    ASSERT_TRUE(backward.WaitFor(deposed_and_back));
    EXPECT_EQ(forward.fence().key, backward.fence().key);
    EXPECT_EQ(forward.fence().revision, backward.fence().revision);
    EXPECT_GT(forward.fence().revision, first_revision);

    // A write sent under the first term fails its fence only now (it waited out an outage): the
    // term won since stands.
    forward.FenceFailed("check failed (a write of the first term)",
                        core::Fence{forward.fence().key, first_revision});
    EXPECT_FALSE(forward.WaitFor([](int, int deposed) { return deposed > 1; }, milliseconds(300)));
    // One of the current term's does depose it.
    forward.FenceFailed("check failed (test)", forward.fence());
    auto deposed_twice = [](int elected, int deposed) { return deposed == 2 && elected == 3; };
    ASSERT_TRUE(forward.WaitFor(deposed_twice));
    ASSERT_TRUE(backward.WaitFor(deposed_twice));

    // The real leadership is lost: both step down, and lead again.
    group_->Depose("lost (test)");
    auto thrice = [](int elected, int deposed) { return deposed == 3 && elected == 4; };
    ASSERT_TRUE(forward.WaitFor(thrice));
    ASSERT_TRUE(backward.WaitFor(thrice));
    EXPECT_EQ(forward.fence().revision, backward.fence().revision);
    EXPECT_EQ(group_->Campaigns(), 1u);
  }
  // Both services stopped: nothing campaigns any more.
  EXPECT_EQ(group_->Campaigns(), 0u);
}

}  // namespace
}  // namespace zk2etcd::sync
