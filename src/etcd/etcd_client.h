// EtcdClient: the etcd v3 operations zk2etcd needs (paged reads at one revision, fenced
// transactions, watches that survive reconnects, leases, leader election, health), as an interface
// so that the sync engine can run against a real etcd (GrpcEtcdClient, grpc_etcd_client.h) or an
// in-memory one (FakeEtcdClient, fake_etcd_client.h) in unit tests.
//
// Errors are values: every call returns EtcdResult<T> (Result<T, Error>) or hands one to its
// callback. Error::code is a small closed set; ErrorLabel() maps it to a fixed metric label.
//
// Threading: all methods are thread-safe. Asynchronous calls (TxnAsync, Watch, Campaign, Observe,
// LeaseKeepAlive) never run their callback inline: callbacks run on the client's own callback
// thread, one at a time, in completion order. Callbacks must be short (enqueue work elsewhere) and
// must not call the synchronous methods of the same client (they would wait for the thread they
// run on; such calls fail at once with kFailedPrecondition instead of deadlocking).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace zk2etcd::etcd {

// etcd's default --max-txn-ops: the most compares, and the most operations in each branch, that
// one transaction may carry.
inline constexpr int kDefaultMaxTxnOps = 128;

// ---------------------------------------------------------------------------------------------
// Errors

enum class ErrorCode {
  kUnavailable,         // no endpoint answered, connection lost, etcd has no leader, ...
  kDeadlineExceeded,    // the call's deadline passed; a write's outcome is unknown
  kCompacted,           // the revision asked for was compacted (Error::compact_revision)
  kTooManyOps,          // a transaction exceeds max_txn_ops (refused before sending)
  kPermissionDenied,    // the user's role does not cover the key
  kAuthFailed,          // wrong user or password, or the token could not be renewed
  kInvalidArgument,     // a request etcd refuses as malformed (empty key, duplicate key, ...)
  kFailedPrecondition,  // e.g. proclaiming an election that is no longer ours
  kNotFound,            // lease not found or expired; election without a leader
  kResourceExhausted,   // etcd's database quota is exceeded, or too many requests
  kTlsFailed,           // TLS handshake failed (certificate, CA or server name)
  kCancelled,           // cancelled by the caller or by the client's destruction
  kInternal,            // anything else
};

// The fixed metric label of a code: "unavailable", "deadline_exceeded", "compacted",
// "too_many_ops", "permission_denied", "auth_failed", "invalid_argument", "failed_precondition",
// "not_found", "resource_exhausted", "tls_failed", "cancelled", "internal".
std::string_view ErrorLabel(ErrorCode code);

// Label of a successful operation, for OpObserver.
inline constexpr std::string_view kSuccessLabel = "success";

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  // Human-readable detail for logs; never a metric label.
  std::string message;
  // For kCompacted: the oldest revision still available (0 when etcd did not say).
  int64_t compact_revision = 0;

  std::string ToString() const;  // "<label>: <message>"
};

template <typename T>
using EtcdResult = Result<T, Error>;

inline Unexpected<Error> MakeError(ErrorCode code, std::string message) {
  return Unexpected<Error>{Error{code, std::move(message), 0}};
}

// ---------------------------------------------------------------------------------------------
// Data

struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;  // 1 at creation, +1 per put; a deleted key has none
  int64_t lease = 0;
  bool operator==(const KeyValue&) const = default;
};

// The smallest key greater than every key that starts with `prefix`: the range_end of a prefix
// range. An empty prefix, or one made only of 0xff bytes, gives "\0" (etcd: every key >= key).
std::string PrefixEnd(std::string_view prefix);

// ---------------------------------------------------------------------------------------------
// Range

struct RangeRequest {
  std::string key;
  // Empty: only `key`. "\0": every key >= key. Otherwise keys in [key, range_end).
  std::string range_end;
  int64_t limit = 0;     // 0: no limit
  int64_t revision = 0;  // 0: the newest; else read at this revision (kCompacted if too old)
  bool keys_only = false;
  bool count_only = false;

  // All keys starting with `prefix`.
  static RangeRequest Prefix(std::string prefix);
};

struct RangeResponse {
  int64_t revision = 0;       // the store's revision the read was served at (header revision)
  std::vector<KeyValue> kvs;  // sorted by key
  bool more = false;          // more keys in the range than `limit`
  int64_t count = 0;          // keys in the range (ignores the limit)
};

// ---------------------------------------------------------------------------------------------
// Txn

enum class CompareTarget { kVersion, kCreateRevision, kModRevision, kValue, kLease };
enum class CompareOp { kEqual, kNotEqual, kLess, kGreater };

