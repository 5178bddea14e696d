#include "sync/shared_election.h"

#include <utility>

namespace zk2etcd::sync {

namespace {

// Clears a member's campaign, keeping its numbering.
template <typename State>
void Clear(State& state) {
  const uint64_t last = state.last_campaign;
  state = State{};
  state.last_campaign = last;
}

}  // namespace

// A member's view: its calls go to the SharedElection with its index.
class SharedElection::Member final : public core::LeaderElection {
 public:
  Member(SharedElection& shared, size_t index) : shared_(shared), index_(index) {}

  Result<uint64_t, std::string> Campaign(
      std::function<void(const core::ElectionEvent&)> on_event) override {
    return shared_.CampaignMember(index_, std::move(on_event));
  }
  void Abandon() override { shared_.LeaveMember(index_, false); }
  void Resign() override { shared_.LeaveMember(index_, true); }
  std::string Describe() const override { return shared_.real_.Describe(); }

 private:
  SharedElection& shared_;
  const size_t index_;
};

SharedElection::SharedElection(core::LeaderElection& election, size_t members)
    : real_(election), states_(members), thread_([this] { DeliveryLoop(); }) {
  members_.reserve(members);
  for (size_t i = 0; i < members; ++i) members_.push_back(std::make_unique<Member>(*this, i));
}

SharedElection::~SharedElection() {
  {
    std::lock_guard calls(calls_mutex_);
    {
      std::lock_guard lock(mutex_);
      for (MemberState& state : states_) state = MemberState{};
      round_live_ = false;
      fence_.reset();
    }
    ApplyLocked(RealAction::kAbandon);
  }
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

core::LeaderElection& SharedElection::member(size_t i) { return *members_.at(i); }

Result<uint64_t, std::string> SharedElection::CampaignMember(
    size_t i, std::function<void(const core::ElectionEvent&)> on_event) {
  std::lock_guard calls(calls_mutex_);
  RealAction action = RealAction::kNone;
  {
    std::lock_guard lock(mutex_);
    // REQUIRES says none is in progress; were one, it is left as by Abandon.
    action = LeaveLocked(i, false);
    if (action == RealAction::kNone && round_live_) return JoinLocked(i, std::move(on_event));
  }
  // A real campaign that ended (or was just left) is abandoned before the next one starts.
  ApplyLocked(RealAction::kAbandon);
  uint64_t round = 0;
  uint64_t campaign = 0;
  {
    std::lock_guard lock(mutex_);
    round = ++rounds_;
    round_live_ = true;
    fence_.reset();
    campaign = JoinLocked(i, std::move(on_event));
  }
  // Not under mutex_: the real election may deliver inline, or wait for its callbacks.
  auto started = real_.Campaign(
      [this, round](const core::ElectionEvent& event) { OnRealEvent(round, event); });
  if (!started.ok()) {
    std::lock_guard lock(mutex_);
    if (rounds_ == round) round_live_ = false;
    if (states_[i].campaign == campaign) Clear(states_[i]);
    return Unexpected{std::move(started).error()};
  }
  real_in_progress_ = true;
  return campaign;
}

void SharedElection::LeaveMember(size_t i, bool resign) {
  std::lock_guard calls(calls_mutex_);
  RealAction action = RealAction::kNone;
  {
    std::lock_guard lock(mutex_);
    action = LeaveLocked(i, resign);
  }
  ApplyLocked(action);
}

void SharedElection::ApplyLocked(RealAction action) {
  if (action == RealAction::kNone || !real_in_progress_) return;
  real_in_progress_ = false;
  if (action == RealAction::kResign) {
    real_.Resign();
  } else {
    real_.Abandon();
  }
}

SharedElection::RealAction SharedElection::LeaveLocked(size_t i, bool resign) {
  MemberState& state = states_.at(i);
  if (state.campaign == 0) return RealAction::kNone;
  const bool current_round = state.round == rounds_;
  Clear(state);
  if (!current_round) return RealAction::kNone;   // a newer real campaign is not its to end
  if (!round_live_) return RealAction::kAbandon;  // ended already: only tidy up
  // The process no longer leads (or campaigns) for every member: end the others' campaigns.
  round_live_ = false;
  fence_.reset();
  for (size_t other = 0; other < states_.size(); ++other) {
    MemberState& peer = states_[other];
    if (peer.campaign == 0 || peer.round != rounds_ || peer.ended) continue;
    peer.ended = true;
    core::ElectionEvent ended;
    ended.type = core::ElectionEvent::Type::kEnded;
    ended.campaign = peer.campaign;
    ended.reason = resign ? "a service sharing the election resigned"
                          : "a service sharing the election stepped down";
    PostLocked(other, std::move(ended));
  }
  return resign ? RealAction::kResign : RealAction::kAbandon;
}

uint64_t SharedElection::JoinLocked(size_t i,
                                    std::function<void(const core::ElectionEvent&)> on_event) {
  MemberState& state = states_.at(i);
  state.campaign = ++state.last_campaign;
  state.round = rounds_;
  state.elected = false;
  state.ended = false;
  state.on_event = std::move(on_event);
  if (fence_) {  // the leadership holds: this member leads too
    state.elected = true;
    core::ElectionEvent elected;
    elected.type = core::ElectionEvent::Type::kElected;
    elected.campaign = state.campaign;
    elected.fence = *fence_;
    PostLocked(i, std::move(elected));
  }
  return state.campaign;
}

void SharedElection::PostLocked(size_t i, core::ElectionEvent event) {
  queue_.push_back(Delivery{i, std::move(event)});
  ++posted_;
  wake_.notify_all();
}

void SharedElection::OnRealEvent(uint64_t round, const core::ElectionEvent& event) {
  std::lock_guard lock(mutex_);
  if (round != rounds_ || !round_live_) return;  // an abandoned or ended real campaign's
  const bool elected = event.type == core::ElectionEvent::Type::kElected;
  if (elected) {
    if (fence_) return;  // once
    fence_ = event.fence;
  } else {
    round_live_ = false;
    fence_.reset();
  }
  for (size_t i = 0; i < states_.size(); ++i) {
    MemberState& state = states_[i];
    if (state.campaign == 0 || state.round != round || state.ended) continue;
    if (elected && state.elected) continue;
    core::ElectionEvent copy = event;
    copy.campaign = state.campaign;
    if (elected) {
      state.elected = true;
    } else {
      state.ended = true;
    }
    PostLocked(i, std::move(copy));
  }
}

void SharedElection::DeliveryLoop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, nothing left
    Delivery delivery = std::move(queue_.front());
    queue_.pop_front();
    const MemberState& state = states_[delivery.member];
    // Under mutex_, so that nothing is delivered for a campaign once its Abandon returned.
    if (state.campaign == delivery.event.campaign && state.on_event) state.on_event(delivery.event);
    ++delivered_;
    wake_.notify_all();
  }
}

void SharedElection::Drain() {
  if (std::this_thread::get_id() == thread_.get_id()) return;
  std::unique_lock lock(mutex_);
  const uint64_t target = posted_;
  wake_.wait(lock, [&] { return delivered_ >= target || stop_; });
}

}  // namespace zk2etcd::sync
