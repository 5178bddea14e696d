// MirrorService: the engine of an ordered mirror (etcd2etcd). Keeps a sink identical to a source
// whose change stream is ordered and resumable (core::Source::OpenAfter), recording in the sink,
// atomically with the data, the last source point applied (core::CheckpointedSink):
//
//   1. with a LeaderElection, wait to lead; every write of the leader is fenced by its leadership,
//      and a leader that loses it stops writing, closes the source and campaigns again;
//   2. read the sink's checkpoint C and open the source's ordered stream after C: a restart, or a
//      new leader after a failover, copies only what changed since. Without a checkpoint (a first
//      run), or when C is gone from the source's history (compacted), open the stream after the
//      source's current point and reconcile (cause "start" or "compaction");
//   3. a reconciliation reads an exact snapshot at a point S (not older than the stream's start),
//      compares it with the sink, repairs the differences with fenced writes (reconciler.h),
//      records checkpoint S, and drops the queued change sets at or before S: the snapshot holds
//      them;
//   4. apply the change sets in order: consecutive sets are packed into one atomic batch (a key
//      changed twice goes once, with its last state), with the checkpoint of the last set in it,
//      one batch at a time, so a source transaction is never split and the checkpoint never runs
//      ahead of the data. A write too large for an atomic batch goes alone through the
//      FencedWriter (which may send it in another form), and the checkpoint follows in the next
//      batch; a change set larger than a batch is split, only its last batch carrying its point.
//      Each write is also fenced by the source version in its ownership record, so a replayed
//      change (the same set again after a failed answer) never overwrites a newer value;
//   5. when the stream reports kCompacted (the watch fell behind the source's compaction), close
//      it, reopen after the current point and reconcile (cause "compaction"). Periodically, with
//      reconcile_interval, and on RequestReconcile ("requested"), reconcile too.
//
// With a rate limiter (--max-write-rate), changes wait for it before each batch; repairs wait in
// the FencedWriter, which should share the same limiter.
//
// Run() blocks until Stop() or a fatal error. All state changes happen on the thread that calls
// Run(); the source's and election's callbacks only enqueue. Status() and Stop() are thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/backoff.h"
#include "common/clock.h"
#include "common/rate_limiter.h"
#include "common/result.h"
#include "core/leader_election.h"
#include "core/scope.h"
#include "core/sink.h"
#include "core/source.h"
#include "ops/failure_log.h"
#include "ops/log.h"
#include "sync/election_driver.h"
#include "sync/fenced_writer.h"
#include "sync/reconciler.h"

namespace zk2etcd::sync {

// Why a mirror reconciled: the metric label of zk2etcd_mirror_reconciliations_total{cause}.
enum class ReconcileCause { kStart, kCompaction, kPeriodic, kRequested };
std::string_view ReconcileCauseName(ReconcileCause cause);

// What one applied batch of changes did (MirrorServiceOptions::on_applied).
struct AppliedBatch {
  size_t change_sets = 0;  // source points in the batch
  size_t writes = 0;       // distinct keys written
  size_t applied = 0;      // writes by outcome
  size_t stale = 0;
  size_t foreign = 0;
  size_t absent = 0;
  size_t failed = 0;       // refused by the sink, alone (logged)
  int64_t checkpoint = 0;  // recorded with the batch
  // From the arrival of the oldest change set in the batch to the sink's answer.
  std::chrono::nanoseconds delay{0};
  std::chrono::nanoseconds duration{0};  // the sink's round trip
};

struct MirrorServiceOptions {
  std::chrono::milliseconds election_retry_max{500};
  // Called when a stop gives up waiting for the sink: drain_timeout after Stop() unless Run has
  // drained by then (on another thread: a batch may be waiting for its answer), and once the
  // drain ends, on the Run thread, before it resigns (as SyncServiceOptions::abandon_calls:
  // etcd2etcd abandons its etcd calls there). Must be thread-safe.
  std::function<void()> abandon_calls;
  // 0 disables the periodic reconciliation.
  std::chrono::nanoseconds reconcile_interval{0};
  size_t concurrent = 50;  // source requests in flight during a snapshot
  int64_t sink_page_size = 1000;
  AdoptPolicy adopt = AdoptPolicy::kNone;
  // --max-write-rate: the limiter of repairs and changes together (give the FencedWriter the
  // same one); null: unlimited. Must outlive the service.
  RateLimiter* rate_limiter = nullptr;
  // At the first opening of this service, reconcile (from the source's current point) even when
  // the checkpoint could be resumed from: copies bound to leases expired while no mirror ran, or
  // --adopt=all, which takes effect at once. Later openings (a lost stream, a new leadership)
  // resume as usual.
  bool reconcile_on_resume = false;
  std::chrono::milliseconds retry_initial{100};
  std::chrono::milliseconds retry_max{500};
  // How long Stop() lets queued change sets be applied.
  std::chrono::milliseconds drain_timeout{10000};
  // The source, as the lines about its outages name it ("<source_name> unreachable; retrying",
  // "<source_name> answers again").
  std::string source_name = "source";
  // The sink, as the lines about failing writes name it ("<sink_name> writes failing; retrying");
  // empty: Sink::Name().
  std::string sink_name;
  // Called after every reconciliation (on the Run thread).
  std::function<void(ReconcileCause, const Result<ReconcileReport, ReconcileError>&)> on_reconcile;
  // Called after every applied batch (on the Run thread).
  std::function<void(const AppliedBatch&)> on_applied;
  // Called when leadership is won: the time from the campaign's start (a standby's takeover
  // time includes the wait for the old leader's lease).
  std::function<void(std::chrono::nanoseconds)> on_elected;
};

struct MirrorStatus {
  bool source_connected = false;
  bool leader = false;  // always true without an election
  bool campaigning = false;
  bool first_sync_done = false;  // caught up once since leading
  size_t reconciliations = 0;
  int64_t checkpoint = 0;    // the last point recorded in the sink
  int64_t latest_point = 0;  // the newest point the stream delivered
  size_t queued_change_sets = 0;
  // How long the oldest change set not yet applied has waited (0 when none): queued, or in the
  // batch being applied.
  std::chrono::nanoseconds oldest_queued_age{0};
  // How long the batch being applied has waited for the sink's answer (0 when none is).
  std::chrono::nanoseconds unanswered_for{0};
  // The last atomic batch failed and waits to be sent again (cleared when one applies).
  bool sink_failing = false;
  uint64_t changes_applied = 0;  // writes that applied
  std::chrono::system_clock::time_point last_reconcile_success{};
};

class MirrorService {
 public:
  // `election` is null without an election; `writer` writes repairs and oversized changes.
  MirrorService(const core::Scope& scope, core::Source& source, core::Sink& sink,
                core::CheckpointedSink& checkpoints, FencedWriter& writer,
                core::LeaderElection* election, ops::Logger& logger, const Clock& clock,
                MirrorServiceOptions options);
  ~MirrorService();