// One condition of a transaction. Numbers apply to the numeric targets, `value` to kValue. A key
// that does not exist has version, create and mod revision 0, and fails every kValue compare.
struct Compare {
  std::string key;
  std::string range_end;  // optional: the condition must hold for every key of [key, range_end)
  CompareTarget target = CompareTarget::kVersion;
  CompareOp op = CompareOp::kEqual;
  int64_t number = 0;
  std::string value;

  static Compare Version(std::string key, CompareOp op, int64_t version);
  static Compare CreateRevision(std::string key, CompareOp op, int64_t revision);
  static Compare ModRevision(std::string key, CompareOp op, int64_t revision);
  static Compare Value(std::string key, CompareOp op, std::string value);
  static Compare Lease(std::string key, CompareOp op, int64_t lease);
};

struct TxnRequest;

// One operation of a transaction branch.
struct Op {
  enum class Type { kPut, kDelete, kRange, kTxn };
  Type type = Type::kPut;
  std::string key;        // kPut, kDelete
  std::string value;      // kPut
  std::string range_end;  // kDelete
  int64_t lease = 0;      // kPut
  bool prev_kv = false;   // kPut, kDelete: return the previous key-value(s)
  RangeRequest range;     // kRange: the whole read
  // kTxn: a nested transaction. Sending a request that holds the only reference to it moves its
  // strings instead of copying them.
  std::shared_ptr<TxnRequest> txn;

  static Op Put(std::string key, std::string value, int64_t lease = 0);
  static Op Delete(std::string key, std::string range_end = {});
  static Op Range(RangeRequest request);
  static Op Txn(TxnRequest request);
};

struct TxnRequest {
  std::vector<Compare> compares;  // all must hold for `success` to run, else `failure` runs
  std::vector<Op> success;
  std::vector<Op> failure;
};

struct TxnResponse;

// The result of one Op, same index as in the branch that ran.
struct OpResponse {
  Op::Type type = Op::Type::kPut;
  std::vector<KeyValue> kvs;  // kRange: the keys read; kPut/kDelete with prev_kv: previous values
  int64_t deleted = 0;        // kDelete
  bool more = false;          // kRange
  int64_t count = 0;          // kRange
  std::shared_ptr<const TxnResponse> txn;  // kTxn
};

struct TxnResponse {
  bool succeeded = false;  // whether the compares held (success ran) or not (failure ran)
  int64_t revision = 0;    // the store's revision after the transaction
  std::vector<OpResponse> responses;
};

// Checks a transaction the way etcd does before it is sent: at most `max_ops` compares and at
// most `max_ops` operations per branch (nested transactions count against what the outer one
// leaves: max_ops minus the largest of its three lists), and no empty keys. Returns kTooManyOps or
// kInvalidArgument; etcd's duplicate-key check is left to the server.
EtcdResult<void> ValidateTxn(const TxnRequest& request, int max_ops = kDefaultMaxTxnOps);

// ---------------------------------------------------------------------------------------------
// Put / Delete

struct PutResponse {
  int64_t revision = 0;
  std::optional<KeyValue> prev_kv;  // the previous key-value, if the key existed
};

struct DeleteResponse {
  int64_t revision = 0;
  int64_t deleted = 0;
  std::vector<KeyValue> prev_kvs;  // the deleted key-values
};

// ---------------------------------------------------------------------------------------------
// Per-call options

// The deadline of a call made after EtcdClient::Abandon() (one attempt).
inline constexpr std::chrono::milliseconds kAbandonedCallTimeout{2000};

struct CallOptions {
  // Whether a write may be sent again when its outcome is unknown (connection lost after sending,
  // deadline exceeded). True for fenced writes, whose compares make a repeat harmless. Reads are
  // always retried; writes are always retried when etcd provably did not apply them (no
  // connection could be made, the auth token was rejected, etcd said "too many requests").
  bool safe_to_retry = false;
  // The deadline of each attempt; zero means the client's default (GrpcEtcdClientOptions).
  std::chrono::milliseconds timeout{0};
};

// ---------------------------------------------------------------------------------------------
// Watch

struct WatchRequest {
  std::string key;
  std::string range_end;       // as in RangeRequest
  int64_t start_revision = 0;  // 0: from now on
  bool prev_kv = false;
  // Also call back, without events, when the stream is interrupted (the first failed attempt of
  // a run: WatchEvents::interrupted) and when it is watching again after that (resumed), so that
  // the watcher can tell that its source is unreachable. The stream resumes by itself either way.
  bool report_interruptions = false;

