#include "sync/sync_service.h"

#include <algorithm>

namespace zk2etcd::sync {

namespace {

std::string KindCounts(const ReconcileReport& report) {
  std::string text;
  for (auto kind :
       {Difference::Kind::kMissing, Difference::Kind::kChanged, Difference::Kind::kExtra,
        Difference::Kind::kForeign, Difference::Kind::kConflict}) {
    if (!text.empty()) text += " ";
    text += std::string(DifferenceKindName(kind)) + "=" + std::to_string(report.Count(kind));
  }
  return text;
}

std::string JoinKeys(const std::vector<std::string>& keys) {
  std::string text;
  for (const std::string& key : keys) text += (text.empty() ? "" : ",") + key;
  return text;
}

}  // namespace

Result<WatchMode, std::string> ParseWatchMode(std::string_view name) {
  if (name == "auto") return WatchMode::kAuto;
  if (name == "persistent") return WatchMode::kPersistent;
  if (name == "classic") return WatchMode::kClassic;
  return Unexpected{"unknown watch mode \"" + std::string(name) +
                    "\" (use auto, persistent or classic)"};
}

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

SyncService::SyncService(const Scope& scope, const KeyLayout& layout,
                         zk::ZkClientFactory& zk_factory, etcd::EtcdClient& etcd,
                         FencedWriter& writer, ownership::OwnershipStore* ownership,
                         ops::Logger& logger, const Clock& clock, SyncServiceOptions options)
    : scope_(scope),
      layout_(layout),
      zk_factory_(zk_factory),
      etcd_(etcd),
      writer_(writer),
      ownership_(ownership),
      logger_(logger),
      clock_(clock),
      options_(std::move(options)),
      incremental_(scope, layout, writer, ownership, logger, clock,
                   IncrementalSyncOptions{options_.concurrent,
                                          [this](const AppliedChange& change) {
                                            if (change.not_leader) {
                                              std::lock_guard lock(mutex_);
                                              election_events_.push_back(
                                                  {ElectionEvent::Type::kNotLeader, std::nullopt,
                                                   change.error, 0});
                                              wake_.notify_all();
                                            }
                                            if (options_.on_change) options_.on_change(change);
                                          },
                                          0x7ace, ownership::OwnershipRecorderOptions{},
                                          [this] { OnOwnershipStoreBack(); }}),
      classic_(scope, incremental_, logger),
      reconciler_(scope, layout, etcd, &writer, ownership, logger, clock) {
  status_.leader = !options_.election.has_value();
  fullsync_interval_ = options_.fullsync_interval;
}

void SyncService::SetFullSyncInterval(std::chrono::nanoseconds interval) {
  std::lock_guard lock(mutex_);
  if (interval != fullsync_interval_) {
    // The next period starts now.
    next_full_sync_ = clock_.Now() + interval;
  }
  fullsync_interval_ = interval;
  wake_.notify_all();
}

SyncService::~SyncService() {
  Stop();
  incremental_.SetClient(nullptr);
  // Its thread calls back into this object; stop it before any member goes.
  incremental_.StopOwnershipUpdates();
}

void SyncService::Stop() {
  cancel_.store(true);
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
    wake_.notify_all();
  }
  CloseClient();
}

void SyncService::AdoptClient(std::unique_ptr<zk::ZkClient> client) {
  std::lock_guard lock(client_mutex_);
  client_ = std::move(client);
  live_client_ = client_.get();
  if (cancel_.load()) client_->Close();
}

void SyncService::DropClient() {
  {
    std::lock_guard lock(client_mutex_);
    live_client_ = nullptr;
  }
  if (client_ != nullptr) client_->Close();
  client_.reset();
}

void SyncService::CloseClient() {
  std::lock_guard lock(client_mutex_);
  if (live_client_ != nullptr) live_client_->Close();
}

void SyncService::OnOwnershipStoreBack() {
  // A reconciliation that deferred deletes goes again now rather than after its backoff.
  if (reconcile_deferred_deletes_.exchange(false)) RequestReconcile();
}

void SyncService::RequestReconcile() {
  std::lock_guard lock(mutex_);
  reconcile_requested_ = true;
  wake_.notify_all();
}

SyncStatus SyncService::Status() const {
  SyncStatus status;
  {
    std::lock_guard lock(mutex_);
    status = status_;
  }
  status.queue_depth = incremental_.queue_depth();
  if (status.zk_connected) {
    status.watches = status.classic_watches ? classic_.watched_parents() : scope_.prefixes().size();
  }
  status.pending_writes = writer_.pending();
  status.deferred_deletes = incremental_.deferred_deletes();
  status.ownership_updates = incremental_.ownership_updates_queued();
  return status;
}

