// FakeEtcdClient: an in-memory etcd behind the EtcdClient interface, for unit tests of code that
// uses etcd (the sync engine, the ownership store, leader election), with faults on demand.
//
// FakeEtcdStore holds the state with etcd's semantics: one revision per write transaction (a
// transaction that changes nothing keeps the revision), create/mod revision and version per key,
// compares, ranges at a past revision with limit and count, compaction (reads and watches before
// it fail with kCompacted), watch replay from a revision, leases whose TTL runs on the injected
// Clock, and the election service (keys "<name>/<lease in hex>", the oldest key leads). Several
// clients may share one store, like several processes sharing a cluster.
//
// FakeEtcdClient behaves like the gRPC client towards its caller: synchronous calls run on the
// caller's thread; callbacks (transactions, watch events, campaigns, observers, lost leases) run
// on the client's own callback thread, in order; transactions are bounded by the same window and
// refused by the same ValidateTxn (plus etcd's duplicate-key check, and optionally its request
// size limit). Faults: InjectFault makes
// the next calls of one operation fail before or after being applied (the latter is a write whose
// outcome the caller cannot know); SetUnavailable fails every call and holds stream deliveries
// until the client is reachable again (as the real client's reconnects do), and stops renewing its
// leases; HoldTxns and SetTxnDelay keep transactions in flight (delay measured on the Clock, due
// transactions complete on Tick()).
//
// Time: leases expire, and delayed transactions complete, only when Tick() (or any call) looks at
// the Clock; with a FakeClock, advance it and call Tick(). Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/op_observer.h"
#include "etcd/etcd_client.h"

namespace zk2etcd::etcd {

class FakeEtcdClient;

namespace fake_internal {
struct Subscription;  // a watch, campaign, observer or keep-alive registered in the store
}  // namespace fake_internal

class FakeEtcdStore {
 public:
  explicit FakeEtcdStore(const Clock& clock);
  FakeEtcdStore(const FakeEtcdStore&) = delete;
  FakeEtcdStore& operator=(const FakeEtcdStore&) = delete;
  ~FakeEtcdStore();

  // The current revision (1 for an empty store, as etcd).
  int64_t revision() const;
  int64_t compact_revision() const;
  // Keys that reads have walked: every key of each requested range, limit or not, as etcd 3.4
  // walks its index before it applies a limit (the cost of a read on that server).
  int64_t keys_walked() const;
  // Drops history before `revision`. REQUIRES: revision <= revision().
  void Compact(int64_t revision);
  // Expires the leases whose TTL ran out on the clock (leases kept alive by a reachable client
  // are renewed instead), deleting their keys.
  void ExpireLeases();

  // Test helpers that bypass clients and faults.
  std::optional<KeyValue> Get(const std::string& key) const;
  std::vector<KeyValue> List(const std::string& prefix) const;
  int64_t PutDirect(const std::string& key, const std::string& value, int64_t lease = 0);
  int64_t DeleteDirect(const std::string& key);

 private:
  friend class FakeEtcdClient;
  struct Version {
    int64_t mod_revision = 0;
    int64_t create_revision = 0;
    int64_t version = 0;
    int64_t lease = 0;
    bool deleted = false;
    std::string value;
  };
  struct Lease {
    int64_t ttl = 0;
    std::chrono::steady_clock::time_point expiry;
    std::set<std::string> keys;
  };
  struct LoggedEvent {
    int64_t revision = 0;
    WatchEvent event;
  };
  // A write transaction being applied.
  struct Batch {
    int64_t revision = 0;
    std::vector<WatchEvent> events;
  };
  using Subscription = fake_internal::Subscription;

