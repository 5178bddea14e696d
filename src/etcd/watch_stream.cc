#include "etcd/watch_stream.h"

#include <algorithm>
#include <string>
#include <utility>

#include "common/op_observer.h"
#include "etcd/grpc_convert.h"
#include "ops/log.h"

namespace zk2etcd::etcd::detail {

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
    if (failures_ > 0) {
      client_->Log(ops::LogLevel::kInfo, "etcd watch resumed",
                   {{"key", request_.key},
                    {"endpoint", client_->endpoint(endpoint_).name},
                    {"failed_attempts", failures_},
                    {"next_revision", next_revision_}});
      if (request_.report_interruptions) {
        Deliver([this] {
          WatchEvents resumed;
          resumed.resumed = true;
          callback_(std::move(resumed));
        });
      }
    }
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
  // A warning for the first failed attempt of an interruption; its retries are debug lines, and
  // "etcd watch resumed" ends it.
  const bool first = failures_ == 1;
  client_->Log(first ? ops::LogLevel::kWarn : ops::LogLevel::kDebug,
               first ? "etcd watch interrupted; resuming" : "etcd watch still interrupted",
               {{"key", request_.key},
                {"endpoint", client_->endpoint(endpoint_).name},
                {"error", error.message},
                {"next_revision", next_revision_},
                {"attempt", failures_},
                {"delay_ms", static_cast<int64_t>(delay.count())}});
  if (first && request_.report_interruptions) {
    Deliver([this, message = error.message] {
      WatchEvents interrupted;
      interrupted.interrupted = message;
      callback_(std::move(interrupted));
    });
  }
  if (!SetAlarm(delay, &alarm_tag_)) Fail(CancelledError());
}

}  // namespace zk2etcd::etcd::detail