  static WatchRequest Prefix(std::string prefix, int64_t start_revision);
};

struct WatchEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  // For kDelete only key and mod_revision (the revision of the delete) are set.
  KeyValue kv;
  std::optional<KeyValue> prev_kv;
};

// Events of one or more whole revisions, in revision order.
struct WatchEvents {
  int64_t header_revision = 0;
  std::vector<WatchEvent> events;
  // WatchRequest::report_interruptions only, each time without events: the error that
  // interrupted the stream (set once per interruption, however many attempts follow), or
  // `resumed` once it watches again.
  std::optional<std::string> interrupted;
  bool resumed = false;
};

// ---------------------------------------------------------------------------------------------
// Leases and election

struct LeaseGrantResponse {
  int64_t id = 0;
  int64_t ttl_seconds = 0;  // as granted (etcd may raise a too-small TTL)
};

struct LeaseTimeToLiveResponse {
  int64_t id = 0;
  int64_t ttl_seconds = -1;  // remaining; -1 when the lease expired or never existed
  int64_t granted_ttl_seconds = 0;
  std::vector<std::string> keys;
};

// Proof of leadership, returned by Campaign: compare create_revision(key) == revision in a
// transaction to write only while still leading.
struct LeaderKey {
  std::string name;
  std::string key;
  int64_t revision = 0;
  int64_t lease = 0;
};

struct StatusResponse {
  std::string endpoint;  // the endpoint that answered
  std::string version;   // etcd's version
  int64_t db_size = 0;
  uint64_t member_id = 0;
  uint64_t leader = 0;  // member id of the leader, 0 without one
  int64_t revision = 0;
  uint64_t raft_term = 0;
  std::vector<std::string> errors;  // alarms etc.
};

// ---------------------------------------------------------------------------------------------

// A running asynchronous call (watch, keep-alive, campaign, observe). Cancel() stops it: once
// Cancel() returns, its callback is not running and will not be called again (Cancel may be called
// from inside that callback). Destroying the handle cancels. Thread-safe.
class CallHandle {
 public:
  virtual ~CallHandle() = default;
  virtual void Cancel() = 0;
};

class EtcdClient {
 public:
  using TxnCallback = std::function<void(EtcdResult<TxnResponse>)>;
  // Called with each batch of events. An error is final (the watch has ended): kCompacted when
  // the next revision to deliver was compacted (re-read, then watch from the read's revision + 1),
  // kPermissionDenied or kAuthFailed (after one token renewal), kCancelled at the client's
  // destruction, or another reason etcd gave for cancelling the watch. Lost connections are not
  // errors: the watch reconnects (trying every endpoint, with backoff) and resumes at the revision
  // after the last one delivered, so no event is lost or delivered twice.
  using WatchCallback = std::function<void(EtcdResult<WatchEvents>)>;
  using CampaignCallback = std::function<void(EtcdResult<LeaderKey>)>;
  // Called with the leader's key-value at start (if there is a leader) and at every change. An
  // error is final.
  using ObserveCallback = std::function<void(EtcdResult<KeyValue>)>;
  // Called at most once, when the lease is gone or could not be renewed within its TTL.
  using LeaseLostCallback = std::function<void(const Error&)>;

  virtual ~EtcdClient() = default;

  // Reads keys. Reads are retried on connection errors, up to the client's attempt limit.
  virtual EtcdResult<RangeResponse> Range(const RangeRequest& request,
                                          const CallOptions& options = {}) = 0;

  // Sends a transaction. At most `max_txns_in_flight` transactions are sent at once; the others
  // wait in the client in submission order. A transaction that fails ValidateTxn completes with
  // kTooManyOps or kInvalidArgument without being sent.
  virtual void TxnAsync(TxnRequest request, const CallOptions& options, TxnCallback done) = 0;

  // TxnAsync and wait. REQUIRES: not on the callback thread.
  EtcdResult<TxnResponse> Txn(TxnRequest request, const CallOptions& options = {});

  virtual EtcdResult<PutResponse> Put(const std::string& key, const std::string& value,
                                      int64_t lease = 0, const CallOptions& options = {}) = 0;
  // Deletes `key`, or [key, range_end) when range_end is given.
  virtual EtcdResult<DeleteResponse> Delete(const std::string& key,
                                            const std::string& range_end = {},
                                            const CallOptions& options = {}) = 0;

  virtual std::unique_ptr<CallHandle> Watch(const WatchRequest& request,
                                            WatchCallback callback) = 0;

