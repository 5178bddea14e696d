// SharedElection: several services of one process follow ONE core::LeaderElection, so that they
// lead, and step down, together. zk2zk runs two SyncServices (one per direction) under one lock:
// the process leads for both or for neither.
//
// Each member(i) is a core::LeaderElection for one service (its ElectionDriver). Joint leadership:
//   - The real campaign starts when a member campaigns and none is in progress (a real campaign
//     that ended is abandoned first). A member that campaigns while one is in progress joins it.
//   - kElected of the real campaign goes, with its fence, to every member campaigning then, and
//     to a member that joins later while the leadership holds.
//   - kEnded of the real campaign ends every member's campaign (with its reason).
//   - A member's Abandon while it campaigns or leads abandons the real campaign too, and every
//     other member's campaign ends (kEnded): a service that steps down (a failed fence, say)
//     means the process no longer leads for both. A member's Resign resigns the real one the same
//     way. A member whose campaign had already ended leaves without touching a newer real
//     campaign.
//   - Member campaign numbers are the member's own: each Campaign returns a fresh number, carried
//     by that campaign's events. A Campaign that cannot start the real campaign fails with the
//     real one's error. Describe() is the real one's.
//
// Events reach members from one internal delivery thread, in the order they were decided, never
// inline in a member's Campaign; none comes for a member's campaign once its Abandon or Resign
// has returned.
//
// Thread-safety: every method of the SharedElection and of its members is thread-safe. Calls into
// the real election are serialised and never made under the lock the real election's event
// callback takes, so a real election whose Abandon waits for its callbacks (ZooKeeperElection)
// cannot deadlock here; as with any election, members' methods must not be called from their
// own event callbacks. REQUIRES: the real election outlives the SharedElection, and the members
// are not used after it is destroyed.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/result.h"
#include "core/leader_election.h"

namespace zk2etcd::sync {

class SharedElection {
 public:
  SharedElection(core::LeaderElection& election, size_t members);
  // Abandons the real campaign, if any; undelivered events are dropped.
  ~SharedElection();
  SharedElection(const SharedElection&) = delete;
  SharedElection& operator=(const SharedElection&) = delete;

  // REQUIRES: i < members().
  core::LeaderElection& member(size_t i);
  size_t members() const { return members_.size(); }

  // Waits until every event decided so far has been delivered (or dropped). For tests; does
  // nothing on the delivery thread.
  void Drain();

 private:
  class Member;
  struct MemberState {
    uint64_t campaign = 0;       // in progress (until Abandon or Resign, even after kEnded)
    uint64_t last_campaign = 0;  // the member's own numbering
    uint64_t round = 0;          // the real campaign it joined
    bool elected = false;        // kElected decided for it
    bool ended = false;          // kEnded decided for it
    std::function<void(const core::ElectionEvent&)> on_event;
  };
  struct Delivery {
    size_t member = 0;
    core::ElectionEvent event;
  };
  enum class RealAction { kNone, kAbandon, kResign };

  Result<uint64_t, std::string> CampaignMember(size_t i,
                                               std::function<void(const core::ElectionEvent&)>);
  void LeaveMember(size_t i, bool resign);

  // REQUIRES: calls_mutex_ held.
  void ApplyLocked(RealAction action);
  // All REQUIRE mutex_ held.
  RealAction LeaveLocked(size_t i, bool resign);
  uint64_t JoinLocked(size_t i, std::function<void(const core::ElectionEvent&)> on_event);
  void PostLocked(size_t i, core::ElectionEvent event);

  void OnRealEvent(uint64_t round, const core::ElectionEvent& event);  // the real one's thread
  void DeliveryLoop();

  core::LeaderElection& real_;
  std::vector<std::unique_ptr<Member>> members_;

  // Serialises the calls into the real election; guards real_in_progress_.
  std::mutex calls_mutex_;
  bool real_in_progress_ = false;  // a real Campaign succeeded and was not abandoned since

  // Guards what follows; member callbacks run under it (on the delivery thread).
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<MemberState> states_;
  uint64_t rounds_ = 0;               // the number of the last real campaign started (0: none)
  bool round_live_ = false;           // ... and it neither ended nor was abandoned
  std::optional<core::Fence> fence_;  // its leadership, once elected
  std::deque<Delivery> queue_;
  uint64_t posted_ = 0;
  uint64_t delivered_ = 0;
  bool stop_ = false;
  std::thread thread_;  // last: starts once the rest is initialised
};

}  // namespace zk2etcd::sync
