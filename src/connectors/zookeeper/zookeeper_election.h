// ZooKeeperElection: leader election among a job's replicas through a ZooKeeper lock
// (core::LeaderElection), the ephemeral-sequential recipe: zk2zk elects on its target ensemble.
//
// Each Campaign() opens a session of its own (a new client from the factory; Abandon, Resign and
// the next Campaign close it, so no state of an old session survives into a new campaign), creates
// the lock path's missing ancestors (persistent, empty), then one EPHEMERAL_SEQUENTIAL node
// "<lock_path>/lock-<seq>" whose data is this replica's identity. The lowest sequence among the
// "lock-" children leads: kElected with Fence{key = the lock node's path (client-relative, e.g.
// "/zk2zk/default/election/lock-0000000003"), revision = its czxid}. A sink fences every write by
// a multi Check(fence.key, -1), so the node exists exactly while this replica leads: a deposed
// replica's writes fail. Otherwise the campaign watches its predecessor (Exists with a watch) and
// lists the children again when it goes.
//
// The campaign ends (kEnded, once) when its session expires or ends otherwise (closed, the
// credentials rejected), or when its lock node disappears (deleted by someone). A disconnection
// alone is no end: the session may survive it (its node then too), and writes are fenced anyway;
// after a reconnection the children are listed again.
//
// Takeover (as EtcdElection's DecideTakeover): before creating its node, a campaign reads the
// lock's nodes. At the first campaign of the process, a node with this identity owned by another
// session is a killed predecessor of this replica (the same pod): it is deleted at once, so a
// restarted replica does not wait out the old session's timeout. A node owned by a session this
// process closed (whose close did not reach the ensemble) is deleted too. At later campaigns, a
// node with this identity and another owner belongs to another live process using the same
// identity: it is left alone, the campaign waits in line, and a warning is logged once per node
// (two such processes never flap).
//
// Events come on the campaign's client's delivery thread, never inline in Campaign(); none comes
// after Abandon() or Resign() returns. Campaign() fails (the error says why) when it cannot start:
// no session within `start_timeout` (the ensemble down or unreachable), or a request of the setup
// failed; its session is then closed, so a node it may have created goes with it.
//
// Thread-safety: every method is thread-safe. Campaign, Abandon, Resign and the destructor are
// serialised and block on ZooKeeper (Campaign for at most about start_timeout plus the setup's
// requests): never call them from the election's own event callback (it runs on the client's
// delivery thread, which they wait for). REQUIRES: the factory and the logger outlive the election.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/result.h"
#include "core/leader_election.h"
#include "ops/log.h"
#include "zk/zk_client.h"

namespace zk2etcd::connectors {

struct ZooKeeperElectionOptions {
  // The lock's parent node, e.g. "/zk2zk/default/election": lock nodes are
  // "<lock_path>/lock-<seq>". Client-relative (the factory's chroot applies).
  std::string lock_path;
  // This replica, as the lock node's data. Stable across restarts of the same replica (the
  // hostname: a Kubernetes pod's name), so that a restarted process recognises the node its
  // killed predecessor left behind and takes it over at once.
  std::string identity;
  // How long Campaign() waits for its session before failing.
  std::chrono::milliseconds start_timeout{5000};
};

// What a campaign does about an existing lock node (pure function): `data` and `ephemeral_owner`
// are the node's, `session_id` the campaign's session, `own_past_sessions` the sessions this
// process campaigned with before, `first_campaign` whether this process never read the lock's
// nodes before.
enum class LockTakeoverAction {
  kNone,            // another replica's node, or not an ephemeral one: wait in line
  kDeleteOwnStale,  // owned by a session this process closed: stale, delete it
  kTakeOver,        // this identity, another session, the process's first campaign: a killed
                    // predecessor of this replica; delete it
  kWarnDuplicate,   // this identity, another session, a later campaign: another live process
                    // uses the same identity (misconfigured); wait in line and warn
};
LockTakeoverAction DecideLockTakeover(const std::string& data, int64_t ephemeral_owner,
                                      const std::string& identity, int64_t session_id,
                                      const std::vector<int64_t>& own_past_sessions,
                                      bool first_campaign);

// The sequence number of a lock node name ("lock-0000000003" -> 3), or -1 for a name that is not
// one ("lock-" and 10 digits).
int64_t LockSequence(const std::string& name);

class ZooKeeperElection final : public core::LeaderElection {
 public:
  ZooKeeperElection(zk::ZkClientFactory& factory, ops::Logger& logger,
                    ZooKeeperElectionOptions options);
  // Closes the campaign's session (its lock node goes).
  ~ZooKeeperElection() override;
  ZooKeeperElection(const ZooKeeperElection&) = delete;
  ZooKeeperElection& operator=(const ZooKeeperElection&) = delete;

