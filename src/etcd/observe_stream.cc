#include "etcd/observe_stream.h"

#include <algorithm>
#include <string>
#include <utility>

#include "common/op_observer.h"
#include "etcd/grpc_convert.h"
#include "ops/log.h"

namespace zk2etcd::etcd::detail {

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

}  // namespace zk2etcd::etcd::detail