void SyncService::Enqueue(zk::SessionEvent event) {
  std::lock_guard lock(mutex_);
  session_events_.push_back(std::move(event));
  wake_.notify_all();
}

bool SyncService::OpenSession() {
  zk::ZkEventHandlers handlers;
  handlers.on_watch = [this](const zk::WatchEvent& event) {
    if (classic_mode_.load()) {
      classic_.OnWatchEvent(event);
    } else {
      incremental_.OnWatchEvent(event);
    }
  };
  handlers.on_session = [this](const zk::SessionEvent& event) { Enqueue(event); };
  auto client = zk_factory_.NewClient(std::move(handlers));
  if (!client.ok()) {
    logger_.Warn("cannot create a ZooKeeper client", {{"error", client.error().ToString()}});
    return false;
  }
  AdoptClient(std::move(client).value());
  // Watches first, then the walk: nothing can change unseen in between. In classic mode the
  // walk itself sets the watches, each in the read that sees the node.
  bool classic = options_.watch_mode == WatchMode::kClassic;
  for (size_t i = 0; !classic && i < scope_.prefixes().size(); ++i) {
    const std::string& prefix = scope_.prefixes()[i];
    auto added = zk::blocking::AddWatch(*client_, prefix, zk::AddWatchMode::kPersistentRecursive);
    if (added.ok()) continue;
    if (added.error().code == zk::ZkErrorCode::kUnimplemented) {
      if (options_.watch_mode == WatchMode::kAuto) {
        logger_.Warn("the ZooKeeper server has no persistent watches (older than 3.6): using "
                     "one-shot watches on every node");
        classic = true;
        break;
      }
      fatal_ = "the ZooKeeper server does not support persistent recursive watches (3.6+); "
               "use --zookeeper-watch-mode=classic or auto";
    }
    if (!cancel_.load()) {
      logger_.Warn("cannot register the persistent recursive watch; retrying",
                   {{"prefix", prefix}, {"error", added.error().ToString()}});
    }
    DropClient();
    return false;
  }
  classic_mode_.store(classic);
  incremental_.SetReadWithWatch(classic);
  classic_.SetClient(classic ? client_.get() : nullptr);
  watches_registered_ = true;
  const zk::SessionInfo session = client_->session();
  logger_.Info("zookeeper session open, watches registered",
               {{"session_id", session.session_id},
                {"server", session.server},
                {"prefixes", scope_.prefixes().size()}});
  {
    std::lock_guard lock(mutex_);
    status_.zk_connected = true;
    status_.session_id = session.session_id;
    status_.classic_watches = classic;
  }
  incremental_.SetClient(Active() ? client_.get() : nullptr);
  reconcile_needed_ = true;
  reconcile_backoff_.Reset();
  next_reconcile_at_ = {};
  session_backoff_.Reset();
  return true;
}

std::optional<std::string> SyncService::HandleSessionEvent(const zk::SessionEvent& event) {
  const bool current = client_ != nullptr && event.session_id == client_->session().session_id;
  switch (event.type) {
    case zk::SessionEventType::kConnected:
      break;
    case zk::SessionEventType::kDisconnected:
      if (!current) break;
      logger_.Warn("zookeeper connection lost; reconnecting",
                   {{"server", event.server}, {"reason", event.reason}});
      {
        std::lock_guard lock(mutex_);
        status_.zk_connected = false;
      }
      break;
    case zk::SessionEventType::kReconnected:
      if (!current) break;
      logger_.Info("zookeeper reconnected with the same session; reconciling what the watches "
                   "could not see",
                   {{"server", event.server}});
      {
        std::lock_guard lock(mutex_);
        status_.zk_connected = true;
      }
      incremental_.Resume();
      reconcile_needed_ = true;
      next_reconcile_at_ = {};
      break;
    case zk::SessionEventType::kAuthFailed:
      return "ZooKeeper refused the credentials (--zookeeper-digest): " + event.reason;
    case zk::SessionEventType::kExpired:
    case zk::SessionEventType::kClosed:
      if (!current) break;
      if (!cancel_.load()) {
        logger_.Warn("zookeeper session ended; opening a new one and reconciling everything",
                     {{"session_id", event.session_id}, {"reason", event.reason}});
      }
      incremental_.SetClient(nullptr);
      classic_.SetClient(nullptr);
      DropClient();
      watches_registered_ = false;
      {
        std::lock_guard lock(mutex_);
        status_.zk_connected = false;
      }
      break;
  }
  return std::nullopt;
}

