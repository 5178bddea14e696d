#include "etcd/fake_etcd_client.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <future>
#include <limits>

#include "etcd/grpc_convert.h"

namespace zk2etcd::etcd {

namespace fake_internal {

// Shared by a subscription and its handle: Cancel() and deliveries take the mutex, so that once
// Cancel() returns no callback runs.
struct Gate {
  std::recursive_mutex mutex;
  bool cancelled = false;
  bool ended = false;  // the final callback was queued, or the client is gone
};

struct Subscription {
  enum class Kind { kWatch, kCampaign, kObserve, kKeepAlive };
  Kind kind = Kind::kWatch;
  FakeEtcdClient* client = nullptr;
  std::shared_ptr<Gate> gate = std::make_shared<Gate>();
  bool done = false;  // removed from the store at the next sweep
  // kWatch
  WatchRequest watch;
  EtcdClient::WatchCallback watch_callback;
  // kCampaign, kObserve: election name
  std::string name;
  // kCampaign
  std::string key;
  int64_t create_revision = 0;
  int64_t lease = 0;
  EtcdClient::CampaignCallback campaign_callback;
  // kObserve
  EtcdClient::ObserveCallback observe_callback;
  std::string last_key;
  int64_t last_mod_revision = 0;
  // kKeepAlive: `lease`
  EtcdClient::LeaseLostCallback lost_callback;
};

}  // namespace fake_internal

namespace {

using fake_internal::Gate;
using fake_internal::Subscription;
using SteadyTime = std::chrono::steady_clock::time_point;
constexpr int64_t kLatest = std::numeric_limits<int64_t>::max();

// Whether `key` is in the range [start, end) in etcd's sense.
bool InRange(const std::string& key, const std::string& start, const std::string& end) {
  if (end.empty()) return key == start;
  if (end.size() == 1 && end[0] == '\0') return key >= start;
  return key >= start && key < end;
}

Error LeaseNotFound() {
  return Error{ErrorCode::kNotFound, "etcdserver: requested lease not found", 0};
}

std::string ElectionKey(const std::string& name, int64_t lease) {
  char hex[32];
  std::snprintf(hex, sizeof(hex), "%" PRIx64, static_cast<uint64_t>(lease));
  return name + "/" + hex;
}

class FakeHandle final : public CallHandle {
 public:
  FakeHandle(std::shared_ptr<Gate> gate, std::function<void()> remove)
      : gate_(std::move(gate)), remove_(std::move(remove)) {}
  ~FakeHandle() override { Cancel(); }
  void Cancel() override {
    std::lock_guard lock(gate_->mutex);
    if (gate_->cancelled) return;
    gate_->cancelled = true;
    if (!gate_->ended) remove_();
  }

