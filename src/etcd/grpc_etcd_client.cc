#include "etcd/grpc_etcd_client.h"

#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <climits>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <future>
#include <mutex>
#include <sstream>
#include <thread>
#include <unordered_set>

#include "etcd/etcdserver/api/v3election/v3electionpb/v3election.grpc.pb.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "etcd/grpc_convert.h"
#include "ops/log.h"

namespace zk2etcd::etcd {
namespace {

namespace pb = etcdserverpb;
namespace epb = v3electionpb;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using SteadyTime = std::chrono::steady_clock::time_point;

// Operation names reported to the OpObserver: a fixed set.
constexpr std::string_view kOpRange = "range";
constexpr std::string_view kOpTxn = "txn";
constexpr std::string_view kOpPut = "put";
constexpr std::string_view kOpDelete = "delete";
constexpr std::string_view kOpWatch = "watch";
constexpr std::string_view kOpLeaseGrant = "lease_grant";
constexpr std::string_view kOpLeaseRevoke = "lease_revoke";
constexpr std::string_view kOpLeaseTimeToLive = "lease_ttl";
constexpr std::string_view kOpLeaseKeepAlive = "lease_keepalive";
constexpr std::string_view kOpCampaign = "campaign";
constexpr std::string_view kOpProclaim = "proclaim";
constexpr std::string_view kOpResign = "resign";
constexpr std::string_view kOpLeader = "leader";
constexpr std::string_view kOpObserve = "observe";
constexpr std::string_view kOpStatus = "status";
constexpr std::string_view kOpAuthenticate = "authenticate";

constexpr char kTokenMetadata[] = "token";
// etcd cancels a stream carrying this when its member loses the leader, instead of letting it
// hang on a partitioned member.
constexpr char kRequireLeaderMetadata[] = "hasleader";

std::chrono::system_clock::time_point DeadlineAfter(milliseconds delay) {
  return std::chrono::system_clock::now() + delay;
}

Error CancelledError() { return Error{ErrorCode::kCancelled, "cancelled", 0}; }

// Whether a failure is about the endpoint (so another endpoint may do better).
bool IsEndpointFailure(ErrorCode code) {
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
  // (GrpcEtcdClientOptions::txn_connections).
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

class GrpcEtcdClient;

// ---------------------------------------------------------------------------------------------
// A unary call with retries, token renewal and endpoint failover.

template <typename Request, typename Response>
class UnaryCall final : public Operation, private Tag {
 public:
  // The response lives in the call's arena and is valid during the callback only.
  using Done = std::function<void(EtcdResult<Response*>, int endpoint)>;

  // Starts a call; `done` runs on the callback thread (or inline, with kCancelled, when the
  // client is being destroyed).
  static void Launch(GrpcEtcdClient* client, const CallSpec& spec, Request request,
                     Starter<Request, Response> starter, Done done,
                     std::shared_ptr<Control> control = nullptr);

  void Abort() override {
    std::lock_guard lock(mutex_);
    aborted_ = true;
    if (context_ != nullptr) context_->TryCancel();
    if (alarm_pending_) alarm_.Cancel();
  }

 private:
  enum class State { kCalling, kBackoff };

  UnaryCall(GrpcEtcdClient* client, const CallSpec& spec, Request request,
            Starter<Request, Response> starter, Done done, std::shared_ptr<Control> control);

  void Start();
  void Proceed(bool ok) override;
  void OnFailure();
  bool Retryable(const Error& error) const;
  void Finish(EtcdResult<Response*> result);

  GrpcEtcdClient* const client_;
  const CallSpec spec_;
  const Request request_;
  const Starter<Request, Response> starter_;
  const Done done_;
  const std::shared_ptr<Control> control_;
  const SteadyTime start_;

  // Used only by the thread driving the call (one event at a time).
  State state_ = State::kCalling;
  int attempts_ = 0;
  int endpoint_ = 0;
  int token_generation_ = 0;
  bool reauthenticated_ = false;
  std::unique_ptr<grpc::ClientAsyncResponseReader<Response>> reader_;
  // Responses are parsed into an arena: a large transaction's answer is hundreds of messages,
  // freed at once.
  google::protobuf::Arena response_arena_;
  Response* response_ = nullptr;
  grpc::Status status_;

  std::mutex mutex_;  // guards the members below against Abort()
  bool aborted_ = false;
  bool alarm_pending_ = false;
  std::unique_ptr<grpc::ClientContext> context_;
  grpc::Alarm alarm_;
};

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

// ---------------------------------------------------------------------------------------------

// A transaction request built in its own arena: its hundreds of messages are allocated in a few
// blocks and freed at once.
struct ArenaTxnRequest {
  std::unique_ptr<google::protobuf::Arena> arena;
  pb::TxnRequest* message = nullptr;
};

ArenaTxnRequest NewArenaTxnRequest() {
  google::protobuf::ArenaOptions options;
  options.start_block_size = 16 * 1024;
  options.max_block_size = 256 * 1024;
  ArenaTxnRequest request;
  request.arena = std::make_unique<google::protobuf::Arena>(options);
  request.message = google::protobuf::Arena::CreateMessage<pb::TxnRequest>(request.arena.get());
  return request;
}

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
  }

