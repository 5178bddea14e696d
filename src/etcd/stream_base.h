// StreamBase: the common part of GrpcEtcdClient's streaming operations (watch, lease keep-alive,
// election observe): the context and its cancellation, the retry timer, token renewal and
// reconnection, endpoint failover, and delivery through the CallHandle's Control. StartStream
// attaches a stream to its handle and opens it. Internal to the gRPC client.
//
// Thread-safety: Abort is thread-safe (it and the context and timer are guarded by a mutex);
// everything else runs on the client's callback thread, one event at a time.
#pragma once

#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>

#include <memory>
#include <mutex>

#include "etcd/grpc_etcd_client_internal.h"
#include "etcd/grpc_operation.h"

namespace zk2etcd::etcd::detail {

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

}  // namespace zk2etcd::etcd::detail