 private:
  std::shared_ptr<Gate> gate_;
  std::function<void()> remove_;
};

// etcd's check that no key is written twice by one transaction (put/put, or put inside a
// deleted range), over a branch and its nested transactions.
struct Interval {
  std::string start;
  std::string end;
};

bool Intersects(const std::vector<Interval>& intervals, const std::string& key) {
  return std::any_of(intervals.begin(), intervals.end(),
                     [&key](const Interval& i) { return InRange(key, i.start, i.end); });
}

bool CheckIntervals(const std::vector<Op>& ops, std::set<std::string>* puts,
                    std::vector<Interval>* dels) {
  for (const Op& op : ops) {
    if (op.type == Op::Type::kDelete) dels->push_back({op.key, op.range_end});
  }
  for (const Op& op : ops) {
    if (op.type != Op::Type::kTxn || op.txn == nullptr) continue;
    std::set<std::string> puts_then;
    std::set<std::string> puts_else;
    std::vector<Interval> dels_then;
    std::vector<Interval> dels_else;
    if (!CheckIntervals(op.txn->success, &puts_then, &dels_then)) return false;
    if (!CheckIntervals(op.txn->failure, &puts_else, &dels_else)) return false;
    for (const std::string& key : puts_then) {
      if (puts->count(key) != 0 || Intersects(*dels, key)) return false;
      puts->insert(key);
    }
    for (const std::string& key : puts_else) {
      if (puts->count(key) != 0 && puts_then.count(key) == 0) return false;
      if (Intersects(*dels, key)) return false;
      puts->insert(key);
    }
    dels->insert(dels->end(), dels_then.begin(), dels_then.end());
    dels->insert(dels->end(), dels_else.begin(), dels_else.end());
  }
  for (const Op& op : ops) {
    if (op.type != Op::Type::kPut) continue;
    if (puts->count(op.key) != 0 || Intersects(*dels, op.key)) return false;
    puts->insert(op.key);
  }
  return true;
}

bool HasDuplicateKeys(const TxnRequest& request) {
  for (const auto* branch : {&request.success, &request.failure}) {
    std::set<std::string> puts;
    std::vector<Interval> dels;
    if (!CheckIntervals(*branch, &puts, &dels)) return true;
  }
  return false;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// FakeEtcdStore

FakeEtcdStore::FakeEtcdStore(const Clock& clock) : clock_(clock) {}
FakeEtcdStore::~FakeEtcdStore() = default;

int64_t FakeEtcdStore::revision() const {
  std::lock_guard lock(mutex_);
  return revision_;
}

int64_t FakeEtcdStore::compact_revision() const {
  std::lock_guard lock(mutex_);
  return compact_revision_;
}

int64_t FakeEtcdStore::keys_walked() const {
  std::lock_guard lock(mutex_);
  return keys_walked_;
}

void FakeEtcdStore::Compact(int64_t revision) {
  std::lock_guard lock(mutex_);
  revision = std::min(revision, revision_);
  if (revision <= compact_revision_) return;
  compact_revision_ = revision;
  for (auto it = history_.begin(); it != history_.end();) {
    std::vector<Version>& versions = it->second;
    // Keep the newest version at or before `revision`, unless it is a deletion.
    auto first_kept =
        std::upper_bound(versions.begin(), versions.end(), revision,
                         [](int64_t rev, const Version& v) { return rev < v.mod_revision; });
    if (first_kept != versions.begin()) {
      auto newest_old = std::prev(first_kept);
      if (!newest_old->deleted) first_kept = newest_old;
    }
    versions.erase(versions.begin(), first_kept);
    if (versions.empty()) {
      it = history_.erase(it);
    } else {
      ++it;
    }
  }
  while (!events_.empty() && events_.front().revision < revision) events_.pop_front();
}

void FakeEtcdStore::ExpireLeases() {
  std::lock_guard lock(mutex_);
  ExpireLeasesLocked();
}

std::optional<KeyValue> FakeEtcdStore::Get(const std::string& key) const {
  std::lock_guard lock(mutex_);
  return GetLocked(key, kLatest);
}

std::vector<KeyValue> FakeEtcdStore::List(const std::string& prefix) const {
  std::lock_guard lock(mutex_);
  auto response = RangeLocked(RangeRequest::Prefix(prefix));
  return response.ok() ? std::move(response->kvs) : std::vector<KeyValue>{};
}

int64_t FakeEtcdStore::PutDirect(const std::string& key, const std::string& value, int64_t lease) {
  std::lock_guard lock(mutex_);
  Batch batch = BeginLocked();
  PutLocked(batch, key, value, lease, false, nullptr);
  CommitLocked(batch);
  return revision_;
}

int64_t FakeEtcdStore::DeleteDirect(const std::string& key) {
  std::lock_guard lock(mutex_);
  Batch batch = BeginLocked();
  const int64_t deleted = DeleteLocked(batch, key, {}, nullptr);
  CommitLocked(batch);
  return deleted;
}

const FakeEtcdStore::Version* FakeEtcdStore::LatestLocked(const std::string& key,
                                                          int64_t at_revision) const {
  auto it = history_.find(key);
  if (it == history_.end()) return nullptr;
  const Version* found = nullptr;
  for (const Version& version : it->second) {
    if (version.mod_revision > at_revision) break;
    found = &version;
  }
  if (found == nullptr || found->deleted) return nullptr;
  return found;
}

std::optional<KeyValue> FakeEtcdStore::GetLocked(const std::string& key,
                                                 int64_t at_revision) const {
  const Version* version = LatestLocked(key, at_revision);
  if (version == nullptr) return std::nullopt;
  return KeyValue{key,
                  version->value,
                  version->create_revision,
                  version->mod_revision,
                  version->version,
                  version->lease};
}

EtcdResult<RangeResponse> FakeEtcdStore::RangeLocked(const RangeRequest& request) const {
  if (request.key.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "etcdserver: key is not provided");
  }
  int64_t at = request.revision;
  if (at > 0 && at < compact_revision_) {
    Error error{ErrorCode::kCompacted, "etcdserver: mvcc: required revision has been compacted",
                compact_revision_};
    return Unexpected{std::move(error)};
  }
  if (at > revision_) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "etcdserver: mvcc: required revision is a future revision");
  }
  // Reads inside a transaction see its own writes (versions above revision_).
  if (at <= 0) at = kLatest;
  RangeResponse response;
  response.revision = revision_;
  auto begin = history_.lower_bound(request.key);
  for (auto it = begin; it != history_.end(); ++it) {
    if (!InRange(it->first, request.key, request.range_end)) {
      if (request.range_end.empty()) break;
      if (!(request.range_end.size() == 1 && request.range_end[0] == '\0') &&
          it->first >= request.range_end) {
        break;
      }
      continue;
    }
    auto kv = GetLocked(it->first, at);
    if (!kv) continue;
    ++response.count;
    ++keys_walked_;
    if (request.count_only) continue;
    if (request.limit > 0 && static_cast<int64_t>(response.kvs.size()) >= request.limit) {
      response.more = true;
      continue;
    }
    if (request.keys_only) kv->value.clear();
    response.kvs.push_back(std::move(*kv));
  }
  return response;
}

bool FakeEtcdStore::CompareLocked(const Compare& compare) const {
  std::vector<KeyValue> kvs;
  if (compare.range_end.empty()) {
    if (auto kv = GetLocked(compare.key, kLatest)) kvs.push_back(std::move(*kv));
  } else {
    RangeRequest request;
    request.key = compare.key;
    request.range_end = compare.range_end;
    auto response = RangeLocked(request);
    if (response.ok()) kvs = std::move(response->kvs);
  }
  auto holds = [&compare](const KeyValue& kv) {
    int result = 0;
    switch (compare.target) {
      case CompareTarget::kValue:
        result = kv.value.compare(compare.value);
        break;
      case CompareTarget::kVersion:
        result = kv.version < compare.number ? -1 : kv.version > compare.number ? 1 : 0;
        break;
      case CompareTarget::kCreateRevision:
        result = kv.create_revision < compare.number   ? -1
                 : kv.create_revision > compare.number ? 1
                                                       : 0;
        break;
      case CompareTarget::kModRevision:
        result = kv.mod_revision < compare.number ? -1 : kv.mod_revision > compare.number ? 1 : 0;
        break;
      case CompareTarget::kLease:
        result = kv.lease < compare.number ? -1 : kv.lease > compare.number ? 1 : 0;
        break;
    }
    switch (compare.op) {
      case CompareOp::kEqual:
        return result == 0;
      case CompareOp::kNotEqual:
        return result != 0;
      case CompareOp::kLess:
        return result < 0;
      case CompareOp::kGreater:
        return result > 0;
    }
    return false;
  };
  if (kvs.empty()) {
    // etcd: a value compare on a missing key always fails; other targets compare zeros.
    if (compare.target == CompareTarget::kValue) return false;
    return holds(KeyValue{});
  }
  return std::all_of(kvs.begin(), kvs.end(), holds);
}