  ~GrpcEtcdClient() override {
    shutting_down_.store(true);
    std::deque<QueuedTxn> queued;
    {
      std::lock_guard lock(txn_mutex_);
      queued.swap(txn_queue_);
    }
    for (QueuedTxn& txn : queued) {
      txn.done(MakeError(ErrorCode::kCancelled, "the etcd client was destroyed"));
    }
    {
      std::unique_lock lock(live_mutex_);
      for (Operation* op : live_) op->Abort();
      live_changed_.wait(lock, [this] { return live_.empty(); });
    }
    cq_.Shutdown();
    if (thread_.joinable()) thread_.join();
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
  EtcdResult<LeaseTimeToLiveResponse> LeaseTimeToLive(int64_t id) override;
  std::unique_ptr<CallHandle> LeaseKeepAlive(int64_t id, LeaseLostCallback on_lost) override;
  std::unique_ptr<CallHandle> Campaign(const std::string& name, int64_t lease,
                                       const std::string& value, CampaignCallback done) override;
  EtcdResult<void> Proclaim(const LeaderKey& leader, const std::string& value) override;
  EtcdResult<void> Resign(const LeaderKey& leader) override;
  EtcdResult<KeyValue> Leader(const std::string& name) override;
  std::unique_ptr<CallHandle> Observe(const std::string& name, ObserveCallback callback) override;
  EtcdResult<StatusResponse> Status() override;
  size_t PendingTxns() const override {
    std::lock_guard lock(txn_mutex_);
    return static_cast<size_t>(txns_in_flight_) + txn_queue_.size();
  }
  bool OnCallbackThread() const override { return std::this_thread::get_id() == thread_id_.load(); }

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
  void ReleaseTxnSlot();
  void OnAuthenticated(EtcdResult<pb::AuthenticateResponse*> result);
  void Run();

  GrpcEtcdClientOptions options_;
  const Clock& clock_;
  std::vector<Endpoint> endpoints_;
  bool tls_ = false;
  std::atomic<int> preferred_{0};
  grpc::CompletionQueue cq_;
  std::thread thread_;
  std::atomic<std::thread::id> thread_id_{};
  std::atomic<bool> shutting_down_{false};

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

// ---------------------------------------------------------------------------------------------
// UnaryCall

template <typename Request, typename Response>
UnaryCall<Request, Response>::UnaryCall(GrpcEtcdClient* client, const CallSpec& spec,
                                        Request request, Starter<Request, Response> starter,
                                        Done done, std::shared_ptr<Control> control)
    : client_(client),
      spec_(spec),
      request_(std::move(request)),
      starter_(std::move(starter)),
      done_(std::move(done)),
      control_(std::move(control)),
      start_(client->clock().Now()) {}

template <typename Request, typename Response>
void UnaryCall<Request, Response>::Launch(GrpcEtcdClient* client, const CallSpec& spec,
                                          Request request, Starter<Request, Response> starter,
                                          Done done, std::shared_ptr<Control> control) {
  auto* call = new UnaryCall(client, spec, std::move(request), std::move(starter), std::move(done),
                             std::move(control));
  if (!client->Register(call)) {
    call->done_(MakeError(ErrorCode::kCancelled, "the etcd client is being destroyed"), 0);
    delete call;
    return;
  }
  if (call->control_ != nullptr) {
    std::lock_guard lock(call->control_->mutex);
    call->control_->op = call;
    if (call->control_->cancelled) call->Abort();
  }
  call->Start();
}

template <typename Request, typename Response>
void UnaryCall<Request, Response>::Start() {
  std::unique_lock lock(mutex_);
  if (aborted_) {
    lock.unlock();
    Finish(Unexpected{CancelledError()});
    return;
  }
  ++attempts_;
  state_ = State::kCalling;
  endpoint_ = client_->PickEndpoint();
  reader_.reset();
  context_ = std::make_unique<grpc::ClientContext>();
  if (spec_.timeout.count() > 0) context_->set_deadline(DeadlineAfter(spec_.timeout));
  token_generation_ = spec_.use_token ? client_->AttachToken(context_.get()) : 0;
  response_arena_.Reset();
  response_ = google::protobuf::Arena::CreateMessage<Response>(&response_arena_);
  status_ = grpc::Status();
  reader_ = starter_(client_->endpoint(endpoint_), context_.get(), request_, client_->cq());
  reader_->StartCall();
  reader_->Finish(response_, &status_, static_cast<Tag*>(this));
}

template <typename Request, typename Response>
void UnaryCall<Request, Response>::Proceed(bool ok) {
  if (state_ == State::kBackoff) {
    {
      std::lock_guard lock(mutex_);
      alarm_pending_ = false;
    }
    if (!ok) {
      Finish(Unexpected{CancelledError()});
    } else {
      Start();
    }
    return;
  }
  if (status_.ok()) {
    Finish(response_);
    return;
  }
  OnFailure();
}

template <typename Request, typename Response>
bool UnaryCall<Request, Response>::Retryable(const Error& error) const {
  if (IsNeverAppliedStatus(status_)) return true;
  if (spec_.retry == RetryClass::kUnsafe) return false;
  return error.code == ErrorCode::kUnavailable || error.code == ErrorCode::kDeadlineExceeded;
}

template <typename Request, typename Response>
void UnaryCall<Request, Response>::OnFailure() {
  Error error = client_->StatusError(status_);
  {
    std::lock_guard lock(mutex_);
    if (aborted_) error = CancelledError();
  }
  if (error.code == ErrorCode::kCancelled) {
    Finish(Unexpected{std::move(error)});
    return;
  }
  if (spec_.use_token && client_->has_credentials() && IsInvalidTokenStatus(status_) &&
      !reauthenticated_) {
    reauthenticated_ = true;
    client_->Log(ops::LogLevel::kInfo, "etcd rejected the auth token; authenticating again",
                 {{"op", spec_.op}, {"error", status_.error_message()}});
    client_->RenewToken(token_generation_, [this](EtcdResult<void> renewed) {
      if (renewed.ok()) {
        Start();
      } else {
        Finish(Unexpected{renewed.error()});
      }
    });
    return;
  }
  if (IsEndpointFailure(error.code)) client_->OnEndpointFailure(endpoint_, error);
  if (Retryable(error) && attempts_ < spec_.max_attempts) {
    const milliseconds delay = client_->Backoff(attempts_);
    client_->Log(ops::LogLevel::kDebug, "etcd call failed; retrying",
                 {{"op", spec_.op},
                  {"endpoint", client_->endpoint(endpoint_).name},
                  {"error", error.message},
                  {"attempt", attempts_},
                  {"delay_ms", static_cast<int64_t>(delay.count())}});
    std::unique_lock lock(mutex_);
    if (aborted_) {
      lock.unlock();
      Finish(Unexpected{CancelledError()});
      return;
    }
    state_ = State::kBackoff;
    alarm_pending_ = true;
    alarm_.Set(client_->cq(), DeadlineAfter(delay), static_cast<Tag*>(this));
    return;
  }
  if (error.code == ErrorCode::kDeadlineExceeded) {
    error.message = "no answer from " + client_->endpoint(endpoint_).name + " within " +
                    std::to_string(spec_.timeout.count()) + " ms (" + error.message + ")";
  }
  Finish(Unexpected{std::move(error)});
}

template <typename Request, typename Response>
void UnaryCall<Request, Response>::Finish(EtcdResult<Response*> result) {
  client_->Report(spec_.op, result.ok() ? kSuccessLabel : ErrorLabel(result.error().code),
                  client_->clock().Now() - start_);
  if (control_ != nullptr) {
    std::lock_guard lock(control_->mutex);
    control_->op = nullptr;
    if (!control_->cancelled) done_(std::move(result), endpoint_);
  } else {
    done_(std::move(result), endpoint_);
  }
  client_->Unregister(this);
  delete this;
}

void PostedTask::Proceed(bool /*ok*/) {
  task_();
  client_->Unregister(this);
  delete this;
}

// ---------------------------------------------------------------------------------------------
// Streams: the common part of watch, keep-alive and observe.

class StreamBase : public Operation {
 public:
  StreamBase(GrpcEtcdClient* client, std::shared_ptr<Control> control)
      : client_(client), control_(std::move(control)) {}

  void Abort() override {
    std::lock_guard lock(mutex_);
    aborted_ = true;
    if (context_ != nullptr) context_->TryCancel();
    if (alarm_pending_) alarm_.Cancel();
  }
  // Opens (or reopens) the stream.
  virtual void Connect() = 0;

 protected:
  // Ends the operation with `error` as its last callback (through End).
  virtual void Fail(Error error) = 0;
  // After a stream ended: when the server refused its token, and this stream has not yet
  // renewed it since its last healthy response, renews the token and then reconnects (or fails
  // if the renewal fails). True when it took over what happens next.
  bool RenewTokenAndReconnect(bool token_refused) {
    if (!token_refused || !client_->has_credentials() || reauthenticated_) return false;
    reauthenticated_ = true;
    client_->RenewToken(token_generation_, [this](EtcdResult<void> renewed) {
      if (renewed.ok()) {
        Connect();
      } else {
        Fail(renewed.error());
      }
    });
    return true;
  }
  // Starts an attempt at the stream: a fresh context (with the leader requirement), the endpoint
  // to use and the attempt's start time. False, after Fail, when the stream was aborted.
  bool BeginAttempt() {
    if (!NewContext(/*require_leader=*/true)) {
      Fail(CancelledError());
      return false;
    }
    endpoint_ = client_->PickEndpoint();
    stream_start_ = client_->clock().Now();
    return true;
  }
  // Counts a retryable failure, tells the client when the endpoint is at fault, and returns how
  // long to wait before the next attempt.
  milliseconds NoteFailure(const Error& error) {
    ++failures_;
    if (IsEndpointFailure(error.code)) client_->OnEndpointFailure(endpoint_, error);
    return client_->Backoff(failures_);
  }
  bool aborted() {
    std::lock_guard lock(mutex_);
    return aborted_;
  }
  // A fresh context for a new stream, with the token. Returns false when aborted.
  bool NewContext(bool require_leader) {
    std::lock_guard lock(mutex_);
    if (aborted_) return false;
    context_ = std::make_unique<grpc::ClientContext>();
    token_generation_ = client_->AttachToken(context_.get());
    if (require_leader) context_->AddMetadata(kRequireLeaderMetadata, "true");
    return true;
  }
  void CancelContext() {
    std::lock_guard lock(mutex_);
    if (context_ != nullptr) context_->TryCancel();
  }
  // Makes a pending timer come back at once (its event still arrives).
  void CancelAlarm() {
    std::lock_guard lock(mutex_);
    if (alarm_pending_) alarm_.Cancel();
  }
  // Arms the timer; false when aborted (the caller must end).
  bool SetAlarm(milliseconds delay, Tag* tag) {
    std::lock_guard lock(mutex_);
    if (aborted_) return false;
    alarm_pending_ = true;
    alarm_.Set(client_->cq(), DeadlineAfter(delay), tag);
    return true;
  }
  // Call when the timer's tag comes back.
  void AlarmFired() {
    std::lock_guard lock(mutex_);
    alarm_pending_ = false;
  }
  // Runs `deliver` unless the handle was cancelled; under the control mutex so that Cancel()
  // waits for it.
  template <typename F>
  void Deliver(F&& deliver) {
    std::lock_guard lock(control_->mutex);
    if (!control_->cancelled) deliver();
  }
  // Ends the operation: `last` (the final callback) runs unless cancelled, then the object is
  // deleted. REQUIRES: nothing outstanding on the completion queue.
  template <typename F>
  void End(F&& last) {
    {
      std::lock_guard lock(control_->mutex);
      control_->op = nullptr;
      if (!control_->cancelled) last();
    }
    client_->Unregister(this);
    delete this;
  }

  GrpcEtcdClient* const client_;
  const std::shared_ptr<Control> control_;
  int token_generation_ = 0;
  int endpoint_ = 0;
  int failures_ = 0;
  bool reauthenticated_ = false;
  SteadyTime stream_start_{};  // when the current attempt began
  grpc::ClientContext* context() { return context_.get(); }

 private:
  std::mutex mutex_;
  bool aborted_ = false;
  bool alarm_pending_ = false;
  std::unique_ptr<grpc::ClientContext> context_;
  grpc::Alarm alarm_;
};

// Attaches a stream operation to its handle and starts it.
template <typename Stream, typename Fail>
std::unique_ptr<CallHandle> StartStream(GrpcEtcdClient* client, Stream* stream,
                                        const std::shared_ptr<Control>& control, Fail fail) {
  if (!client->Register(stream)) {
    delete stream;
    fail();
    return std::make_unique<Handle>(control);
  }
  {
    std::lock_guard lock(control->mutex);
    control->op = stream;
  }
  stream->Connect();
  return std::make_unique<Handle>(control);
}

// ---------------------------------------------------------------------------------------------
// Watch

class WatchStream final : public StreamBase {
 public:
  enum class Event { kStarted, kWritten, kRead, kFinished, kAlarm };

  WatchStream(GrpcEtcdClient* client, WatchRequest request, EtcdClient::WatchCallback callback,
              std::shared_ptr<Control> control)
      : StreamBase(client, std::move(control)),
        request_(std::move(request)),
        callback_(std::move(callback)),
        next_revision_(request_.start_revision) {}

  void Connect() override;
  void OnEvent(Event event, bool ok);

 private:
  bool HandleResponse();
  void RequestFinish();
  void AfterStream();
  void Fail(Error error) override {
    End([&] { callback_(Unexpected{std::move(error)}); });
  }

  const WatchRequest request_;
  const EtcdClient::WatchCallback callback_;
  int64_t next_revision_;  // the first revision not yet delivered (0: from now on)

  EventTag<WatchStream, Event> started_{this, Event::kStarted};
  EventTag<WatchStream, Event> written_{this, Event::kWritten};
  EventTag<WatchStream, Event> read_{this, Event::kRead};
  EventTag<WatchStream, Event> finished_{this, Event::kFinished};
  EventTag<WatchStream, Event> alarm_tag_{this, Event::kAlarm};

  std::unique_ptr<grpc::ClientAsyncReaderWriter<pb::WatchRequest, pb::WatchResponse>> stream_;
  pb::WatchRequest create_;
  pb::WatchResponse response_;
  grpc::Status status_;
  int pending_ = 0;
  bool write_pending_ = false;
  bool finish_wanted_ = false;
  bool finishing_ = false;
  bool reauth_needed_ = false;
  std::optional<Error> retry_error_;  // etcd cancelled the watch for a passing reason
  std::optional<Error> terminal_;
};

void WatchStream::Connect() {
  stream_.reset();
  if (!BeginAttempt()) return;
  pending_ = 1;
  write_pending_ = false;
  finish_wanted_ = false;
  finishing_ = false;
  reauth_needed_ = false;
  status_ = grpc::Status();
  stream_ = client_->endpoint(endpoint_).watch->PrepareAsyncWatch(context(), client_->cq());
  stream_->StartCall(&started_);
}

void WatchStream::OnEvent(Event event, bool ok) {
  if (event == Event::kAlarm) {
    AlarmFired();
    if (!ok || aborted()) {
      Fail(CancelledError());
    } else {
      Connect();
    }
    return;
  }
  --pending_;
  switch (event) {
    case Event::kStarted:
      if (!ok) {
        RequestFinish();
        break;
      }
      create_.Clear();
      ToProto(request_, next_revision_, create_.mutable_create_request());
      write_pending_ = true;
      ++pending_;
      stream_->Write(create_, &written_);
      ++pending_;
      stream_->Read(&response_, &read_);
      break;
    case Event::kWritten:
      write_pending_ = false;
      if (finish_wanted_) RequestFinish();
      break;
    case Event::kRead:
      if (!ok) {
        RequestFinish();
        break;
      }
      if (HandleResponse()) {
        ++pending_;
        stream_->Read(&response_, &read_);
      } else {
        CancelContext();
        RequestFinish();
      }
      break;
    case Event::kFinished:
    case Event::kAlarm:
      break;
  }
  if (finishing_ && pending_ == 0) AfterStream();
}

bool WatchStream::HandleResponse() {
  if (response_.compact_revision() != 0) {
    const int64_t compacted = response_.compact_revision();
    terminal_ = Error{
        ErrorCode::kCompacted,
        "watch of " + request_.key + " from revision " + std::to_string(next_revision_) +
            " failed: compacted; the oldest revision available is " + std::to_string(compacted),
        compacted};
    return false;
  }
  if (response_.canceled()) {
    client_->Log(ops::LogLevel::kDebug, "etcd cancelled a watch",
                 {{"key", request_.key}, {"reason", response_.cancel_reason()}});
    Error error = ErrorFromWatchCancel(response_.cancel_reason());
    if ((error.code == ErrorCode::kPermissionDenied || error.code == ErrorCode::kAuthFailed) &&
        client_->has_credentials() && !reauthenticated_) {
      // etcd refuses a watch with an expired token this way (as "permission denied" in some
      // versions): renew the token and try once more.
      reauth_needed_ = true;
      return false;
    }
    if (error.code == ErrorCode::kUnavailable) {
      retry_error_ = std::move(error);  // e.g. the member lost its leader: reconnect
      return false;
    }
    terminal_ = std::move(error);
    return false;
  }
  if (response_.created()) {
    client_->Log(ops::LogLevel::kDebug, "etcd watch created",
                 {{"key", request_.key}, {"start_revision", next_revision_}});
    failures_ = 0;
    reauthenticated_ = false;
    if (next_revision_ == 0) next_revision_ = response_.header().revision() + 1;
    client_->Report(kOpWatch, kSuccessLabel, client_->clock().Now() - stream_start_);
  }
  if (response_.events_size() > 0) {
    WatchEvents events = TakeWatchEvents(&response_);
    // Never deliver a revision twice (a resumed stream starts at next_revision_ anyway).
    std::erase_if(events.events,
                  [this](const WatchEvent& e) { return e.kv.mod_revision < next_revision_; });
    if (!events.events.empty()) {
      next_revision_ = events.events.back().kv.mod_revision + 1;
      Deliver([&] { callback_(std::move(events)); });
    }
  }
  return true;
}

void WatchStream::RequestFinish() {
  if (finishing_) return;
  if (write_pending_) {
    finish_wanted_ = true;
    return;
  }
  finishing_ = true;
  ++pending_;
  stream_->Finish(&status_, &finished_);
}

void WatchStream::AfterStream() {
  if (aborted()) {
    Fail(CancelledError());
    return;
  }
  const nanoseconds duration = client_->clock().Now() - stream_start_;
  if (terminal_) {
    client_->Report(kOpWatch, ErrorLabel(terminal_->code), duration);
    Fail(std::move(*terminal_));
    return;
  }
  Error error = reauth_needed_ ? Error{ErrorCode::kAuthFailed, "watch refused", 0}
                : retry_error_ ? *retry_error_
                : status_.ok() ? Error{ErrorCode::kUnavailable, "etcd closed the watch stream", 0}
                               : client_->StatusError(status_);
  retry_error_.reset();
  client_->Report(kOpWatch, ErrorLabel(error.code), duration);
  if (RenewTokenAndReconnect(reauth_needed_ || IsInvalidTokenStatus(status_))) return;
  if (error.code == ErrorCode::kPermissionDenied || error.code == ErrorCode::kAuthFailed ||
      error.code == ErrorCode::kInvalidArgument) {
    Fail(std::move(error));
    return;
  }
  const milliseconds delay = NoteFailure(error);
  client_->Log(ops::LogLevel::kWarn, "etcd watch interrupted; resuming",
               {{"key", request_.key},
                {"endpoint", client_->endpoint(endpoint_).name},
                {"error", error.message},
                {"next_revision", next_revision_},
                {"delay_ms", static_cast<int64_t>(delay.count())}});
  if (!SetAlarm(delay, &alarm_tag_)) Fail(CancelledError());
}

// ---------------------------------------------------------------------------------------------
// Lease keep-alive
//
// One timer serves three purposes, one at a time: the periodic renewal while a stream is up, the
// wait before reconnecting, and (cut short with Cancel) the hand-over when a stream ends while the
// timer is pending. The stream's events are counted in pending_; the stream ends when it is
// finishing and nothing is pending.

class KeepAliveStream final : public StreamBase {
 public:
  enum class Event { kStarted, kWritten, kRead, kFinished, kAlarm };

  KeepAliveStream(GrpcEtcdClient* client, int64_t id, EtcdClient::LeaseLostCallback on_lost,
                  std::shared_ptr<Control> control)
      : StreamBase(client, std::move(control)),
        id_(id),
        on_lost_(std::move(on_lost)),
        last_renewed_(client->clock().Now()) {}

  void Connect() override;
  void OnEvent(Event event, bool ok);

 private:
  milliseconds RenewInterval() const {
    if (ttl_seconds_ <= 0) return milliseconds(500);
    return std::max(milliseconds(500), milliseconds(ttl_seconds_ * 1000 / 3));
  }
  // Time left before the lease expires, as far as this client knows.
  milliseconds Remaining() const {
    if (ttl_seconds_ <= 0) return milliseconds::max();
    auto left = std::chrono::seconds(ttl_seconds_) - (client_->clock().Now() - last_renewed_);
    return std::max(milliseconds(0), std::chrono::duration_cast<milliseconds>(left));
  }
  Error Expired() const {
    return Error{ErrorCode::kDeadlineExceeded,
                 "lease " + std::to_string(id_) + " was not renewed within its TTL of " +
                     std::to_string(ttl_seconds_) + " s",
                 0};
  }
  void OnAlarm();
  void SendKeepAlive();
  void RequestFinish();
  void AfterStream();
  void ContinueAfterStream();
  void Lost(Error error);
  void Fail(Error error) override {
    End([&] { on_lost_(error); });
  }
  void Arm(milliseconds delay) { alarm_set_ = SetAlarm(delay, &alarm_tag_); }

  const int64_t id_;
  const EtcdClient::LeaseLostCallback on_lost_;
  int64_t ttl_seconds_ = 0;  // unknown until the first answer
  SteadyTime last_renewed_;
  SteadyTime sent_at_{};

  EventTag<KeepAliveStream, Event> started_{this, Event::kStarted};
  EventTag<KeepAliveStream, Event> written_{this, Event::kWritten};
  EventTag<KeepAliveStream, Event> read_{this, Event::kRead};
  EventTag<KeepAliveStream, Event> finished_{this, Event::kFinished};
  EventTag<KeepAliveStream, Event> alarm_tag_{this, Event::kAlarm};

  std::unique_ptr<
      grpc::ClientAsyncReaderWriter<pb::LeaseKeepAliveRequest, pb::LeaseKeepAliveResponse>>
      stream_;
  pb::LeaseKeepAliveRequest request_;
  pb::LeaseKeepAliveResponse response_;
  grpc::Status status_;
  int pending_ = 0;           // stream events outstanding (the timer is not counted)
  bool have_stream_ = false;  // a stream exists and has not ended
  bool active_ = false;       // ... and it started and is not finishing
  bool write_pending_ = false;
  bool finish_wanted_ = false;
  bool finishing_ = false;
  bool alarm_set_ = false;
  bool connect_on_alarm_ = false;
  bool after_stream_on_alarm_ = false;
  std::optional<Error> lost_;
};

void KeepAliveStream::Connect() {
  stream_.reset();
  if (!BeginAttempt()) return;
  pending_ = 1;
  have_stream_ = true;
  active_ = false;
  write_pending_ = false;
  finish_wanted_ = false;
  finishing_ = false;
  status_ = grpc::Status();
  stream_ =
      client_->endpoint(endpoint_).lease->PrepareAsyncLeaseKeepAlive(context(), client_->cq());
  stream_->StartCall(&started_);
}

void KeepAliveStream::SendKeepAlive() {
  request_.set_id(id_);
  write_pending_ = true;
  sent_at_ = client_->clock().Now();
  ++pending_;
  stream_->Write(request_, &written_);
}

void KeepAliveStream::Lost(Error error) {
  lost_ = std::move(error);
  CancelContext();
  // With a read outstanding, its failure finishes the stream; otherwise finish now.
  if (active_) RequestFinish();
}

void KeepAliveStream::OnAlarm() {
  alarm_set_ = false;
  if (after_stream_on_alarm_) {
    after_stream_on_alarm_ = false;
    ContinueAfterStream();
    return;
  }
  if (aborted() || lost_) {
    // A stream being torn down ends the operation when its events are back.
    if (!have_stream_) Fail(lost_ ? *lost_ : CancelledError());
    return;
  }
  if (connect_on_alarm_) {
    connect_on_alarm_ = false;
    if (Remaining().count() == 0) {
      Fail(Expired());
    } else {
      Connect();
    }
    return;
  }
  if (Remaining().count() == 0) {
    Lost(Expired());
    return;
  }
  if (active_ && !write_pending_) SendKeepAlive();
  Arm(std::min(RenewInterval(), Remaining()));
}

void KeepAliveStream::OnEvent(Event event, bool ok) {
  if (event == Event::kAlarm) {
    AlarmFired();
    OnAlarm();
    return;
  }
  --pending_;
  switch (event) {
    case Event::kStarted:
      if (!ok) {
        RequestFinish();
        break;
      }
      active_ = true;
      SendKeepAlive();
      ++pending_;
      stream_->Read(&response_, &read_);
      if (!alarm_set_) Arm(RenewInterval());
      break;
    case Event::kWritten:
      write_pending_ = false;
      if (finish_wanted_) RequestFinish();
      break;
    case Event::kRead:
      if (!ok) {
        RequestFinish();
        break;
      }
      if (response_.ttl() <= 0) {
        Lost(Error{ErrorCode::kNotFound, "lease " + std::to_string(id_) + " expired or was revoked",
                   0});
        break;
      }
      ttl_seconds_ = response_.ttl();
      last_renewed_ = client_->clock().Now();
      failures_ = 0;
      reauthenticated_ = false;
      client_->Report(kOpLeaseKeepAlive, kSuccessLabel, last_renewed_ - sent_at_);
      ++pending_;
      stream_->Read(&response_, &read_);
      break;
    case Event::kFinished:
    case Event::kAlarm:
      break;
  }
  if (finishing_ && pending_ == 0) AfterStream();
}

void KeepAliveStream::RequestFinish() {
  active_ = false;
  if (finishing_) return;
  if (write_pending_) {
    finish_wanted_ = true;
    return;
  }
  finishing_ = true;
  ++pending_;
  stream_->Finish(&status_, &finished_);
}

void KeepAliveStream::AfterStream() {
  have_stream_ = false;
  active_ = false;
  if (alarm_set_) {
    // Cut the pending timer short and decide when it is back.
    after_stream_on_alarm_ = true;
    CancelAlarm();
    return;
  }
  ContinueAfterStream();
}

void KeepAliveStream::ContinueAfterStream() {
  if (aborted()) {
    Fail(CancelledError());
    return;
  }
  if (lost_) {
    client_->Report(kOpLeaseKeepAlive, ErrorLabel(lost_->code), nanoseconds(0));
    Fail(*lost_);
    return;
  }
  Error error = status_.ok() ? Error{ErrorCode::kUnavailable, "keep-alive stream closed", 0}
                             : client_->StatusError(status_);
  client_->Report(kOpLeaseKeepAlive, ErrorLabel(error.code), nanoseconds(0));
  if (RenewTokenAndReconnect(IsInvalidTokenStatus(status_))) return;
  if (error.code == ErrorCode::kNotFound || error.code == ErrorCode::kPermissionDenied ||
      error.code == ErrorCode::kAuthFailed) {
    Fail(std::move(error));
    return;
  }
  if (Remaining().count() == 0) {
    Fail(Expired());
    return;
  }
  const milliseconds delay = NoteFailure(error);
  client_->Log(ops::LogLevel::kWarn, "etcd lease keep-alive interrupted; reconnecting",
               {{"lease", id_},
                {"error", error.message},
                {"delay_ms", static_cast<int64_t>(delay.count())}});
  connect_on_alarm_ = true;
  Arm(std::min(delay, Remaining()));
  if (!alarm_set_) Fail(CancelledError());
}

// ---------------------------------------------------------------------------------------------
// Election observe

class ObserveStream final : public StreamBase {
 public:
  enum class Event { kStarted, kRead, kFinished, kAlarm };

  ObserveStream(GrpcEtcdClient* client, std::string name, EtcdClient::ObserveCallback callback,
                std::shared_ptr<Control> control)
      : StreamBase(client, std::move(control)), callback_(std::move(callback)) {
    request_.set_name(std::move(name));
  }

  void Connect() override;
  void OnEvent(Event event, bool ok);

 private:
  void AfterStream();
  void Fail(Error error) override {
    End([&] { callback_(Unexpected{std::move(error)}); });
  }

  const EtcdClient::ObserveCallback callback_;
  epb::LeaderRequest request_;
  EventTag<ObserveStream, Event> started_{this, Event::kStarted};
  EventTag<ObserveStream, Event> read_{this, Event::kRead};
  EventTag<ObserveStream, Event> finished_{this, Event::kFinished};
  EventTag<ObserveStream, Event> alarm_tag_{this, Event::kAlarm};
  std::unique_ptr<grpc::ClientAsyncReader<epb::LeaderResponse>> reader_;
  epb::LeaderResponse response_;
  grpc::Status status_;
  std::string last_key_;
  int64_t last_mod_revision_ = 0;
};

void ObserveStream::Connect() {
  reader_.reset();
  if (!BeginAttempt()) return;
  status_ = grpc::Status();
  reader_ = client_->endpoint(endpoint_).election->PrepareAsyncObserve(context(), request_,
                                                                       client_->cq());
  reader_->StartCall(&started_);
}

void ObserveStream::OnEvent(Event event, bool ok) {
  switch (event) {
    case Event::kAlarm:
      AlarmFired();
      if (!ok || aborted()) {
        Fail(CancelledError());
      } else {
        Connect();
      }
      return;
    case Event::kStarted:
    case Event::kRead:
      if (!ok) {
        reader_->Finish(&status_, &finished_);
        return;
      }
      if (event == Event::kRead && response_.has_kv()) {
        failures_ = 0;
        KeyValue kv = TakeKeyValue(response_.mutable_kv());
        if (kv.key != last_key_ || kv.mod_revision != last_mod_revision_) {
          last_key_ = kv.key;
          last_mod_revision_ = kv.mod_revision;
          Deliver([&] { callback_(std::move(kv)); });
        }
      }
      response_.Clear();
      reader_->Read(&response_, &read_);
      return;
    case Event::kFinished:
      AfterStream();
      return;
  }
}

void ObserveStream::AfterStream() {
  if (aborted()) {
    Fail(CancelledError());
    return;
  }
  Error error = status_.ok() ? Error{ErrorCode::kUnavailable, "observe stream closed", 0}
                             : client_->StatusError(status_);
  client_->Report(kOpObserve, ErrorLabel(error.code), client_->clock().Now() - stream_start_);
  if (RenewTokenAndReconnect(IsInvalidTokenStatus(status_))) return;
  if (error.code == ErrorCode::kPermissionDenied || error.code == ErrorCode::kAuthFailed ||
      error.code == ErrorCode::kInvalidArgument) {
    Fail(std::move(error));
    return;
  }
  reauthenticated_ = false;
  if (!SetAlarm(NoteFailure(error), &alarm_tag_)) Fail(CancelledError());
}

// ---------------------------------------------------------------------------------------------
// GrpcEtcdClient

Result<std::string, std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Unexpected<std::string>{"cannot read " + path};
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

EtcdResult<void> GrpcEtcdClient::Init() {
  if (options_.endpoints.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "no etcd endpoints given");
  }
  bool any_https = false;
  bool any_http = false;
  std::vector<std::string> targets;
  for (const std::string& endpoint : options_.endpoints) {
    std::string target = endpoint;
    if (target.rfind("https://", 0) == 0) {
      any_https = true;
      target.erase(0, 8);
    } else if (target.rfind("http://", 0) == 0) {
      any_http = true;
      target.erase(0, 7);
    }
    while (!target.empty() && target.back() == '/') target.pop_back();
    if (target.empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "empty etcd endpoint in the list");
    }
    targets.push_back(std::move(target));
  }
  if (any_https && any_http) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "etcd endpoints mix http:// and https://; use one scheme");
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  grpc::ChannelArguments arguments;
  if (options_.tls || any_https) {
    grpc::SslCredentialsOptions ssl;
    const TlsOptions tls = options_.tls.value_or(TlsOptions{});
    if (tls.cert_file.empty() != tls.key_file.empty()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "a TLS client certificate needs its key, and a key its certificate");
    }
    for (auto [path, field] : {std::pair{&tls.ca_file, &ssl.pem_root_certs},
                               std::pair{&tls.cert_file, &ssl.pem_cert_chain},
                               std::pair{&tls.key_file, &ssl.pem_private_key}}) {
      if (path->empty()) continue;
      auto contents = ReadWholeFile(*path);
      if (!contents.ok()) return MakeError(ErrorCode::kInvalidArgument, contents.error());
      *field = std::move(contents).value();
    }
    credentials = grpc::SslCredentials(ssl);
    tls_ = true;
    if (!tls.server_name_override.empty()) {
      arguments.SetSslTargetNameOverride(tls.server_name_override);
    }
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  arguments.SetMaxReceiveMessageSize(INT_MAX);
  arguments.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(options_.keepalive_time.count()));
  arguments.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                   static_cast<int>(options_.keepalive_timeout.count()));
  arguments.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  arguments.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // Reconnect quickly after an etcd restart; the client's own backoff paces the calls.
  arguments.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  arguments.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  // At most half a second between connection attempts, so that calls find etcd within that of
  // its return (a failed attempt to a loopback or LAN address costs next to nothing).
  arguments.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
                   static_cast<int>(std::clamp<int64_t>(options_.backoff.max.count(), 100, 500)));
  // Connections of this client are its own (not shared with other clients in the process).
  arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);

  for (size_t i = 0; i < targets.size(); ++i) {
    Endpoint endpoint;
    endpoint.name = options_.endpoints[i];
    endpoint.channel = grpc::CreateCustomChannel(targets[i], credentials, arguments);
    endpoint.kv = pb::KV::NewStub(endpoint.channel);
    endpoint.watch = pb::Watch::NewStub(endpoint.channel);
    endpoint.lease = pb::Lease::NewStub(endpoint.channel);
    endpoint.maintenance = pb::Maintenance::NewStub(endpoint.channel);
    endpoint.auth = pb::Auth::NewStub(endpoint.channel);
    endpoint.election = epb::Election::NewStub(endpoint.channel);
    endpoint.txn_kv.push_back(pb::KV::NewStub(endpoint.channel));
    for (int extra = 1; extra < options_.txn_connections; ++extra) {
      // A local subchannel pool (above) gives every channel a connection of its own.
      endpoint.txn_channels.push_back(
          grpc::CreateCustomChannel(targets[i], credentials, arguments));
      endpoint.txn_kv.push_back(pb::KV::NewStub(endpoint.txn_channels.back()));
    }
    endpoints_.push_back(std::move(endpoint));
  }
  thread_ = std::thread([this] { Run(); });
  return {};
}