void SyncService::Reconcile() {
  const auto started = clock_.Now();
  ReconcileOptions options;
  options.cancel = &cancel_;
  options.fix = true;
  options.zk_window = options_.concurrent;
  options.keep_differences = false;  // counted, not listed: memory stays one chunk
  options.etcd_page_size = options_.etcd_page_size;
  options.adopt = options_.adopt;
  options.on_progress = [this](size_t nodes) {
    logger_.Info("reconciliation progress", {{"nodes_read", nodes}});
  };
  if (classic_mode_.load()) {
    options.set_watches = true;
    options.on_children = [this](const std::string& path, const std::vector<std::string>& names) {
      classic_.NoteChildren(path, names);
    };
  }
  logger_.Info("reconciliation started");
  auto result = reconciler_.Run(*client_, options);
  if (result.ok()) {
    const ReconcileReport& report = *result;
    logger_.Info("reconciliation done",
                 {{"zk_nodes", report.zk_nodes},
                  {"etcd_keys", report.etcd_keys},
                  {"in_sync", report.in_sync},
                  {"differences", report.VisibleDifferences()},
                  {"by_kind", KindCounts(report)},
                  {"fixed_puts", report.fixed_puts},
                  {"fixed_deletes", report.fixed_deletes},
                  {"adopted", report.adopted},
                  {"stale", report.stale},
                  {"failed", report.failed},
                  {"deferred_deletes", report.deferred_deletes},
                  {"seconds", std::chrono::duration<double>(report.duration).count()},
                  {"walk_s", std::chrono::duration<double>(report.walk_duration).count()},
                  {"diff_s", std::chrono::duration<double>(report.diff_duration).count()},
                  {"recheck_s", std::chrono::duration<double>(report.recheck_duration).count()},
                  {"repair_s", std::chrono::duration<double>(report.repair_duration).count()}});
    if (report.unclaimed > 0 && ownership_ == nullptr && options_.adopt == AdoptPolicy::kNone) {
      logger_.Warn(
          "keys equal to ZooKeeper but without an ownership record are left alone and "
          "will not be updated (--adopt=matching adopts them)",
          {{"keys", report.unclaimed}});
    }
    if (const size_t foreign = report.Count(Difference::Kind::kForeign); foreign > 0) {
      logger_.Info("keys without an ownership record and without a znode are another writer's: "
                   "left alone",
                   {{"keys", foreign}, {"first", JoinKeys(report.foreign_samples)}});
    }
    if (const size_t conflicts = report.Count(Difference::Kind::kConflict); conflicts > 0) {
      logger_.Warn(
          "keys without an ownership record hold a value that differs from ZooKeeper: "
          "left alone (--adopt=all would overwrite them)",
          {{"keys", conflicts}, {"first", JoinKeys(report.conflict_samples)}});
    }
    if (report.adopted > 0) {
      // Changes that reached these keys while they were not yet ours were refused as foreign;
      // now that they are ours, they are read and written again.
      incremental_.RetryForeign();
    } else {
      incremental_.ForgetForeign();
    }
    // Deletes deferred because the ownership store did not answer: the retries back off (each
    // is a full walk) and the store's return brings the next one forward.
    if (report.deferred_deletes == 0) reconcile_backoff_.Reset();
    if (report.deferred_deletes > 0) {
      reconcile_deferred_deletes_.store(true);
      incremental_.ReportOwnershipStoreUnreachable(
          {ownership::OwnershipErrorCode::kUnavailable, "the reconciliation deferred deletes"});
    }
    // Failed repairs or deferred deletes are retried soon rather than at the next period.
    if (report.failed > 0 || report.deferred_deletes > 0) {
      reconcile_needed_ = true;
      next_reconcile_at_ = clock_.Now() + reconcile_backoff_.Next();
    }
    std::lock_guard lock(mutex_);
    // A fixed period, start to start; a late run is not followed by a catch-up run.
    next_full_sync_ = started + fullsync_interval_;
    status_.first_sync_done = true;
    ++status_.reconciliations;
    status_.last_reconcile_success = clock_.WallNow();
  } else if (cancel_.load()) {
    logger_.Info("reconciliation stopped", {{"reason", result.error().message}});
  } else {
    const auto delay = reconcile_backoff_.Next();
    logger_.Warn("reconciliation failed; retrying",
                 {{"error", result.error().message}, {"retry_in_ms", delay.count()}});
    reconcile_needed_ = true;
    next_reconcile_at_ = clock_.Now() + delay;
  }
  if (options_.on_reconcile) options_.on_reconcile(result);
}