void FakeEtcdStore::PutLocked(Batch& batch, const std::string& key, const std::string& value,
                              int64_t lease, bool ignore_lease, std::optional<KeyValue>* prev) {
  std::vector<Version>& versions = history_[key];
  const Version* previous = LatestLocked(key, kLatest);
  Version next;
  next.mod_revision = batch.revision;
  next.value = value;
  next.lease = ignore_lease && previous != nullptr ? previous->lease : lease;
  std::optional<KeyValue> prev_kv;
  if (previous != nullptr) {
    next.create_revision = previous->create_revision;
    next.version = previous->version + 1;
    prev_kv = KeyValue{key,
                       previous->value,
                       previous->create_revision,
                       previous->mod_revision,
                       previous->version,
                       previous->lease};
    if (previous->lease != 0 && previous->lease != next.lease) {
      if (auto it = leases_.find(previous->lease); it != leases_.end()) it->second.keys.erase(key);
    }
  } else {
    next.create_revision = batch.revision;
    next.version = 1;
  }
  if (next.lease != 0) {
    if (auto it = leases_.find(next.lease); it != leases_.end()) it->second.keys.insert(key);
  }
  WatchEvent event;
  event.type = WatchEvent::Type::kPut;
  event.kv =
      KeyValue{key, value, next.create_revision, next.mod_revision, next.version, next.lease};
  event.prev_kv = prev_kv;
  if (prev != nullptr) *prev = std::move(prev_kv);
  versions.push_back(std::move(next));
  batch.events.push_back(std::move(event));
}

int64_t FakeEtcdStore::DeleteLocked(Batch& batch, const std::string& key,
                                    const std::string& range_end, std::vector<KeyValue>* prevs) {
  RangeRequest request;
  request.key = key;
  request.range_end = range_end;
  auto existing = RangeLocked(request);
  if (!existing.ok()) return 0;
  for (KeyValue& kv : existing->kvs) {
    if (kv.lease != 0) {
      if (auto it = leases_.find(kv.lease); it != leases_.end()) it->second.keys.erase(kv.key);
    }
    Version tombstone;
    tombstone.mod_revision = batch.revision;
    tombstone.deleted = true;
    history_[kv.key].push_back(tombstone);
    WatchEvent event;
    event.type = WatchEvent::Type::kDelete;
    event.kv.key = kv.key;
    event.kv.mod_revision = batch.revision;
    event.prev_kv = kv;
    batch.events.push_back(std::move(event));
    if (prevs != nullptr) prevs->push_back(std::move(kv));
  }
  return static_cast<int64_t>(existing->kvs.size());
}

void FakeEtcdStore::CommitLocked(Batch& batch) {
  if (batch.events.empty()) return;
  revision_ = batch.revision;
  for (const WatchEvent& event : batch.events) events_.push_back({batch.revision, event});
  NotifyLocked(batch);
  CheckElectionsLocked();
}

void FakeEtcdStore::NotifyLocked(const Batch& batch) {
  for (const auto& subscription : subscriptions_) {
    if (subscription->kind != Subscription::Kind::kWatch || subscription->done) continue;
    if (batch.revision < subscription->watch.start_revision) continue;
    WatchEvents events;
    events.header_revision = batch.revision;
    for (const WatchEvent& event : batch.events) {
      if (!InRange(event.kv.key, subscription->watch.key, subscription->watch.range_end)) {
        continue;
      }
      events.events.push_back(event);
      if (!subscription->watch.prev_kv) events.events.back().prev_kv.reset();
    }
    if (events.events.empty()) continue;
    auto gate = subscription->gate;
    auto callback = subscription->watch_callback;
    subscription->client->PostStream([gate, callback, events = std::move(events)]() mutable {
      std::lock_guard lock(gate->mutex);
      if (!gate->cancelled) callback(std::move(events));
    });
  }
}

std::optional<KeyValue> FakeEtcdStore::LeaderLocked(const std::string& name) const {
  RangeRequest request = RangeRequest::Prefix(name + "/");
  auto response = RangeLocked(request);
  if (!response.ok() || response->kvs.empty()) return std::nullopt;
  return *std::min_element(
      response->kvs.begin(), response->kvs.end(),
      [](const KeyValue& a, const KeyValue& b) { return a.create_revision < b.create_revision; });
}

void FakeEtcdStore::CheckElectionsLocked() {
  for (const auto& subscription : subscriptions_) {
    if (subscription->done) continue;
    auto gate = subscription->gate;
    if (subscription->kind == Subscription::Kind::kCampaign) {
      auto own = GetLocked(subscription->key, kLatest);
      EtcdResult<LeaderKey> result = MakeError(ErrorCode::kInternal, "");
      if (!own || own->create_revision != subscription->create_revision) {
        result = MakeError(ErrorCode::kNotFound,
                           "campaign key " + subscription->key + " was deleted (lease expired?)");
      } else if (auto leader = LeaderLocked(subscription->name);
                 leader && leader->key == subscription->key) {
        result = LeaderKey{subscription->name, subscription->key, subscription->create_revision,
                           subscription->lease};
      } else {
        continue;
      }
      subscription->done = true;
      auto callback = subscription->campaign_callback;
      subscription->client->PostStream([gate, callback, result = std::move(result)]() mutable {
        std::lock_guard lock(gate->mutex);
        gate->ended = true;
        if (!gate->cancelled) callback(std::move(result));
      });
    } else if (subscription->kind == Subscription::Kind::kObserve) {
      auto leader = LeaderLocked(subscription->name);
      if (!leader || (leader->key == subscription->last_key &&
                      leader->mod_revision == subscription->last_mod_revision)) {
        continue;
      }
      subscription->last_key = leader->key;
      subscription->last_mod_revision = leader->mod_revision;
      auto callback = subscription->observe_callback;
      subscription->client->PostStream([gate, callback, kv = std::move(*leader)]() mutable {
        std::lock_guard lock(gate->mutex);
        if (!gate->cancelled) callback(std::move(kv));
      });
    }
  }
  std::erase_if(subscriptions_, [](const auto& s) { return s->done; });
}

void FakeEtcdStore::ExpireLeasesLocked() {
  const SteadyTime now = clock_.Now();
  std::vector<int64_t> expired;
  for (auto& [id, lease] : leases_) {
    const bool kept_alive =
        std::any_of(subscriptions_.begin(), subscriptions_.end(), [id = id](const auto& s) {
          return s->kind == Subscription::Kind::kKeepAlive && !s->done && s->lease == id &&
                 s->client->reachable();
        });
    if (kept_alive) {
      lease.expiry = now + std::chrono::seconds(lease.ttl);
    } else if (now >= lease.expiry) {
      expired.push_back(id);
    }
  }
  for (int64_t id : expired) {
    RevokeLocked(id, Error{ErrorCode::kNotFound, "lease expired", 0});
  }
}

