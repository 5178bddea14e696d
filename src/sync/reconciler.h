// Reconciler: one full comparison of a source and a sink, and optionally its repair.
//
//   1. read the source's snapshot and stream-merge it with the sink's listing (entries with their
//      ownership records, at one point; differ.h), which hands the differences over in chunks:
//      steps 2 to 4 run chunk by chunk while the merge goes on;
//   2. for keys without an ownership record, ask the external ownership store (Redis) whether the
//      job or the Go tool wrote them: those count as ours; the rest are judged by the AdoptPolicy
//      (adopted when equal to the source, claimed, or left foreign / in conflict);
//   3. read every candidate a second time and keep only what still differs (no pseudo-differences
//      from changes made during the snapshot): the source with a re-read (not when repairing
//      from an exact snapshot, core::Snapshot::exact: the repair then writes the state at the
//      snapshot's point, and the job's ordered stream brings what came after; nor, when
//      repairing beside a change stream, for a key the snapshot holds and the stream announced
//      no change of since the run began, ReconcileOptions::may_have_changed); the sink with a read
//      when only reporting, and when repairing through the fenced write's own guards, which check
//      the entry and its record atomically at the moment of the write (a separate read there
//      would only compete with the writes: measured on etcd, it made a 100,000-key initial sync
//      1.6 times slower);
//   4. with fix: repair each one with a fenced write (core/sink.h), so a repair can never undo a
//      newer incremental write; deletes wait while the ownership store is unreachable. The merge
//      waits while more than max_repairs_in_flight repairs are unanswered, so memory holds the
//      snapshot and a few chunks, not every difference (unless keep_differences asks for them).
// Repairs during the walk: when the sink is far (core::Sink::Far) and was small enough to be
// listed whole while the snapshot is read (an empty etcd at a first sync), and the run repairs
// beside a change stream (may_have_changed) without keeping its differences, the entries the
// source hands over as it reads them (core::SnapshotOptions::on_entry) whose keys that listing
// lacks are created at once, before the snapshot is complete: such a key is missing whatever the
// rest of the snapshot holds, and the entry needs no second read unless the stream announced a
// change of it (then it is left to the merge). The merge leaves those keys to these repairs. A
// first sync then writes while it walks, instead of after (ReconcileReport::repaired_during_walk);
// on a near sink the writes would only compete with the walk for the machine (a 100,000-node
// first sync on loopback took longer, docs/BENCHMARKS.md).
//
// Used by `sync` (at start, after reconnects, periodically) and by `diff` (fix or report only).
// Blocking. Thread-safe: concurrent Runs are allowed but pointless; the caller serialises them.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "common/clock.h"
#include "core/scope.h"
#include "core/sink.h"
#include "core/source.h"
#include "ops/log.h"
#include "ownership/ownership_store.h"
#include "sync/differ.h"
#include "sync/fenced_writer.h"