void GrpcEtcdClient::Run() {
  thread_id_.store(std::this_thread::get_id());
  void* tag = nullptr;
  bool ok = false;
  while (cq_.Next(&tag, &ok)) static_cast<Tag*>(tag)->Proceed(ok);
}

EtcdResult<void> GrpcEtcdClient::Dial() {
  if (options_.dial_timeout.count() > 0) {
    const SteadyTime deadline = std::chrono::steady_clock::now() + options_.dial_timeout;
    bool connected = false;
    while (!connected) {
      for (size_t i = 0; i < endpoints_.size(); ++i) {
        if (endpoints_[i].channel->GetState(true) == GRPC_CHANNEL_READY) {
          preferred_.store(static_cast<int>(i));
          // The transaction connections connect in the background meanwhile.
          for (const auto& channel : endpoints_[i].txn_channels) channel->GetState(true);
          connected = true;
          break;
        }
      }
      if (connected || std::chrono::steady_clock::now() >= deadline) break;
      std::this_thread::sleep_for(milliseconds(10));
    }
    if (!connected) {
      // A call carries gRPC's reason for the failed connections (refused, TLS, ...).
      auto status = Status();
      if (!status.ok()) {
        std::string names;
        for (const auto& endpoint : endpoints_) {
          names += (names.empty() ? "" : ", ") + endpoint.name;
        }
        Error error = status.error();
        error.message = "could not connect to etcd (" + names + ") within " +
                        std::to_string(options_.dial_timeout.count()) + " ms: " + error.message;
        return Unexpected{std::move(error)};
      }
    }
    if (has_credentials()) {
      std::promise<EtcdResult<void>> done;
      RenewToken(0, [&done](EtcdResult<void> result) { done.set_value(result); });
      auto result = done.get_future().get();
      if (!result.ok()) return result;
    }
  }
  return {};
}