void FakeEtcdStore::RevokeLocked(int64_t id, const Error& reason) {
  auto it = leases_.find(id);
  if (it == leases_.end()) return;
  const std::set<std::string> keys = std::move(it->second.keys);
  leases_.erase(it);
  Batch batch = BeginLocked();
  for (const std::string& key : keys) DeleteLocked(batch, key, {}, nullptr);
  for (const auto& subscription : subscriptions_) {
    if (subscription->kind != Subscription::Kind::kKeepAlive || subscription->done ||
        subscription->lease != id) {
      continue;
    }
    subscription->done = true;
    Error error = reason;
    if (!subscription->client->reachable()) {
      error = Error{ErrorCode::kDeadlineExceeded,
                    "lease " + std::to_string(id) + " was not renewed within its TTL", 0};
    } else {
      error.message = "lease " + std::to_string(id) + " expired or was revoked";
    }
    auto gate = subscription->gate;
    auto callback = subscription->lost_callback;
    // Not held while unreachable: a client that cannot renew learns it from its own clock.
    subscription->client->Post([gate, callback, error] {
      std::lock_guard lock(gate->mutex);
      gate->ended = true;
      if (!gate->cancelled) callback(error);
    });
  }
  CommitLocked(batch);
  std::erase_if(subscriptions_, [](const auto& s) { return s->done; });
}

void FakeEtcdStore::AddSubscriptionLocked(const std::shared_ptr<Subscription>& subscription) {
  subscriptions_.push_back(subscription);
}

void FakeEtcdStore::RemoveSubscription(const Subscription* subscription) {
  std::lock_guard lock(mutex_);
  std::erase_if(subscriptions_, [subscription](const auto& s) { return s.get() == subscription; });
}

void FakeEtcdStore::ComputePathLocked(const TxnRequest& request, std::vector<bool>& path) const {
  const bool succeeded = std::all_of(request.compares.begin(), request.compares.end(),
                                     [this](const Compare& c) { return CompareLocked(c); });
  path.push_back(succeeded);
  for (const Op& op : succeeded ? request.success : request.failure) {
    if (op.type == Op::Type::kTxn && op.txn != nullptr) ComputePathLocked(*op.txn, path);
  }
}

bool FakeEtcdStore::LeasesExistLocked(const TxnRequest& request, const std::vector<bool>& path,
                                      size_t& path_index, int64_t* missing) const {
  const bool succeeded = path[path_index++];
  for (const Op& op : succeeded ? request.success : request.failure) {
    if (op.type == Op::Type::kPut && op.lease != 0 && leases_.count(op.lease) == 0) {
      *missing = op.lease;
      return false;
    }
    if (op.type == Op::Type::kTxn && op.txn != nullptr &&
        !LeasesExistLocked(*op.txn, path, path_index, missing)) {
      return false;
    }
  }
  return true;
}

void FakeEtcdStore::ApplyOpsLocked(Batch& batch, const TxnRequest& request, bool succeeded,
                                   const std::vector<bool>& path, size_t& path_index,
                                   TxnResponse* response) {
  response->succeeded = succeeded;
  for (const Op& op : succeeded ? request.success : request.failure) {
    OpResponse out;
    out.type = op.type;
    switch (op.type) {
      case Op::Type::kPut: {
        std::optional<KeyValue> prev;
        PutLocked(batch, op.key, op.value, op.lease, false, &prev);
        if (op.prev_kv && prev) out.kvs.push_back(std::move(*prev));
        break;
      }
      case Op::Type::kDelete: {
        std::vector<KeyValue> prevs;
        out.deleted = DeleteLocked(batch, op.key, op.range_end, &prevs);
        if (op.prev_kv) out.kvs = std::move(prevs);
        break;
      }
      case Op::Type::kRange: {
        auto range = RangeLocked(op.range);
        if (range.ok()) {
          out.kvs = std::move(range->kvs);
          out.more = range->more;
          out.count = range->count;
        }
        break;
      }
      case Op::Type::kTxn: {
        TxnResponse nested;
        const bool nested_succeeded = path[path_index++];
        ApplyOpsLocked(batch, *op.txn, nested_succeeded, path, path_index, &nested);
        out.txn = std::make_shared<const TxnResponse>(std::move(nested));
        break;
      }
    }
    response->responses.push_back(std::move(out));
  }
}

EtcdResult<TxnResponse> FakeEtcdStore::TxnLocked(const TxnRequest& request, int max_ops) {
  if (auto valid = ValidateTxn(request, max_ops); !valid.ok()) return Unexpected{valid.error()};
  if (HasDuplicateKeys(request)) {
    return MakeError(ErrorCode::kInvalidArgument, "etcdserver: duplicate key given in txn request");
  }
  for (const auto* branch : {&request.success, &request.failure}) {
    for (const Op& op : *branch) {
      if (op.type == Op::Type::kRange && op.range.revision > revision_) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "etcdserver: mvcc: required revision is a future revision");
      }
    }
  }
  std::vector<bool> path;
  ComputePathLocked(request, path);
  size_t index = 0;
  int64_t missing = 0;
  if (!LeasesExistLocked(request, path, index, &missing)) return Unexpected{LeaseNotFound()};
  Batch batch = BeginLocked();
  TxnResponse response;
  index = 1;
  ApplyOpsLocked(batch, request, path[0], path, index, &response);
  CommitLocked(batch);
  response.revision = revision_;
  return response;
}

// ---------------------------------------------------------------------------------------------
// FakeEtcdClient

FakeEtcdClient::FakeEtcdClient(const Clock& clock, FakeEtcdOptions options)
    : owned_store_(std::make_unique<FakeEtcdStore>(clock)),
      store_(owned_store_.get()),
      clock_(clock),
      options_(options) {
  thread_ = std::thread([this] { Run(); });
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [this] { return thread_id_ != std::thread::id(); });
}

FakeEtcdClient::FakeEtcdClient(FakeEtcdStore& store, const Clock& clock, FakeEtcdOptions options)
    : store_(&store), clock_(clock), options_(options) {
  thread_ = std::thread([this] { Run(); });
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [this] { return thread_id_ != std::thread::id(); });
}

