#include "sync/reconciler.h"

#include <condition_variable>
#include <future>
#include <mutex>

#include "connectors/etcd/fenced_txn.h"

namespace zk2etcd::sync {

namespace {

// Candidates per read-only recheck transaction: two range operations each.
constexpr size_t kRecheckPerTxn = etcd::kDefaultMaxTxnOps / 2;
// Candidates re-read before their repairs are submitted.
constexpr size_t kRecheckChunk = 2048;
// A revision read before the walk is listed at only if the walk was this short: the older the
// revision, the likelier etcd compacted it, and a long walk hides a round trip anyway.
constexpr auto kMaxEarlyRevisionAge = std::chrono::seconds(10);
// Repairs submitted and not yet answered, at most: the merge waits for the writer beyond this,
// so that memory holds a few chunks of writes rather than every difference of a full sync.
constexpr size_t kMaxRepairsInFlight = 16 * kRecheckChunk;

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
    if (difference.meta_zxid || difference.owned_by_store || !difference.etcd_exists) continue;
    const bool was_equal = first_pass.kind == Difference::Kind::kUnclaimed &&
                           first_pass.etcd_mod_revision == difference.etcd_mod_revision;
    switch (difference.kind) {
      case Difference::Kind::kUnclaimed:
        difference.claimed_by_policy = true;  // equal: adopted under either policy
        break;
      case Difference::Kind::kForeign:
        // The key is still the copy that equalled the znode when the tree was walked (same
        // mod_revision), and ZooKeeper changed or deleted the node since: a faithful copy that
        // is behind, not another writer's value. Adopted and brought up to date. Otherwise
        // only kAll takes it; kMatching names a differing value a conflict.
        if (was_equal || adopt == AdoptPolicy::kAll) {
          difference.claimed_by_policy = true;
          difference.kind =
              difference.zk.exists ? Difference::Kind::kChanged : Difference::Kind::kExtra;
        } else if (difference.zk.exists) {
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
  bool deletes_allowed = true;
  std::vector<std::pair<std::string, std::string>> recorded;  // applied puts, for the store
  std::vector<std::string> forgotten;                         // applied deletes, for the store
  std::optional<std::chrono::steady_clock::time_point> started;
};

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
      return unclaimed + Count(Difference::Kind::kForeign) + Count(Difference::Kind::kConflict);
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
  for (const ConfirmedDifference& difference : differences) {
    ++counts[static_cast<size_t>(difference.kind)];
  }
}

Reconciler::Reconciler(const core::Scope& scope, const KeyLayout& layout, etcd::EtcdClient& etcd,
                       FencedWriter* writer, ownership::OwnershipStore* ownership,
                       ops::Logger& logger, const Clock& clock)
    : scope_(scope),
      layout_(layout),
      etcd_(etcd),
      writer_(writer),
      ownership_(ownership),
      logger_(logger),
      clock_(clock) {}

Result<ReconcileReport, ReconcileError> Reconciler::Run(zk::ZkClient& zk,
                                                        const ReconcileOptions& options) {
  const auto start = clock_.Now();
  // The revision to list etcd at is read while the walk runs (one key: cheap), so that the
  // listing starts with every request at once (DiffOptions::revision).
  std::future<etcd::EtcdResult<etcd::RangeResponse>> early_revision;
  if (!scope_.prefixes().empty()) {
    etcd::RangeRequest one_key;
    one_key.key = layout_.KeyFor(scope_.prefixes().front());
    one_key.keys_only = true;
    early_revision = std::async(
        std::launch::async, [this, one_key = std::move(one_key)] { return etcd_.Range(one_key); });
  }
  WalkOptions walk_options;
  walk_options.window = options.zk_window;
  walk_options.on_progress = options.on_progress;
  walk_options.cancel = options.cancel;
  walk_options.set_watches = options.set_watches;
  walk_options.on_children = options.on_children;
  auto tree = WalkZkTree(zk, scope_, walk_options);
  if (!tree.ok()) {
    return Unexpected{ReconcileError{ReconcileError::Source::kZooKeeper,
                                     "reading the ZooKeeper tree: " + tree.error().ToString()}};
  }
  const auto walked = clock_.Now();

  // The merge hands over its differences chunk by chunk; each chunk is read a second time and
  // its repairs are submitted at once, so the etcd writes of one chunk overlap the reads of the
  // next, and memory holds a few chunks rather than every difference.
  ReconcileReport report;
  const bool fix = options.fix && writer_ != nullptr;
  RepairState repairs;
  std::optional<ReconcileError> failure;
  std::chrono::nanoseconds waiting{0};
  DiffOptions diff_options;
  diff_options.page_size = options.etcd_page_size;
  diff_options.list_unclaimed = ownership_ != nullptr || options.adopt != AdoptPolicy::kNone;
  diff_options.chunk = kRecheckChunk;
  if (early_revision.valid() && walked - start < kMaxEarlyRevisionAge) {
    auto response = early_revision.get();
    if (response.ok()) diff_options.revision = response->revision;  // else listed as before
  }
  diff_options.on_differences = [&](std::vector<Difference>& candidates) {
    const auto recheck_start = clock_.Now();
    auto confirmed = Recheck(zk, candidates, options.zk_window, /*read_etcd=*/!fix, options.adopt);
    report.recheck_duration += clock_.Now() - recheck_start;
    if (!confirmed.ok()) {
      failure = confirmed.error();
      return false;
    }
    if (fix && !confirmed->empty()) {
      if (!repairs.started) StartRepair(repairs);
      const auto wait_start = clock_.Now();
      repairs.pending.WaitBelow(kMaxRepairsInFlight);
      waiting += clock_.Now() - wait_start;
      SubmitRepairs(repairs, report, *confirmed);
    }
    for (ConfirmedDifference& difference : *confirmed) {
      ++report.counts[static_cast<size_t>(difference.kind)];
      std::vector<std::string>* samples =
          difference.kind == Difference::Kind::kConflict  ? &report.conflict_samples
          : difference.kind == Difference::Kind::kForeign ? &report.foreign_samples
                                                          : nullptr;
      if (samples != nullptr && samples->size() < ReconcileReport::kSampleKeys) {
        samples->push_back(difference.key);
      }
      if (options.keep_differences) report.differences.push_back(std::move(difference));
    }
    return !(options.cancel != nullptr && options.cancel->load());
  };
  auto diff = ComputeDiff(*tree, scope_, layout_, etcd_, diff_options);
  const auto merged = clock_.Now();
  if (repairs.started) FinishRepair(repairs, report);  // what was submitted completes
  if (!diff.ok()) {
    return Unexpected{
        ReconcileError{ReconcileError::Source::kEtcd, "listing etcd: " + diff.error().ToString()}};
  }
  if (failure) return Unexpected{*failure};
  report.walk_duration = walked - start;
  // The merge itself: without the second reads and the waits for the writer it triggered.
  report.diff_duration = merged - walked - report.recheck_duration - waiting;
  report.zk_nodes = diff->zk_nodes;
  report.etcd_keys = diff->etcd_keys;
  report.in_sync = diff->in_sync;
  report.unclaimed = diff->unclaimed;
  report.etcd_revision = diff->etcd_revision;
  report.first_pass_differences = diff->listed;
  report.duration = clock_.Now() - start;
  return report;
}

Result<std::vector<ConfirmedDifference>, ReconcileError> Reconciler::Recheck(
    zk::ZkClient& zk, const std::vector<Difference>& candidates, size_t zk_window, bool read_etcd,
    AdoptPolicy adopt) {
  std::vector<std::string> paths;
  std::vector<size_t> expected_bytes;
  paths.reserve(candidates.size());
  expected_bytes.reserve(candidates.size());
  for (const Difference& candidate : candidates) {
    paths.push_back(candidate.path);
    expected_bytes.push_back(candidate.zk_data_bytes);
  }
  NodeReadOptions read_options;
  read_options.window = zk_window;
  read_options.expected_bytes = &expected_bytes;
  auto nodes = ReadNodes(zk, paths, read_options);
  if (!nodes.ok()) {
    return Unexpected{ReconcileError{ReconcileError::Source::kZooKeeper,
                                     "re-reading ZooKeeper: " + nodes.error().ToString()}};
  }

  // etcd: the key and its meta record, for many candidates per read-only transaction.
  struct EtcdState {
    std::optional<etcd::KeyValue> kv;
    std::optional<int64_t> meta_zxid;
    int64_t meta_mod_revision = 0;
  };
  std::vector<EtcdState> states(candidates.size());
  std::optional<etcd::Error> etcd_error;
  Pending pending;
  if (!read_etcd) {
    for (size_t i = 0; i < candidates.size(); ++i) {
      const Difference& candidate = candidates[i];
      if (candidate.etcd_value) {
        states[i].kv = etcd::KeyValue{
            candidate.key, *candidate.etcd_value, 0, candidate.etcd_mod_revision, 0, 0};
      }
      states[i].meta_zxid = candidate.meta_zxid;
      states[i].meta_mod_revision = candidate.meta_mod_revision;
    }
  }
  for (size_t begin = 0; read_etcd && begin < candidates.size(); begin += kRecheckPerTxn) {
    const size_t end = std::min(candidates.size(), begin + kRecheckPerTxn);
    etcd::TxnRequest txn;
    for (size_t i = begin; i < end; ++i) {
      etcd::RangeRequest key;
      key.key = candidates[i].key;
      etcd::RangeRequest meta;
      meta.key = layout_.MetaKeyFor(candidates[i].key);
      txn.success.push_back(etcd::Op::Range(std::move(key)));
      txn.success.push_back(etcd::Op::Range(std::move(meta)));
    }
    pending.Add();
    etcd::CallOptions call;
    call.safe_to_retry = true;  // read-only
    etcd_.TxnAsync(
        std::move(txn), call, [&, begin, end](etcd::EtcdResult<etcd::TxnResponse> result) {
          {
            std::lock_guard lock(pending.mutex());
            if (!result.ok()) {
              if (!etcd_error) etcd_error = result.error();
            } else if (result->responses.size() == 2 * (end - begin)) {
              for (size_t i = begin; i < end; ++i) {
                const auto& key = result->responses[2 * (i - begin)];
                const auto& meta = result->responses[2 * (i - begin) + 1];
                if (!key.kvs.empty()) states[i].kv = key.kvs[0];
                if (!meta.kvs.empty()) {
                  states[i].meta_zxid = DecodeZxid(meta.kvs[0].value).value_or(INT64_MAX);
                  states[i].meta_mod_revision = meta.kvs[0].mod_revision;
                }
              }
            } else if (!etcd_error) {
              etcd_error =
                  etcd::Error{etcd::ErrorCode::kInternal, "unexpected recheck response shape", 0};
            }
          }
          pending.Done();
        });
  }
  pending.Wait();
  if (etcd_error) {
    return Unexpected{ReconcileError{ReconcileError::Source::kEtcd,
                                     "re-reading etcd: " + etcd_error->ToString()}};
  }

  std::vector<ConfirmedDifference> confirmed;
  for (size_t i = 0; i < candidates.size(); ++i) {
    NodeState& node = (*nodes)[i];
    const EtcdState& state = states[i];
    const std::optional<Difference::Kind> kind =
        Classify(node.exists ? &node.data : nullptr, state.kv ? &state.kv->value : nullptr,
                 state.meta_zxid.has_value());
    if (!kind) continue;
    ConfirmedDifference difference;
    difference.kind = *kind;
    difference.key = candidates[i].key;
    difference.path = candidates[i].path;
    difference.zk = std::move(node);
    difference.etcd_exists = state.kv.has_value();
    difference.etcd_mod_revision = state.kv ? state.kv->mod_revision : 0;
    difference.meta_zxid = state.meta_zxid;
    difference.meta_mod_revision = state.meta_mod_revision;
    confirmed.push_back(std::move(difference));
  }

  // Keys without a meta record: does the ownership store vouch for them?
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
        logger_.Warn("ownership store unreachable: keys without a meta record stay foreign",
                     {{"keys", foreign_keys.size()}, {"error", owned.error().message}});
      } else {
        for (size_t j = 0; j < foreign_index.size(); ++j) {
          if (!(*owned)[j]) continue;
          ConfirmedDifference& difference = confirmed[foreign_index[j]];
          difference.owned_by_store = true;
          if (difference.kind == Difference::Kind::kForeign) {
            difference.kind =
                difference.zk.exists ? Difference::Kind::kChanged : Difference::Kind::kExtra;
          }
        }
      }
    }
  }
  if (adopt != AdoptPolicy::kNone) ApplyAdoptPolicy(adopt, candidates, confirmed);
  return confirmed;
}