  Result<uint64_t, std::string> Campaign(
      std::function<void(const core::ElectionEvent&)> on_event) override;
  // Closes the session: the lock node goes and a standby takes over at once. No more events.
  void Abandon() override;
  // The same as Abandon (closing the session is the hand-over), logged as a resignation.
  void Resign() override;
  // "zookeeper lock <lock_path> as <identity>".
  std::string Describe() const override;

 private:
  // Stops delivering events, closes the campaign's session and destroys its client; returns
  // whether the campaign had been elected. REQUIRES: calls_mutex_ held.
  bool StopLocked();
  // Campaign's setup on its connected session: ancestors, takeover, the lock node. Returns the
  // node's Stat (its czxid is the fence's revision) and sets `node` to its path.
  // REQUIRES: calls_mutex_ held.
  Result<zk::Stat, std::string> SetUp(zk::ZkClient& client, int64_t session_id, std::string* node);
  void ClearStaleNodes(zk::ZkClient& client, int64_t session_id);  // REQUIRES: calls_mutex_

  // On the client's delivery thread.
  void OnSession(uint64_t campaign, const zk::SessionEvent& event);
  void OnWatch(uint64_t campaign, const zk::WatchEvent& event);
  void OnChildren(uint64_t campaign, zk::ZkResult<zk::ChildrenReply> result);
  void OnPredecessor(uint64_t campaign, const std::string& path,
                     zk::ZkResult<zk::ExistsReply> result);
  void OnOwnNode(uint64_t campaign, zk::ZkResult<zk::ExistsReply> result);

  // All REQUIRE mutex_ held.
  bool DeliveringLocked(uint64_t campaign) const;
  void CheckLocked();     // lists the lock's children: elected, or watch the predecessor
  void WatchOwnLocked();  // Exists(own node, watch): its deletion ends the campaign
  void EndLocked(std::string reason);
  void Emit(core::ElectionEvent event);

  zk::ZkClientFactory& factory_;
  ops::Logger& logger_;
  const ZooKeeperElectionOptions options_;

  // Serialises Campaign, Abandon, Resign and the destructor; guards what follows.
  std::mutex calls_mutex_;
  std::unique_ptr<zk::ZkClient> client_;  // the campaign's session
  bool lock_checked_ = false;             // a campaign has read the lock's nodes once
  std::deque<int64_t> past_sessions_;     // the last sessions this process campaigned with
  std::string warned_duplicate_;          // the last node warned about as a duplicate identity

  // Shared with the client's callbacks.
  std::mutex mutex_;
  std::condition_variable session_changed_;
  uint64_t campaigns_ = 0;        // the number of the last campaign
  zk::ZkClient* live_ = nullptr;  // client_ while its events matter
  bool connected_ = false;        // the campaign's session was established
  int64_t session_id_ = 0;        // ... with this id
  bool session_over_ = false;     // ... and then ended (expired, closed, auth failed)
  std::string session_end_;       // why
  bool delivering_ = false;       // events of campaign `campaigns_` are delivered
  bool elected_ = false;
  std::string node_;  // the campaign's lock node
  int64_t node_czxid_ = 0;
  std::string predecessor_;  // the node watched while waiting
  std::function<void(const core::ElectionEvent&)> on_event_;
};

}  // namespace zk2etcd::connectors
