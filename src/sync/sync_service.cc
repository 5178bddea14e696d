#include "sync/sync_service.h"

#include <algorithm>
#include <cctype>

#include "common/strings.h"

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

}  // namespace

IncrementalSyncOptions SyncService::IncrementalOptions() {
  IncrementalSyncOptions options;
  options.read_window = options_.concurrent;
  options.on_change = [this](const AppliedChange& change) {
    if (change.not_leader) election_driver_.FenceFailed(change.error, change.fence);
    if (options_.on_change) options_.on_change(change);
  };
  std::string name(source_.Name());
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  options.change_log_message = name + " event";
  options.on_ownership_store_back = [this] { OnOwnershipStoreBack(); };
  options.on_delete_sent = [this](const std::string& path, int64_t point) {
    recent_deletes_.Note(path, point);
  };
  return options;
}

SyncService::SyncService(const core::Scope& scope, core::Source& source, core::Sink& sink,
                         FencedWriter& writer, ownership::OwnershipStore* ownership,
                         core::LeaderElection* election, ops::Logger& logger, const Clock& clock,
                         SyncServiceOptions options)
    : scope_(scope),
      source_(source),
      sink_(sink),
      writer_(writer),
      ownership_(ownership),
      election_(election),
      logger_(logger),
      clock_(clock),
      options_(std::move(options)),
      incremental_(scope, sink, writer, ownership, logger, clock, IncrementalOptions()),
      reconciler_(scope, sink, &writer, ownership, logger, clock),
      election_driver_(election, logger, clock, mutex_, wake_,
                       {.elected_message = "elected leader: syncing",
                        .retry = RetryBackoff(options_.election_retry_max)},
                       ElectionHooks()) {
  status_.leader = election_ == nullptr;
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
  incremental_.SetSource(nullptr);
  // Its thread calls back into this object; stop it before any member goes.
  incremental_.StopOwnershipUpdates();
}

void SyncService::StopCampaigning() { election_driver_.StopCampaigning(); }

void SyncService::Stop() {
  StopCampaigning();
  cancel_.store(true);
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
    wake_.notify_all();
  }
  // Whatever waits on the source (a snapshot, on a server that no longer answers) fails now
  // instead of after its timeout. Nothing is lost that a stop would not drop anyway: queued
  // changes are dropped by IncrementalSync::Stop, and writes already built drain through the
  // writer.
  source_.Close();
}

void SyncService::Listener::OnChange(const std::string& key) {
  service_.announced_changes_.Note(key);
  service_.incremental_.MarkDirty(key);
}

void SyncService::Listener::OnSourceEvent(const core::SourceEvent& event) {
  // Changes made while the stream was away were not announced.
  if (event.type != core::SourceEventType::kConnected) service_.announced_changes_.NoteGap();
  std::lock_guard lock(service_.mutex_);
  service_.source_events_.push_back({event, service_.source_generation_.load()});
  service_.wake_.notify_all();
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
    // A lease that ended while the Run thread waits (a reconciliation's call to an etcd that
    // stopped answering) is not leadership any more, though the step-down comes later.
    if (status.leader && election_driver_.EndingLocked()) status.leader = false;
  }
  status.queue_depth = incremental_.queue_depth();
  if (status.source_connected) status.watches = source_.Status().watches;
  status.pending_writes = writer_.pending();
  status.deferred_deletes = incremental_.deferred_deletes();
  status.ownership_updates = incremental_.ownership_updates_queued();
  return status;
}

bool SyncService::OpenSource() {
  // A new generation first: events still queued from the previous opening are ignored.
  source_generation_.fetch_add(1);
  auto opened = source_.Open(listener_);
  if (!opened.ok()) {
    if (opened.error().Fatal()) {
      fatal_ = opened.error().message;
    } else if (!cancel_.load()) {
      logger_.Debug("cannot open the source; retrying", {{"error", opened.error().message}});
    }
    return false;
  }
  if (cancel_.load()) {  // Stop() came while opening: its Close() may have come first
    source_.Close();
    return false;
  }
  source_open_ = true;
  const core::SourceStatus source_status = source_.Status();
  {
    std::lock_guard lock(mutex_);
    status_.source_connected = true;
    status_.session_id = source_status.session_id;
    status_.classic_watches = source_status.classic_watches;
  }
  incremental_.SetSource(Active() ? &source_ : nullptr);
  reconcile_needed_ = true;
  reconcile_backoff_.Reset();
  next_reconcile_at_ = {};
  session_backoff_.Reset();
  return true;
}