void Reconciler::Repair(ReconcileReport& report) {
  RepairState state;
  StartRepair(state);
  SubmitRepairs(state, report, report.differences);
  FinishRepair(state, report);
}

void Reconciler::StartRepair(RepairState& state) {
  if (ownership_ != nullptr) {
    if (auto ping = ownership_->Ping(); !ping.ok()) {
      state.deletes_allowed = false;
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
    FencedWrite write;
    write.key = difference.key;
    write.meta_key = layout_.MetaKeyFor(difference.key);
    if (adoption) {
      // Equal already: only the meta record is written, so etcd's watchers see no change.
      write.type = FencedWrite::Type::kAdopt;
      write.zxid = difference.zk.mzxid;
    } else if (difference.zk.exists) {
      write.type = FencedWrite::Type::kPut;
      write.value = difference.zk.data;
      write.zxid = difference.zk.mzxid;
    } else {
      if (!state.deletes_allowed) {
        std::lock_guard lock(pending.mutex());
        ++report.deferred_deletes;
        continue;
      }
      write.type = FencedWrite::Type::kDelete;
      write.zxid = difference.zk.zxid;
    }
    if (claimed) write.claim_mod_revision = difference.etcd_mod_revision;
    // What the second read (or, when fixing during a run, the diff's read) saw: lets the writer
    // use the cheaper flat transaction while that state still holds.
    write.observed = FencedWrite::Observed{
        difference.etcd_exists ? difference.etcd_mod_revision : 0,
        difference.meta_zxid ? difference.meta_mod_revision : 0, difference.meta_zxid.value_or(0)};
    pending.Add();
    writer_->Submit(
        std::move(write),
        [&, key = difference.key, value = ownership_ != nullptr ? difference.zk.data : "",
         is_put = difference.zk.exists, adoption](const WriteResult& result) {
          {
            std::lock_guard lock(pending.mutex());
            if (!result.ok()) {
              ++report.failed;
              logger_.Log(result.error().code == WriteError::Code::kEtcd ? ops::LogLevel::kError
                                                                         : ops::LogLevel::kWarn,
                          "repair failed", {{"key", key}, {"error", result.error().message}});
            } else if (*result == WriteOutcome::kApplied) {
              if (adoption) {
                ++report.adopted;
              } else if (is_put) {
                ++report.fixed_puts;
                if (ownership_ != nullptr) state.recorded.emplace_back(key, value);
              } else {
                ++report.fixed_deletes;
                if (ownership_ != nullptr) state.forgotten.push_back(key);
              }
            } else if (*result == WriteOutcome::kForeign) {
              logger_.Info("key turned foreign before its repair; left alone", {{"key", key}});
            } else {
              ++report.stale;
            }
          }
          pending.Done();
        });
  }
}

void Reconciler::FinishRepair(RepairState& state, ReconcileReport& report) {
  state.pending.Wait();
  if (state.started) report.repair_duration = clock_.Now() - *state.started;
  if (ownership_ == nullptr) return;
  if (!state.recorded.empty()) {
    if (auto r = ownership_->Record(state.recorded); !r.ok()) {
      logger_.Warn(
          "could not record repaired keys in the ownership store; their etcd meta "
          "records still prove ownership",
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