int GrpcEtcdClient::PickEndpoint() {
  const int count = static_cast<int>(endpoints_.size());
  if (count == 1) return 0;
  int preferred = preferred_.load();
  for (int i = 0; i < count; ++i) {
    const int index = (preferred + i) % count;
    if (endpoints_[static_cast<size_t>(index)].channel->GetState(true) !=
        GRPC_CHANNEL_TRANSIENT_FAILURE) {
      if (i != 0 && preferred_.compare_exchange_strong(preferred, index)) {
        Log(ops::LogLevel::kInfo, "etcd endpoint unreachable; using another",
            {{"from", endpoints_[static_cast<size_t>(preferred)].name},
             {"to", endpoints_[static_cast<size_t>(index)].name}});
      }
      return index;
    }
  }
  return preferred;
}

void GrpcEtcdClient::OnEndpointFailure(int index, const Error& error) {
  const int count = static_cast<int>(endpoints_.size());
  if (count == 1 || !IsEndpointFailure(error.code)) return;
  int expected = index;
  const int next = (index + 1) % count;
  if (preferred_.compare_exchange_strong(expected, next)) {
    Log(ops::LogLevel::kWarn, "etcd endpoint failed; switching",
        {{"from", endpoints_[static_cast<size_t>(index)].name},
         {"to", endpoints_[static_cast<size_t>(next)].name},
         {"error", error.message}});
  }
}

