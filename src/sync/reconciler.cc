#include "sync/reconciler.h"

#include <algorithm>
#include <condition_variable>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace zk2etcd::sync {

namespace {

// A sink point read before the snapshot is listed at only if the snapshot took this little: the
// older the point, the likelier the sink compacted it, and a long snapshot hides a round trip
// anyway.
constexpr auto kMaxEarlyPointAge = std::chrono::seconds(10);

// An early listing that took this long or longer confirms that the sink is far (core::Sink::Far,
// which etcd's dial decides): only then are keys written during the walk.
constexpr auto kFarListing = std::chrono::milliseconds(5);

// What is read from the sink while the snapshot is read: the point to list at (0 when it could
// not be read: the merge then lists as without it) and, for a small sink, the complete listing of
// every prefix that fits in a page.
struct EarlyListing {
  int64_t point = 0;
  std::map<std::string, std::vector<core::SinkEntry>> complete;
};

// Lists each prefix in turn (the first fixes the point) as long as each fits in one page: it
// stops a page short, so that a second page is requested only when the prefix holds keys the
// sink's listing skips, and stops after the first prefix that does not fit (the others keep the
// normal listing, with its splits) or when `cancel` is set. Without `try_listing`, only the point.
EarlyListing ListEarly(core::Sink& sink, const std::vector<std::string>& prefixes,
                       int64_t page_size, bool try_listing, const std::atomic<bool>* cancel) {
  EarlyListing early;
  if (!try_listing || page_size < 2) {
    if (auto point = sink.CurrentPoint(); point.ok()) early.point = *point;
    return early;
  }
  int64_t point = 0;
  for (const std::string& prefix : prefixes) {
    if (cancel != nullptr && cancel->load()) break;
    core::ListOptions list_options;
    list_options.point = point;
    list_options.page_size = page_size;
    list_options.prefetch = 4;  // the prefix's ranges at once; never a second page ahead
    std::unique_ptr<core::SinkCursor> cursor = sink.List(prefix, list_options);
    cursor->Start();
    std::vector<core::SinkEntry> entries;
    bool complete = false;
    while (static_cast<int64_t>(entries.size()) < page_size - 1) {
      auto next = cursor->Next();
      if (!next.ok()) break;
      if (point == 0) point = cursor->point();
      if (!next->has_value()) {
        complete = true;
        break;
      }
      entries.push_back(std::move(**next));
    }
    if (point == 0) break;
    if (!complete) break;
    early.complete[prefix] = std::move(entries);
  }
  early.point = point;
  return early;
}

// A candidate's source state as the snapshot has it (absent: seen so at its point).
core::EntryState SnapshotState(const core::Snapshot& snapshot, const Difference& candidate) {
  core::EntryState state;
  state.observed_at = snapshot.point;
  if (!candidate.entry_index) return state;
  const core::SourceEntry& entry = snapshot.entries[*candidate.entry_index];
  state.exists = true;
  state.value = entry.value;
  state.version = entry.version;
  state.lease = entry.lease;
  return state;
}

// Counts outstanding callbacks and lets one thread wait for all of them.
class Pending {
 public:
  void Add() {
    std::lock_guard lock(mutex_);
    ++count_;
  }
  void Done() {
    std::lock_guard lock(mutex_);
    --count_;
    zero_.notify_all();
  }
  void Wait() { WaitBelow(1); }
  // Waits until fewer than `limit` are outstanding.
  void WaitBelow(size_t limit) {
    std::unique_lock lock(mutex_);
    zero_.wait(lock, [this, limit] { return count_ < limit; });
  }
  // Waits at most `timeout` until fewer than `limit` are outstanding; whether they are.
  bool WaitBelowFor(size_t limit, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return zero_.wait_for(lock, timeout, [this, limit] { return count_ < limit; });
  }
  size_t count() {
    std::lock_guard lock(mutex_);
    return count_;
  }
  // The same, but gives up (false) once `cancel` is set (looked at every 50 ms).
  bool WaitBelowUnless(size_t limit, const std::atomic<bool>* cancel) {
    if (cancel == nullptr) {
      WaitBelow(limit);
      return true;
    }
    std::unique_lock lock(mutex_);
    while (!zero_.wait_for(lock, std::chrono::milliseconds(50),
                           [this, limit] { return count_ < limit; })) {
      if (cancel->load()) return false;
    }
    return true;
  }
  std::mutex& mutex() { return mutex_; }