FakeEtcdClient::~FakeEtcdClient() {
  alive_.reset();
  // Subscriptions of this client end with kCancelled, delivered here, as the real client does.
  std::vector<std::shared_ptr<Subscription>> mine;
  {
    std::lock_guard lock(store_->mutex_);
    for (const auto& subscription : store_->subscriptions_) {
      if (subscription->client == this) mine.push_back(subscription);
    }
    std::erase_if(store_->subscriptions_, [this](const auto& s) { return s->client == this; });
  }
  std::deque<SentTxn> abandoned;
  std::vector<std::pair<int64_t, LeaseRevokeCallback>> held_revokes;
  {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [this] { return tasks_.empty() && !running_task_; });
    stopping_ = true;
    abandoned.swap(sent_);
    for (auto& txn : waiting_) abandoned.push_back(std::move(txn));
    waiting_.clear();
    held_stream_tasks_.clear();
    held_revokes.swap(held_lease_revokes_);
  }
  changed_.notify_all();
  thread_.join();
  const Error cancelled{ErrorCode::kCancelled, "the etcd client was destroyed", 0};
  for (SentTxn& txn : abandoned) txn.done(Unexpected{cancelled});
  for (auto& [id, done] : held_revokes) done(Unexpected{cancelled});
  for (const auto& subscription : mine) {
    std::lock_guard lock(subscription->gate->mutex);
    const bool deliver = !subscription->gate->cancelled && !subscription->gate->ended;
    subscription->gate->ended = true;
    if (!deliver || subscription->done) continue;
    switch (subscription->kind) {
      case Subscription::Kind::kWatch:
        subscription->watch_callback(Unexpected{cancelled});
        break;
      case Subscription::Kind::kCampaign:
        subscription->campaign_callback(Unexpected{cancelled});
        break;
      case Subscription::Kind::kObserve:
        subscription->observe_callback(Unexpected{cancelled});
        break;
      case Subscription::Kind::kKeepAlive:
        subscription->lost_callback(cancelled);
        break;
    }
  }
}

std::function<void()> FakeEtcdClient::RemoverFor(const Subscription* subscription) {
  return [alive = std::weak_ptr<int>(alive_), store = store_, subscription] {
    if (alive.lock()) store->RemoveSubscription(subscription);
  };
}

void FakeEtcdClient::Run() {
  std::unique_lock lock(mutex_);
  thread_id_ = std::this_thread::get_id();
  changed_.notify_all();
  while (true) {
    changed_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
    if (tasks_.empty()) return;
    auto task = std::move(tasks_.front());
    tasks_.pop_front();
    running_task_ = true;
    lock.unlock();
    task();
    lock.lock();
    running_task_ = false;
    changed_.notify_all();
  }
}

void FakeEtcdClient::Post(std::function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    tasks_.push_back(std::move(task));
  }
  changed_.notify_all();
}

void FakeEtcdClient::PostStream(std::function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    if (unavailable_) {
      held_stream_tasks_.push_back(std::move(task));
      return;
    }
    tasks_.push_back(std::move(task));
  }
  changed_.notify_all();
}

bool FakeEtcdClient::reachable() const {
  std::lock_guard lock(mutex_);
  return !unavailable_;
}

bool FakeEtcdClient::OnCallbackThread() const { return std::this_thread::get_id() == thread_id_; }

void FakeEtcdClient::Drain() {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [this] { return tasks_.empty() && !running_task_; });
}

void FakeEtcdClient::InjectFault(std::string_view op, ErrorCode code, int times, FaultPhase phase) {
  std::lock_guard lock(mutex_);
  faults_.push_back(Fault{std::string(op), code, times, phase});
}

void FakeEtcdClient::ClearFaults() {
  std::lock_guard lock(mutex_);
  faults_.clear();
}

void FakeEtcdClient::SetUnavailable(bool unavailable) {
  if (unavailable) {
    // The last keep-alive before the outage: leases run out one TTL from now.
    store_->ExpireLeases();
  }
  // Watches that report interruptions hear of the outage at once, and of its end before the
  // events it held (as the real client's stream says "resumed" when it is created again).
  std::vector<std::function<void()>> notices;
  {
    std::lock_guard store_lock(store_->mutex_);
    for (const auto& subscription : store_->subscriptions_) {
      if (subscription->client != this || subscription->done ||
          subscription->kind != Subscription::Kind::kWatch ||
          !subscription->watch.report_interruptions) {
        continue;
      }
      notices.push_back(
          [gate = subscription->gate, callback = subscription->watch_callback, unavailable] {
            std::lock_guard gate_lock(gate->mutex);
            if (gate->cancelled || gate->ended) return;
            WatchEvents notice;
            if (unavailable) {
              notice.interrupted = "etcd unavailable (fake)";
            } else {
              notice.resumed = true;
            }
            callback(std::move(notice));
          });
    }
  }
  {
    std::lock_guard lock(mutex_);
    if (unavailable_ != unavailable) {
      for (auto& notice : notices) tasks_.push_back(std::move(notice));
    }
    unavailable_ = unavailable;
    if (!unavailable) {
      for (auto& task : held_stream_tasks_) tasks_.push_back(std::move(task));
      held_stream_tasks_.clear();
    }
  }
  changed_.notify_all();
  if (!unavailable) store_->ExpireLeases();
}

void FakeEtcdClient::HoldTxns(bool hold) {
  std::lock_guard lock(mutex_);
  hold_txns_ = hold;
  PumpTxnsLocked();
}

void FakeEtcdClient::SetTxnDelay(std::chrono::nanoseconds delay) {
  std::lock_guard lock(mutex_);
  txn_delay_ = delay;
}

void FakeEtcdClient::Tick() {
  store_->ExpireLeases();
  std::lock_guard lock(mutex_);
  PumpTxnsLocked();
}

int FakeEtcdClient::Calls(std::string_view op) const {
  std::lock_guard lock(mutex_);
  auto it = calls_.find(op);
  return it == calls_.end() ? 0 : it->second;
}

int FakeEtcdClient::TxnsInFlight() const {
  std::lock_guard lock(mutex_);
  return txns_in_flight_;
}

int FakeEtcdClient::MaxTxnsInFlightSeen() const {
  std::lock_guard lock(mutex_);
  return max_txns_in_flight_seen_;
}

size_t FakeEtcdClient::PendingTxns() const {
  std::lock_guard lock(mutex_);
  return static_cast<size_t>(txns_in_flight_) + waiting_.size();
}

