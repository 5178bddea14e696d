// InMemoryElection: a core::LeaderElection among replicas of one process, for the engine's unit
// tests (no etcd).
//
// Replicas share an InMemoryElectionGroup. Campaigns queue in the order they start; the first is
// elected at once (kElected, Fence{"<prefix>/<identity>", a revision unique in the group, taken
// when the campaign starts}), the others wait and are elected in turn when the leader Abandons,
// Resigns or is Depose()d (kEnded to the leader). Abandon and Resign both hand over at once
// (there are no leases here). A group attached to an InMemorySink keeps the sink's fence on the
// leader's (nullopt without one), changed before the events that announce it go out. Events come
// on each election's own worker thread, never inline; an event of a campaign abandoned meanwhile
// is dropped. Breaking a REQUIRES (Campaign during a campaign) aborts with a message.
//
// Thread-safety: every method of both classes is thread-safe. Lock order: election, group, sink.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "core/leader_election.h"
#include "core/sink.h"
#include "core/testing/in_memory_sink.h"
#include "core/testing/worker.h"

namespace zk2etcd::core::memory {

class InMemoryElection;

class InMemoryElectionGroup {
 public:
  explicit InMemoryElectionGroup(std::string prefix = "/election");

  // From now on `sink`'s fence follows the leader (nullptr: no sink). `sink` must outlive the
  // group or be detached.
  void AttachSink(InMemorySink* sink);
  // Ends the current leadership (kEnded to the leader); the next campaign in line is elected.
  // Nothing happens without a leader.
  void Depose(const std::string& reason = "deposed (test)");

  std::optional<Fence> LeaderFence() const;
  std::string Leader() const;  // the leader's identity; empty without one
  size_t Campaigns() const;    // in line, the leader included

 private:
  friend class InMemoryElection;
  struct Campaign {
    InMemoryElection* election = nullptr;
    uint64_t number = 0;
    std::string identity;
    Fence fence;
  };
  void Join(InMemoryElection* election, uint64_t number, const std::string& identity);
  void Leave(InMemoryElection* election);
  // After the front changed: the fence follows, and the new front (if any) is elected.
  void ElectFrontLocked();

  const std::string prefix_;
  mutable std::mutex mu_;
  std::deque<Campaign> line_;  // the front is the leader
  int64_t revision_ = 0;
  InMemorySink* sink_ = nullptr;
};

class InMemoryElection : public LeaderElection {
 public:
  InMemoryElection(std::shared_ptr<InMemoryElectionGroup> group, std::string identity);
  ~InMemoryElection() override;  // Abandon()

  // core::LeaderElection.
  Result<uint64_t, std::string> Campaign(
      std::function<void(const ElectionEvent&)> on_event) override;
  void Abandon() override;
  void Resign() override;
  std::string Describe() const override;

  // The next `n` Campaign() calls fail (the server does not answer).
  void FailNextCampaigns(int n);
  // Waits until every event owed so far has been delivered (or dropped).
  void Drain();

 private:
  friend class InMemoryElectionGroup;
  void Post(ElectionEvent event);  // from the group, under its lock

  const std::shared_ptr<InMemoryElectionGroup> group_;
  const std::string identity_;
  mutable std::mutex mu_;
  uint64_t campaign_ = 0;  // in progress (until Abandon or Resign, even after kEnded); 0: none
  uint64_t last_campaign_ = 0;
  std::function<void(const ElectionEvent&)> on_event_;
  int fail_campaigns_ = 0;
  Worker worker_;  // last: joined first
};

}  // namespace zk2etcd::core::memory