int GrpcEtcdClient::AttachToken(grpc::ClientContext* context) {
  std::lock_guard lock(auth_mutex_);
  if (!token_.empty()) context->AddMetadata(kTokenMetadata, token_);
  return token_generation_;
}

void GrpcEtcdClient::RenewToken(int failed_generation, std::function<void(EtcdResult<void>)> then) {
  {
    std::lock_guard lock(auth_mutex_);
    if (token_generation_ != failed_generation) {
      // Renewed meanwhile by another call.
    } else {
      auth_waiters_.push_back(std::move(then));
      if (auth_in_flight_) return;
      auth_in_flight_ = true;
      then = nullptr;
    }
  }
  if (then) {
    then({});
    return;
  }
  pb::AuthenticateRequest request;
  request.set_name(options_.user);
  request.set_password(options_.password);
  CallSpec spec{kOpAuthenticate, RetryClass::kIdempotent, options_.call_timeout,
                /*use_token=*/false, options_.max_attempts};
  UnaryCall<pb::AuthenticateRequest, pb::AuthenticateResponse>::Launch(
      this, spec, std::move(request),
      [](Endpoint& e, grpc::ClientContext* c, const pb::AuthenticateRequest& r,
         grpc::CompletionQueue* cq) { return e.auth->PrepareAsyncAuthenticate(c, r, cq); },
      [this](EtcdResult<pb::AuthenticateResponse*> result, int) {
        OnAuthenticated(std::move(result));
      });
}

