// SyncService: `zk2etcd sync`'s engine. Keeps etcd identical to the ZooKeeper scope, for as long
// as it runs:
//
//   1. open a ZooKeeper session and register one persistent recursive watch per prefix, before
//      reading anything, so that no change can fall between the walk and the watch;
//   2. reconcile (reconciler.h): walk, compare, re-check, repair with fenced writes;
//   3. apply every watch event as it comes (incremental_sync.h);
//   4. reconcile again every `fullsync_interval`, after every reconnect (persistent watches do
//      not replay what changed meanwhile), after a session expiry (with a new session and new
//      watches), and after etcd comes back from an outage.
//
// Run() blocks until Stop() (or a fatal error: credentials refused, watches unsupported). All
// state changes happen on the thread that calls Run(); the clients' callbacks only enqueue.
// Status() and Stop() are thread-safe.
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
#include "etcd/etcd_client.h"
#include "ops/log.h"
#include "ownership/ownership_store.h"
#include "sync/classic_watcher.h"
#include "sync/fenced_writer.h"
#include "sync/incremental_sync.h"
#include "sync/key_layout.h"
#include "sync/reconciler.h"
#include "sync/scope.h"
#include "zk/zk_client.h"

namespace zk2etcd::sync {

enum class WatchMode {
  kAuto,        // persistent recursive watches; classic ones if the server lacks them
  kPersistent,  // persistent recursive watches only (a server without them is an error)
  kClassic,     // one-shot data and child watches on every node (ZooKeeper 3.4/3.5)
};
Result<WatchMode, std::string> ParseWatchMode(std::string_view name);

// Leader election among replicas through etcd's Election service.
struct ElectionOptions {
  std::string name = "/zk2etcd/election";  // the election's key prefix in etcd
  // This replica, as the leader key's value. Stable across restarts of the same replica (the
  // hostname: a Kubernetes pod's name), so that a restarted process recognises the election key
  // its killed predecessor left behind and takes it over at once (see DecideTakeover).
  std::string identity;
  // A standby takes over within this long after the leader dies; keep-alives every third of it.
  std::chrono::seconds lease_ttl{5};
  // Failed campaigns (etcd unreachable) are retried at most this far apart, so that leadership
  // is back within a fraction of a second of etcd answering again.
  std::chrono::milliseconds retry_max{500};
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

struct SyncServiceOptions {
  WatchMode watch_mode = WatchMode::kAuto;
  // With an election, only the leader reads changes and writes etcd; a standby keeps its
  // ZooKeeper session and watches open, so that it can take over within the lease TTL. Every
  // write of the leader is fenced by its leadership.
  std::optional<ElectionOptions> election;
  // 0 disables the periodic reconciliation.
  std::chrono::nanoseconds fullsync_interval = std::chrono::minutes(5);
  // Requests in flight on each side (--concurrent).
  size_t concurrent = 50;
  int64_t etcd_page_size = 1000;
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
};

struct SyncStatus {
  bool zk_connected = false;
  bool classic_watches = false;
  bool leader = false;  // always true without an election
  bool campaigning = false;
  size_t watches = 0;  // persistent watches, or child watches in classic mode
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
  SyncService(const Scope& scope, const KeyLayout& layout, zk::ZkClientFactory& zk_factory,
              etcd::EtcdClient& etcd, FencedWriter& writer, ownership::OwnershipStore* ownership,
              ops::Logger& logger, const Clock& clock, SyncServiceOptions options);
  ~SyncService();

  // Runs until Stop(). Returns an error only for conditions that retrying cannot fix.
  Result<void, std::string> Run();
  void Stop();
  // Asks for a reconciliation as soon as possible.
  void RequestReconcile();
  // Changes the period of full syncs from the next one on (SIGHUP). Thread-safe.
  void SetFullSyncInterval(std::chrono::nanoseconds interval);
  SyncStatus Status() const;

