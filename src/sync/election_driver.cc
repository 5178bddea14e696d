#include "sync/election_driver.h"

#include <algorithm>
#include <utility>

namespace zk2etcd::sync {

ElectionDriver::ElectionDriver(core::LeaderElection* election, ops::Logger& logger,
                               const Clock& clock, std::mutex& mutex, std::condition_variable& wake,
                               ElectionDriverOptions options, ElectionDriverHooks hooks)
    : election_(election),
      logger_(logger),
      clock_(clock),
      mutex_(mutex),
      wake_(wake),
      options_(std::move(options)),
      hooks_(std::move(hooks)),
      backoff_(options_.retry) {}

void ElectionDriver::Enqueue(Event event) {
  std::lock_guard lock(mutex_);
  events_.push_back(std::move(event));
  wake_.notify_all();
}

bool ElectionDriver::EndingLocked() const {
  return std::any_of(events_.begin(), events_.end(), [](const Event& event) {
    return event.type == Event::Type::kEnded || event.type == Event::Type::kNotLeader;
  });
}

void ElectionDriver::FenceFailed(const std::string& reason, std::optional<core::Fence> fence) {
  if (election_ == nullptr) return;  // nothing would handle it
  Event event;
  event.type = Event::Type::kNotLeader;
  event.reason = reason;
  event.failed_fence = std::move(fence);
  Enqueue(std::move(event));
}

std::optional<std::chrono::steady_clock::time_point> ElectionDriver::NextCampaignAt() const {
  if (election_ == nullptr || leader_ || campaigning_ || no_campaigns_.load()) return std::nullopt;
  return next_campaign_at_;
}

void ElectionDriver::Poll() {
  if (election_ == nullptr) return;
  std::deque<Event> events;
  {
    std::lock_guard lock(mutex_);
    events.swap(events_);
  }
  for (Event& event : events) {
    switch (event.type) {
      case Event::Type::kElected:
        if (event.campaign == campaign_ && campaigning_) BecomeLeader(std::move(event.fence));
        break;
      case Event::Type::kEnded:
        if (event.campaign == campaign_ && (campaigning_ || leader_)) StepDown(event.reason);
        break;
      case Event::Type::kNotLeader:
        if (!leader_) break;
        if (event.failed_fence && (event.failed_fence->key != leader_->key ||
                                   event.failed_fence->revision != leader_->revision)) {
          logger_.Info("a write of an earlier leadership failed its fence; the current one stands",
                       {{"fence", event.failed_fence->key},
                        {"fence_revision", event.failed_fence->revision},
                        {"leader", leader_->key},
                        {"leader_revision", leader_->revision}});
          break;
        }
        StepDown("a write's leadership fence failed: " + event.reason);
        break;
    }
  }
  if (!leader_ && !campaigning_ && !no_campaigns_.load() && clock_.Now() >= next_campaign_at_) {
    StartCampaign();
  }
}

void ElectionDriver::StartCampaign() {
  auto campaign = election_->Campaign([this](const core::ElectionEvent& event) {
    Enqueue({event.type == core::ElectionEvent::Type::kElected ? Event::Type::kElected
                                                               : Event::Type::kEnded,
             event.campaign, event.fence, event.reason});
  });
  if (!campaign.ok()) {
    const auto delay = backoff_.Next();
    const ops::LogLevel level = failures_++ == 0 ? ops::LogLevel::kWarn : ops::LogLevel::kDebug;
    logger_.Log(level, "cannot start a campaign for leadership; retrying",
                {{"election", election_->Describe()},
                 {"error", campaign.error()},
                 {"retry_in_ms", delay.count()}});
    next_campaign_at_ = clock_.Now() + delay;
    return;
  }
  campaign_ = *campaign;
  campaigning_ = true;
  campaign_started_ = clock_.Now();
  if (options_.log_campaigns) {
    logger_.Info("campaigning for leadership", {{"election", election_->Describe()}});
  }
  if (hooks_.on_campaigning) hooks_.on_campaigning();
}

void ElectionDriver::BecomeLeader(core::Fence fence) {
  const auto waited = clock_.Now() - campaign_started_;
  if (options_.log_campaigns) {
    logger_.Info(options_.elected_message,
                 {{"key", fence.key},
                  {"revision", fence.revision},
                  {"campaign_ms", std::chrono::duration<double, std::milli>(waited).count()}});
  } else {
    logger_.Info(options_.elected_message, {{"key", fence.key}, {"revision", fence.revision}});
  }
  leader_ = std::move(fence);
  campaigning_ = false;
  backoff_.Reset();
  failures_ = 0;
  if (hooks_.on_elected) hooks_.on_elected(*leader_, waited);
}

void ElectionDriver::StepDown(const std::string& reason) {
  if (no_campaigns_.load()) {
    if (leader_ || campaigning_) logger_.Info("leadership ended: stopping", {{"reason", reason}});
  } else if (leader_) {
    logger_.Warn("leadership lost: standing by", {{"reason", reason}});
  } else {
    logger_.Warn("campaign ended; campaigning again", {{"reason", reason}});
  }
  leader_.reset();
  if (election_ != nullptr) election_->Abandon();
  campaigning_ = false;
  // Campaign again at once the first time (losing a lease to an outage is no reason to wait
  // once the server answers); repeated failures back off.
  const std::chrono::milliseconds delay = backoff_.current();
  backoff_.Next();
  next_campaign_at_ = clock_.Now() + delay;
  if (hooks_.on_deposed) hooks_.on_deposed();
}

}  // namespace zk2etcd::sync
