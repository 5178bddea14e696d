#include "connectors/etcd/etcd_election.h"

#include <chrono>
#include <future>
#include <utility>

namespace zk2etcd::connectors {

TakeoverAction DecideTakeover(const std::optional<etcd::KeyValue>& leader,
                              const std::string& identity, int64_t own_previous_lease,
                              bool first_campaign) {
  if (!leader || leader->lease == 0) return TakeoverAction::kNone;
  if (own_previous_lease != 0 && leader->lease == own_previous_lease) {
    return TakeoverAction::kRevokeOwnLease;
  }
  if (identity.empty() || leader->value != identity) return TakeoverAction::kNone;
  return first_campaign ? TakeoverAction::kTakeOver : TakeoverAction::kWarnDuplicate;
}

EtcdElection::EtcdElection(etcd::EtcdClient& etcd, ops::Logger& logger, EtcdElectionOptions options)
    : etcd_(etcd), logger_(logger), options_(std::move(options)) {}

EtcdElection::~EtcdElection() {
  std::lock_guard calls(calls_mutex_);
  StopLocked();
}

void EtcdElection::ClearStaleLeadership() {
  auto current = etcd_.Leader(options_.name);
  std::optional<etcd::KeyValue> leader;
  if (current.ok()) {
    leader = std::move(current).value();
  } else if (current.error().code != etcd::ErrorCode::kNotFound) {
    // The campaign's own calls fail the same way and back off.
    logger_.Debug("cannot read the election's leader", {{"error", current.error().ToString()}});
    return;
  }
  const bool first_campaign = !leader_checked_;
  leader_checked_ = true;
  const TakeoverAction action =
      DecideTakeover(leader, options_.identity, previous_lease_id_, first_campaign);
  if (action == TakeoverAction::kNone) return;
  if (action == TakeoverAction::kWarnDuplicate) {
    logger_.Warn(
        "another live process leads with this replica's election identity; standing "
        "by. Give every replica its own --leader-elect-identity",
        {{"identity", options_.identity}, {"leader_key", leader->key}});
    return;
  }
  auto revoked = etcd_.LeaseRevoke(leader->lease);
  if (!revoked.ok() && revoked.error().code != etcd::ErrorCode::kNotFound) {
    logger_.Warn("cannot revoke the stale election lease; waiting for it to expire",
                 {{"leader_key", leader->key}, {"error", revoked.error().ToString()}});
    return;
  }
  if (action == TakeoverAction::kTakeOver) {
    logger_.Info(
        "took over the election from a previous process with the same identity",
        {{"identity", options_.identity}, {"leader_key", leader->key}, {"lease", leader->lease}});
  } else {
    logger_.Info("revoked this process's own stale election lease",
                 {{"leader_key", leader->key}, {"lease", leader->lease}});
  }
}

Result<uint64_t, std::string> EtcdElection::Campaign(
    std::function<void(const core::ElectionEvent&)> on_event) {
  std::lock_guard calls(calls_mutex_);
  StopLocked();  // REQUIRES says none is in progress; never two at once
  RevokeLeaseLocked();
  // The new lease is granted while the election's leader is read (one round trip instead of
  // two before the campaign starts): the two do not depend on each other, and a stale lease
  // that ClearStaleLeadership revokes is never the new one.
  const auto checking = std::chrono::steady_clock::now();
  auto granting =
      std::async(std::launch::async, [this] { return etcd_.LeaseGrant(options_.lease_ttl); });
  ClearStaleLeadership();
  auto lease = granting.get();
  if (lease.ok() && std::chrono::steady_clock::now() - checking > options_.lease_ttl / 2) {
    // The check was slow (etcd struggling, a failover): the new lease, not kept alive yet, may be
    // about to expire. A fresh one instead.
    (void)etcd_.LeaseRevoke(lease->id);
    lease = etcd_.LeaseGrant(options_.lease_ttl);
  }
  if (!lease.ok()) {
    return Unexpected{"cannot grant the election lease: " + lease.error().ToString()};
  }
  lease_id_ = lease->id;
  previous_lease_id_ = lease_id_;
  uint64_t campaign = 0;
  {
    std::lock_guard lock(mutex_);
    campaign = ++campaigns_;
    delivering_ = true;
    leader_key_.reset();
    on_event_ = std::move(on_event);
  }
  keepalive_ = etcd_.LeaseKeepAlive(lease_id_, [this, campaign](const etcd::Error& error) {
    OnEnded(campaign, error.ToString());
  });
  campaign_ = etcd_.Campaign(options_.name, lease_id_, options_.identity,
                             [this, campaign](etcd::EtcdResult<etcd::LeaderKey> result) {
                               if (result.ok()) {
                                 OnElected(campaign, *result);
                               } else {
                                 OnEnded(campaign, result.error().ToString());
                               }
                             });
  logger_.Info("campaigning for leadership; standing by until elected",
               {{"election", options_.name},
                {"identity", options_.identity},
                {"lease_ttl_s", static_cast<int64_t>(options_.lease_ttl.count())}});
  return campaign;
}

void EtcdElection::OnElected(uint64_t campaign, const etcd::LeaderKey& key) {
  std::lock_guard lock(mutex_);
  if (!delivering_ || campaign != campaigns_ || leader_key_) return;
  leader_key_ = key;
  core::ElectionEvent event;
  event.type = core::ElectionEvent::Type::kElected;
  event.campaign = campaign;
  event.fence = core::Fence{key.key, key.revision};
  on_event_(event);
}

void EtcdElection::OnEnded(uint64_t campaign, std::string reason) {
  std::lock_guard lock(mutex_);
  if (!delivering_ || campaign != campaigns_) return;
  delivering_ = false;  // kEnded is the campaign's last event
  leader_key_.reset();  // nothing left to resign
  core::ElectionEvent event;
  event.type = core::ElectionEvent::Type::kEnded;
  event.campaign = campaign;
  event.reason = std::move(reason);
  on_event_(event);
}

std::optional<etcd::LeaderKey> EtcdElection::StopLocked() {
  std::optional<etcd::LeaderKey> leader;
  {
    std::lock_guard lock(mutex_);
    delivering_ = false;
    leader = std::move(leader_key_);
    leader_key_.reset();
  }
  // Once cancelled, their callbacks are not running and never run again.
  campaign_.reset();
  keepalive_.reset();
  return leader;
}

void EtcdElection::RevokeLeaseLocked() {
  if (lease_id_ == 0) return;
  (void)etcd_.LeaseRevoke(lease_id_);  // usually gone already
  lease_id_ = 0;
}

void EtcdElection::Abandon() {
  std::lock_guard calls(calls_mutex_);
  StopLocked();
  // Not waited for: the lease is usually gone already, and when etcd does not answer (the outage
  // that ended the campaign) a wait would hold the engine's Run thread for a whole call timeout,
  // with the process still reported as leader. A revoke that fails ends with the lease's TTL,
  // unless Resign comes first and revokes it again.
  if (lease_id_ == 0) return;
  const int64_t id = lease_id_;
  lease_id_ = 0;
  abandoned_lease_->store(id);
  etcd_.LeaseRevokeAsync(id, [abandoned = abandoned_lease_, id](etcd::EtcdResult<void> result) {
    if (result.ok() || result.error().code == etcd::ErrorCode::kNotFound) {
      int64_t expected = id;
      abandoned->compare_exchange_strong(expected, 0);
    }
  });
}

void EtcdElection::Resign() {
  std::lock_guard calls(calls_mutex_);
  const std::optional<etcd::LeaderKey> leader = StopLocked();
  if (leader) {
    if (auto resigned = etcd_.Resign(*leader); !resigned.ok()) {
      logger_.Warn("could not resign leadership; it ends with the lease",
                   {{"error", resigned.error().ToString()}});
    } else {
      logger_.Info("resigned leadership");
    }
  }
  RevokeLeaseLocked();
  // A lease abandoned in an outage whose revoke has not been answered: a standby would wait for
  // its TTL if a campaign of it was still queued.
  // Waited for at most a second: in an outage the lease has usually expired already, and a stop
  // must not wait a whole request timeout for it.
  if (const int64_t abandoned = abandoned_lease_->exchange(0); abandoned != 0) {
    auto answered = std::make_shared<std::promise<void>>();
    std::future<void> answer = answered->get_future();
    etcd_.LeaseRevokeAsync(
        abandoned, [answered](etcd::EtcdResult<void> /*result*/) { answered->set_value(); });
    answer.wait_for(std::chrono::seconds(1));
  }
}

std::string EtcdElection::Describe() const {
  return "etcd election " + options_.name + " as " + options_.identity;
}

}  // namespace zk2etcd::connectors