void GrpcEtcdClient::OnAuthenticated(EtcdResult<pb::AuthenticateResponse*> result) {
  EtcdResult<void> outcome;
  std::vector<std::function<void(EtcdResult<void>)>> waiters;
  {
    std::lock_guard lock(auth_mutex_);
    auth_in_flight_ = false;
    if (result.ok()) {
      token_ = (*result)->token();
      ++token_generation_;
    } else if (result.error().code == ErrorCode::kFailedPrecondition &&
               result.error().message.find("authentication is not enabled") != std::string::npos) {
      // etcd without auth: go on without a token.
      token_.clear();
      ++token_generation_;
    } else {
      Error error = result.error();
      if (error.code == ErrorCode::kInvalidArgument) error.code = ErrorCode::kAuthFailed;
      error.message =
          "etcd authentication as user '" + options_.user + "' failed: " + error.message;
      outcome = Unexpected{std::move(error)};
    }
    waiters.swap(auth_waiters_);
  }
  if (!result.ok() && outcome.ok()) {
    Log(ops::LogLevel::kWarn, "etcd has authentication disabled; sending no token");
  } else if (!outcome.ok()) {
    Log(ops::LogLevel::kError, "etcd authentication failed",
        {{"user", options_.user}, {"error", outcome.error().message}});
  } else {
    Log(ops::LogLevel::kDebug, "etcd auth token obtained", {{"user", options_.user}});
  }
  for (auto& waiter : waiters) waiter(outcome);
}