 private:
  std::mutex mutex_;
  std::condition_variable zero_;
  size_t count_ = 0;
};

// Applies the adoption policy to the confirmed differences of keys without any ownership record
// (the ownership store has had its say). `candidates` are the first pass's view, in the same key
// order as `confirmed` (a subsequence of them).
void ApplyAdoptPolicy(AdoptPolicy adopt, const std::vector<Difference>& candidates,
                      std::vector<ConfirmedDifference>& confirmed) {
  size_t next_candidate = 0;
  for (ConfirmedDifference& difference : confirmed) {
    while (next_candidate + 1 < candidates.size() &&
           candidates[next_candidate].key != difference.key) {
      ++next_candidate;
    }
    const Difference& first_pass = candidates[next_candidate];
    if (difference.owner_version || difference.owned_by_store || !difference.sink_exists) continue;
    const bool was_equal = first_pass.kind == Difference::Kind::kUnclaimed &&
                           first_pass.sink_version == difference.sink_version;
    switch (difference.kind) {
      case Difference::Kind::kUnclaimed:
        difference.claimed_by_policy = true;  // equal: adopted under either policy
        break;
      case Difference::Kind::kForeign:
        // The key is still the copy that equalled the source when the snapshot was read (same
        // sink version), and the source changed or deleted it since: a faithful copy that is
        // behind, not another writer's value. Adopted and brought up to date. Otherwise only
        // kAll takes it; kMatching names a differing value a conflict.
        if (was_equal || adopt == AdoptPolicy::kAll) {
          difference.claimed_by_policy = true;
          difference.claimed_only_by_all = !was_equal;
          difference.kind =
              difference.source.exists ? Difference::Kind::kChanged : Difference::Kind::kExtra;
        } else if (difference.source.exists) {
          difference.kind = Difference::Kind::kConflict;
        }
        break;
      default:
        break;
    }
  }
}

}  // namespace

// The repairs of one run: submitted chunk by chunk while later chunks are still re-read, then
// waited for.
struct Reconciler::RepairState {
  Pending pending;
  // Whether deletes may go: set by StartRepair from the ownership store's ping (read by writer
  // callbacks, DeleteAgain).
  std::atomic<bool> deletes_allowed{true};
  // StartRepair ran for the merge's repairs (those during the walk ping before theirs, and the
  // merge's deletes need a ping of their own time).
  bool merge_started = false;
  std::vector<std::pair<std::string, std::string>> recorded;  // applied puts, for the store
  std::vector<std::string> forgotten;                         // applied deletes, for the store
  std::optional<std::chrono::steady_clock::time_point> started;
  std::function<void(const RepairResult&)> on_repair;
  std::function<std::optional<int64_t>(const std::string& path, int64_t version)> deleted_after;
  // ReconcileOptions' cancel, cancel_grace and abandon_repairs (FinishRepair).
  const std::atomic<bool>* cancel = nullptr;
  std::chrono::milliseconds cancel_grace{0};
  std::function<void()> abandon;
  // A repair failed its leadership fence: the run submits no more repairs and fails. The first
  // such failure is logged; the others (every repair in flight then) only counted.
  std::atomic<bool> not_leader{false};
  std::optional<WriteError> not_leader_error;  // the first; under pending's mutex

  // Counts a failed repair of `key`; logs it unless it is a stop's or a lost leadership's after
  // the first.
  void OnFailure(ops::Logger& logger, const char* message, const std::string& key,
                 const WriteError& error);
  std::optional<ReconcileError> NotLeaderError();
};

void Reconciler::RepairState::OnFailure(ops::Logger& logger, const char* message,
                                        const std::string& key, const WriteError& error) {
  if (error.code == WriteError::Code::kStopped) return;  // FinishRepair said how many, once
  if (error.code == WriteError::Code::kNotLeader) {
    if (not_leader.exchange(true)) return;
    not_leader_error = error;
    logger.Warn("repairs refused: this replica no longer leads; the reconciliation stops",
                {{"key", key}, {"error", error.message}});
    return;
  }
  logger.Log(
      error.code == WriteError::Code::kRefused ? ops::LogLevel::kError : ops::LogLevel::kWarn,
      message, {{"key", key}, {"error", error.message}});
}

std::optional<ReconcileError> Reconciler::RepairState::NotLeaderError() {
  if (!not_leader.load()) return std::nullopt;
  std::lock_guard lock(pending.mutex());
  ReconcileError error{ReconcileError::Side::kWriter, "this replica no longer leads", true};
  if (not_leader_error) {
    error.message += ": " + not_leader_error->message;
    error.fence = not_leader_error->fence;
  }
  return error;
}