 private:
  void Enqueue(zk::SessionEvent event);
  // Opens a session and registers the watches; false (after logging) when it should be retried.
  bool OpenSession();
  // Returns a fatal error, if the event is one.
  std::optional<std::string> HandleSessionEvent(const zk::SessionEvent& event);
  void Reconcile();
  // On the ownership recorder's thread.
  void OnOwnershipStoreBack();
  // Election steps, on the Run thread.
  void StartCampaign();
  // Before a campaign: reads the current leader and revokes its lease when DecideTakeover says
  // the key is stale (this replica's own).
  void ClearStaleLeadership();
  void HandleElectionEvents();
  void BecomeLeader(etcd::LeaderKey key);
  void StepDown(const std::string& reason);
  void Resign();
  bool Active() const { return !options_.election || leader_key_.has_value(); }
  // Retries of the session, reconciliation and campaign: retry_initial doubling up to `cap`
  // (retry_max, or the election's), without jitter.
  BackoffOptions RetryBackoff(std::chrono::milliseconds cap) const {
    return {.initial = options_.retry_initial, .max = cap, .multiplier = 2.0};
  }

  const Scope& scope_;
  const KeyLayout& layout_;
  zk::ZkClientFactory& zk_factory_;
  etcd::EtcdClient& etcd_;
  FencedWriter& writer_;
  ownership::OwnershipStore* ownership_;
  ops::Logger& logger_;
  const Clock& clock_;
  const SyncServiceOptions options_;
  std::chrono::nanoseconds fullsync_interval_;  // guarded by mutex_; starts from options_
  IncrementalSync incremental_;
  ClassicWatcher classic_;
  Reconciler reconciler_;
  std::atomic<bool> classic_mode_{false};  // events go to classic_ (set before any event)

  // Sets client_ / ends and drops it (Run thread), keeping live_client_ in step.
  void AdoptClient(std::unique_ptr<zk::ZkClient> client);
  void DropClient();
  // Stop closes the client at once: whatever waits on it (a blocking call, a read of the walk,
  // on a server that no longer answers) then fails now instead of after the session timeout.
  // Nothing is lost that a stop would not drop anyway: queued events are dropped by
  // IncrementalSync::Stop, and the writes already built drain through the writer (etcd only).
  void CloseClient();

  // Owned by the Run thread.
  std::unique_ptr<zk::ZkClient> client_;
  // client_ for Stop's thread: set and cleared under client_mutex_.
  std::mutex client_mutex_;
  zk::ZkClient* live_client_ = nullptr;
  bool watches_registered_ = false;
  bool reconcile_needed_ = false;
  std::chrono::steady_clock::time_point next_reconcile_at_{};
  std::chrono::steady_clock::time_point next_full_sync_{};
  Backoff reconcile_backoff_{RetryBackoff(options_.retry_max)};
  Backoff session_backoff_{RetryBackoff(options_.retry_max)};
  std::chrono::steady_clock::time_point next_session_at_{};
  bool writer_was_retrying_ = false;
  std::optional<std::string> fatal_;  // set by OpenSession when retrying cannot help
  // Election state (Run thread).
  std::optional<etcd::LeaderKey> leader_key_;
  int64_t lease_id_ = 0;
  int64_t previous_lease_id_ = 0;  // the last lease this process campaigned with
  bool leader_checked_ = false;    // a campaign has read the current leader once
  bool campaigning_ = false;
  std::unique_ptr<etcd::CallHandle> campaign_;
  std::unique_ptr<etcd::CallHandle> keepalive_;
  Backoff election_backoff_{
      RetryBackoff(options_.election ? options_.election->retry_max : options_.retry_max)};
  size_t election_failures_ = 0;  // in a row: the first is a warning, the rest debug lines
  std::chrono::steady_clock::time_point next_campaign_at_{};

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<zk::SessionEvent> session_events_;
  struct ElectionEvent {
    enum class Type { kElected, kCampaignFailed, kLeaseLost, kNotLeader };
    Type type;
    std::optional<etcd::LeaderKey> key;
    std::string reason;
    int64_t lease = 0;
  };
  std::deque<ElectionEvent> election_events_;
  bool stop_ = false;
  std::atomic<bool> cancel_{false};  // set by Stop(): ends a reconciliation early
  bool reconcile_requested_ = false;
  std::atomic<bool> reconcile_deferred_deletes_{false};  // the last one did
  SyncStatus status_;
};

}  // namespace zk2etcd::sync