template <typename Request, typename Response, typename Convert>
auto GrpcEtcdClient::CallSync(const CallSpec& spec, Request request,
                              Starter<Request, Response> starter, Convert convert)
    -> decltype(convert(std::declval<Response&>(), 0)) {
  using Out = decltype(convert(std::declval<Response&>(), 0));
  if (OnCallbackThread()) {
    return MakeError(ErrorCode::kFailedPrecondition, std::string("synchronous etcd call '") +
                                                         std::string(spec.op) +
                                                         "' made on the client's callback thread");
  }
  std::promise<Out> promise;
  auto future = promise.get_future();
  UnaryCall<Request, Response>::Launch(
      this, spec, std::move(request), std::move(starter),
      [&promise, &convert](EtcdResult<Response*> result, int endpoint) {
        if (!result.ok()) {
          promise.set_value(Unexpected{std::move(result).error()});
        } else {
          promise.set_value(convert(**result, endpoint));
        }
      });
  return future.get();
}

EtcdResult<RangeResponse> GrpcEtcdClient::Range(const RangeRequest& request,
                                                const CallOptions& options) {
  pb::RangeRequest proto;
  ToProto(request, &proto);
  return CallSync<pb::RangeRequest, pb::RangeResponse>(
      Spec(kOpRange, RetryClass::kIdempotent, options.timeout), std::move(proto),
      [](Endpoint& e, grpc::ClientContext* c, const pb::RangeRequest& r,
         grpc::CompletionQueue* cq) { return e.kv->PrepareAsyncRange(c, r, cq); },
      [](pb::RangeResponse& response, int) -> EtcdResult<RangeResponse> {
        return TakeRangeResponse(&response);
      });
}

void GrpcEtcdClient::TxnAsync(TxnRequest request, const CallOptions& options, TxnCallback done) {
  if (auto valid = ValidateTxn(request, options_.max_txn_ops); !valid.ok()) {
    Report(kOpTxn, ErrorLabel(valid.error().code), nanoseconds(0));
    Post([done = std::move(done), error = valid.error()] { done(Unexpected{error}); });
    return;
  }
  QueuedTxn txn{NewArenaTxnRequest(), options, std::move(done)};
  ToProto(std::move(request), txn.request.message);
  {
    std::lock_guard lock(txn_mutex_);
    if (txns_in_flight_ >= options_.max_txns_in_flight) {
      txn_queue_.push_back(std::move(txn));
      return;
    }
    ++txns_in_flight_;
  }
  SendTxn(std::move(txn));
}

void GrpcEtcdClient::SendTxn(QueuedTxn txn) {
  UnaryCall<ArenaTxnRequest, pb::TxnResponse>::Launch(
      this,
      Spec(kOpTxn, txn.options.safe_to_retry ? RetryClass::kIdempotent : RetryClass::kUnsafe,
           txn.options.timeout),
      std::move(txn.request),
      [this](Endpoint& e, grpc::ClientContext* c, const ArenaTxnRequest& r,
             grpc::CompletionQueue* cq) {
        const size_t turn = next_txn_connection_.fetch_add(1, std::memory_order_relaxed);
        return e.txn_kv[turn % e.txn_kv.size()]->PrepareAsyncTxn(c, *r.message, cq);
      },
      [this, done = std::move(txn.done)](EtcdResult<pb::TxnResponse*> result, int) {
        ReleaseTxnSlot();
        if (result.ok()) {
          done(TakeTxnResponse(*result));
        } else {
          done(Unexpected{std::move(result).error()});
        }
      });
}

void GrpcEtcdClient::ReleaseTxnSlot() {
  std::optional<QueuedTxn> next;
  {
    std::lock_guard lock(txn_mutex_);
    if (!txn_queue_.empty() && !shutting_down_.load()) {
      next = std::move(txn_queue_.front());
      txn_queue_.pop_front();
    } else {
      --txns_in_flight_;
    }
  }
  if (next) SendTxn(std::move(*next));
}

EtcdResult<PutResponse> GrpcEtcdClient::Put(const std::string& key, const std::string& value,
                                            int64_t lease, const CallOptions& options) {
  pb::PutRequest proto;
  proto.set_key(key);
  proto.set_value(value);
  proto.set_lease(lease);
  proto.set_prev_kv(true);
  return CallSync<pb::PutRequest, pb::PutResponse>(
      Spec(kOpPut, options.safe_to_retry ? RetryClass::kIdempotent : RetryClass::kUnsafe,
           options.timeout),
      std::move(proto),
      [](Endpoint& e, grpc::ClientContext* c, const pb::PutRequest& r, grpc::CompletionQueue* cq) {
        return e.kv->PrepareAsyncPut(c, r, cq);
      },
      [](pb::PutResponse& response, int) -> EtcdResult<PutResponse> {
        PutResponse out;
        out.revision = response.header().revision();
        if (response.has_prev_kv()) out.prev_kv = TakeKeyValue(response.mutable_prev_kv());
        return out;
      });
}

EtcdResult<DeleteResponse> GrpcEtcdClient::Delete(const std::string& key,
                                                  const std::string& range_end,
                                                  const CallOptions& options) {
  pb::DeleteRangeRequest proto;
  proto.set_key(key);
  if (!range_end.empty()) proto.set_range_end(range_end);
  proto.set_prev_kv(true);
  return CallSync<pb::DeleteRangeRequest, pb::DeleteRangeResponse>(
      Spec(kOpDelete, options.safe_to_retry ? RetryClass::kIdempotent : RetryClass::kUnsafe,
           options.timeout),
      std::move(proto),
      [](Endpoint& e, grpc::ClientContext* c, const pb::DeleteRangeRequest& r,
         grpc::CompletionQueue* cq) { return e.kv->PrepareAsyncDeleteRange(c, r, cq); },
      [](pb::DeleteRangeResponse& response, int) -> EtcdResult<DeleteResponse> {
        DeleteResponse out;
        out.revision = response.header().revision();
        out.deleted = response.deleted();
        for (auto& kv : *response.mutable_prev_kvs()) out.prev_kvs.push_back(TakeKeyValue(&kv));
        return out;
      });
}

std::unique_ptr<CallHandle> GrpcEtcdClient::Watch(const WatchRequest& request,
                                                  WatchCallback callback) {
  auto control = std::make_shared<Control>();
  auto* stream = new WatchStream(this, request, callback, control);
  return StartStream(this, stream, control, [&callback] {
    callback(MakeError(ErrorCode::kCancelled, "the etcd client is being destroyed"));
  });
}

EtcdResult<LeaseGrantResponse> GrpcEtcdClient::LeaseGrant(std::chrono::seconds ttl, int64_t id) {
  pb::LeaseGrantRequest proto;
  proto.set_ttl(ttl.count());
  proto.set_id(id);
  return CallSync<pb::LeaseGrantRequest, pb::LeaseGrantResponse>(
      Spec(kOpLeaseGrant, RetryClass::kUnsafe), std::move(proto),
      [](Endpoint& e, grpc::ClientContext* c, const pb::LeaseGrantRequest& r,
         grpc::CompletionQueue* cq) { return e.lease->PrepareAsyncLeaseGrant(c, r, cq); },
      [](pb::LeaseGrantResponse& response, int) -> EtcdResult<LeaseGrantResponse> {
        if (!response.error().empty()) {
          return MakeError(ErrorCode::kInternal, "lease grant failed: " + response.error());
        }
        return LeaseGrantResponse{response.id(), response.ttl()};
      });
}