void SyncService::CloseSource() {
  incremental_.SetSource(nullptr);
  source_.Close();
  source_open_ = false;
  std::lock_guard lock(mutex_);
  status_.source_connected = false;
}

std::optional<std::string> SyncService::HandleSourceEvent(const core::SourceEvent& event) {
  // The source logs its own connection changes; here is only what the engine does about them.
  switch (event.type) {
    case core::SourceEventType::kConnected:
      break;
    case core::SourceEventType::kDisconnected: {
      std::lock_guard lock(mutex_);
      status_.source_connected = false;
      break;
    }
    case core::SourceEventType::kReconnected: {
      std::lock_guard lock(mutex_);
      status_.source_connected = true;
    }
      // Changes made while disconnected may not have been announced.
      incremental_.Resume();
      reconcile_needed_ = true;
      next_reconcile_at_ = {};
      break;
    case core::SourceEventType::kFatal:
      return event.reason;
    case core::SourceEventType::kLost:
    case core::SourceEventType::kCompacted:  // (only ordered streams, which this service
                                             // does not open)
      // A new opening reconciles everything.
      CloseSource();
      break;
  }
  return std::nullopt;
}

void SyncService::Reconcile() {
  const auto started = clock_.Now();
  ReconcileOptions options;
  options.cancel = &cancel_;
  // A stop gives the reconciliation's repairs the drain's time, then stops the writer (its
  // writes complete with an error; the next start reconciles them).
  options.cancel_grace = options_.drain_timeout;
  options.abandon_repairs = [this] {
    // The calls first: the writer's stop waits for the writes in flight to be answered.
    if (options_.abandon_calls) options_.abandon_calls();
    writer_.Stop();
  };
  options.fix = true;
  options.source_window = options_.concurrent;
  options.keep_differences = false;  // counted, not listed: memory stays one chunk
  options.sink_page_size = options_.sink_page_size;
  options.adopt = options_.adopt;
  options.on_repair = options_.on_repair;
  options.on_progress = [this](size_t nodes) {
    logger_.Info("reconciliation progress", {{"nodes_read", nodes}});
  };
  options.deleted_after = [this](const std::string& path, int64_t version) {
    return recent_deletes_.DeletedAfter(path, version);
  };
  options.may_have_changed = [this](const std::string& path) {
    return announced_changes_.MayHaveChanged(path);
  };
  logger_.Info("reconciliation started");
  recent_deletes_.Begin();
  announced_changes_.Begin();
  auto result = reconciler_.Run(source_, options);
  announced_changes_.End();
  recent_deletes_.End();  // every repair has completed
  if (result.ok()) {
    const ReconcileReport& report = *result;
    logger_.Info("reconciliation done",
                 {{options_.source_entries_field, report.source_entries},
                  {options_.sink_entries_field, report.sink_entries},
                  {"in_sync", report.in_sync},
                  {"differences", report.VisibleDifferences()},
                  {"by_kind", KindCounts(report)},
                  {"fixed_puts", report.fixed_puts},
                  {"fixed_deletes", report.fixed_deletes},
                  {"deleted_again", report.deleted_again},
                  {"reread", report.reread},
                  {"repaired_during_walk", report.repaired_during_walk},
                  {"adopted", report.adopted},
                  {"stale", report.stale},
                  {"failed", report.failed},
                  {"deferred_deletes", report.deferred_deletes},
                  {"ownership_unknown", report.ownership_unknown},
                  {"seconds", std::chrono::duration<double>(report.duration).count()},
                  {"walk_s", std::chrono::duration<double>(report.walk_duration).count()},
                  {"diff_s", std::chrono::duration<double>(report.diff_duration).count()},
                  {"recheck_s", std::chrono::duration<double>(report.recheck_duration).count()},
                  {"repair_s", std::chrono::duration<double>(report.repair_duration).count()}});
    if (report.unclaimed > 0 && ownership_ == nullptr && options_.adopt == AdoptPolicy::kNone) {
      logger_.Warn("keys equal to " + std::string(source_.Name()) +
                       " but without an ownership record are left alone and will not be updated "
                       "(--adopt=matching adopts them)",
                   {{"keys", report.unclaimed}});
    }
    if (const size_t foreign = report.Count(Difference::Kind::kForeign); foreign > 0) {
      // Without a policy, a key that differs from its source entry is foreign too.
      const std::string which = options_.adopt == AdoptPolicy::kNone
                                    ? "keys without an ownership record that differ from "
                                    : "keys without an ownership record and absent from ";
      logger_.Info(which + std::string(source_.Name()) + " are another writer's: left alone",
                   {{"keys", foreign}, {"first", JoinCommaList(report.foreign_samples)}});
    }
    if (const size_t conflicts = report.Count(Difference::Kind::kConflict); conflicts > 0) {
      logger_.Warn("keys without an ownership record hold a value that differs from " +
                       std::string(source_.Name()) +
                       ": left alone (--adopt=all would overwrite them)",
                   {{"keys", conflicts}, {"first", JoinCommaList(report.conflict_samples)}});
    }
    if (report.adopted > 0) {
      // Changes that reached these keys while they were not yet ours were refused as foreign;
      // now that they are ours, they are read and written again.
      incremental_.RetryForeign();
    } else {
      incremental_.ForgetForeign();
    }
    // Deletes deferred because the ownership store did not answer: the retries back off (each
    // is a full walk) and the store's return (its ping) brings the next one forward. Unowned keys
    // whose ownership it could not tell (a look-up failed) are retried with the backoff only: a
    // store that answers pings but fails look-ups must not make full syncs back to back.
    const bool store_missed = report.deferred_deletes > 0 || report.ownership_unknown > 0;
    if (!store_missed) reconcile_backoff_.Reset();
    if (report.deferred_deletes > 0) {
      reconcile_deferred_deletes_.store(true);
      incremental_.ReportOwnershipStoreUnreachable(
          {ownership::OwnershipErrorCode::kUnavailable, "the reconciliation deferred deletes"});
    }
    // Deferred deletes and unknown ownership are retried soon rather than at the next period.
    // Repairs the sink refused are not: a repeat cannot fix them (too large, not permitted), and
    // each full sync reads both sides whole. They stay differences (logged per key, counted in
    // the refused-writes metric, shown by diff) until the next period or a change of the entry.
    if (store_missed) {
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
  } else if (result.error().not_leader) {
    // Its repairs failed the leadership fence: the election steps down (or keeps a leadership
    // won since), and the reconciliation runs again once this replica leads.
    logger_.Info("reconciliation stopped: this replica no longer leads");
    election_driver_.FenceFailed(result.error().message, result.error().fence);
    reconcile_needed_ = true;
    next_reconcile_at_ = {};
  } else {
    const auto delay = reconcile_backoff_.Next();
    logger_.Warn("reconciliation failed; retrying",
                 {{"error", result.error().message}, {"retry_in_ms", delay.count()}});
    reconcile_needed_ = true;
    next_reconcile_at_ = clock_.Now() + delay;
  }
  if (options_.on_reconcile) options_.on_reconcile(result);
}

ElectionDriverHooks SyncService::ElectionHooks() {
  return {.on_campaigning =
              [this] {
                std::lock_guard lock(mutex_);
                status_.campaigning = true;
              },
          .on_elected =
              [this](const core::Fence& fence, std::chrono::nanoseconds /*campaign_time*/) {
                writer_.SetLeader(fence);
                if (source_open_) incremental_.SetSource(&source_);
                reconcile_needed_ = true;
                next_reconcile_at_ = {};
                std::lock_guard lock(mutex_);
                status_.leader = true;
                status_.campaigning = false;
              },
          .on_deposed =
              [this] {
                // The writer keeps the old fence, so anything still queued fails instead of
                // writing.
                incremental_.SetSource(nullptr);
                std::lock_guard lock(mutex_);
                status_.leader = false;
                status_.campaigning = false;
              }};
}

Result<void, std::string> SyncService::Run() {
  std::optional<std::string> fatal;
  while (true) {
    std::deque<SourceEvent> events;
    {
      std::lock_guard lock(mutex_);
      if (stop_) break;
      events.swap(source_events_);
      if (reconcile_requested_) {
        reconcile_requested_ = false;
        reconcile_needed_ = true;
        next_reconcile_at_ = {};
      }
    }
    for (const SourceEvent& event : events) {
      if (!source_open_ || event.generation != source_generation_.load()) continue;
      fatal = HandleSourceEvent(event.event);
      if (fatal) break;
    }
    if (fatal) break;
    election_driver_.Poll();
    const auto now = clock_.Now();
    if (!source_open_ && now >= next_session_at_) {
      if (!OpenSource()) {
        if (fatal_) break;
        next_session_at_ = clock_.Now() + session_backoff_.Next();
      }
      continue;
    }
    const bool retrying = writer_.retrying();
    if (writer_was_retrying_ && !retrying) {
      logger_.Info(std::string(sink_.Name()) + " answers again; reconciling");
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
    if (reconcile_needed_ && Active() && source_open_ && now >= next_reconcile_at_) {
      reconcile_needed_ = false;
      Reconcile();
      continue;
    }
    // Sleep until something happens, the next deadline, or a second (to notice the sink
    // recovering).
    auto wake_at = now + std::chrono::seconds(1);
    // Only a leader with its source open reconciles: a standby waits for events (its election's
    // among them), or it would spin on a reconciliation it may not run.
    const bool may_reconcile = Active() && source_open_;
    if (reconcile_needed_ && may_reconcile) {
      wake_at = std::min(wake_at, std::max(now, next_reconcile_at_));
    }
    if (!source_open_) wake_at = std::min(wake_at, std::max(now, next_session_at_));
    if (const auto campaign_at = election_driver_.NextCampaignAt()) {
      wake_at = std::min(wake_at, std::max(now, *campaign_at));
    }
    std::unique_lock lock(mutex_);
    // The next periodic full sync starts on time, not at the next one-second wake.
    if (may_reconcile && fullsync_interval_.count() > 0 && status_.first_sync_done) {
      wake_at = std::min(wake_at, std::max(now, next_full_sync_));
    }
    wake_.wait_for(lock, wake_at - now, [this] {
      return stop_ || !source_events_.empty() || reconcile_requested_ ||
             election_driver_.HasEventsLocked();
    });
  }
  StopCampaigning();
  if (options_.on_leaving) options_.on_leaving();
  logger_.Info("stopping: draining queued writes", {{"pending_writes", writer_.pending()},
                                                    {"queued_paths", incremental_.queue_depth()}});
  incremental_.Stop();
  if (!writer_.Drain(options_.drain_timeout)) {
    logger_.Warn("writes still pending at the drain deadline; the next start reconciles them",
                 {{"pending_writes", writer_.pending()}});
  }
  if (options_.abandon_calls) options_.abandon_calls();
  if (const size_t dropped = incremental_.StopOwnershipUpdates(); dropped > 0) {
    logger_.Warn(
        "ownership store updates dropped at stop; the sink's ownership records still "
        "prove ownership and the next start reconciles",
        {{"updates", dropped}});
  }
  incremental_.SetSource(nullptr);
  if (election_ != nullptr) election_->Resign();
  CloseSource();
  if (fatal_) fatal = fatal_;
  if (fatal) return Unexpected{*fatal};
  return {};
}

}  // namespace zk2etcd::sync