  // All REQUIRE mutex_ held.
  const Version* LatestLocked(const std::string& key, int64_t at_revision) const;
  std::optional<KeyValue> GetLocked(const std::string& key, int64_t at_revision) const;
  EtcdResult<RangeResponse> RangeLocked(const RangeRequest& request) const;
  bool CompareLocked(const Compare& compare) const;
  void PutLocked(Batch& batch, const std::string& key, const std::string& value, int64_t lease,
                 bool ignore_lease, std::optional<KeyValue>* prev);
  int64_t DeleteLocked(Batch& batch, const std::string& key, const std::string& range_end,
                       std::vector<KeyValue>* prevs);
  Batch BeginLocked() const { return Batch{revision_ + 1, {}}; }
  void CommitLocked(Batch& batch);
  void ExpireLeasesLocked();
  void RevokeLocked(int64_t id, const Error& reason);
  void NotifyLocked(const Batch& batch);
  void CheckElectionsLocked();
  std::optional<KeyValue> LeaderLocked(const std::string& name) const;
  void AddSubscriptionLocked(const std::shared_ptr<Subscription>& subscription);
  void RemoveSubscription(const Subscription* subscription);
  EtcdResult<TxnResponse> TxnLocked(const TxnRequest& request, int max_ops);
  void ApplyOpsLocked(Batch& batch, const TxnRequest& request, bool succeeded,
                      const std::vector<bool>& path, size_t& path_index, TxnResponse* response);
  void ComputePathLocked(const TxnRequest& request, std::vector<bool>& path) const;
  bool LeasesExistLocked(const TxnRequest& request, const std::vector<bool>& path,
                         size_t& path_index, int64_t* missing) const;

  const Clock& clock_;
  mutable std::mutex mutex_;
  int64_t revision_ = 1;
  int64_t compact_revision_ = 0;
  mutable int64_t keys_walked_ = 0;
  std::map<std::string, std::vector<Version>> history_;
  std::deque<LoggedEvent> events_;  // events after compact_revision_, for watch replay
  std::map<int64_t, Lease> leases_;
  int64_t next_lease_id_ = 0x694d71f2a0d10001;
  std::vector<std::shared_ptr<Subscription>> subscriptions_;
};

struct FakeEtcdOptions {
  int max_txns_in_flight = 4;
  int max_txn_ops = kDefaultMaxTxnOps;
  // Like etcd's --max-request-bytes: a transaction whose encoding is larger fails with
  // kInvalidArgument "etcdserver: request is too large" and changes nothing. 0: no limit.
  size_t max_request_bytes = 0;
  OpObserver* observer = nullptr;  // optional, not owned
  bool far = false;                // what Far() answers
};

enum class FaultPhase {
  kBeforeApply,  // the call fails and nothing changes
  kAfterApply,   // the write is applied, then the call fails (outcome unknown to the caller)
};

class FakeEtcdClient final : public EtcdClient {
 public:
  // A client with its own store.
  explicit FakeEtcdClient(const Clock& clock, FakeEtcdOptions options = {});
  // A client of a shared store. REQUIRES: `store` outlives the client.
  FakeEtcdClient(FakeEtcdStore& store, const Clock& clock, FakeEtcdOptions options = {});
  ~FakeEtcdClient() override;

  FakeEtcdStore& store() { return *store_; }

  // Faults. `op` is an operation name as reported to the OpObserver ("range", "txn", "put",
  // "delete", "lease_grant", "campaign", "status", ...). `times` < 0: until cleared.
  void InjectFault(std::string_view op, ErrorCode code, int times = 1,
                   FaultPhase phase = FaultPhase::kBeforeApply);
  void ClearFaults();
  void SetUnavailable(bool unavailable);
  void HoldTxns(bool hold);
  // The next `count` LeaseRevokeAsync requests wait unanswered (lost in an outage) until
  // ReleaseLeaseRevokes() applies and answers them in order. LeaseRevoke is never held.
  void HoldLeaseRevokes(int count);
  void ReleaseLeaseRevokes();
  void SetTxnDelay(std::chrono::nanoseconds delay);
  // Expires leases and completes delayed transactions that are due.
  void Tick();
  // Waits until every callback queued so far has run. REQUIRES: not on the callback thread.
  void Drain();

  // Observations.
  int Calls(std::string_view op) const;  // attempts, faulted ones included
  int TxnsInFlight() const;              // sent (held or delayed included), not completed
  int MaxTxnsInFlightSeen() const;

