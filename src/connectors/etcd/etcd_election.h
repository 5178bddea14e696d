// EtcdElection: leader election among a job's replicas through etcd's Election service
// (core::LeaderElection). A campaign grants a lease (kept alive in the background) and joins the
// election with a key bound to it, whose value is this replica's identity; the leader's fence is
// that key and its create revision. The campaign ends when the lease is lost or etcd refuses the
// campaign.
//
// Before a campaign, the election's current leader is read: a key this process left behind (its
// previous lease, lost in an outage) or, at the first campaign of the process, a key with this
// replica's identity (a killed predecessor) is stale and its lease is revoked, so that the
// replica leads again without waiting for the lease to expire (DecideTakeover).
//
// Abandon revokes the lease without waiting for the answer; Resign waits (a standby takes over
// at once), and revokes again a lease that Abandon left unconfirmed.
//
// Thread-safety: every method is thread-safe (Campaign, Abandon and Resign are serialised;
// Campaign and Resign make blocking etcd calls: not on the etcd client's callback thread). Events
// come on the client's callback thread. REQUIRES: the client and the logger outlive the election.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "common/result.h"
#include "core/leader_election.h"
#include "etcd/etcd_client.h"
#include "ops/log.h"

namespace zk2etcd::connectors {

struct EtcdElectionOptions {
  std::string name = "/zk2etcd/election";  // the election's key prefix in etcd
  // This replica, as the leader key's value. Stable across restarts of the same replica (the
  // hostname: a Kubernetes pod's name), so that a restarted process recognises the election key
  // its killed predecessor left behind and takes it over at once (see DecideTakeover).
  std::string identity;
  // A standby takes over within this long after the leader dies; keep-alives every third of it.
  std::chrono::seconds lease_ttl{5};
};

// What a campaign does about the election's current leader before joining (pure function).
enum class TakeoverAction {
  kNone,            // nobody leads, or another replica does: campaign and wait
  kRevokeOwnLease,  // the leader key is bound to a lease this process held and lost (an etcd
                    // outage): revoke it, the key is stale
  kTakeOver,        // the leader has this identity and this process never campaigned before: a
                    // killed predecessor of this replica; revoke its lease. Were it alive, its
                    // writes would fail on the leadership compare.
  kWarnDuplicate,   // the leader has this identity but this process campaigned before: another
                    // live process uses the same identity (misconfigured); campaign, wait, warn.
                    // It never takes over twice, so two such processes do not flap.
};
TakeoverAction DecideTakeover(const std::optional<etcd::KeyValue>& leader,
                              const std::string& identity, int64_t own_previous_lease,
                              bool first_campaign);

class EtcdElection final : public core::LeaderElection {
 public:
  EtcdElection(etcd::EtcdClient& etcd, ops::Logger& logger, EtcdElectionOptions options);
  // Stops the campaign's calls (the lease then expires on its own).
  ~EtcdElection() override;
  EtcdElection(const EtcdElection&) = delete;
  EtcdElection& operator=(const EtcdElection&) = delete;

  // Fails when the lease cannot be granted (the error names it).
  Result<uint64_t, std::string> Campaign(
      std::function<void(const core::ElectionEvent&)> on_event) override;
  void Abandon() override;
  void Resign() override;
  std::string Describe() const override;

 private:
  // Reads the current leader and revokes its lease when DecideTakeover says the key is stale.
  // REQUIRES: calls_mutex_ held.
  void ClearStaleLeadership();
  // Stops delivering events and cancels the campaign's calls; returns the leader key when the
  // campaign had won. REQUIRES: calls_mutex_ held.
  std::optional<etcd::LeaderKey> StopLocked();
  void RevokeLeaseLocked();  // REQUIRES: calls_mutex_ held
  // On the client's callback thread.
  void OnElected(uint64_t campaign, const etcd::LeaderKey& key);
  void OnEnded(uint64_t campaign, std::string reason);

  etcd::EtcdClient& etcd_;
  ops::Logger& logger_;
  const EtcdElectionOptions options_;

  // Serialises Campaign, Abandon and Resign; guards what follows.
  std::mutex calls_mutex_;
  int64_t lease_id_ = 0;
  // The lease Abandon revoked without waiting, until etcd confirms it gone (set by the revoke's
  // callback, on the client's callback thread; shared so that the callback never outlives it).
  std::shared_ptr<std::atomic<int64_t>> abandoned_lease_ =
      std::make_shared<std::atomic<int64_t>>(0);
  int64_t previous_lease_id_ = 0;  // the last lease this process campaigned with
  bool leader_checked_ = false;    // a campaign has read the current leader once
  std::unique_ptr<etcd::CallHandle> campaign_;
  std::unique_ptr<etcd::CallHandle> keepalive_;

  // Shared with the client's callbacks.
  std::mutex mutex_;
  uint64_t campaigns_ = 0;   // the number of the last campaign
  bool delivering_ = false;  // events of campaign `campaigns_` are delivered
  std::optional<etcd::LeaderKey> leader_key_;
  std::function<void(const core::ElectionEvent&)> on_event_;
};

}  // namespace zk2etcd::connectors