// The entries the snapshot hands over while it is read, for the repairs during the walk (see the
// header). Offer is called on the source's threads; the rest on the repairing thread.
struct Reconciler::WalkRepairs {
  // Entries waiting for the repairing thread, at most: beyond, an entry is left to the merge, so
  // that memory holds a chunk of copies while the writer is behind, not the snapshot twice.
  static constexpr size_t kMaxQueued = kRecheckChunk;
  // Entries taken at once, at least (but the last ones): the writer sends what it is given as
  // soon as it has room, and a trickle would make many small transactions.
  static constexpr size_t kMinTaken = 256;
  // Entries handed over, at most: each repaired key is remembered (for the merge) until the run
  // ends, about 180 bytes with a Dubbo path (6 MiB for all of these); beyond, the merge repairs
  // the rest.
  static constexpr size_t kMaxOffered = 16 * kRecheckChunk;

  void Offer(const core::SourceEntry& entry) {
    std::lock_guard lock(mutex);
    if (!accepting || queued.size() >= kMaxQueued || offered >= kMaxOffered) return;
    ++offered;
    queued.push_back(entry);
    if (queued.size() == kMinTaken) changed.notify_one();
  }
  // No more entries: the snapshot was read (or failed), or the listing cannot serve.
  void Close() {
    std::lock_guard lock(mutex);
    accepting = false;
    changed.notify_one();
  }
  // Waits for entries and takes them; false once closed and nothing is left. `*walking`: whether
  // they were taken before Close (while the snapshot was still being read).
  bool Take(std::vector<core::SourceEntry>& entries, bool* walking) {
    std::unique_lock lock(mutex);
    changed.wait(lock, [this] { return queued.size() >= kMinTaken || !accepting; });
    if (queued.empty()) return false;
    *walking = accepting;
    entries.swap(queued);
    return true;
  }

  std::mutex mutex;
  std::condition_variable changed;
  std::vector<core::SourceEntry> queued;  // guarded by mutex
  bool accepting = true;                  // guarded by mutex
  size_t offered = 0;                     // guarded by mutex
  // The keys repaired, with the version written: the merge leaves a kMissing candidate to them
  // when the snapshot holds that version. Written by the repairing thread, read by the merge
  // after that thread ended.
  std::unordered_map<std::string, int64_t> repaired;
};

void Reconciler::RepairDuringWalk(WalkRepairs& walk, const std::unordered_set<std::string>& listed,
                                  RepairState& repairs, ReconcileReport& report,
                                  const ReconcileOptions& options) {
  std::vector<core::SourceEntry> entries;
  bool walking = true;
  while (walk.Take(entries, &walking)) {
    if (options.cancel != nullptr && options.cancel->load()) break;
    if (repairs.not_leader.load()) break;
    std::vector<ConfirmedDifference> missing;
    for (core::SourceEntry& entry : entries) {
      // A key the sink holds (or holds a record of), or one the change stream announced since
      // the run began (its entry may be older than what the incremental path wrote), is the
      // merge's.
      if (listed.contains(entry.key) || walk.repaired.contains(entry.key) ||
          !scope_.Contains(entry.key) || options.may_have_changed(entry.key)) {
        continue;
      }
      ConfirmedDifference difference;
      difference.kind = Difference::Kind::kMissing;
      difference.key = sink_.SinkKeyFor(entry.key);
      difference.path = entry.key;
      difference.source.exists = true;
      difference.source.value = std::move(entry.value);
      difference.source.version = entry.version;
      difference.source.lease = entry.lease;
      difference.source.observed_at = entry.version;
      walk.repaired.emplace(std::move(entry.key), difference.source.version);
      missing.push_back(std::move(difference));
    }
    entries.clear();
    if (missing.empty()) continue;
    if (!repairs.started) StartRepair(repairs);
    if (!repairs.pending.WaitBelowUnless(std::max<size_t>(1, options.max_repairs_in_flight),
                                         options.cancel)) {
      // Cancelled: not submitted, so not repaired here; the run fails anyway.
      for (const ConfirmedDifference& difference : missing) walk.repaired.erase(difference.path);
      break;
    }
    SubmitRepairs(repairs, report, missing);
    report.counts[static_cast<size_t>(Difference::Kind::kMissing)] += missing.size();
    if (walking) report.repaired_during_walk += missing.size();
  }
  walk.Close();  // cancelled: whatever comes is the merge's
}

