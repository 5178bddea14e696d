// ForwardingZkClient: a ZkClient that passes every call to another one, for tests that change
// one or two calls of a client (hold multiRead requests, count closes) and leave the rest as the
// wrapped client does them. Thread-safety: that of the wrapped client.
#pragma once

#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "zk/zk_client.h"

namespace zk2etcd::zk {

class ForwardingZkClient : public ZkClient {
 public:
  explicit ForwardingZkClient(std::shared_ptr<ZkClient> inner) : inner_(std::move(inner)) {}

  void GetData(std::string_view path, bool watch, ZkCallback<GetDataReply> done) override {
    inner_->GetData(path, watch, std::move(done));
  }
  void GetChildren(std::string_view path, bool watch, ZkCallback<ChildrenReply> done) override {
    inner_->GetChildren(path, watch, std::move(done));
  }
  void Exists(std::string_view path, bool watch, ZkCallback<ExistsReply> done) override {
    inner_->Exists(path, watch, std::move(done));
  }
  void Create(std::string_view path, std::string_view data, CreateMode mode,
              const std::vector<Acl>& acl, ZkCallback<CreateReply> done) override {
    inner_->Create(path, data, mode, acl, std::move(done));
  }
  void Delete(std::string_view path, int32_t version, ZkCallback<Ack> done) override {
    inner_->Delete(path, version, std::move(done));
  }
  void SetData(std::string_view path, std::string_view data, int32_t version,
               ZkCallback<SetDataReply> done) override {
    inner_->SetData(path, data, version, std::move(done));
  }
  void Multi(std::vector<MultiOp> ops, ZkCallback<MultiReply> done) override {
    inner_->Multi(std::move(ops), std::move(done));
  }
  void MultiRead(std::vector<ReadOp> ops, ZkCallback<MultiReadReply> done) override {
    inner_->MultiRead(std::move(ops), std::move(done));
  }
  void GetAcl(std::string_view path, ZkCallback<GetAclReply> done) override {
    inner_->GetAcl(path, std::move(done));
  }
  void Sync(std::string_view path, ZkCallback<SyncReply> done) override {
    inner_->Sync(path, std::move(done));
  }
  void AddWatch(std::string_view path, AddWatchMode mode, ZkCallback<Ack> done) override {
    inner_->AddWatch(path, mode, std::move(done));
  }
  void RemoveWatches(std::string_view path, WatcherType type, ZkCallback<Ack> done) override {
    inner_->RemoveWatches(path, type, std::move(done));
  }
  void AddAuth(std::string_view scheme, std::string_view credential,
               ZkCallback<Ack> done) override {
    inner_->AddAuth(scheme, credential, std::move(done));
  }
  void Close() override { inner_->Close(); }
  SessionInfo session() const override { return inner_->session(); }

 protected:
  ZkClient& inner() { return *inner_; }

 private:
  std::shared_ptr<ZkClient> inner_;
};

}  // namespace zk2etcd::zk
