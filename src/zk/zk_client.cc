#include "zk/zk_client.h"

#include <future>

#include "zk/connect_string.h"

namespace zk2etcd::zk {

std::string_view SessionStateName(SessionState state) {
  switch (state) {
    case SessionState::kConnecting:
      return "connecting";
    case SessionState::kConnected:
      return "connected";
    case SessionState::kExpired:
      return "expired";
    case SessionState::kAuthFailed:
      return "auth_failed";
    case SessionState::kClosed:
      return "closed";
  }
  return "unknown";
}

namespace blocking {

namespace {

// Runs `start` with a callback and waits for the callback's result.
template <typename T, typename Start>
ZkResult<T> Wait(Start&& start) {
  std::promise<ZkResult<T>> promise;
  auto future = promise.get_future();
  start([&promise](ZkResult<T> result) { promise.set_value(std::move(result)); });
  return future.get();
}

}  // namespace

ZkResult<GetDataReply> GetData(ZkClient& client, std::string_view path, bool watch) {
  return Wait<GetDataReply>([&](auto done) { client.GetData(path, watch, std::move(done)); });
}

ZkResult<ChildrenReply> GetChildren(ZkClient& client, std::string_view path, bool watch) {
  return Wait<ChildrenReply>([&](auto done) { client.GetChildren(path, watch, std::move(done)); });
}

ZkResult<ExistsReply> Exists(ZkClient& client, std::string_view path, bool watch) {
  return Wait<ExistsReply>([&](auto done) { client.Exists(path, watch, std::move(done)); });
}

ZkResult<CreateReply> Create(ZkClient& client, std::string_view path, std::string_view data,
                             CreateMode mode, const std::vector<Acl>& acl) {
  return Wait<CreateReply>(
      [&](auto done) { client.Create(path, data, mode, acl, std::move(done)); });
}

ZkResult<Ack> CreateAll(ZkClient& client, std::string_view path, std::string_view data) {
  if (auto reason = InvalidPathReason(path)) {
    return Unexpected{
        ZkError{ZkErrorCode::kInvalidArgument, "create " + std::string(path) + ": " + *reason, -1}};
  }
  Ack ack;
  size_t next = 1;
  while (next <= path.size()) {
    size_t end = path.find('/', next);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view prefix = path.substr(0, end);
    const bool last = end == path.size();
    auto created = Create(client, prefix, last ? data : std::string_view());
    if (created.ok()) {
      ack.zxid = created->zxid;
    } else if (created.error().code != ZkErrorCode::kNodeExists) {
      return Unexpected{created.error()};
    }
    next = end + 1;
  }
  return ack;
}

ZkResult<Ack> Delete(ZkClient& client, std::string_view path, int32_t version) {
  return Wait<Ack>([&](auto done) { client.Delete(path, version, std::move(done)); });
}

ZkResult<SetDataReply> SetData(ZkClient& client, std::string_view path, std::string_view data,
                               int32_t version) {
  return Wait<SetDataReply>(
      [&](auto done) { client.SetData(path, data, version, std::move(done)); });
}

ZkResult<MultiReply> Multi(ZkClient& client, std::vector<MultiOp> ops) {
  return Wait<MultiReply>([&](auto done) { client.Multi(std::move(ops), std::move(done)); });
}

ZkResult<MultiReadReply> MultiRead(ZkClient& client, std::vector<ReadOp> ops) {
  return Wait<MultiReadReply>(
      [&](auto done) { client.MultiRead(std::move(ops), std::move(done)); });
}

ZkResult<GetAclReply> GetAcl(ZkClient& client, std::string_view path) {
  return Wait<GetAclReply>([&](auto done) { client.GetAcl(path, std::move(done)); });
}

ZkResult<SyncReply> Sync(ZkClient& client, std::string_view path) {
  return Wait<SyncReply>([&](auto done) { client.Sync(path, std::move(done)); });
}

ZkResult<Ack> AddWatch(ZkClient& client, std::string_view path, AddWatchMode mode) {
  return Wait<Ack>([&](auto done) { client.AddWatch(path, mode, std::move(done)); });
}

ZkResult<Ack> RemoveWatches(ZkClient& client, std::string_view path, WatcherType type) {
  return Wait<Ack>([&](auto done) { client.RemoveWatches(path, type, std::move(done)); });
}

ZkResult<Ack> AddAuth(ZkClient& client, std::string_view scheme, std::string_view credential) {
  return Wait<Ack>([&](auto done) { client.AddAuth(scheme, credential, std::move(done)); });
}

}  // namespace blocking

}  // namespace zk2etcd::zk