  // EtcdClient
  EtcdResult<RangeResponse> Range(const RangeRequest& request,
                                  const CallOptions& options = {}) override;
  void TxnAsync(TxnRequest request, const CallOptions& options, TxnCallback done) override;
  EtcdResult<PutResponse> Put(const std::string& key, const std::string& value, int64_t lease = 0,
                              const CallOptions& options = {}) override;
  EtcdResult<DeleteResponse> Delete(const std::string& key, const std::string& range_end = {},
                                    const CallOptions& options = {}) override;
  std::unique_ptr<CallHandle> Watch(const WatchRequest& request, WatchCallback callback) override;
  EtcdResult<LeaseGrantResponse> LeaseGrant(std::chrono::seconds ttl, int64_t id = 0) override;
  EtcdResult<void> LeaseRevoke(int64_t id) override;
  // Applied at once (unless held) and answered on the callback thread, as the real client does.
  void LeaseRevokeAsync(int64_t id, LeaseRevokeCallback done) override;
  EtcdResult<LeaseTimeToLiveResponse> LeaseTimeToLive(int64_t id) override;
  std::unique_ptr<CallHandle> LeaseKeepAlive(int64_t id, LeaseLostCallback on_lost) override;
  std::unique_ptr<CallHandle> Campaign(const std::string& name, int64_t lease,
                                       const std::string& value, CampaignCallback done) override;
  EtcdResult<void> Proclaim(const LeaderKey& leader, const std::string& value) override;
  EtcdResult<void> Resign(const LeaderKey& leader) override;
  EtcdResult<KeyValue> Leader(const std::string& name) override;
  std::unique_ptr<CallHandle> Observe(const std::string& name, ObserveCallback callback) override;
  EtcdResult<StatusResponse> Status() override;
  size_t PendingTxns() const override;
  bool OnCallbackThread() const override;
  bool Far() const override { return options_.far; }

 private:
  friend class FakeEtcdStore;
  struct Fault {
    std::string op;
    ErrorCode code;
    int remaining;
    FaultPhase phase;
  };
  struct SentTxn {
    TxnRequest request;
    TxnCallback done;
    std::chrono::steady_clock::time_point due;
    std::chrono::steady_clock::time_point sent;
  };

  // Counts the call and returns the fault to apply, if any.
  std::optional<Fault> TakeFault(std::string_view op);
  Error FaultError(const Fault& fault) const;
  void Report(std::string_view op, std::string_view status,
              std::chrono::steady_clock::time_point start);
  template <typename T, typename Apply>
  EtcdResult<T> Call(std::string_view op, Apply&& apply);
  template <typename T>
  EtcdResult<T> Finish(std::string_view op, std::chrono::steady_clock::time_point start,
                       EtcdResult<T> result);
  // Runs `task` on the callback thread.
  void Post(std::function<void()> task);
  // Like Post, but held while the client is unavailable (stream deliveries).
  void PostStream(std::function<void()> task);
  void PumpTxnsLocked();
  void ProcessTxn(SentTxn txn);
  bool reachable() const;
  // Removes a subscription from the store when its handle is cancelled, while this client lives.
  std::function<void()> RemoverFor(const fake_internal::Subscription* subscription);
  void Run();

  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // handles check it before removing
  std::unique_ptr<FakeEtcdStore> owned_store_;
  FakeEtcdStore* store_;
  const Clock& clock_;
  const FakeEtcdOptions options_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::function<void()>> tasks_;
  std::vector<std::function<void()>> held_stream_tasks_;
  bool running_task_ = false;
  bool stopping_ = false;
  bool unavailable_ = false;
  bool hold_txns_ = false;
  int lease_revokes_to_hold_ = 0;
  std::vector<std::pair<int64_t, LeaseRevokeCallback>> held_lease_revokes_;
  std::chrono::nanoseconds txn_delay_{0};
  std::vector<Fault> faults_;
  std::map<std::string, int, std::less<>> calls_;
  int txns_in_flight_ = 0;
  int max_txns_in_flight_seen_ = 0;
  std::deque<SentTxn> sent_;     // in flight, waiting to be processed in order
  std::deque<SentTxn> waiting_;  // beyond the window
  std::thread thread_;
  std::thread::id thread_id_;
};

}  // namespace zk2etcd::etcd
