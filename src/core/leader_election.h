// LeaderElection: one leader among the replicas of a job (etcd's Election service today; a
// ZooKeeper lock for zk2zk). Only the leader reads and writes; its writes carry the Fence it was
// elected with, so that a deposed leader's writes fail.
//
// The engine drives it: Campaign() starts one campaign; the election reports kElected once, and
// kEnded when that campaign or the leadership it won ends (lease lost, the server refused). The
// engine then Abandon()s it and campaigns again when it decides to. Each campaign has a number,
// carried by its events, so that an event of an abandoned campaign can be told apart.
//
// Thread-safety: every method is thread-safe; events come on the election's threads and must
// only be enqueued.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "common/result.h"
#include "core/sink.h"

namespace zk2etcd::core {

struct ElectionEvent {
  enum class Type { kElected, kEnded };
  Type type = Type::kElected;
  uint64_t campaign = 0;
  Fence fence;         // kElected
  std::string reason;  // kEnded
};

class LeaderElection {
 public:
  virtual ~LeaderElection() = default;
  // Starts a campaign (after clearing a leadership this replica left behind, when it can tell)
  // and returns its number; events go to `on_event`. Fails without calling `on_event` when the
  // campaign could not start (the server does not answer): try again later.
  // REQUIRES: no campaign in progress (Abandon or Resign first).
  virtual Result<uint64_t, std::string> Campaign(
      std::function<void(const ElectionEvent&)> on_event) = 0;
  // Ends the current campaign or leadership without handing it over (it ends with its lease);
  // no more events come for it. Idempotent.
  virtual void Abandon() = 0;
  // Hands leadership over at once, so a standby takes over without waiting for the lease, and
  // ends the campaign. Blocking. Idempotent.
  virtual void Resign() = 0;
  // For logs: what is campaigned for, and as whom.
  virtual std::string Describe() const = 0;
};

}  // namespace zk2etcd::core
