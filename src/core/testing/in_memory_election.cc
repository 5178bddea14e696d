#include "core/testing/in_memory_election.h"

#include <algorithm>
#include <utility>

namespace zk2etcd::core::memory {

InMemoryElectionGroup::InMemoryElectionGroup(std::string prefix) : prefix_(std::move(prefix)) {}

void InMemoryElectionGroup::AttachSink(InMemorySink* sink) {
  std::lock_guard lock(mu_);
  sink_ = sink;
  if (sink_ != nullptr) {
    sink_->SetFence(line_.empty() ? std::nullopt : std::optional<Fence>(line_.front().fence));
  }
}

void InMemoryElectionGroup::Depose(const std::string& reason) {
  std::lock_guard lock(mu_);
  if (line_.empty()) return;
  const Campaign leader = line_.front();
  line_.pop_front();
  ElectFrontLocked();  // the fence moves on before the deposed leader hears of it
  ElectionEvent ended;
  ended.type = ElectionEvent::Type::kEnded;
  ended.campaign = leader.number;
  ended.reason = reason;
  leader.election->Post(std::move(ended));
}

std::optional<Fence> InMemoryElectionGroup::LeaderFence() const {
  std::lock_guard lock(mu_);
  if (line_.empty()) return std::nullopt;
  return line_.front().fence;
}

std::string InMemoryElectionGroup::Leader() const {
  std::lock_guard lock(mu_);
  return line_.empty() ? std::string() : line_.front().identity;
}

size_t InMemoryElectionGroup::Campaigns() const {
  std::lock_guard lock(mu_);
  return line_.size();
}

void InMemoryElectionGroup::Join(InMemoryElection* election, uint64_t number,
                                 const std::string& identity) {
  std::lock_guard lock(mu_);
  line_.push_back({election, number, identity, Fence{prefix_ + "/" + identity, ++revision_}});
  if (line_.size() == 1) ElectFrontLocked();
}

void InMemoryElectionGroup::Leave(InMemoryElection* election) {
  std::lock_guard lock(mu_);
  auto it = std::find_if(line_.begin(), line_.end(),
                         [&](const Campaign& c) { return c.election == election; });
  if (it == line_.end()) return;  // deposed already
  const bool was_leader = it == line_.begin();
  line_.erase(it);
  if (was_leader) ElectFrontLocked();
}

void InMemoryElectionGroup::ElectFrontLocked() {
  if (sink_ != nullptr) {
    sink_->SetFence(line_.empty() ? std::nullopt : std::optional<Fence>(line_.front().fence));
  }
  if (line_.empty()) return;
  ElectionEvent elected;
  elected.type = ElectionEvent::Type::kElected;
  elected.campaign = line_.front().number;
  elected.fence = line_.front().fence;
  line_.front().election->Post(std::move(elected));
}

InMemoryElection::InMemoryElection(std::shared_ptr<InMemoryElectionGroup> group,
                                   std::string identity)
    : group_(std::move(group)), identity_(std::move(identity)) {}

InMemoryElection::~InMemoryElection() { Abandon(); }

Result<uint64_t, std::string> InMemoryElection::Campaign(
    std::function<void(const ElectionEvent&)> on_event) {
  std::lock_guard lock(mu_);
  if (campaign_ != 0) ContractViolation("InMemoryElection::Campaign during a campaign");
  if (fail_campaigns_ > 0) {
    --fail_campaigns_;
    return Unexpected(std::string("in-memory election: campaign failed (injected)"));
  }
  campaign_ = ++last_campaign_;
  on_event_ = std::move(on_event);
  group_->Join(this, campaign_, identity_);
  return campaign_;
}

void InMemoryElection::Abandon() {
  std::lock_guard lock(mu_);
  if (campaign_ == 0) return;
  campaign_ = 0;
  on_event_ = nullptr;
  group_->Leave(this);
}

void InMemoryElection::Resign() { Abandon(); }

std::string InMemoryElection::Describe() const {
  return "in-memory election " + group_->prefix_ + " as " + identity_;
}

void InMemoryElection::FailNextCampaigns(int n) {
  std::lock_guard lock(mu_);
  fail_campaigns_ = n;
}

void InMemoryElection::Drain() { worker_.Flush(); }

void InMemoryElection::Post(ElectionEvent event) {
  worker_.Post([this, event = std::move(event)] {
    std::function<void(const ElectionEvent&)> on_event;
    {
      std::lock_guard lock(mu_);
      if (event.campaign != campaign_) return;  // abandoned meanwhile
      on_event = on_event_;
    }
    on_event(event);
  });
}

}  // namespace zk2etcd::core::memory