std::optional<FakeEtcdClient::Fault> FakeEtcdClient::TakeFault(std::string_view op) {
  std::lock_guard lock(mutex_);
  ++calls_[std::string(op)];
  if (unavailable_) {
    return Fault{std::string(op), ErrorCode::kUnavailable, 1, FaultPhase::kBeforeApply};
  }
  for (auto it = faults_.begin(); it != faults_.end(); ++it) {
    if (it->op != op) continue;
    Fault fault = *it;
    if (it->remaining > 0 && --it->remaining == 0) faults_.erase(it);
    return fault;
  }
  return std::nullopt;
}

Error FakeEtcdClient::FaultError(const Fault& fault) const {
  return Error{fault.code,
               "fake etcd: injected " + std::string(ErrorLabel(fault.code)) + " for " + fault.op +
                   (fault.phase == FaultPhase::kAfterApply ? " (after applying it)" : ""),
               0};
}

void FakeEtcdClient::Report(std::string_view op, std::string_view status, SteadyTime start) {
  if (options_.observer != nullptr) options_.observer->OnOp(op, status, clock_.Now() - start);
}

template <typename T>
EtcdResult<T> FakeEtcdClient::Finish(std::string_view op, SteadyTime start, EtcdResult<T> result) {
  Report(op, result.ok() ? kSuccessLabel : ErrorLabel(result.error().code), start);
  return result;
}

// Runs `apply` against the store unless a fault says otherwise; reports the outcome.
template <typename T, typename Apply>
EtcdResult<T> FakeEtcdClient::Call(std::string_view op, Apply&& apply) {
  const SteadyTime start = clock_.Now();
  if (OnCallbackThread()) {
    return Finish<T>(op, start,
                     MakeError(ErrorCode::kFailedPrecondition,
                               "synchronous call on the etcd client's callback thread"));
  }
  auto fault = TakeFault(op);
  if (fault && fault->phase == FaultPhase::kBeforeApply) {
    return Finish<T>(op, start, Unexpected{FaultError(*fault)});
  }
  EtcdResult<T> result = apply();
  if (fault) return Finish<T>(op, start, Unexpected{FaultError(*fault)});
  return Finish<T>(op, start, std::move(result));
}

EtcdResult<RangeResponse> FakeEtcdClient::Range(const RangeRequest& request,
                                                const CallOptions& /*options*/) {
  return Call<RangeResponse>("range", [&]() -> EtcdResult<RangeResponse> {
    std::lock_guard lock(store_->mutex_);
    store_->ExpireLeasesLocked();
    return store_->RangeLocked(request);
  });
}

void FakeEtcdClient::TxnAsync(TxnRequest request, const CallOptions& /*options*/,
                              TxnCallback done) {
  const SteadyTime now = clock_.Now();
  if (auto valid = ValidateTxn(request, options_.max_txn_ops); !valid.ok()) {
    Report("txn", ErrorLabel(valid.error().code), now);
    Post([done = std::move(done), error = valid.error()] { done(Unexpected{error}); });
    return;
  }
  if (options_.max_request_bytes > 0 && EncodedBytes(request) > options_.max_request_bytes) {
    const Error error{ErrorCode::kInvalidArgument, "etcdserver: request is too large", 0};
    {
      std::lock_guard lock(mutex_);
      ++calls_["txn"];
    }
    Report("txn", ErrorLabel(error.code), now);
    Post([done = std::move(done), error] { done(Unexpected{error}); });
    return;
  }
  std::lock_guard lock(mutex_);
  SentTxn txn{std::move(request), std::move(done), now + txn_delay_, now};
  if (txns_in_flight_ < std::max(options_.max_txns_in_flight, 1)) {
    ++txns_in_flight_;
    max_txns_in_flight_seen_ = std::max(max_txns_in_flight_seen_, txns_in_flight_);
    sent_.push_back(std::move(txn));
    PumpTxnsLocked();
  } else {
    waiting_.push_back(std::move(txn));
  }
}

void FakeEtcdClient::PumpTxnsLocked() {
  if (stopping_) return;
  const SteadyTime now = clock_.Now();
  while (!hold_txns_ && !sent_.empty() && sent_.front().due <= now) {
    auto txn = std::make_shared<SentTxn>(std::move(sent_.front()));
    sent_.pop_front();
    tasks_.push_back([this, txn] { ProcessTxn(std::move(*txn)); });
  }
  changed_.notify_all();
}

void FakeEtcdClient::ProcessTxn(SentTxn txn) {
  auto fault = TakeFault("txn");
  EtcdResult<TxnResponse> result = MakeError(ErrorCode::kInternal, "");
  if (fault && fault->phase == FaultPhase::kBeforeApply) {
    result = Unexpected{FaultError(*fault)};
  } else {
    {
      std::lock_guard lock(store_->mutex_);
      store_->ExpireLeasesLocked();
      result = store_->TxnLocked(txn.request, options_.max_txn_ops);
    }
    if (fault) result = Unexpected{FaultError(*fault)};
  }
  Report("txn", result.ok() ? kSuccessLabel : ErrorLabel(result.error().code), txn.sent);
  {
    std::lock_guard lock(mutex_);
    --txns_in_flight_;
    if (!waiting_.empty()) {
      SentTxn next = std::move(waiting_.front());
      waiting_.pop_front();
      const SteadyTime now = clock_.Now();
      next.due = now + txn_delay_;
      next.sent = now;
      ++txns_in_flight_;
      sent_.push_back(std::move(next));
    }
    PumpTxnsLocked();
  }
  txn.done(std::move(result));
}

EtcdResult<PutResponse> FakeEtcdClient::Put(const std::string& key, const std::string& value,
                                            int64_t lease, const CallOptions& /*options*/) {
  return Call<PutResponse>("put", [&]() -> EtcdResult<PutResponse> {
    if (key.empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "etcdserver: key is not provided");
    }
    std::lock_guard lock(store_->mutex_);
    store_->ExpireLeasesLocked();
    if (lease != 0 && store_->leases_.count(lease) == 0) return Unexpected{LeaseNotFound()};
    auto batch = store_->BeginLocked();
    PutResponse response;
    store_->PutLocked(batch, key, value, lease, false, &response.prev_kv);
    store_->CommitLocked(batch);
    response.revision = store_->revision_;
    return response;
  });
}