  // Runs until Stop(). Returns an error only for conditions that retrying cannot fix.
  Result<void, std::string> Run();
  void Stop();
  void RequestReconcile();
  MirrorStatus Status() const;

 private:
  class Listener;
  // One change set, as the writes it becomes (built once, on arrival) and what each costs of an
  // atomic batch (CheckpointedSink::AtomicCost).
  struct Queued {
    int64_t point = 0;
    std::vector<core::SinkWrite> writes;
    std::vector<size_t> costs;
    std::chrono::steady_clock::time_point arrived;
  };

  // Each step runs on the Run thread; false means "not now, try again after a backoff".
  bool OpenSource();
  void CloseSource();
  bool Reconcile(ReconcileCause cause);
  bool ApplyQueued();
  enum class BatchOutcome {
    kApplied,
    kRetry,    // not applied; the same batch goes again after a backoff
    kRefused,  // the sink refuses it as one transaction for a reason a repeat cannot fix
  };
  // Applies one atomic batch and waits for its answer.
  BatchOutcome ApplyBatch(std::vector<core::SinkWrite> writes, int64_t checkpoint,
                          size_t change_sets, std::chrono::steady_clock::time_point oldest);
  // The change sets `taken` (the last write of each key), which the sink refused as one
  // transaction, key by key through the writer (a key it refuses is logged and counted), then
  // their checkpoint alone: one key that cannot be written must not hold up the mirror.
  bool ApplyKeyByKey(const std::vector<Queued>& taken,
                     std::chrono::steady_clock::time_point oldest);
  // Writes that fit no atomic batch, one at a time through the writer.
  bool ApplyThroughWriter(std::vector<core::SinkWrite> writes);
  static void CountOutcome(core::WriteOutcome outcome, AppliedBatch& batch);
  void WaitForRate(size_t writes);
  void HandleSourceEvents();
  bool Stopping() const;
  // Marks Run done (or the service destroyed) and joins the stop watchdog, if Stop() started one.
  void EndStopWatchdog();
  // What leading and standing by change here (election_driver_'s hooks), on the Run thread.
  ElectionDriverHooks ElectionHooks();
  bool Active() const { return election_driver_.Active(); }

  const core::Scope& scope_;
  core::Source& source_;
  core::Sink& sink_;
  core::CheckpointedSink& checkpoints_;
  FencedWriter& writer_;
  core::LeaderElection* election_;
  ops::Logger& logger_;
  const Clock& clock_;
  const MirrorServiceOptions options_;
  ops::FailureLog apply_failures_;  // Run thread
  Reconciler reconciler_;
  std::unique_ptr<Listener> listener_;

  // Run thread.
  bool source_open_ = false;
  std::optional<ReconcileCause> reconcile_needed_;
  bool opened_before_ = false;  // OpenSource succeeded once (Run thread)
  int64_t applied_point_ = 0;
  std::chrono::steady_clock::time_point next_periodic_{};
  Backoff retry_backoff_;
  std::chrono::steady_clock::time_point retry_at_{};
  std::optional<std::string> fatal_;
  std::string refusal_;  // why the sink refused the last batch ApplyBatch answered kRefused

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  uint64_t stream_ = 0;  // advanced by every open: deliveries of an older stream are dropped
  std::deque<Queued> queue_;
  std::deque<core::SourceEvent> source_events_;
  bool stop_ = false;
  bool run_done_ = false;  // Run has left its loop and drain (or the service is destroyed)
  std::chrono::steady_clock::time_point stop_at_{};  // when Stop() was first called
  std::thread stop_watchdog_;  // started by Stop(): options_.abandon_calls at drain_timeout
  std::atomic<bool> cancel_{false};
  bool reconcile_requested_ = false;
  // The batch being applied (ApplyBatch): since when, and its oldest change set's arrival.
  std::optional<std::chrono::steady_clock::time_point> applying_since_;  // guarded by mutex_
  std::chrono::steady_clock::time_point applying_oldest_{};              // guarded by mutex_
  MirrorStatus status_;
  // Campaigns and follows the election; its events are queued under mutex_.
  ElectionDriver election_driver_;
};

}  // namespace zk2etcd::sync
