// SyncService: the engine of a `sync` job. Keeps a sink identical to a source's scope, for as
// long as it runs:
//
//   1. open the source, which starts its change stream before anything is read (core/source.h),
//      so that no change can fall between the snapshot and the stream;
//   2. reconcile (reconciler.h): snapshot, compare, re-check, repair with fenced writes;
//   3. apply every announced change as it comes (incremental_sync.h);
//   4. reconcile again every `fullsync_interval`, after every reconnect of the source (its stream
//      may not replay what changed meanwhile), after the source lost its stream (with the source
//      opened again), and after the sink comes back from an outage.
//
// With a LeaderElection, only the leader reads changes and writes; a standby keeps the source
// open, so that it can take over within the election's lease. Every write of the leader is fenced
// by its leadership. A failed campaign is retried at most ElectionRetry apart.
//
// Run() blocks until Stop() (or a fatal error: credentials refused, a source feature missing).
// All state changes happen on the thread that calls Run(); the source's, sink's and election's
// callbacks only enqueue. Status() and Stop() are thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "common/backoff.h"
#include "common/clock.h"
#include "core/leader_election.h"
#include "core/scope.h"
#include "core/sink.h"
#include "core/source.h"
#include "ops/log.h"
#include "ownership/ownership_store.h"
#include "sync/announced_changes.h"
#include "sync/election_driver.h"
#include "sync/fenced_writer.h"
#include "sync/incremental_sync.h"
#include "sync/recent_deletes.h"
#include "sync/reconciler.h"

namespace zk2etcd::sync {

struct SyncServiceOptions {
  // Called on the Run thread as Run leaves its loop (stopped, or a fatal error), before it drains
  // its writes and resigns: a process whose services share an election (zk2zk) stops every one
  // of them campaigning here, so that none takes a new lock when this one resigns.
  std::function<void()> on_leaving;
  // Called on the Run thread when a stop gives up waiting for the sink: once the writes are
  // drained (or the drain timed out), before it resigns, and when a reconciliation abandons its
  // repairs. `sync` abandons its etcd calls there (etcd::EtcdClient::Abandon), so that an etcd
  // that no longer answers holds the exit up by at most one short resignation attempt.
  std::function<void()> abandon_calls;
  // Failed campaigns (the election's server unreachable) are retried at most this far apart, so
  // that leadership is back within a fraction of a second of the server answering again.
  std::chrono::milliseconds election_retry_max{500};
  // The fields of the "reconciliation done" line that count the source's entries and the sink's
  // (zk2zk names them for its ensembles, and each direction differently).
  std::string source_entries_field = "zk_nodes";
  std::string sink_entries_field = "etcd_keys";
  // 0 disables the periodic reconciliation.
  std::chrono::nanoseconds fullsync_interval = std::chrono::minutes(5);
  // Requests in flight on each side (--concurrent).
  size_t concurrent = 50;
  int64_t sink_page_size = 1000;
  // What each reconciliation does with keys that have no ownership record (reconciler.h).
  AdoptPolicy adopt = AdoptPolicy::kNone;
  std::chrono::milliseconds retry_initial{500};
  std::chrono::milliseconds retry_max{30000};
  // How long Stop() lets queued writes finish.
  std::chrono::milliseconds drain_timeout{10000};
  // Called after every reconciliation (on the Run thread).
  std::function<void(const Result<ReconcileReport, ReconcileError>&)> on_reconcile;
  // Called for every incremental write (on the writer's thread).
  std::function<void(const AppliedChange&)> on_change;
  // Called for every repair of a reconciliation (on the writer's thread).
  std::function<void(const RepairResult&)> on_repair;
};

struct SyncStatus {
  bool source_connected = false;
  bool classic_watches = false;  // see core::SourceStatus
  bool leader = false;           // always true without an election
  bool campaigning = false;
  size_t watches = 0;  // the source's watches (core::SourceStatus)
  bool first_sync_done = false;
  int64_t session_id = 0;
  size_t reconciliations = 0;
  size_t queue_depth = 0;  // dirty paths waiting or in flight
  size_t pending_writes = 0;
  size_t deferred_deletes = 0;   // waiting for the ownership store to answer again
  size_t ownership_updates = 0;  // ownership store updates not yet acknowledged
  std::chrono::system_clock::time_point last_reconcile_success{};
};

class SyncService {
 public:
  // `ownership` is null without an external ownership store; `election` null without election.
  SyncService(const core::Scope& scope, core::Source& source, core::Sink& sink,
              FencedWriter& writer, ownership::OwnershipStore* ownership,
              core::LeaderElection* election, ops::Logger& logger, const Clock& clock,
              SyncServiceOptions options);
  ~SyncService();

