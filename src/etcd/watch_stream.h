// WatchStream: a watch of GrpcEtcdClient (EtcdClient::Watch), a bidirectional stream that
// resumes after interruptions from the first revision not yet delivered, never delivers a
// revision twice, renews a refused token once, and ends (its last callback) on compaction, on a
// refusal, or when cancelled. Internal to the gRPC client.
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

}  // namespace zk2etcd::etcd::detail
