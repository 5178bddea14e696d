// ElectionDriver: the part of a service's Run loop that drives a core::LeaderElection, shared by
// SyncService and MirrorService. It campaigns, follows the campaign's events, and calls its
// owner's hooks when the process is elected or deposed; the owner keeps only what it does then.
//
//   - Poll() handles the queued events, then starts a campaign when none is in progress, the
//     process does not lead, and the retry time has come. A campaign that cannot start (the
//     election's server unreachable) is retried with `retry` backoff; the first failure in a row
//     is a warning, the following ones debug lines, until the next election.
//   - An event of a campaign other than the current one (an abandoned campaign's) is ignored.
//     kElected of the current campaign while campaigning: the process leads (log `elected_message`,
//     then hooks.on_elected). kEnded of the current campaign while campaigning or leading:
//     StepDown.
//   - StepDown logs "leadership lost: standing by" (it led) or "campaign ended; campaigning
//     again", abandons the campaign, then calls hooks.on_deposed. The next campaign starts at once
//     the first time (losing a lease to an outage is no reason to wait once the server answers);
//     repeated step-downs back off.
//
//   - After StopCampaigning() (the process stops), no campaign starts, and StepDown logs
//     "leadership ended: stopping" at info level instead of campaigning again: another service of
//     the process that resigns a shared election (zk2zk) must not make this one take a new lock
//     on its way out.
//
// Without an election (null), the process always leads: Active() is true, Poll() does nothing and
// nothing is ever enqueued.
//
// Thread-safety: the election's callbacks and FenceFailed() only enqueue, under the owner's mutex
// (given at construction), and notify the owner's condition variable. HasEventsLocked() requires
// that mutex held. Every other method, and every hook, runs on the owner's Run thread, without
// the owner's mutex held (they take it themselves); the hooks may take it too.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include "common/backoff.h"
#include "common/clock.h"
#include "core/leader_election.h"
#include "ops/log.h"

namespace zk2etcd::sync {

struct ElectionDriverOptions {
  // Logged with the fence's key and revision when elected, e.g. "elected leader: syncing".
  std::string elected_message;
  // Also log "campaigning for leadership" at each campaign's start, and the campaign's duration
  // (campaign_ms) with `elected_message`.
  bool log_campaigns = false;
  // The backoff of campaigns that cannot start and of repeated step-downs.
  BackoffOptions retry;
};

struct ElectionDriverHooks {
  // A campaign started (the process waits to be elected).
  std::function<void()> on_campaigning;
  // Elected: `fence` is leader() from now on; `campaign_time` is the time since the campaign
  // started (a standby's includes the wait for the old leader's lease).
  std::function<void(const core::Fence& fence, std::chrono::nanoseconds campaign_time)> on_elected;
  // No longer leading nor campaigning: leader() is empty from now on.
  std::function<void()> on_deposed;
};

class ElectionDriver {
 public:
  // `election` may be null (no election); it, `mutex` and `wake` must outlive the driver.
  ElectionDriver(core::LeaderElection* election, ops::Logger& logger, const Clock& clock,
                 std::mutex& mutex, std::condition_variable& wake, ElectionDriverOptions options,
                 ElectionDriverHooks hooks);

  // Handles the queued events, then campaigns if it is time to (see above). Run thread.
  void Poll();
  // Stops leading (or campaigning) at once, for `reason`; campaigns again later. Run thread.
  void StepDown(const std::string& reason);
  // No campaign starts from now on (any thread): the process is stopping.
  void StopCampaigning() { no_campaigns_.store(true); }
  // A write's leadership fence failed (any thread): once handled, a leader steps down, unless
  // `fence` (the one the write carried) is not the current leadership's: a write of an earlier
  // term that waited out an outage must not depose the term won since.
  void FenceFailed(const std::string& reason, std::optional<core::Fence> fence = std::nullopt);

  // Run thread.
  bool Active() const { return election_ == nullptr || leader_.has_value(); }
  const std::optional<core::Fence>& leader() const { return leader_; }
  // When the next campaign is due, if the driver waits for one (else nullopt): the owner's Run
  // loop wakes no later than that.
  std::optional<std::chrono::steady_clock::time_point> NextCampaignAt() const;
  // REQUIRES: the owner's mutex held. Whether events wait for Poll().
  bool HasEventsLocked() const { return !events_.empty(); }
  // REQUIRES: the owner's mutex held. Whether the leadership (or the campaign) ended and Poll()
  // has not handled it yet: the Run thread may be waiting for a write's answer meanwhile, and
  // the status must not claim a leadership the lease no longer holds.
  bool EndingLocked() const;

 private:
  struct Event {
    enum class Type { kElected, kEnded, kNotLeader };
    Type type = Type::kElected;
    uint64_t campaign = 0;
    core::Fence fence;
    std::string reason;
    std::optional<core::Fence> failed_fence =
        std::nullopt;  // kNotLeader: the fence that failed, if known
  };

  void Enqueue(Event event);
  void StartCampaign();
  void BecomeLeader(core::Fence fence);

  core::LeaderElection* const election_;
  ops::Logger& logger_;
  const Clock& clock_;
  std::mutex& mutex_;
  std::condition_variable& wake_;
  const ElectionDriverOptions options_;
  const ElectionDriverHooks hooks_;

  // Run thread.
  std::optional<core::Fence> leader_;
  bool campaigning_ = false;
  uint64_t campaign_ = 0;  // the number of the campaign in progress
  std::chrono::steady_clock::time_point campaign_started_{};
  Backoff backoff_;
  size_t failures_ = 0;  // campaigns that could not start, in a row since the last election
  std::chrono::steady_clock::time_point next_campaign_at_{};

  std::deque<Event> events_;  // guarded by mutex_
  std::atomic<bool> no_campaigns_{false};
};

}  // namespace zk2etcd::sync