  // Runs until Stop(). Returns an error only for conditions that retrying cannot fix.
  Result<void, std::string> Run();
  // Makes Run return soon (thread-safe, does not wait); implies StopCampaigning().
  void Stop();
  // No new campaign for leadership from now on (thread-safe): for a process that stops several
  // services sharing one election, so that none campaigns again when another resigns it.
  void StopCampaigning();
  // Asks for a reconciliation as soon as possible.
  void RequestReconcile();
  // Changes the period of full syncs from the next one on (SIGHUP). Thread-safe.
  void SetFullSyncInterval(std::chrono::nanoseconds interval);
  SyncStatus Status() const;

 private:
  // The source's listener: changes go to the incremental pipeline, events to the Run thread.
  class Listener : public core::SourceListener {
   public:
    explicit Listener(SyncService& service) : service_(service) {}
    void OnChange(const std::string& key) override;
    void OnSourceEvent(const core::SourceEvent& event) override;

   private:
    SyncService& service_;
  };
  struct SourceEvent {
    core::SourceEvent event;
    uint64_t generation = 0;  // of the Open it belongs to
  };

  // The incremental pipeline's options (its callbacks come back here). Called while
  // constructing: uses only options_, source_ and members declared before incremental_.
  IncrementalSyncOptions IncrementalOptions();
  // Opens the source; false (after logging) when it should be retried.
  bool OpenSource();
  void CloseSource();
  // Returns a fatal error, if the event is one.
  std::optional<std::string> HandleSourceEvent(const core::SourceEvent& event);
  void Reconcile();
  // On the ownership recorder's thread.
  void OnOwnershipStoreBack();
  // What leading and standing by change here (election_driver_'s hooks), on the Run thread.
  ElectionDriverHooks ElectionHooks();
  bool Active() const { return election_driver_.Active(); }
  // Retries of the source, reconciliation and campaign: retry_initial doubling up to `cap`
  // (retry_max, or the election's), without jitter.
  BackoffOptions RetryBackoff(std::chrono::milliseconds cap) const {
    return {.initial = options_.retry_initial, .max = cap, .multiplier = 2.0};
  }

  const core::Scope& scope_;
  core::Source& source_;
  core::Sink& sink_;
  FencedWriter& writer_;
  ownership::OwnershipStore* ownership_;
  core::LeaderElection* election_;
  ops::Logger& logger_;
  const Clock& clock_;
  const SyncServiceOptions options_;
  std::chrono::nanoseconds fullsync_interval_;  // guarded by mutex_; starts from options_
  // The incremental path's deletes during a reconciliation, for its repairs (recent_deletes.h).
  RecentDeletes recent_deletes_;
  // The keys the source announced during a reconciliation: the others are repaired from its
  // snapshot without a second read (announced_changes.h).
  AnnouncedChanges announced_changes_;
  IncrementalSync incremental_;
  Reconciler reconciler_;
  Listener listener_{*this};

  // Owned by the Run thread.
  bool source_open_ = false;
  std::atomic<uint64_t> source_generation_{0};
  bool reconcile_needed_ = false;
  std::chrono::steady_clock::time_point next_reconcile_at_{};
  std::chrono::steady_clock::time_point next_full_sync_{};
  Backoff reconcile_backoff_{RetryBackoff(options_.retry_max)};
  Backoff session_backoff_{RetryBackoff(options_.retry_max)};
  std::chrono::steady_clock::time_point next_session_at_{};
  bool writer_was_retrying_ = false;
  std::optional<std::string> fatal_;  // set by OpenSource when retrying cannot help

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<SourceEvent> source_events_;
  bool stop_ = false;
  std::atomic<bool> cancel_{false};  // set by Stop(): ends a reconciliation early
  bool reconcile_requested_ = false;
  std::atomic<bool> reconcile_deferred_deletes_{false};  // the last one did
  SyncStatus status_;
  // Campaigns and follows the election; its events are queued under mutex_.
  ElectionDriver election_driver_;
};

}  // namespace zk2etcd::sync