EtcdResult<DeleteResponse> FakeEtcdClient::Delete(const std::string& key,
                                                  const std::string& range_end,
                                                  const CallOptions& /*options*/) {
  return Call<DeleteResponse>("delete", [&]() -> EtcdResult<DeleteResponse> {
    if (key.empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "etcdserver: key is not provided");
    }
    std::lock_guard lock(store_->mutex_);
    store_->ExpireLeasesLocked();
    auto batch = store_->BeginLocked();
    DeleteResponse response;
    response.deleted = store_->DeleteLocked(batch, key, range_end, &response.prev_kvs);
    store_->CommitLocked(batch);
    response.revision = store_->revision_;
    return response;
  });
}

std::unique_ptr<CallHandle> FakeEtcdClient::Watch(const WatchRequest& request,
                                                  WatchCallback callback) {
  const SteadyTime start = clock_.Now();
  auto subscription = std::make_shared<Subscription>();
  subscription->kind = Subscription::Kind::kWatch;
  subscription->client = this;
  subscription->watch = request;
  subscription->watch_callback = callback;
  auto gate = subscription->gate;
  auto handle = std::make_unique<FakeHandle>(gate, RemoverFor(subscription.get()));
  auto fault = TakeFault("watch");
  std::lock_guard lock(store_->mutex_);
  store_->ExpireLeasesLocked();
  auto fail = [&](Error error) {
    Report("watch", ErrorLabel(error.code), start);
    Post([gate, callback, error] {
      std::lock_guard gate_lock(gate->mutex);
      gate->ended = true;
      if (!gate->cancelled) callback(Unexpected{error});
    });
  };
  if (fault && fault->code != ErrorCode::kUnavailable) {
    // The real client retries unavailability by itself; other faults end the watch.
    fail(FaultError(*fault));
    return handle;
  }
  if (request.key.empty()) {
    fail(Error{ErrorCode::kInvalidArgument, "etcdserver: key is not provided", 0});
    return handle;
  }
  if (request.start_revision > 0 && request.start_revision < store_->compact_revision_) {
    fail(Error{ErrorCode::kCompacted,
               "watch from revision " + std::to_string(request.start_revision) +
                   " failed: compacted; the oldest revision available is " +
                   std::to_string(store_->compact_revision_),
               store_->compact_revision_});
    return handle;
  }
  Report("watch", kSuccessLabel, start);
  if (request.start_revision > 0 && request.start_revision <= store_->revision_) {
    WatchEvents replay;
    replay.header_revision = store_->revision_;
    for (const auto& logged : store_->events_) {
      if (logged.revision < request.start_revision) continue;
      if (!InRange(logged.event.kv.key, request.key, request.range_end)) continue;
      replay.events.push_back(logged.event);
      if (!request.prev_kv) replay.events.back().prev_kv.reset();
    }
    if (!replay.events.empty()) {
      PostStream([gate, callback, replay = std::move(replay)]() mutable {
        std::lock_guard gate_lock(gate->mutex);
        if (!gate->cancelled) callback(std::move(replay));
      });
    }
  }
  store_->AddSubscriptionLocked(subscription);
  return handle;
}

EtcdResult<LeaseGrantResponse> FakeEtcdClient::LeaseGrant(std::chrono::seconds ttl, int64_t id) {
  return Call<LeaseGrantResponse>("lease_grant", [&]() -> EtcdResult<LeaseGrantResponse> {
    std::lock_guard lock(store_->mutex_);
    store_->ExpireLeasesLocked();
    if (id == 0) id = store_->next_lease_id_++;
    if (store_->leases_.count(id) != 0) {
      return MakeError(ErrorCode::kFailedPrecondition, "etcdserver: lease already exists");
    }
    FakeEtcdStore::Lease lease;
    lease.ttl = std::max<int64_t>(ttl.count(), 1);
    lease.expiry = clock_.Now() + std::chrono::seconds(lease.ttl);
    store_->leases_[id] = lease;
    return LeaseGrantResponse{id, lease.ttl};
  });
}

EtcdResult<void> FakeEtcdClient::LeaseRevoke(int64_t id) {
  return Call<void>("lease_revoke", [&]() -> EtcdResult<void> {
    std::lock_guard lock(store_->mutex_);
    store_->ExpireLeasesLocked();
    if (store_->leases_.count(id) == 0) return Unexpected{LeaseNotFound()};
    store_->RevokeLocked(id, Error{ErrorCode::kNotFound, "lease revoked", 0});
    return {};
  });
}

void FakeEtcdClient::LeaseRevokeAsync(int64_t id, LeaseRevokeCallback done) {
  {
    std::unique_lock lock(mutex_);
    if (stopping_) {
      lock.unlock();
      done(Unexpected{Error{ErrorCode::kCancelled, "the etcd client was destroyed", 0}});
      return;
    }
    if (lease_revokes_to_hold_ > 0) {
      --lease_revokes_to_hold_;
      held_lease_revokes_.emplace_back(id, std::move(done));
      return;
    }
  }
  EtcdResult<void> result = LeaseRevoke(id);
  Post([done = std::move(done), result = std::move(result)]() mutable { done(std::move(result)); });
}

void FakeEtcdClient::HoldLeaseRevokes(int count) {
  std::lock_guard lock(mutex_);
  lease_revokes_to_hold_ = count;
}

void FakeEtcdClient::ReleaseLeaseRevokes() {
  std::vector<std::pair<int64_t, LeaseRevokeCallback>> released;
  {
    std::lock_guard lock(mutex_);
    lease_revokes_to_hold_ = 0;
    released.swap(held_lease_revokes_);
  }
  for (auto& [id, done] : released) LeaseRevokeAsync(id, std::move(done));
}

EtcdResult<LeaseTimeToLiveResponse> FakeEtcdClient::LeaseTimeToLive(int64_t id) {
  return Call<LeaseTimeToLiveResponse>("lease_ttl", [&]() -> EtcdResult<LeaseTimeToLiveResponse> {
    std::lock_guard lock(store_->mutex_);
    store_->ExpireLeasesLocked();
    LeaseTimeToLiveResponse response;
    response.id = id;
    auto it = store_->leases_.find(id);
    if (it == store_->leases_.end()) return response;
    auto left = std::chrono::ceil<std::chrono::seconds>(it->second.expiry - clock_.Now());
    response.ttl_seconds = std::max<int64_t>(left.count(), 0);
    response.granted_ttl_seconds = it->second.ttl;
    response.keys.assign(it->second.keys.begin(), it->second.keys.end());
    return response;
  });
}