namespace zk2etcd::sync {

// What a reconciliation does with keys in scope that have no ownership record at all (neither a
// sink record nor, with --redis-server, a Redis record): keys another tool (the Go zk2etcd
// without Redis, etcdctl make-mirror, a restored snapshot) left behind.
enum class AdoptPolicy {
  // Left alone and reported as foreign: the behaviour before adoption existed.
  kNone,
  // A key whose value equals the source's byte for byte is adopted: its ownership record is
  // written by a write that claims the key's sink version as read (a concurrent write by
  // another writer wins), and from then on it is the job's. A key whose value differs from the
  // source is reported as kConflict and left alone; one absent from the source stays kForeign.
  kMatching,
  // Every unowned key in scope is the job's: adopted, updated to the source's value, or deleted
  // when the source has no such key (each write claims the key's sink version as read).
  kAll,
};
Result<AdoptPolicy, std::string> ParseAdoptPolicy(std::string_view name);
std::string_view AdoptPolicyName(AdoptPolicy policy);

// One repair's answer, for a caller that records every write (zk2zk's audit log).
struct RepairResult {
  core::SinkWrite::Type type = core::SinkWrite::Type::kPut;
  std::string key;      // the sink's name
  int64_t version = 0;  // the write's source version (a delete: the point of the absence)
  WriteResult result;   // the outcome, or why the write failed
};

// Candidates re-read (and their repairs submitted) together: the merge's chunk.
inline constexpr size_t kRecheckChunk = 2048;

struct ReconcileOptions {
  bool fix = true;
  // Repairs submitted and not yet answered, at most: the merge waits for the writer beyond this
  // (a chunk's repairs go together once fewer are outstanding), so that memory holds a few
  // chunks of writes rather than every difference of a full sync. Four chunks are twice what a
  // writer can have in flight (64 transactions of at most 64 keys), so it never waits for the
  // merge; a queued repair costs about 300 bytes, and 16 chunks made the peak of a 100,000-node
  // first sync 117-118 MiB against 87-90 MiB with 4, in the same time (docs/BENCHMARKS.md,
  // "Peak memory").
  size_t max_repairs_in_flight = 4 * kRecheckChunk;
  size_t source_window = 50;  // source requests in flight
  int64_t sink_page_size = 1000;
  // Called with the number of source entries read so far, now and then during the snapshot.
  std::function<void(size_t entries_read)> on_progress;
  // When set and true, the run stops early (between requests) with an error.
  const std::atomic<bool>* cancel = nullptr;
  // Once `cancel` is set, repairs already submitted get this long to be answered; then
  // `abandon_repairs` is called (the caller stops its writer, which completes them with an
  // error) and the run returns once every repair's callback ran. Unset: the run waits for them,
  // however long the sink takes (a stop during an outage of the sink would wait for its end).
  std::chrono::milliseconds cancel_grace{10000};
  std::function<void()> abandon_repairs;
  // Keep every confirmed difference in the report (diff lists them); without, the report only
  // counts them, and memory holds one chunk of differences at a time (sync).
  bool keep_differences = true;
  AdoptPolicy adopt = AdoptPolicy::kNone;
  // Called for every repair once the sink answered it (on the writer's thread); must be quick.
  std::function<void(const RepairResult&)> on_repair;
  // For a repair put of `path` at `version` that applied: the point of a delete of `path` that
  // the incremental path sent since the run began, if newer (RecentDeletes::DeletedAfter). That
  // delete may have landed before the put, which then created the node again: the path is
  // deleted again, fenced by that point. Unset (diff): no incremental path runs beside.
  std::function<std::optional<int64_t>(const std::string& path, int64_t version)> deleted_after;
  // When repairing from a snapshot that is not exact, for a job whose change stream was
  // registered before the snapshot was read: whether `path` may have changed since the run
  // began (AnnouncedChanges::MayHaveChanged). A candidate the snapshot holds and for which it
  // says no is repaired from the snapshot without a second read of the source (its later
  // changes come through the incremental path, which the fenced repair cannot undo; see
  // announced_changes.h). Candidates absent from the snapshot are always read again: their
  // delete is fenced by the point at which the absence was seen, which a walk does not give.
  // Unset (diff): every candidate is read again.
  std::function<bool(const std::string& path)> may_have_changed;
};

// A difference confirmed by the second read.
struct ConfirmedDifference {
  Difference::Kind kind = Difference::Kind::kMissing;
  std::string key;           // the sink's name
  std::string path;          // the source's key
  core::EntryState source;   // as the second read saw the entry
  bool sink_exists = false;  // as the second read saw the key
  int64_t sink_version = 0;
  std::optional<int64_t> owner_version;  // INT64_MAX when the record holds no version
  int64_t record_version = 0;            // when the ownership record exists
  bool owned_by_store = false;     // no ownership record, but the ownership store vouches for it
  bool claimed_by_policy = false;  // no ownership record, but the AdoptPolicy makes it ours
  // Claimed only because the policy is AdoptPolicy::kAll: a value that differs, or no source
  // entry (kMatching would have left it alone as kConflict or kForeign).
  bool claimed_only_by_all = false;
  // The first pass saw the key equal and without a record (counted in ReconcileReport::unclaimed).
  bool first_pass_unclaimed = false;