void SyncService::ClearStaleLeadership() {
  const ElectionOptions& election = *options_.election;
  auto current = etcd_.Leader(election.name);
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
      DecideTakeover(leader, election.identity, previous_lease_id_, first_campaign);
  if (action == TakeoverAction::kNone) return;
  if (action == TakeoverAction::kWarnDuplicate) {
    logger_.Warn(
        "another live process leads with this replica's election identity; standing "
        "by. Give every replica its own --leader-elect-identity",
        {{"identity", election.identity}, {"leader_key", leader->key}});
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
        {{"identity", election.identity}, {"leader_key", leader->key}, {"lease", leader->lease}});
  } else {
    logger_.Info("revoked this process's own stale election lease",
                 {{"leader_key", leader->key}, {"lease", leader->lease}});
  }
}

void SyncService::StartCampaign() {
  const ElectionOptions& election = *options_.election;
  ClearStaleLeadership();
  auto lease = etcd_.LeaseGrant(election.lease_ttl);
  if (!lease.ok()) {
    const auto delay = election_backoff_.Next();
    const ops::LogLevel level =
        election_failures_++ == 0 ? ops::LogLevel::kWarn : ops::LogLevel::kDebug;
    logger_.Log(level, "cannot grant the election lease; retrying",
                {{"error", lease.error().ToString()}, {"retry_in_ms", delay.count()}});
    next_campaign_at_ = clock_.Now() + delay;
    return;
  }
  lease_id_ = lease->id;
  previous_lease_id_ = lease_id_;
  const int64_t id = lease_id_;
  keepalive_ = etcd_.LeaseKeepAlive(id, [this, id](const etcd::Error& error) {
    std::lock_guard lock(mutex_);
    election_events_.push_back(
        {ElectionEvent::Type::kLeaseLost, std::nullopt, error.ToString(), id});
    wake_.notify_all();
  });
  campaign_ = etcd_.Campaign(
      election.name, id, election.identity, [this, id](etcd::EtcdResult<etcd::LeaderKey> result) {
        std::lock_guard lock(mutex_);
        if (result.ok()) {
          election_events_.push_back({ElectionEvent::Type::kElected, *result, "", id});
        } else {
          election_events_.push_back(
              {ElectionEvent::Type::kCampaignFailed, std::nullopt, result.error().ToString(), id});
        }
        wake_.notify_all();
      });
  campaigning_ = true;
  {
    std::lock_guard lock(mutex_);
    status_.campaigning = true;
  }
  logger_.Info("campaigning for leadership; standing by until elected",
               {{"election", election.name},
                {"identity", election.identity},
                {"lease_ttl_s", static_cast<int64_t>(election.lease_ttl.count())}});
}

void SyncService::BecomeLeader(etcd::LeaderKey key) {
  logger_.Info("elected leader: syncing", {{"key", key.key}, {"revision", key.revision}});
  leader_key_ = std::move(key);
  campaigning_ = false;
  election_backoff_.Reset();
  election_failures_ = 0;
  writer_.SetLeader(leader_key_);
  if (client_ != nullptr && watches_registered_) incremental_.SetClient(client_.get());
  reconcile_needed_ = true;
  next_reconcile_at_ = {};
  std::lock_guard lock(mutex_);
  status_.leader = true;
  status_.campaigning = false;
}

void SyncService::StepDown(const std::string& reason) {
  if (leader_key_) {
    logger_.Warn("leadership lost: standing by", {{"reason", reason}});
  } else {
    logger_.Warn("campaign ended; campaigning again", {{"reason", reason}});
  }
  // The writer keeps the old fence, so anything still queued fails instead of writing.
  leader_key_.reset();
  incremental_.SetClient(nullptr);
  campaign_.reset();
  keepalive_.reset();
  if (lease_id_ != 0) {
    (void)etcd_.LeaseRevoke(lease_id_);  // usually gone already
    lease_id_ = 0;
  }
  campaigning_ = false;
  // Campaign again at once the first time (losing a lease to an outage is no reason to wait
  // once etcd answers); repeated failures back off.
  const std::chrono::milliseconds delay = election_backoff_.current();
  election_backoff_.Next();
  next_campaign_at_ = clock_.Now() + delay;
  std::lock_guard lock(mutex_);
  status_.leader = false;
  status_.campaigning = false;
}