Result<AdoptPolicy, std::string> ParseAdoptPolicy(std::string_view name) {
  if (name == "matching") return AdoptPolicy::kMatching;
  if (name == "none") return AdoptPolicy::kNone;
  if (name == "all") return AdoptPolicy::kAll;
  return Unexpected{"unknown adoption policy \"" + std::string(name) +
                    "\" (use matching, none or all)"};
}

std::string_view AdoptPolicyName(AdoptPolicy policy) {
  switch (policy) {
    case AdoptPolicy::kNone:
      return "none";
    case AdoptPolicy::kMatching:
      return "matching";
    case AdoptPolicy::kAll:
      return "all";
  }
  return "unknown";
}

size_t ReconcileReport::WouldAdopt(AdoptPolicy policy) const {
  switch (policy) {
    case AdoptPolicy::kNone:
      return 0;
    case AdoptPolicy::kMatching:
      return unclaimed;
    case AdoptPolicy::kAll:
      return unclaimed + unowned_unequal;
  }
  return 0;
}

size_t ReconcileReport::VisibleDifferences() const {
  size_t count = 0;
  for (size_t kind = 0; kind < counts.size(); ++kind) {
    const auto as_kind = static_cast<Difference::Kind>(kind);
    if (as_kind != Difference::Kind::kUnclaimed && as_kind != Difference::Kind::kOrphanMeta) {
      count += counts[kind];
    }
  }
  return count;
}

size_t ReconcileReport::Count(Difference::Kind kind) const {
  return counts[static_cast<size_t>(kind)];
}

void ReconcileReport::RecountFromList() {
  counts.fill(0);
  unowned_unequal = 0;
  for (const ConfirmedDifference& difference : differences) {
    ++counts[static_cast<size_t>(difference.kind)];
    unowned_unequal += difference.UnownedUnequal() ? 1 : 0;
  }
}

Reconciler::Reconciler(const core::Scope& scope, core::Sink& sink, FencedWriter* writer,
                       ownership::OwnershipStore* ownership, ops::Logger& logger,
                       const Clock& clock)
    : scope_(scope),
      sink_(sink),
      writer_(writer),
      ownership_(ownership),
      logger_(logger),
      clock_(clock) {}