  virtual EtcdResult<LeaseGrantResponse> LeaseGrant(std::chrono::seconds ttl, int64_t id = 0) = 0;
  // Revoking a lease that does not exist is kNotFound.
  virtual EtcdResult<void> LeaseRevoke(int64_t id) = 0;
  // LeaseRevoke without waiting for it: `done` runs once with the answer, on the client's
  // callback thread (with kCancelled, perhaps inline, when the client is destroyed first). For a
  // best-effort revoke that must not hold its caller while etcd does not answer. By default
  // LeaseRevoke() is called on the caller's thread.
  using LeaseRevokeCallback = std::function<void(EtcdResult<void>)>;
  virtual void LeaseRevokeAsync(int64_t id, LeaseRevokeCallback done) { done(LeaseRevoke(id)); }
  virtual EtcdResult<LeaseTimeToLiveResponse> LeaseTimeToLive(int64_t id) = 0;
  // Renews the lease in the background (every third of its TTL) until cancelled.
  virtual std::unique_ptr<CallHandle> LeaseKeepAlive(int64_t id, LeaseLostCallback on_lost) = 0;

  // Joins election `name` with a key bound to `lease`, and completes once this candidate leads
  // (no deadline). Repeating a campaign with the same lease is harmless.
  virtual std::unique_ptr<CallHandle> Campaign(const std::string& name, int64_t lease,
                                               const std::string& value, CampaignCallback done) = 0;
  // Campaign and wait. REQUIRES: not on the callback thread.
  EtcdResult<LeaderKey> CampaignAndWait(const std::string& name, int64_t lease,
                                        const std::string& value);
  // kFailedPrecondition when `leader` no longer leads.
  virtual EtcdResult<void> Proclaim(const LeaderKey& leader, const std::string& value) = 0;
  virtual EtcdResult<void> Resign(const LeaderKey& leader) = 0;
  // The current leader's key-value; kNotFound without a leader.
  virtual EtcdResult<KeyValue> Leader(const std::string& name) = 0;
  virtual std::unique_ptr<CallHandle> Observe(const std::string& name,
                                              ObserveCallback callback) = 0;

  // Maintenance Status of an endpoint that answers: the health check.
  virtual EtcdResult<StatusResponse> Status() = 0;
  // Status without waiting for it: `done` runs once with the answer, on the client's callback
  // thread (with kCancelled, perhaps inline, when the client is destroyed first). By default
  // Status() is called on the caller's thread.
  using StatusCallback = std::function<void(EtcdResult<StatusResponse>)>;
  virtual void StatusAsync(StatusCallback done) { done(Status()); }

  // Transactions sent and not yet completed, plus those waiting for the window.
  virtual size_t PendingTxns() const = 0;

  // The process stops and waits no longer: calls and streams in flight, and transactions queued,
  // are answered kCancelled now, and each later unary call makes one attempt of at most
  // kAbandonedCallTimeout (a resignation on the way out), so that an etcd that does not answer
  // cannot hold the exit up by its request timeouts and their retries. Thread-safe; by default
  // nothing (the in-memory fake answers at once).
  virtual void Abandon() {}

  // Whether etcd is far from this client: setting up its connection took several milliseconds
  // (GrpcEtcdClientOptions::far_dial), so every request costs that round trip and what needs
  // fewer of them is faster (connectors::EtcdSinkOptions::far_batch_bytes). Fixed at the dial.
  virtual bool Far() const { return false; }

  // True on the thread that runs this client's callbacks.
  virtual bool OnCallbackThread() const = 0;
};

// Reads every key of request's range page by page (`page_size` keys per page, the next page
// starting after the last key of the previous one), all pages at one revision: the revision of
// the first page, or request.revision when set. Calls `on_page` for each page; returning false
// stops early. Returns the revision read at. keys_only is honoured; limit and count_only are not.
// A compaction of that revision while paging ends with kCompacted.
// Cost: etcd 3.4 walks the rest of the range for every page, so a range of N keys costs the
// server about N^2 / (2 * page_size) index steps; for large ranges see connectors::RangeCursor.
EtcdResult<int64_t> ForEachPage(EtcdClient& client, const RangeRequest& request, int64_t page_size,
                                const std::function<bool(RangeResponse&)>& on_page);

// ForEachPage collecting every page into one response (revision, kvs, count).
EtcdResult<RangeResponse> RangeAll(EtcdClient& client, const RangeRequest& request,
                                   int64_t page_size = 1000);

// The number of keys in the range (a count_only read).
EtcdResult<int64_t> CountRange(EtcdClient& client, const RangeRequest& request);

}  // namespace zk2etcd::etcd
