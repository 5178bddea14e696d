// GrpcEtcdClient, the EtcdClient behind NewGrpcEtcdClient (see grpc_etcd_client.h for what it
// does), declared here for the operations it runs (UnaryCall, the streams) and PostedTask, which
// runs a function on the client's callback thread. Internal to the gRPC client.
//
// Thread-safety: GrpcEtcdClient is thread-safe (see grpc_etcd_client.h); its methods "for the
// operations" may be called from any thread. A PostedTask is armed once and then belongs to the
// completion queue.
#pragma once

#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

#include "common/backoff.h"
#include "common/clock.h"
#include "etcd/etcd_client.h"
#include "etcd/grpc_convert.h"
#include "etcd/grpc_etcd_client.h"
#include "etcd/grpc_operation.h"
#include "ops/log.h"

namespace zk2etcd::etcd::detail {

class GrpcEtcdClient;

// Runs a function on the callback thread.
class PostedTask final : public Operation, private Tag {
 public:
  PostedTask(GrpcEtcdClient* client, std::function<void()> task)
      : client_(client), task_(std::move(task)) {}
  void Arm(grpc::CompletionQueue* cq) {
    alarm_.Set(cq, std::chrono::system_clock::now(), static_cast<Tag*>(this));
  }
  void Abort() override { alarm_.Cancel(); }

 private:
  void Proceed(bool ok) override;
  GrpcEtcdClient* const client_;
  std::function<void()> task_;
  grpc::Alarm alarm_;
};

// A transaction request built in its own arena: its hundreds of messages are allocated in a few
// blocks and freed at once.
struct ArenaTxnRequest {
  std::unique_ptr<google::protobuf::Arena> arena;
  pb::TxnRequest* message = nullptr;
};

struct QueuedTxn {
  ArenaTxnRequest request;
  CallOptions options;
  EtcdClient::TxnCallback done;
};

class GrpcEtcdClient final : public EtcdClient {
 public:
  GrpcEtcdClient(GrpcEtcdClientOptions options, const Clock& clock)
      : options_(std::move(options)), clock_(clock) {
    if (!options_.random) options_.random = DefaultRandomSource();
    options_.max_attempts = std::max(options_.max_attempts, 1);
    options_.max_txns_in_flight = std::max(options_.max_txns_in_flight, 1);
    options_.txn_connections = std::max(options_.txn_connections, 1);
    options_.far_txn_connections = std::max(options_.far_txn_connections, options_.txn_connections);
  }

  ~GrpcEtcdClient() override {
    shutting_down_.store(true);
    CancelQueuedTxns("the etcd client was destroyed");
    {
      std::unique_lock lock(live_mutex_);
      for (Operation* op : live_) op->Abort();
      live_changed_.wait(lock, [this] { return live_.empty(); });
    }
    cq_.Shutdown();
    if (thread_.joinable()) thread_.join();
    if (connecting_.joinable()) connecting_.join();
  }

  EtcdResult<void> Init();
  EtcdResult<void> Dial();

  // EtcdClient
  EtcdResult<RangeResponse> Range(const RangeRequest& request, const CallOptions& options) override;
  void TxnAsync(TxnRequest request, const CallOptions& options, TxnCallback done) override;
  EtcdResult<PutResponse> Put(const std::string& key, const std::string& value, int64_t lease,
                              const CallOptions& options) override;
  EtcdResult<DeleteResponse> Delete(const std::string& key, const std::string& range_end,
                                    const CallOptions& options) override;
  std::unique_ptr<CallHandle> Watch(const WatchRequest& request, WatchCallback callback) override;
  EtcdResult<LeaseGrantResponse> LeaseGrant(std::chrono::seconds ttl, int64_t id) override;
  EtcdResult<void> LeaseRevoke(int64_t id) override;
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
  void StatusAsync(StatusCallback done) override;
  size_t PendingTxns() const override {
    std::lock_guard lock(txn_mutex_);
    return static_cast<size_t>(txns_in_flight_) + txn_queue_.size();
  }
  bool OnCallbackThread() const override { return std::this_thread::get_id() == thread_id_.load(); }
  bool Far() const override { return far_; }

  // For the operations.
  grpc::CompletionQueue* cq() { return &cq_; }
  Endpoint& endpoint(int index) { return endpoints_[static_cast<size_t>(index)]; }
  const Clock& clock() const { return clock_; }
  const GrpcEtcdClientOptions& options() const { return options_; }
  bool has_credentials() const { return !options_.user.empty(); }
  Error StatusError(const grpc::Status& status) const { return ErrorFromStatus(status, tls_); }

