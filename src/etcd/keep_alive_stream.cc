#include "etcd/keep_alive_stream.h"

#include <algorithm>
#include <string>
#include <utility>

#include "common/op_observer.h"
#include "etcd/grpc_convert.h"
#include "ops/log.h"

namespace zk2etcd::etcd::detail {

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
      if (failures_ > 0) {
        client_->Log(ops::LogLevel::kInfo, "etcd lease keep-alive resumed",
                     {{"lease", id_}, {"failed_attempts", failures_}});
      }
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
  // A warning for the first failed attempt of an interruption; its retries are debug lines, and
  // "etcd lease keep-alive resumed" ends it.
  const bool first = failures_ == 1;
  client_->Log(first ? ops::LogLevel::kWarn : ops::LogLevel::kDebug,
               first ? "etcd lease keep-alive interrupted; reconnecting"
                     : "etcd lease keep-alive still interrupted",
               {{"lease", id_},
                {"error", error.message},
                {"attempt", failures_},
                {"delay_ms", static_cast<int64_t>(delay.count())}});
  connect_on_alarm_ = true;
  Arm(std::min(delay, Remaining()));
  if (!alarm_set_) Fail(CancelledError());
}

}  // namespace zk2etcd::etcd::detail