void SyncService::HandleElectionEvents() {
  std::deque<ElectionEvent> events;
  {
    std::lock_guard lock(mutex_);
    events.swap(election_events_);
  }
  for (ElectionEvent& event : events) {
    switch (event.type) {
      case ElectionEvent::Type::kElected:
        if (event.lease == lease_id_ && campaigning_) BecomeLeader(std::move(*event.key));
        break;
      case ElectionEvent::Type::kCampaignFailed:
      case ElectionEvent::Type::kLeaseLost:
        if (event.lease == lease_id_) StepDown(event.reason);
        break;
      case ElectionEvent::Type::kNotLeader:
        if (leader_key_) StepDown("a write's leadership fence failed: " + event.reason);
        break;
    }
  }
}

void SyncService::Resign() {
  campaign_.reset();
  if (leader_key_) {
    if (auto resigned = etcd_.Resign(*leader_key_); !resigned.ok()) {
      logger_.Warn("could not resign leadership; it ends with the lease",
                   {{"error", resigned.error().ToString()}});
    } else {
      logger_.Info("resigned leadership");
    }
    leader_key_.reset();
  }
  keepalive_.reset();
  if (lease_id_ != 0) {
    (void)etcd_.LeaseRevoke(lease_id_);
    lease_id_ = 0;
  }
}

Result<void, std::string> SyncService::Run() {
  std::optional<std::string> fatal;
  while (true) {
    std::deque<zk::SessionEvent> events;
    {
      std::lock_guard lock(mutex_);
      if (stop_) break;
      events.swap(session_events_);
      if (reconcile_requested_) {
        reconcile_requested_ = false;
        reconcile_needed_ = true;
        next_reconcile_at_ = {};
      }
    }
    for (const zk::SessionEvent& event : events) {
      fatal = HandleSessionEvent(event);
      if (fatal) break;
    }
    if (fatal) break;
    if (options_.election) {
      HandleElectionEvents();
      if (!leader_key_ && !campaigning_ && clock_.Now() >= next_campaign_at_) StartCampaign();
    }
    const auto now = clock_.Now();
    if (client_ == nullptr && now >= next_session_at_) {
      if (!OpenSession()) {
        if (fatal_) break;
        next_session_at_ = clock_.Now() + session_backoff_.Next();
      }
      continue;
    }
    const bool retrying = writer_.retrying();
    if (writer_was_retrying_ && !retrying) {
      logger_.Info("etcd answers again; reconciling");
      reconcile_needed_ = true;
      next_reconcile_at_ = {};
    }
    writer_was_retrying_ = retrying;
    {
      std::lock_guard lock(mutex_);
      if (fullsync_interval_.count() > 0 && status_.first_sync_done && now >= next_full_sync_) {
        reconcile_needed_ = true;
      }
    }
    if (reconcile_needed_ && Active() && client_ != nullptr && watches_registered_ &&
        now >= next_reconcile_at_) {
      reconcile_needed_ = false;
      Reconcile();
      continue;
    }
    // Sleep until something happens, the next deadline, or a second (to notice etcd recovering).
    auto wake_at = now + std::chrono::seconds(1);
    if (reconcile_needed_) wake_at = std::min(wake_at, std::max(now, next_reconcile_at_));
    if (client_ == nullptr) wake_at = std::min(wake_at, std::max(now, next_session_at_));
    if (options_.election && !leader_key_ && !campaigning_) {
      wake_at = std::min(wake_at, std::max(now, next_campaign_at_));
    }
    std::unique_lock lock(mutex_);
    wake_.wait_for(lock, wake_at - now, [this] {
      return stop_ || !session_events_.empty() || reconcile_requested_ ||
             !election_events_.empty();
    });
  }
  logger_.Info("stopping: draining queued writes",
               {{"pending_writes", writer_.pending()}, {"queued_paths", incremental_.queue_depth()}});
  incremental_.Stop();
  if (!writer_.Drain(options_.drain_timeout)) {
    logger_.Warn("writes still pending at the drain deadline; the next start reconciles them",
                 {{"pending_writes", writer_.pending()}});
  }
  if (const size_t dropped = incremental_.StopOwnershipUpdates(); dropped > 0) {
    logger_.Warn("ownership store updates dropped at stop; the etcd meta records still prove "
                 "ownership and the next start reconciles",
                 {{"updates", dropped}});
  }
  incremental_.SetClient(nullptr);
  classic_.SetClient(nullptr);
  if (options_.election) Resign();
  DropClient();
  if (fatal_) fatal = fatal_;
  if (fatal) return Unexpected{*fatal};
  return {};
}

}  // namespace zk2etcd::sync
