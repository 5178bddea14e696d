// KeepAliveStream: a lease keep-alive of GrpcEtcdClient (EtcdClient::LeaseKeepAlive), a
// bidirectional stream that renews the lease every third of its TTL, reconnects while the lease
// can still be saved, and reports the lease lost (its last callback) when it expired, was revoked
// or could not be renewed within its TTL. Internal to the gRPC client.
//
// Thread-safety: as StreamBase: Abort from any thread, the rest on the client's callback thread.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <optional>
#include <string>

#include "etcd/etcd_client.h"
#include "etcd/grpc_operation.h"
#include "etcd/stream_base.h"

namespace zk2etcd::etcd::detail {

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

}  // namespace zk2etcd::etcd::detail