std::unique_ptr<CallHandle> FakeEtcdClient::LeaseKeepAlive(int64_t id, LeaseLostCallback on_lost) {
  const SteadyTime start = clock_.Now();
  auto subscription = std::make_shared<Subscription>();
  subscription->kind = Subscription::Kind::kKeepAlive;
  subscription->client = this;
  subscription->lease = id;
  subscription->lost_callback = on_lost;
  auto gate = subscription->gate;
  auto handle = std::make_unique<FakeHandle>(gate, RemoverFor(subscription.get()));
  std::lock_guard lock(store_->mutex_);
  store_->ExpireLeasesLocked();
  if (store_->leases_.count(id) == 0) {
    Report("lease_keepalive", ErrorLabel(ErrorCode::kNotFound), start);
    Post([gate, on_lost, id] {
      std::lock_guard gate_lock(gate->mutex);
      gate->ended = true;
      if (!gate->cancelled) {
        on_lost(Error{ErrorCode::kNotFound,
                      "lease " + std::to_string(id) + " expired or was revoked", 0});
      }
    });
    return handle;
  }
  Report("lease_keepalive", kSuccessLabel, start);
  store_->AddSubscriptionLocked(subscription);
  return handle;
}

std::unique_ptr<CallHandle> FakeEtcdClient::Campaign(const std::string& name, int64_t lease,
                                                     const std::string& value,
                                                     CampaignCallback done) {
  const SteadyTime start = clock_.Now();
  auto subscription = std::make_shared<Subscription>();
  subscription->kind = Subscription::Kind::kCampaign;
  subscription->client = this;
  subscription->name = name;
  subscription->lease = lease;
  subscription->key = ElectionKey(name, lease);
  subscription->campaign_callback = done;
  auto gate = subscription->gate;
  auto handle = std::make_unique<FakeHandle>(gate, RemoverFor(subscription.get()));
  auto fail = [&](Error error) {
    Report("campaign", ErrorLabel(error.code), start);
    Post([gate, done, error] {
      std::lock_guard gate_lock(gate->mutex);
      gate->ended = true;
      if (!gate->cancelled) done(Unexpected{error});
    });
  };
  if (auto fault = TakeFault("campaign")) {
    fail(FaultError(*fault));
    return handle;
  }
  std::lock_guard lock(store_->mutex_);
  store_->ExpireLeasesLocked();
  if (store_->leases_.count(lease) == 0) {
    fail(LeaseNotFound());
    return handle;
  }
  auto existing = store_->GetLocked(subscription->key, kLatest);
  if (!existing || existing->value != value) {
    auto batch = store_->BeginLocked();
    store_->PutLocked(batch, subscription->key, value, lease, false, nullptr);
    store_->CommitLocked(batch);
  }
  subscription->create_revision = store_->GetLocked(subscription->key, kLatest)->create_revision;
  Report("campaign", kSuccessLabel, start);
  store_->AddSubscriptionLocked(subscription);
  store_->CheckElectionsLocked();
  return handle;
}

EtcdResult<void> FakeEtcdClient::Proclaim(const LeaderKey& leader, const std::string& value) {
  return Call<void>("proclaim", [&]() -> EtcdResult<void> {
    std::lock_guard lock(store_->mutex_);
    store_->ExpireLeasesLocked();
    auto kv = store_->GetLocked(leader.key, kLatest);
    if (!kv || kv->create_revision != leader.revision) {
      return MakeError(ErrorCode::kFailedPrecondition, "election: not leader");
    }
    auto batch = store_->BeginLocked();
    store_->PutLocked(batch, leader.key, value, 0, /*ignore_lease=*/true, nullptr);
    store_->CommitLocked(batch);
    return {};
  });
}

EtcdResult<void> FakeEtcdClient::Resign(const LeaderKey& leader) {
  return Call<void>("resign", [&]() -> EtcdResult<void> {
    std::lock_guard lock(store_->mutex_);
    store_->ExpireLeasesLocked();
    auto kv = store_->GetLocked(leader.key, kLatest);
    if (kv && kv->create_revision == leader.revision) {
      auto batch = store_->BeginLocked();
      store_->DeleteLocked(batch, leader.key, {}, nullptr);
      store_->CommitLocked(batch);
    }
    return {};
  });
}

EtcdResult<KeyValue> FakeEtcdClient::Leader(const std::string& name) {
  return Call<KeyValue>("leader", [&]() -> EtcdResult<KeyValue> {
    std::lock_guard lock(store_->mutex_);
    store_->ExpireLeasesLocked();
    auto leader = store_->LeaderLocked(name);
    if (!leader) return MakeError(ErrorCode::kNotFound, "election: no leader");
    return std::move(*leader);
  });
}

std::unique_ptr<CallHandle> FakeEtcdClient::Observe(const std::string& name,
                                                    ObserveCallback callback) {
  const SteadyTime start = clock_.Now();
  auto subscription = std::make_shared<Subscription>();
  subscription->kind = Subscription::Kind::kObserve;
  subscription->client = this;
  subscription->name = name;
  subscription->observe_callback = callback;
  auto gate = subscription->gate;
  auto handle = std::make_unique<FakeHandle>(gate, RemoverFor(subscription.get()));
  Report("observe", kSuccessLabel, start);
  std::lock_guard lock(store_->mutex_);
  store_->ExpireLeasesLocked();
  store_->AddSubscriptionLocked(subscription);
  store_->CheckElectionsLocked();
  return handle;
}

EtcdResult<StatusResponse> FakeEtcdClient::Status() {
  return Call<StatusResponse>("status", [&]() -> EtcdResult<StatusResponse> {
    std::lock_guard lock(store_->mutex_);
    StatusResponse status;
    status.endpoint = "fake";
    status.version = "3.4.23";
    status.member_id = 1;
    status.leader = 1;
    status.raft_term = 2;
    status.revision = store_->revision_;
    return status;
  });
}

}  // namespace zk2etcd::etcd