Result<ReconcileReport, ReconcileError> Reconciler::Run(core::Source& source,
                                                        const ReconcileOptions& options) {
  const auto start = clock_.Now();
  const bool fix = options.fix && writer_ != nullptr;
  // The sink point to list at is read while the snapshot is read (cheap), so that the listing
  // starts with every request at once (DiffOptions::point); a sink that lists by page and was not
  // found larger than a page is listed then too (ListEarly).
  std::future<EarlyListing> early;
  bool try_listing = false;
  if (!scope_.prefixes().empty()) {
    try_listing = sink_.ListsByPage() && last_sink_entries_.load() < options.sink_page_size;
    early = std::async(std::launch::async, [this, page_size = options.sink_page_size, try_listing,
                                            cancel = options.cancel] {
      return ListEarly(sink_, scope_.prefixes(), page_size, try_listing, cancel);
    });
  }
  // The merge hands over its differences chunk by chunk; each chunk is read a second time and
  // its repairs are submitted at once, so the sink writes of one chunk overlap the reads of the
  // next, and memory holds a few chunks rather than every difference.
  ReconcileReport report;
  RepairState repairs;
  repairs.on_repair = options.on_repair;
  repairs.deleted_after = options.deleted_after;
  repairs.cancel = options.cancel;
  repairs.cancel_grace = options.cancel_grace;
  repairs.abandon = options.abandon_repairs;
  core::SnapshotOptions snapshot_options;
  snapshot_options.window = options.source_window;
  snapshot_options.on_progress = options.on_progress;
  snapshot_options.cancel = options.cancel;
  // Repairs during the walk (see the header), on a thread that first waits for the early listing.
  EarlyListing early_listing;
  WalkRepairs walk_repairs;
  std::thread repairing;
  if (fix && try_listing && sink_.Far() && options.may_have_changed && !options.keep_differences) {
    snapshot_options.on_entry = [&walk_repairs](const core::SourceEntry& entry) {
      walk_repairs.Offer(entry);
    };
    repairing = std::thread([&] {
      early_listing = early.get();
      // The sink's dial said far; its listing, a round trip at least, must say so too (a dial
      // on a busy machine can take a few milliseconds on loopback).
      bool complete = early_listing.point != 0 && clock_.Now() - start >= kFarListing;
      std::unordered_set<std::string> listed;
      for (const std::string& prefix : scope_.prefixes()) {
        const auto it = early_listing.complete.find(prefix);
        if (it == early_listing.complete.end()) {
          complete = false;  // larger than a page, or not listed: the merge's alone
          break;
        }
        for (const core::SinkEntry& entry : it->second) listed.insert(entry.key);
      }
      if (!complete) {
        walk_repairs.Close();
        return;
      }
      RepairDuringWalk(walk_repairs, listed, repairs, report, options);
    });
  }
  // Ends the repairs during the walk however this function leaves before that.
  struct EndWalkRepairs {
    WalkRepairs& walk;
    std::thread& thread;
    void operator()() {
      if (!thread.joinable()) return;
      walk.Close();  // what was handed over is still repaired
      thread.join();
    }
    ~EndWalkRepairs() { (*this)(); }
  } end_walk_repairs{walk_repairs, repairing};
  auto snapshot = source.ReadSnapshot(snapshot_options);
  const auto walked = clock_.Now();
  end_walk_repairs();
  // Waiting for the early listing and for the writer there is no part of the merge.
  std::chrono::nanoseconds waiting = clock_.Now() - walked;
  if (!snapshot.ok()) {
    if (repairs.started) FinishRepair(repairs, report);  // what was submitted completes
    return Unexpected{ReconcileError{
        ReconcileError::Side::kSource,
        "reading the " + std::string(source.Name()) + " tree: " + snapshot.error().message}};
  }

  std::optional<ReconcileError> failure;
  DiffOptions diff_options;
  diff_options.page_size = options.sink_page_size;
  diff_options.list_unclaimed = ownership_ != nullptr || options.adopt != AdoptPolicy::kNone;
  diff_options.chunk = kRecheckChunk;
  if (walked - start < kMaxEarlyPointAge) {
    if (early.valid()) early_listing = early.get();  // else taken by the repairs during the walk
    if (early_listing.point != 0) {
      diff_options.point = early_listing.point;  // else listed as before
      diff_options.listed = &early_listing.complete;
    }
  }
  // When repairing, the candidates whose second read the snapshot can stand in for: all of an
  // exact one; of a walk, those it holds that no announced change may have made stale.
  const auto from_snapshot = [&](const Difference& candidate) {
    if (snapshot->exact) return true;
    return candidate.entry_index.has_value() && options.may_have_changed &&
           !options.may_have_changed(candidate.path);
  };
  // A missing key repaired during the walk, with the version the snapshot holds, is done.
  const auto repaired_during_walk = [&](const Difference& candidate) {
    if (candidate.kind != Difference::Kind::kMissing || !candidate.entry_index) return false;
    const auto it = walk_repairs.repaired.find(candidate.path);
    return it != walk_repairs.repaired.end() &&
           it->second == snapshot->entries[*candidate.entry_index].version;
  };
  diff_options.on_differences = [&](std::vector<Difference>& candidates) {
    if (!walk_repairs.repaired.empty()) std::erase_if(candidates, repaired_during_walk);
    const auto recheck_start = clock_.Now();
    // An exact snapshot needs no second look at the source when repairing: it is the state at
    // its point, and a job that reads an ordered stream after that point applies the rest.
    auto confirmed = Recheck(source, candidates, options.source_window, /*read_sink=*/!fix,
                             options.adopt, fix ? &*snapshot : nullptr, from_snapshot,
                             &report.reread, &report.ownership_unknown);
    report.recheck_duration += clock_.Now() - recheck_start;
    if (!confirmed.ok()) {
      failure = confirmed.error();
      return false;
    }
    if (fix && repairs.not_leader.load()) {
      failure = repairs.NotLeaderError();
      return false;
    }
    if (fix && !confirmed->empty()) {
      if (!repairs.merge_started) {
        StartRepair(repairs);
        repairs.merge_started = true;
      }
      const auto wait_start = clock_.Now();
      const bool room = repairs.pending.WaitBelowUnless(
          std::max<size_t>(1, options.max_repairs_in_flight), options.cancel);
      waiting += clock_.Now() - wait_start;
      if (!room) {
        failure = ReconcileError{ReconcileError::Side::kSource, "reconciliation cancelled"};
        return false;
      }
      SubmitRepairs(repairs, report, *confirmed);
    }
    for (ConfirmedDifference& difference : *confirmed) {
      ++report.counts[static_cast<size_t>(difference.kind)];
      report.unowned_unequal += difference.UnownedUnequal() ? 1 : 0;
      std::vector<std::string>* samples =
          difference.kind == Difference::Kind::kConflict  ? &report.conflict_samples
          : difference.kind == Difference::Kind::kForeign ? &report.foreign_samples
                                                          : nullptr;
      if (samples != nullptr && samples->size() < ReconcileReport::kSampleKeys) {
        samples->push_back(difference.key);
      }
      if (options.keep_differences) report.differences.push_back(std::move(difference));
    }
    if (options.cancel != nullptr && options.cancel->load()) {
      failure = ReconcileError{ReconcileError::Side::kSource, "reconciliation cancelled"};
      return false;
    }
    return true;
  };
  auto diff = ComputeDiff(*snapshot, scope_, sink_, diff_options);
  const auto merged = clock_.Now();
  if (repairs.started) FinishRepair(repairs, report);  // what was submitted completes
  if (auto not_leader = repairs.NotLeaderError()) return Unexpected{*not_leader};
  if (!diff.ok()) {
    return Unexpected{
        ReconcileError{ReconcileError::Side::kSink,
                       "listing " + std::string(sink_.Name()) + ": " + diff.error().message}};
  }
  if (failure) return Unexpected{*failure};
  report.walk_duration = walked - start;
  // The merge itself: without the second reads and the waits for the writer it triggered.
  report.diff_duration = merged - walked - report.recheck_duration - waiting;
  report.source_entries = diff->source_entries;
  report.sink_entries = diff->sink_entries;
  last_sink_entries_.store(static_cast<int64_t>(diff->sink_entries));
  report.in_sync = diff->in_sync;
  report.unclaimed = diff->unclaimed;
  report.sink_point = diff->sink_point;
  report.source_point = snapshot->point;
  report.first_pass_differences = diff->listed;
  report.duration = clock_.Now() - start;
  return report;
}

