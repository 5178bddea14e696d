// ObserveStream: an election observer of GrpcEtcdClient (EtcdClient::Observe), a server stream
// that delivers each new leader once and reconnects after interruptions; it ends (its last
// callback) on a refusal or when cancelled. Internal to the gRPC client.
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

}  // namespace zk2etcd::etcd::detail
