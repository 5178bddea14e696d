// The small pieces shared by GrpcEtcdClient and the operations it runs on its completion queue
// (unary calls, streams, posted tasks): the names reported to the OpObserver, completion-queue
// tags, the Operation interface the client cancels at destruction, the Control block behind a
// CallHandle, an endpoint's channels and stubs, and the description of a unary call (CallSpec,
// Starter). Internal to the gRPC client (grpc_etcd_client.h is the API).
//
// Thread-safety: Operation::Abort and Handle are thread-safe (Control is guarded by its mutex); a
// Tag is proceeded on the client's callback thread only. The rest are plain values and functions.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "etcd/etcd_client.h"
#include "etcd/etcdserver/api/v3election/v3electionpb/v3election.grpc.pb.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"

namespace zk2etcd::etcd::detail {

namespace pb = etcdserverpb;
namespace epb = v3electionpb;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using SteadyTime = std::chrono::steady_clock::time_point;

// Operation names reported to the OpObserver: a fixed set.
inline constexpr std::string_view kOpRange = "range";
inline constexpr std::string_view kOpTxn = "txn";
inline constexpr std::string_view kOpPut = "put";
inline constexpr std::string_view kOpDelete = "delete";
inline constexpr std::string_view kOpWatch = "watch";
inline constexpr std::string_view kOpLeaseGrant = "lease_grant";
inline constexpr std::string_view kOpLeaseRevoke = "lease_revoke";
inline constexpr std::string_view kOpLeaseTimeToLive = "lease_ttl";
inline constexpr std::string_view kOpLeaseKeepAlive = "lease_keepalive";
inline constexpr std::string_view kOpCampaign = "campaign";
inline constexpr std::string_view kOpProclaim = "proclaim";
inline constexpr std::string_view kOpResign = "resign";
inline constexpr std::string_view kOpLeader = "leader";
inline constexpr std::string_view kOpObserve = "observe";
inline constexpr std::string_view kOpStatus = "status";
inline constexpr std::string_view kOpAuthenticate = "authenticate";

inline constexpr char kTokenMetadata[] = "token";
// etcd cancels a stream carrying this when its member loses the leader, instead of letting it
// hang on a partitioned member.
inline constexpr char kRequireLeaderMetadata[] = "hasleader";

inline std::chrono::system_clock::time_point DeadlineAfter(milliseconds delay) {
  return std::chrono::system_clock::now() + delay;
}

inline Error CancelledError() { return Error{ErrorCode::kCancelled, "cancelled", 0}; }

// Whether a failure is about the endpoint (so another endpoint may do better).
inline bool IsEndpointFailure(ErrorCode code) {
  return code == ErrorCode::kUnavailable || code == ErrorCode::kDeadlineExceeded ||
         code == ErrorCode::kTlsFailed;
}

// A completion-queue tag.
class Tag {
 public:
  virtual void Proceed(bool ok) = 0;

 protected:
  ~Tag() = default;
};

// A tag that forwards one kind of event of a stream to its owner (a stream can have a read and a
// write outstanding at once, so it needs a tag per event).
template <typename Owner, typename Event>
class EventTag final : public Tag {
 public:
  EventTag(Owner* owner, Event event) : owner_(owner), event_(event) {}
  void Proceed(bool ok) override { owner_->OnEvent(event_, ok); }

 private:
  Owner* owner_;
  Event event_;
};

// Something in flight that the client must be able to cancel at destruction.
class Operation {
 public:
  virtual ~Operation() = default;
  // Makes the operation end soon with kCancelled. Thread-safe.
  virtual void Abort() = 0;
};

// Shared by an operation and its CallHandle: the handle cancels through it, and the operation
// delivers callbacks under its mutex so that Cancel() can wait for a running callback.
struct Control {
  std::recursive_mutex mutex;
  bool cancelled = false;
  Operation* op = nullptr;  // null once the operation has ended
};

class Handle final : public CallHandle {
 public:
  explicit Handle(std::shared_ptr<Control> control) : control_(std::move(control)) {}
  ~Handle() override { Cancel(); }
  void Cancel() override {
    std::lock_guard lock(control_->mutex);
    if (control_->cancelled) return;
    control_->cancelled = true;
    if (control_->op != nullptr) control_->op->Abort();
  }

 private:
  std::shared_ptr<Control> control_;
};

struct Endpoint {
  std::string name;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<pb::KV::Stub> kv;
  std::unique_ptr<pb::Watch::Stub> watch;
  std::unique_ptr<pb::Lease::Stub> lease;
  std::unique_ptr<pb::Maintenance::Stub> maintenance;
  std::unique_ptr<pb::Auth::Stub> auth;
  std::unique_ptr<epb::Election::Stub> election;
  // Transactions go round-robin over `channel` and these extra connections to the same endpoint
  // (GrpcEtcdClientOptions::txn_connections, or far_txn_connections when etcd is far).
  std::vector<std::shared_ptr<grpc::Channel>> txn_channels;
  std::vector<std::unique_ptr<pb::KV::Stub>> txn_kv;
};

enum class RetryClass {
  kIdempotent,  // repeat on any transient failure
  kUnsafe,      // repeat only what etcd provably did not apply
};

struct CallSpec {
  std::string_view op;
  RetryClass retry = RetryClass::kIdempotent;
  milliseconds timeout{0};  // zero: no deadline
  bool use_token = true;
  int max_attempts = 1;
};

template <typename Request, typename Response>
using Starter = std::function<std::unique_ptr<grpc::ClientAsyncResponseReader<Response>>(
    Endpoint&, grpc::ClientContext*, const Request&, grpc::CompletionQueue*)>;

}  // namespace zk2etcd::etcd::detail