  int PickEndpoint();
  void OnEndpointFailure(int index, const Error& error);
  // Adds the current token to `context`; returns the token's generation.
  int AttachToken(grpc::ClientContext* context);
  // Authenticates again unless the token already changed since `failed_generation`; then calls
  // `then` (on the callback thread, or inline).
  void RenewToken(int failed_generation, std::function<void(EtcdResult<void>)> then);
  milliseconds Backoff(int retry) {
    return BackoffDelay(options_.backoff, retry, options_.random());
  }
  void Report(std::string_view op, std::string_view status, nanoseconds duration) {
    if (options_.observer != nullptr) options_.observer->OnOp(op, status, duration);
  }
  void Log(ops::LogLevel level, std::string_view message,
           std::initializer_list<ops::LogField> fields = {}) {
    if (options_.logger != nullptr) options_.logger->Log(level, message, fields);
  }
  // EtcdClient::Abandon: queued transactions and live operations are cancelled; later calls
  // make one short attempt (UnaryCall).
  void Abandon() override {
    abandoned_.store(true);
    CancelQueuedTxns("the etcd client was abandoned at a stop");
    std::lock_guard lock(live_mutex_);
    for (Operation* op : live_) op->Abort();
  }
  // Answers the transactions waiting for the window with kCancelled, `why`.
  void CancelQueuedTxns(const char* why) {
    std::deque<QueuedTxn> queued;
    {
      std::lock_guard lock(txn_mutex_);
      queued.swap(txn_queue_);
    }
    for (QueuedTxn& txn : queued) txn.done(MakeError(ErrorCode::kCancelled, why));
  }
  bool abandoned() const { return abandoned_.load(); }
  // Adds an operation to the set cancelled at destruction; false once destruction began.
  bool Register(Operation* op) {
    std::lock_guard lock(live_mutex_);
    if (shutting_down_.load()) return false;
    live_.insert(op);
    return true;
  }
  void Unregister(Operation* op) {
    std::lock_guard lock(live_mutex_);
    live_.erase(op);
    if (live_.empty()) live_changed_.notify_all();
  }
  // Runs `task` on the callback thread (inline when the client is being destroyed).
  void Post(std::function<void()> task) {
    auto* posted = new PostedTask(this, task);
    if (!Register(posted)) {
      delete posted;
      task();
      return;
    }
    posted->Arm(&cq_);
  }

 private:
  template <typename Request, typename Response, typename Convert>
  auto CallSync(const CallSpec& spec, Request request, Starter<Request, Response> starter,
                Convert convert) -> decltype(convert(std::declval<Response&>(), 0));
  CallSpec Spec(std::string_view op, RetryClass retry, milliseconds timeout = milliseconds(0)) {
    return CallSpec{op, retry, timeout.count() > 0 ? timeout : options_.call_timeout, true,
                    options_.max_attempts};
  }
  void SendTxn(QueuedTxn txn);
  StatusResponse StatusOf(const pb::StatusResponse& response, int endpoint) const;
  void ReleaseTxnSlot();
  void OnAuthenticated(EtcdResult<pb::AuthenticateResponse*> result);
  void Run();

  // Asks `channels` to connect, on a thread of their own (joined by the destructor).
  void ConnectInBackground(std::vector<std::shared_ptr<grpc::Channel>> channels);
  // Adds connections for transactions to endpoints_[index] until it has `count`.
  // REQUIRES: no transaction sent yet (Init and Dial only).
  void AddTxnConnections(size_t index, int count, const grpc::ChannelArguments& arguments);

  GrpcEtcdClientOptions options_;
  const Clock& clock_;
  std::vector<Endpoint> endpoints_;
  bool far_ = false;  // set by Dial, before the client is handed out
  // What Init built the channels from, for the connections Dial adds.
  std::vector<std::string> targets_;
  std::shared_ptr<grpc::ChannelCredentials> credentials_;
  grpc::ChannelArguments arguments_;       // without an attempt time: each use sets its own
  grpc::ChannelArguments main_arguments_;  // the main channels' (the dial timeout's)
  bool tls_ = false;
  std::atomic<int> preferred_{0};
  grpc::CompletionQueue cq_;
  std::thread thread_;
  // Asks the transaction connections to connect (Dial): 32 of them took 5-11 ms of the caller's
  // time, before anything else could be sent (docs/BENCHMARKS.md).
  std::thread connecting_;
  std::atomic<std::thread::id> thread_id_{};
  std::atomic<bool> shutting_down_{false};
  std::atomic<bool> abandoned_{false};

  std::mutex live_mutex_;
  std::condition_variable live_changed_;
  std::unordered_set<Operation*> live_;

  mutable std::mutex txn_mutex_;
  std::atomic<size_t> next_txn_connection_{0};  // round-robin over Endpoint::txn_kv
  int txns_in_flight_ = 0;
  std::deque<QueuedTxn> txn_queue_;

  std::mutex auth_mutex_;
  std::string token_;
  int token_generation_ = 0;
  bool auth_in_flight_ = false;
  std::vector<std::function<void(EtcdResult<void>)>> auth_waiters_;
};

}  // namespace zk2etcd::etcd::detail