Result<std::vector<ConfirmedDifference>, ReconcileError> Reconciler::Recheck(
    core::Source& source, const std::vector<Difference>& candidates, size_t source_window,
    bool read_sink, AdoptPolicy adopt, const core::Snapshot* snapshot,
    const std::function<bool(const Difference& candidate)>& from_snapshot, size_t* reread,
    size_t* ownership_unknown) {
  std::vector<core::EntryState> entries(candidates.size());
  std::vector<std::string> keys;  // re-read
  std::vector<size_t> key_index;
  std::vector<size_t> expected_bytes;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const Difference& candidate = candidates[i];
    if (snapshot != nullptr && from_snapshot(candidate)) {
      entries[i] = SnapshotState(*snapshot, candidate);
      continue;
    }
    keys.push_back(candidate.path);
    key_index.push_back(i);
    expected_bytes.push_back(candidate.source_bytes);
  }
  if (!keys.empty()) {
    core::RereadOptions read_options;
    read_options.window = source_window;
    read_options.expected_bytes = &expected_bytes;
    auto read = source.Reread(keys, read_options);
    if (!read.ok()) {
      return Unexpected{
          ReconcileError{ReconcileError::Side::kSource,
                         "re-reading " + std::string(source.Name()) + ": " + read.error().message}};
    }
    for (size_t j = 0; j < key_index.size(); ++j) entries[key_index[j]] = std::move((*read)[j]);
    *reread += keys.size();
  }

  // The sink: the entry and its ownership record, read now, or as the first pass saw them.
  std::vector<core::SinkEntry> states;
  if (read_sink) {
    std::vector<std::string> paths;
    paths.reserve(candidates.size());
    for (const Difference& candidate : candidates) paths.push_back(candidate.path);
    auto read = sink_.Read(paths);
    if (!read.ok()) {
      return Unexpected{
          ReconcileError{ReconcileError::Side::kSink,
                         "re-reading " + std::string(sink_.Name()) + ": " + read.error().message}};
    }
    states = std::move(*read);
  } else {
    states.resize(candidates.size());
    for (size_t i = 0; i < candidates.size(); ++i) {
      const Difference& candidate = candidates[i];
      core::SinkEntry& state = states[i];
      state.value = candidate.sink_value;
      state.version = candidate.sink_version;
      if (candidate.owner_version) {
        state.owner = core::OwnerRecord{*candidate.owner_version, candidate.record_version};
      }
    }
  }

  std::vector<ConfirmedDifference> confirmed;
  for (size_t i = 0; i < candidates.size(); ++i) {
    core::EntryState& entry = entries[i];
    const core::SinkEntry& state = states[i];
    const std::optional<Difference::Kind> kind =
        Classify(entry.exists ? &entry.value : nullptr, state.value ? &*state.value : nullptr,
                 state.owner.has_value());
    if (!kind) continue;
    ConfirmedDifference difference;
    difference.kind = *kind;
    difference.key = candidates[i].key;
    difference.path = candidates[i].path;
    difference.source = std::move(entry);
    difference.sink_exists = state.value.has_value();
    difference.sink_version = state.value ? state.version : 0;
    difference.first_pass_unclaimed = candidates[i].kind == Difference::Kind::kUnclaimed;
    if (state.owner) {
      difference.owner_version = state.owner->source_version;
      difference.record_version = state.owner->record_version;
    }
    confirmed.push_back(std::move(difference));
  }

  // Keys without an ownership record: does the ownership store vouch for them?
  if (ownership_ != nullptr) {
    std::vector<std::string> foreign_keys;
    std::vector<size_t> foreign_index;
    for (size_t i = 0; i < confirmed.size(); ++i) {
      if (confirmed[i].kind == Difference::Kind::kForeign ||
          confirmed[i].kind == Difference::Kind::kUnclaimed) {
        foreign_keys.push_back(confirmed[i].key);
        foreign_index.push_back(i);
      }
    }
    if (!foreign_keys.empty()) {
      auto owned = ownership_->Lookup(foreign_keys);
      if (!owned.ok()) {
        logger_.Warn("ownership store unreachable: keys without an ownership record stay foreign",
                     {{"keys", foreign_keys.size()}, {"error", owned.error().message}});
        *ownership_unknown += foreign_keys.size();
      } else {
        for (size_t j = 0; j < foreign_index.size(); ++j) {
          if (!(*owned)[j]) continue;
          ConfirmedDifference& difference = confirmed[foreign_index[j]];
          difference.owned_by_store = true;
          if (difference.kind == Difference::Kind::kForeign) {
            difference.kind =
                difference.source.exists ? Difference::Kind::kChanged : Difference::Kind::kExtra;
          }
        }
      }
    }
  }
  if (adopt != AdoptPolicy::kNone) ApplyAdoptPolicy(adopt, candidates, confirmed);
  return confirmed;
}

