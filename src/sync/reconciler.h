// Reconciler: one full comparison of ZooKeeper and etcd, and optionally its repair.
//
//   1. walk the ZooKeeper tree (pipelined) and stream-merge it with etcd's keys and meta records
//      read at one revision (differ.h), which hands the differences over in chunks: steps 2 to 4
//      run chunk by chunk while the merge goes on;
//   2. for keys without a meta record, ask the ownership store (Redis) whether zk2etcd or the
//      Go tool wrote them: those count as ours; the rest are judged by the AdoptPolicy (adopted
//      when equal to their znode, claimed, or left foreign / in conflict);
//   3. read every candidate a second time and keep only what still differs (no pseudo-differences
//      from changes made during the walk): ZooKeeper with a read; etcd with a read when only
//      reporting, and when repairing through the repair transaction's own compares, which check
//      the key and its meta record atomically at the moment of the write (a separate read there
//      would only compete with the writes: measured, it made a 100,000-key initial sync 1.6 times
//      slower);
//   4. with fix: repair each one with a fenced write (fenced_txn.h), so a repair can never undo a
//      newer incremental write; deletes wait while the ownership store is unreachable. The merge
//      waits while more than 16 chunks of repairs are unanswered, so memory holds the tree and
//      those chunks, not every difference (unless keep_differences asks for the list).
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
#include <vector>

#include "common/clock.h"
#include "etcd/etcd_client.h"
#include "ops/log.h"
#include "ownership/ownership_store.h"
#include "sync/differ.h"
#include "sync/fenced_writer.h"
#include "connectors/etcd/key_layout.h"
#include "core/scope.h"
#include "zk/zk_client.h"

namespace zk2etcd::sync {

// Moved to connectors/etcd (issue 12); transitional.
using connectors::KeyLayout;

// What a reconciliation does with keys in scope that have no ownership record at all (neither a
// meta record nor, with --redis-server, a Redis record): keys another tool (the Go zk2etcd
// without Redis, etcdctl make-mirror, a restored snapshot) left behind.
enum class AdoptPolicy {
  // Left alone and reported as foreign: the behaviour before adoption existed.
  kNone,
  // A key whose value equals its znode's data byte for byte is adopted: its meta record is
  // written in a transaction that compares the key's mod_revision as read (a concurrent write by
  // another writer wins), and from then on it is zk2etcd's. A key whose value differs from its
  // znode is reported as kConflict and left alone; one without a znode stays kForeign.
  kMatching,
  // Every unowned key in scope is zk2etcd's: adopted, updated to its znode's data, or deleted
  // when ZooKeeper has no such node (each write compares the key's mod_revision as read).
  kAll,
};
Result<AdoptPolicy, std::string> ParseAdoptPolicy(std::string_view name);
std::string_view AdoptPolicyName(AdoptPolicy policy);

struct ReconcileOptions {
  bool fix = true;
  size_t zk_window = 50;
  int64_t etcd_page_size = 1000;
  // Called with the number of znodes read so far, now and then during the walk.
  std::function<void(size_t nodes_read)> on_progress;
  // When set and true, the run stops early (between requests) with an error.
  const std::atomic<bool>* cancel = nullptr;
  // Classic watch mode: the walk sets one-shot watches (see WalkOptions).
  bool set_watches = false;
  std::function<void(const std::string& path, const std::vector<std::string>& children)>
      on_children;
  // Keep every confirmed difference in the report (diff lists them); without, the report only
  // counts them, and memory holds one chunk of differences at a time (sync).
  bool keep_differences = true;
  AdoptPolicy adopt = AdoptPolicy::kNone;
};

// A difference confirmed by the second read.
struct ConfirmedDifference {
  Difference::Kind kind = Difference::Kind::kMissing;
  std::string key;
  std::string path;
  NodeState zk;              // as the second read saw the node
  bool etcd_exists = false;  // as the second read saw the key
  int64_t etcd_mod_revision = 0;
  std::optional<int64_t> meta_zxid;  // INT64_MAX when the meta record holds no zxid
  int64_t meta_mod_revision = 0;     // when the meta record exists
  bool owned_by_store = false;       // no meta record, but the ownership store vouches for it
  bool claimed_by_policy = false;    // no ownership record, but the AdoptPolicy makes it ours
};

struct ReconcileReport {
  size_t zk_nodes = 0;
  size_t etcd_keys = 0;
  size_t in_sync = 0;
  size_t unclaimed = 0;  // equal keys without a meta record (see Difference::Kind::kUnclaimed)
  size_t adopted = 0;    // unclaimed keys the ownership store vouched for, now with a meta record
  int64_t etcd_revision = 0;
  size_t first_pass_differences = 0;  // before the second read
  // Confirmed differences (kUnclaimed ones only with an ownership store, for adoption); empty
  // unless ReconcileOptions::keep_differences.
  std::vector<ConfirmedDifference> differences;
  // Confirmed differences by kind (Difference::Kind as index), kept or not.
  std::array<size_t, kDifferenceKindCount> counts{};
  size_t fixed_puts = 0;
  size_t fixed_deletes = 0;
  size_t stale = 0;             // a newer write got there first: nothing to do
  size_t failed = 0;            // repairs that etcd refused
  size_t deferred_deletes = 0;  // not attempted: the ownership store was unreachable
  // The first few kConflict and kForeign keys (kept even without keep_differences), for a
  // warning that names them.
  static constexpr size_t kSampleKeys = 5;
  std::vector<std::string> conflict_samples;
  std::vector<std::string> foreign_samples;
  std::chrono::nanoseconds duration{0};
  // Where the time went: walking ZooKeeper, merging with etcd, the second read, the repair.
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
  enum class Source { kZooKeeper, kEtcd, kWriter };
  Source source = Source::kZooKeeper;
  std::string message;
};

class Reconciler {
 public:
  // `writer` may be null when only reporting; `ownership` is null without --redis-server.
  Reconciler(const core::Scope& scope, const KeyLayout& layout, etcd::EtcdClient& etcd,
             FencedWriter* writer, ownership::OwnershipStore* ownership, ops::Logger& logger,
             const Clock& clock);

  Result<ReconcileReport, ReconcileError> Run(zk::ZkClient& zk, const ReconcileOptions& options);

  // Step 4 on its own, for a report from a Run without fix that kept its differences (diff
  // --fix after several rounds). REQUIRES: constructed with a writer.
  void Repair(ReconcileReport& report);

 private:
  // Step 3: the second read. Returns the candidates that still differ.
  // With `read_etcd` false, the etcd side keeps the first pass's view and the fenced write
  // re-checks it.
  Result<std::vector<ConfirmedDifference>, ReconcileError> Recheck(
      zk::ZkClient& zk, const std::vector<Difference>& candidates, size_t zk_window, bool read_etcd,
      AdoptPolicy adopt);

  struct RepairState;
  void StartRepair(RepairState& state);
  // Submits the repairs of `differences` (their results count in `report`).
  void SubmitRepairs(RepairState& state, ReconcileReport& report,
                     const std::vector<ConfirmedDifference>& differences);
  // Waits for every submitted repair, then updates the ownership store.
  void FinishRepair(RepairState& state, ReconcileReport& report);

  const core::Scope& scope_;
  const KeyLayout& layout_;
  etcd::EtcdClient& etcd_;
  FencedWriter* writer_;
  ownership::OwnershipStore* ownership_;
  ops::Logger& logger_;
  const Clock& clock_;
};

}  // namespace zk2etcd::sync