  // A key without any ownership record that is not equal to its source entry and was not equal at
  // the first pass: what kAll would take beyond the equal keys (kForeign, kConflict, or claimed
  // only by kAll), whichever policy ran.
  bool UnownedUnequal() const {
    return !first_pass_unclaimed && (kind == Difference::Kind::kForeign ||
                                     kind == Difference::Kind::kConflict || claimed_only_by_all);
  }
};

struct ReconcileReport {
  size_t source_entries = 0;
  size_t sink_entries = 0;
  size_t in_sync = 0;
  size_t unclaimed = 0;  // equal keys without an ownership record (Difference::Kind::kUnclaimed)
  size_t adopted = 0;    // unclaimed keys made ours (ownership store or policy), now with a record
  // Confirmed differences for which ConfirmedDifference::UnownedUnequal() holds: with
  // `unclaimed`, what kAll would adopt (WouldAdopt), whichever policy this run used.
  size_t unowned_unequal = 0;
  int64_t sink_point = 0;
  int64_t source_point = 0;           // the snapshot's (core::Snapshot::point)
  size_t first_pass_differences = 0;  // before the second read
  // Confirmed differences (kUnclaimed ones only with an ownership store, for adoption); empty
  // unless ReconcileOptions::keep_differences.
  std::vector<ConfirmedDifference> differences;
  // Confirmed differences by kind (Difference::Kind as index), kept or not.
  std::array<size_t, kDifferenceKindCount> counts{};
  size_t fixed_puts = 0;
  size_t fixed_creates = 0;  // of fixed_puts, those of keys the sink lacked (kMissing)
  size_t fixed_deletes = 0;
  size_t stale = 0;             // a newer write got there first: nothing to do
  size_t failed = 0;            // repairs that the sink refused
  size_t deferred_deletes = 0;  // not attempted: the ownership store was unreachable
  // Keys without an ownership record that the ownership store could not be asked about (it did
  // not answer): counted as foreign or conflict, and left alone, until a reconciliation after it
  // answers again decides.
  size_t ownership_unknown = 0;
  // Repair puts that landed after the incremental path deleted their node, deleted again
  // (ReconcileOptions::deleted_after).
  size_t deleted_again = 0;
  // Candidates read a second time from the source (the others were confirmed from the snapshot:
  // Snapshot::exact, or ReconcileOptions::may_have_changed).
  size_t reread = 0;
  // kMissing keys whose repairs were submitted while the snapshot was still being read (counted
  // in `counts` too; see "Repairs during the walk" above). Entries handed over during the walk
  // whose repairs went only after it are counted in `counts` alone. After a walk of 10 s
  // or more, whose merge lists the sink afresh, a key repaired during it may count as in sync
  // as well.
  size_t repaired_during_walk = 0;
  // The first few kConflict and kForeign keys (kept even without keep_differences), for a
  // warning that names them.
  static constexpr size_t kSampleKeys = 5;
  std::vector<std::string> conflict_samples;
  std::vector<std::string> foreign_samples;
  std::chrono::nanoseconds duration{0};
  // Where the time went: the snapshot, merging with the sink, the second read, the repair.
  std::chrono::nanoseconds walk_duration{0};
  std::chrono::nanoseconds diff_duration{0};
  std::chrono::nanoseconds recheck_duration{0};
  std::chrono::nanoseconds repair_duration{0};
  size_t Count(Difference::Kind kind) const;
  // Differences a user should see: everything but kUnclaimed and kOrphanMeta.
  size_t VisibleDifferences() const;
  // Sets `counts` from `differences` (after a caller edited the list).
  void RecountFromList();
  // Keys that the first pass saw without any ownership record, that `policy` would make
  // zk2etcd's: equal ones for kMatching; with kAll also those that differ or have no znode.
  size_t WouldAdopt(AdoptPolicy policy) const;
};

struct ReconcileError {
  enum class Side { kSource, kSink, kWriter };
  Side side = Side::kSource;
  std::string message;
  // kWriter: a repair failed its leadership fence (this process no longer leads), so the run
  // stopped submitting repairs and ended early; `fence` is the one that failed, if known.
  bool not_leader = false;
  std::optional<core::Fence> fence = std::nullopt;
};

class Reconciler {
 public:
  // `writer` may be null when only reporting; `ownership` is null without --redis-server.
  Reconciler(const core::Scope& scope, core::Sink& sink, FencedWriter* writer,
             ownership::OwnershipStore* ownership, ops::Logger& logger, const Clock& clock);

  // REQUIRES: `source` is open.
  Result<ReconcileReport, ReconcileError> Run(core::Source& source,
                                              const ReconcileOptions& options);

  // Step 4 on its own, for a report from a Run without fix that kept its differences (diff
  // --fix after several rounds); `on_repair` as ReconcileOptions'. REQUIRES: constructed with a
  // writer.
  void Repair(ReconcileReport& report,
              const std::function<void(const RepairResult&)>& on_repair = {});

 private:
  // Step 3: the second read. Returns the candidates that still differ.
  // With `read_sink` false, the sink side keeps the first pass's view and the fenced write
  // re-checks it. With `snapshot`, the candidates for which `from_snapshot` says so take the
  // snapshot's state instead of a re-read; `*reread` counts the others. `*ownership_unknown`
  // counts the unowned keys the ownership store was not answering for.
  Result<std::vector<ConfirmedDifference>, ReconcileError> Recheck(
      core::Source& source, const std::vector<Difference>& candidates, size_t source_window,
      bool read_sink, AdoptPolicy adopt, const core::Snapshot* snapshot,
      const std::function<bool(const Difference& candidate)>& from_snapshot, size_t* reread,
      size_t* ownership_unknown);

  struct RepairState;
  struct WalkRepairs;
  // Repairs during the walk, on a thread of its own until the walk ends: submits the creates of
  // the handed-over entries whose keys the complete early listing (`listed`: every key it holds,
  // records without entries included) lacks.
  void RepairDuringWalk(WalkRepairs& walk, const std::unordered_set<std::string>& listed,
                        RepairState& repairs, ReconcileReport& report,
                        const ReconcileOptions& options);
  void StartRepair(RepairState& state);
  // Submits the repairs of `differences` (their results count in `report`).
  void SubmitRepairs(RepairState& state, ReconcileReport& report,
                     const std::vector<ConfirmedDifference>& differences);
  // Deletes again the node a repair put wrote after the incremental path deleted it at `point`.
  // Called from the put's callback, which still counts as pending.
  void DeleteAgain(RepairState& state, ReconcileReport& report, const std::string& path,
                   const std::string& key, int64_t point);
  // Waits for every submitted repair, then updates the ownership store.
  void FinishRepair(RepairState& state, ReconcileReport& report);

  const core::Scope& scope_;
  core::Sink& sink_;
  FencedWriter* writer_;
  ownership::OwnershipStore* ownership_;
  ops::Logger& logger_;
  const Clock& clock_;
  // The sink entries the last run compared, or -1 before the first: a sink that held a page or
  // more is not listed early again (each early page of a large scope is a wasted request).
  std::atomic<int64_t> last_sink_entries_{-1};
};

}  // namespace zk2etcd::sync