void Reconciler::Repair(ReconcileReport& report,
                        const std::function<void(const RepairResult&)>& on_repair) {
  RepairState state;
  state.on_repair = on_repair;
  StartRepair(state);
  SubmitRepairs(state, report, report.differences);
  FinishRepair(state, report);
}

void Reconciler::StartRepair(RepairState& state) {
  if (ownership_ != nullptr) {
    auto ping = ownership_->Ping();
    state.deletes_allowed = ping.ok();
    if (!ping.ok()) {
      logger_.Warn("ownership store unreachable: deletes wait until it is back",
                   {{"error", ping.error().message}});
    }
  }
}

void Reconciler::SubmitRepairs(RepairState& state, ReconcileReport& report,
                               const std::vector<ConfirmedDifference>& differences) {
  if (!state.started) state.started = clock_.Now();
  Pending& pending = state.pending;
  for (const ConfirmedDifference& difference : differences) {
    if (difference.kind == Difference::Kind::kForeign ||
        difference.kind == Difference::Kind::kConflict) {
      continue;  // never touched
    }
    const bool claimed = difference.owned_by_store || difference.claimed_by_policy;
    if (difference.kind == Difference::Kind::kUnclaimed && !claimed) continue;
    const bool adoption = difference.kind == Difference::Kind::kUnclaimed;
    core::SinkWrite write;
    write.key = difference.path;
    if (adoption) {
      // Equal already: only the ownership record is written, so the sink's watchers see no
      // change.
      write.type = core::SinkWrite::Type::kAdopt;
      write.version = difference.source.version;
    } else if (difference.source.exists) {
      write.type = core::SinkWrite::Type::kPut;
      write.value = difference.source.value;
      write.version = difference.source.version;
      write.lease = difference.source.lease;
    } else {
      if (!state.deletes_allowed) {
        std::lock_guard lock(pending.mutex());
        ++report.deferred_deletes;
        continue;
      }
      write.type = core::SinkWrite::Type::kDelete;
      write.version = difference.source.observed_at;
    }
    if (claimed) write.claim = difference.sink_version;
    // What the second read (or, when fixing during a run, the diff's read) saw: lets the sink
    // use a cheaper form while that state still holds.
    write.observed =
        core::SinkWrite::Observed{difference.sink_exists ? difference.sink_version : 0,
                                  difference.owner_version ? difference.record_version : 0,
                                  difference.owner_version.value_or(0)};
    pending.Add();
    const core::SinkWrite::Type type = write.type;
    const int64_t version = write.version;
    writer_->Submit(std::move(write), [&, key = difference.key, path = difference.path,
                                       value = ownership_ != nullptr ? difference.source.value : "",
                                       is_put = difference.source.exists, adoption, type,
                                       creates = difference.kind == Difference::Kind::kMissing,
                                       version](const WriteResult& result) {
      std::optional<int64_t> deleted_at;
      {
        std::lock_guard lock(pending.mutex());
        if (!result.ok()) {
          ++report.failed;
          state.OnFailure(logger_, "repair failed", key, result.error());
        } else if (*result == core::WriteOutcome::kApplied) {
          if (adoption) {
            ++report.adopted;
          } else if (is_put) {
            ++report.fixed_puts;
            if (creates) ++report.fixed_creates;
            if (ownership_ != nullptr) state.recorded.emplace_back(key, value);
            if (state.deleted_after) deleted_at = state.deleted_after(path, version);
          } else {
            ++report.fixed_deletes;
            if (ownership_ != nullptr) state.forgotten.push_back(key);
          }
        } else if (*result == core::WriteOutcome::kForeign) {
          logger_.Info("key turned foreign before its repair; left alone", {{"key", key}});
        } else {
          ++report.stale;
        }
      }
      if (state.on_repair) state.on_repair(RepairResult{type, key, version, result});
      if (deleted_at) DeleteAgain(state, report, path, key, *deleted_at);
      pending.Done();
    });
  }
}