EtcdResult<void> GrpcEtcdClient::LeaseRevoke(int64_t id) {
  pb::LeaseRevokeRequest proto;
  proto.set_id(id);
  return CallSync<pb::LeaseRevokeRequest, pb::LeaseRevokeResponse>(
      Spec(kOpLeaseRevoke, RetryClass::kIdempotent), std::move(proto),
      [](Endpoint& e, grpc::ClientContext* c, const pb::LeaseRevokeRequest& r,
         grpc::CompletionQueue* cq) { return e.lease->PrepareAsyncLeaseRevoke(c, r, cq); },
      [](pb::LeaseRevokeResponse&, int) -> EtcdResult<void> { return {}; });
}

EtcdResult<LeaseTimeToLiveResponse> GrpcEtcdClient::LeaseTimeToLive(int64_t id) {
  pb::LeaseTimeToLiveRequest proto;
  proto.set_id(id);
  proto.set_keys(true);
  return CallSync<pb::LeaseTimeToLiveRequest, pb::LeaseTimeToLiveResponse>(
      Spec(kOpLeaseTimeToLive, RetryClass::kIdempotent), std::move(proto),
      [](Endpoint& e, grpc::ClientContext* c, const pb::LeaseTimeToLiveRequest& r,
         grpc::CompletionQueue* cq) { return e.lease->PrepareAsyncLeaseTimeToLive(c, r, cq); },
      [](pb::LeaseTimeToLiveResponse& response, int) -> EtcdResult<LeaseTimeToLiveResponse> {
        LeaseTimeToLiveResponse out;
        out.id = response.id();
        out.ttl_seconds = response.ttl();
        out.granted_ttl_seconds = response.grantedttl();
        for (auto& key : *response.mutable_keys()) out.keys.push_back(std::move(key));
        return out;
      });
}

std::unique_ptr<CallHandle> GrpcEtcdClient::LeaseKeepAlive(int64_t id, LeaseLostCallback on_lost) {
  auto control = std::make_shared<Control>();
  auto* stream = new KeepAliveStream(this, id, on_lost, control);
  return StartStream(this, stream, control, [&on_lost] {
    on_lost(Error{ErrorCode::kCancelled, "the etcd client is being destroyed", 0});
  });
}

std::unique_ptr<CallHandle> GrpcEtcdClient::Campaign(const std::string& name, int64_t lease,
                                                     const std::string& value,
                                                     CampaignCallback done) {
  auto control = std::make_shared<Control>();
  epb::CampaignRequest proto;
  proto.set_name(name);
  proto.set_lease(lease);
  proto.set_value(value);
  // No deadline: a campaign waits for the leader to go. Campaigning again with the same lease
  // reuses the same key, so retries are safe.
  CallSpec spec{kOpCampaign, RetryClass::kIdempotent, milliseconds(0), true, options_.max_attempts};
  UnaryCall<epb::CampaignRequest, epb::CampaignResponse>::Launch(
      this, spec, std::move(proto),
      [](Endpoint& e, grpc::ClientContext* c, const epb::CampaignRequest& r,
         grpc::CompletionQueue* cq) { return e.election->PrepareAsyncCampaign(c, r, cq); },
      [done = std::move(done)](EtcdResult<epb::CampaignResponse*> result, int) {
        if (!result.ok()) {
          done(Unexpected{std::move(result).error()});
        } else {
          done(TakeLeaderKey((*result)->mutable_leader()));
        }
      },
      control);
  return std::make_unique<Handle>(control);
}

EtcdResult<void> GrpcEtcdClient::Proclaim(const LeaderKey& leader, const std::string& value) {
  epb::ProclaimRequest proto;
  ToProto(leader, proto.mutable_leader());
  proto.set_value(value);
  return CallSync<epb::ProclaimRequest, epb::ProclaimResponse>(
      Spec(kOpProclaim, RetryClass::kIdempotent), std::move(proto),
      [](Endpoint& e, grpc::ClientContext* c, const epb::ProclaimRequest& r,
         grpc::CompletionQueue* cq) { return e.election->PrepareAsyncProclaim(c, r, cq); },
      [](epb::ProclaimResponse&, int) -> EtcdResult<void> { return {}; });
}

EtcdResult<void> GrpcEtcdClient::Resign(const LeaderKey& leader) {
  epb::ResignRequest proto;
  ToProto(leader, proto.mutable_leader());
  return CallSync<epb::ResignRequest, epb::ResignResponse>(
      Spec(kOpResign, RetryClass::kIdempotent), std::move(proto),
      [](Endpoint& e, grpc::ClientContext* c, const epb::ResignRequest& r,
         grpc::CompletionQueue* cq) { return e.election->PrepareAsyncResign(c, r, cq); },
      [](epb::ResignResponse&, int) -> EtcdResult<void> { return {}; });
}

EtcdResult<KeyValue> GrpcEtcdClient::Leader(const std::string& name) {
  epb::LeaderRequest proto;
  proto.set_name(name);
  return CallSync<epb::LeaderRequest, epb::LeaderResponse>(
      Spec(kOpLeader, RetryClass::kIdempotent), std::move(proto),
      [](Endpoint& e, grpc::ClientContext* c, const epb::LeaderRequest& r,
         grpc::CompletionQueue* cq) { return e.election->PrepareAsyncLeader(c, r, cq); },
      [](epb::LeaderResponse& response, int) -> EtcdResult<KeyValue> {
        if (!response.has_kv()) return MakeError(ErrorCode::kNotFound, "election: no leader");
        return TakeKeyValue(response.mutable_kv());
      });
}

std::unique_ptr<CallHandle> GrpcEtcdClient::Observe(const std::string& name,
                                                    ObserveCallback callback) {
  auto control = std::make_shared<Control>();
  auto* stream = new ObserveStream(this, name, callback, control);
  return StartStream(this, stream, control, [&callback] {
    callback(MakeError(ErrorCode::kCancelled, "the etcd client is being destroyed"));
  });
}

EtcdResult<StatusResponse> GrpcEtcdClient::Status() {
  return CallSync<pb::StatusRequest, pb::StatusResponse>(
      Spec(kOpStatus, RetryClass::kIdempotent), pb::StatusRequest(),
      [](Endpoint& e, grpc::ClientContext* c, const pb::StatusRequest& r,
         grpc::CompletionQueue* cq) { return e.maintenance->PrepareAsyncStatus(c, r, cq); },
      [this](pb::StatusResponse& response, int endpoint) -> EtcdResult<StatusResponse> {
        StatusResponse out;
        out.endpoint = endpoints_[static_cast<size_t>(endpoint)].name;
        out.version = response.version();
        out.db_size = response.dbsize();
        out.member_id = response.header().member_id();
        out.leader = response.leader();
        out.revision = response.header().revision();
        out.raft_term = response.raftterm();
        for (const auto& error : response.errors()) out.errors.push_back(error);
        return out;
      });
}

}  // namespace

Result<std::unique_ptr<EtcdClient>, Error> NewGrpcEtcdClient(GrpcEtcdClientOptions options,
                                                             const Clock& clock) {
  auto client = std::make_unique<GrpcEtcdClient>(std::move(options), clock);
  if (auto initialized = client->Init(); !initialized.ok()) {
    return Unexpected{initialized.error()};
  }
  if (auto dialed = client->Dial(); !dialed.ok()) return Unexpected{dialed.error()};
  return std::unique_ptr<EtcdClient>(std::move(client));
}

}  // namespace zk2etcd::etcd
