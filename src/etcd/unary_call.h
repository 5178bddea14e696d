// UnaryCall: one unary gRPC call of GrpcEtcdClient, with retries (exponential backoff, when the
// CallSpec allows a repeat), token renewal and endpoint failover. A template (over the request and
// response messages), so defined here in full. Internal to the gRPC client.
//
// Thread-safety: Launch may be called from any thread; the call is then driven by the client's
// callback thread, one event at a time. Abort is thread-safe.
#pragma once

#include <google/protobuf/arena.h>
#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>

#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "common/op_observer.h"
#include "etcd/grpc_convert.h"
#include "etcd/grpc_etcd_client_internal.h"
#include "etcd/grpc_operation.h"
#include "ops/log.h"

namespace zk2etcd::etcd::detail {

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
  // The deadline of an attempt (0: none): the spec's, and at most kAbandonedCallTimeout once the
  // client was abandoned (one short attempt: the process is on its way out).
  milliseconds AttemptTimeout() const;
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
  if (const milliseconds timeout = AttemptTimeout(); timeout.count() > 0) {
    context_->set_deadline(DeadlineAfter(timeout));
  }
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
milliseconds UnaryCall<Request, Response>::AttemptTimeout() const {
  if (!client_->abandoned()) return spec_.timeout;
  return spec_.timeout.count() > 0 ? std::min(spec_.timeout, kAbandonedCallTimeout)
                                   : kAbandonedCallTimeout;
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
  if (Retryable(error) && attempts_ < spec_.max_attempts && !client_->abandoned()) {
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
                    std::to_string(AttemptTimeout().count()) + " ms (" + error.message + ")";
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

}  // namespace zk2etcd::etcd::detail