void Reconciler::DeleteAgain(RepairState& state, ReconcileReport& report, const std::string& path,
                             const std::string& key, int64_t point) {
  Pending& pending = state.pending;
  if (!state.deletes_allowed) {
    std::lock_guard lock(pending.mutex());
    ++report.deferred_deletes;  // the next reconciliation deletes it
    return;
  }
  logger_.Info("a node deleted while its repair was under way is deleted again",
               {{"key", key}, {"deleted_at", point}});
  core::SinkWrite write;
  write.key = path;
  write.type = core::SinkWrite::Type::kDelete;
  write.version = point;
  pending.Add();
  writer_->Submit(std::move(write), [&, key, point](const WriteResult& result) {
    {
      std::lock_guard lock(pending.mutex());
      if (!result.ok()) {
        ++report.failed;
        state.OnFailure(logger_, "deleting again failed", key, result.error());
      } else if (*result == core::WriteOutcome::kApplied) {
        ++report.deleted_again;
        if (ownership_ != nullptr) state.forgotten.push_back(key);
      }
    }
    if (state.on_repair) {
      state.on_repair(RepairResult{core::SinkWrite::Type::kDelete, key, point, result});
    }
    pending.Done();
  });
}

void Reconciler::FinishRepair(RepairState& state, ReconcileReport& report) {
  if (!state.abandon || state.pending.WaitBelowUnless(1, state.cancel)) {
    state.pending.Wait();
  } else if (!state.pending.WaitBelowFor(1, state.cancel_grace)) {
    // Stopping, and the sink does not answer: the stop must not wait for it.
    logger_.Warn(
        "repairs still unanswered at the stop deadline are abandoned; the next start "
        "reconciles them",
        {{"repairs", state.pending.count()}});
    state.abandon();
    state.pending.Wait();  // the abandoned ones complete with an error
  }
  if (state.started) report.repair_duration = clock_.Now() - *state.started;
  if (ownership_ == nullptr) return;
  if (!state.recorded.empty()) {
    if (auto r = ownership_->Record(state.recorded); !r.ok()) {
      logger_.Warn(
          "could not record repaired keys in the ownership store; their ownership records in "
          "the sink still prove ownership",
          {{"keys", state.recorded.size()}, {"error", r.error().message}});
    }
  }
  if (!state.forgotten.empty()) {
    if (auto r = ownership_->Forget(state.forgotten); !r.ok()) {
      logger_.Warn("could not forget deleted keys in the ownership store",
                   {{"keys", state.forgotten.size()}, {"error", r.error().message}});
    }
  }
}

}  // namespace zk2etcd::sync
